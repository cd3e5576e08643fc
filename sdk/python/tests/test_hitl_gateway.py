"""The SDK's human-in-the-loop calls against the real gateway's approvals
(not the contract stub): a gateway with a require_approval policy and the
approvals API (the fixture of t/e2e/test_approvals_python.py), the SDK's
admin client deciding, the agent's client waiting (poll + claim), in sync
mode, rejected and timed out.
"""

import threading
import time

import pytest

from sdktest import ACTION_TOKEN  # noqa: F401 (sys.path set for t/e2e)

from ailink import AIlinkClient, ApprovalRejectedError, ApprovalTimeoutError
from test_approvals_python import ADMIN_KEY, hitl_gateway  # noqa: F401 (fixture)


def approve_first(url, amount, decision="approve", reason="ok by the SDK test"):
    admin = AIlinkClient.admin(admin_key=ADMIN_KEY, gateway_url=url)

    def run():
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for a in admin.approvals.list(status="pending"):
                if a["body_preview"] == '{"amount":%d}' % amount:
                    if decision == "approve":
                        admin.approvals.approve(a["id"], reason=reason)
                    else:
                        admin.approvals.reject(a["id"], reason=reason)
                    return
            time.sleep(0.05)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_async_wait_for_approval_claims_once(hitl_gateway, gateway):
    url = hitl_gateway
    client = AIlinkClient(api_key=ACTION_TOKEN, gateway_url=url)
    seq = gateway.mock_seq()
    response = client.post("/v1/charges", content=b'{"amount":31337}',
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 202
    apr = response.json()["request_id"]
    t = approve_first(url, 31337)
    result = client.wait_for_approval(apr, timeout=15, poll_interval=0.1).result()
    t.join()
    assert result.approved
    assert result.reason == "ok by the SDK test"
    assert result.response.status_code == 200
    assert result.response.json()["echo"]["json"] == {"amount": 31337}
    charges = [m for m in gateway.mock_requests(since=seq) if m["path"] == "/api/v1/charges"]
    assert len(charges) == 1


def test_sync_wait_for_approval(hitl_gateway):
    url = hitl_gateway
    client = AIlinkClient(api_key=ACTION_TOKEN, gateway_url=url)
    t = approve_first(url, 31338)
    response = client.post("/v1/charges", json={"amount": 31338},
                           wait_for_approval=True, approval_timeout=20)
    t.join()
    assert response.status_code == 200
    assert response.json()["echo"]["json"] == {"amount": 31338}


def test_sync_rejected_raises(hitl_gateway):
    url = hitl_gateway
    client = AIlinkClient(api_key=ACTION_TOKEN, gateway_url=url)
    t = approve_first(url, 31339, "reject", "too large")
    with pytest.raises(ApprovalRejectedError) as exc:
        client.post("/v1/charges", json={"amount": 31339},
                    wait_for_approval=True, approval_timeout=20)
    t.join()
    assert exc.value.reason == "too large"
    assert exc.value.approval_id.startswith("apr_")


def test_sync_timeout_raises(hitl_gateway):
    client = AIlinkClient(api_key=ACTION_TOKEN, gateway_url=hitl_gateway)
    with pytest.raises(ApprovalTimeoutError) as exc:
        client.post("/v1/charges", json={"amount": 31340},
                    wait_for_approval=True, approval_timeout=1)
    assert exc.value.timeout == 1
