"""The approvals page in a real headless browser (Debian's Chromium driven by
Selenium): an agent's request is held in sync mode; the page, given the
admin key, lists it with its token, policy, method, path and redacted body;
the approver types a reason and approves; the agent's request runs and the
page shows it gone from the pending list.  Agent-supplied text is shown as
text, never run as markup.
"""

import threading
import time

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from gateway import ACTION_TOKEN
from test_approvals_python import ADMIN_KEY, hitl_gateway  # noqa: F401 (fixture)


@pytest.fixture
def browser():
    opts = Options()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
              "--disable-dev-shm-usage", "--window-size=1400,900"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        yield drv
    finally:
        drv.quit()


def test_page_lists_and_approves(hitl_gateway, browser, gateway):
    url = hitl_gateway
    seq = gateway.mock_seq()
    body = b'{"amount":1234567,"note":"<img src=x onerror=alert(1)>"}'
    result = {}

    def agent():
        with httpx.Client(base_url=url, timeout=60) as c:
            result["r"] = c.post("/v1/charges", content=body, headers={
                "Authorization": "Bearer " + ACTION_TOKEN,
                "X-AILink-Agent-Name": "billing-bot",
                "X-AILink-Approval-Wait": "45"})

    t = threading.Thread(target=agent, daemon=True)
    t.start()

    browser.get(url + "/approvals")
    assert browser.title == "AILink approvals"
    browser.find_element(By.ID, "key").send_keys(ADMIN_KEY)
    browser.find_element(By.ID, "use").click()

    wait = WebDriverWait(browser, 15)
    row = wait.until(EC.presence_of_element_located(
        (By.XPATH, "//tbody/tr[td[7][contains(., 'onerror')]]")))
    cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
    assert cells[0].startswith("apr_")
    assert cells[1] == "tok_action"
    assert cells[2] == "billing-bot"
    assert cells[3] == "charges-need-approval"
    assert cells[4] == "POST"
    assert cells[5] == "/v1/charges"
    assert "1234567" not in cells[6] and "*******" in cells[6], "redacted"
    assert "<img src=x onerror=alert(1)>" in cells[6], "shown as text"
    assert not browser.find_elements(By.XPATH, "//tbody//img"), "never markup"
    assert "charges need a human" in cells[7]
    assert t.is_alive(), "the agent is still held"

    row.find_element(By.CLASS_NAME, "reason").send_keys("ok from the page")
    row.find_element(By.CLASS_NAME, "approve").click()

    wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "approved"))
    t.join(30)
    r = result["r"]
    assert r.status_code == 200, r.text
    assert r.json()["echo"]["json"]["amount"] == 1234567
    charges = [m for m in gateway.mock_requests(since=seq)
               if m["path"] == "/api/v1/charges"]
    assert len(charges) == 1, "the agent's request ran once"

    # the list refreshes without it
    wait.until(lambda d: not d.find_elements(
        By.XPATH, "//tbody/tr[td[7][contains(., 'onerror')]]"))

    # the decision is recorded with the approver's reason
    apr = cells[0]
    with httpx.Client(base_url=url, timeout=10) as c:
        rec = c.get("/api/v1/approvals/" + apr,
                    headers={"Authorization": "Bearer " + ADMIN_KEY}).json()
    assert rec["status"] == "claimed"
    assert rec["decision_reason"] == "ok from the page"
    assert rec["decided_by"] == "e2e-approver"


def test_page_without_key_shows_nothing(hitl_gateway, browser):
    browser.get(hitl_gateway + "/approvals")
    status = WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.ID, "status").text)
    assert "admin key" in status
    assert not browser.find_elements(By.XPATH, "//tbody/tr")
    browser.find_element(By.ID, "key").send_keys("ailink_admin_wrong")
    browser.find_element(By.ID, "use").click()
    WebDriverWait(browser, 10).until(
        EC.text_to_be_present_in_element((By.ID, "status"), "Cannot list"))
    assert not browser.find_elements(By.XPATH, "//tbody/tr")
