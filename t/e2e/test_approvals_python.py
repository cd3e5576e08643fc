"""Human approvals end to end with plain httpx: the async flow (202 -> poll
GET /v1/approvals/<id> -> approve through the approvals API -> claim with
X-AILink-Approval-Id, once), and the sync flow (X-AILink-Approval-Wait held
until an approver decides in another thread: the upstream's answer, or 403
approval_rejected).

A gateway of its own (the session one has no policies and no approvals API):
the session's mock, t/conf/ailink.yaml with admin_keys and a policy
appended, two workers.
"""

import hashlib
import os
import signal
import subprocess
import threading
import time

import httpx
import pytest

import gateway as gwlib
from gateway import NGINX, REPO, free_port
from gateway import ACTION_TOKEN, stop_process

ADMIN_KEY = "ailink_admin_e2e00000000000000000000000001"

EXTRA = """
admin_keys:
  - {name: e2e-approver, hash: %s}
policies:
  - name: charges-need-approval
    apply_to: {tokens: [tok_action]}
    rules:
      - when: {all: [{field: request.method, op: eq, value: POST},
                     {field: request.path, op: eq, value: /v1/charges}]}
        then: {require_approval: {reason: "charges need a human"}}
""" % hashlib.sha256(ADMIN_KEY.encode()).hexdigest()


@pytest.fixture(scope="module")
def hitl_gateway(gateway, tmp_path_factory):
    prefix = tmp_path_factory.mktemp("ailink-e2e-hitl")
    (prefix / "logs").mkdir()
    (prefix / "tmp").mkdir()
    yaml = prefix / "ailink.yaml"
    yaml.write_text((REPO / "t" / "conf" / "ailink.yaml").read_text() + EXTRA)

    port = free_port()
    template = (gwlib.NGINX_CONF
                .replace("ailink_config {repo}/t/conf/ailink.yaml;",
                         "ailink_config %s;" % yaml)
                .replace("worker_processes 1;", "worker_processes 2;")
                .replace("        location / {{",
                         "        location /api/v1/approvals {{\n"
                         "            ailink_approvals_api;\n"
                         "        }}\n\n"
                         "        location = /approvals {{\n"
                         "            ailink_approvals_page;\n"
                         "        }}\n\n"
                         "        location / {{"))
    conf = prefix / "nginx.conf"
    conf.write_text(gwlib.render_conf(prefix, port, template))

    out = prefix / "nginx.stderr"
    with open(out, "ab") as out_f:
        proc = subprocess.Popen([NGINX, "-p", str(prefix) + "/", "-c", str(conf)],
                                stdin=subprocess.DEVNULL, stdout=out_f,
                                stderr=subprocess.STDOUT, env=gateway.env)
    url = "http://127.0.0.1:%d" % port
    try:
        gwlib._wait_healthz(proc, url, [out, prefix / "logs" / "error.log"])
        yield url
    finally:
        stop_process(proc, signal.SIGQUIT, "nginx")


def agent(url):
    return httpx.Client(base_url=url, timeout=30,
                        headers={"Authorization": "Bearer " + ACTION_TOKEN})


def approver(url):
    return httpx.Client(base_url=url, timeout=10,
                        headers={"Authorization": "Bearer " + ADMIN_KEY})


def pending_ids(adm, amount):
    r = adm.get("/api/v1/approvals", params={"status": "pending"})
    assert r.status_code == 200
    return [a["id"] for a in r.json()["data"]
            if a["body_preview"] == '{"amount":%d}' % amount]


def test_async_202_poll_claim(hitl_gateway, gateway):
    url = hitl_gateway
    seq = gateway.mock_seq()
    with agent(url) as c, approver(url) as adm:
        body = b'{"amount":50000}'
        r = c.post("/v1/charges", content=body)
        assert r.status_code == 202
        held = r.json()
        assert held["status"] == "pending_approval"
        assert held["policy_name"] == "charges-need-approval"
        apr = held["request_id"]
        assert apr.startswith("apr_")

        # poll: pending
        r = c.get("/v1/approvals/" + apr)
        assert r.json()["status"] == "pending"
        assert r.json()["reason"] == "charges need a human"

        # the approver sees it and approves
        assert apr in pending_ids(adm, 50000)
        r = adm.post("/api/v1/approvals/%s/decision" % apr,
                     json={"decision": "approve", "reason": "ok by e2e"})
        assert r.status_code == 200
        assert r.json()["decided_by"] == "e2e-approver"

        # poll: approved, with how to claim
        view = c.get("/v1/approvals/" + apr).json()
        assert view["status"] == "approved"
        assert view["claim"]["header"] == "X-AILink-Approval-Id"

        # a different body cannot claim
        r = c.post("/v1/charges", content=b'{"amount":99999}',
                   headers={"X-AILink-Approval-Id": apr})
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "approval_invalid"

        # the claim runs it
        r = c.post("/v1/charges", content=body, headers={"X-AILink-Approval-Id": apr})
        assert r.status_code == 200
        assert r.json()["echo"]["json"] == {"amount": 50000}

        # once: a retry is the replay, never a second call
        again = c.post("/v1/charges", content=body, headers={"X-AILink-Approval-Id": apr})
        assert again.status_code == 200
        assert again.headers["x-ailink-idempotent-replay"] == "true"

    charges = [m for m in gateway.mock_requests(since=seq) if m["path"] == "/api/v1/charges"]
    assert len(charges) == 1


def decide_when_pending(url, amount, decision, reason):
    def run():
        with approver(url) as adm:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                ids = pending_ids(adm, amount)
                if ids:
                    adm.post("/api/v1/approvals/%s/decision" % ids[0],
                             json={"decision": decision, "reason": reason})
                    return
                time.sleep(0.05)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_sync_wait_approved(hitl_gateway):
    url = hitl_gateway
    t = decide_when_pending(url, 60000, "approve", "fine")
    with agent(url) as c:
        start = time.monotonic()
        r = c.post("/v1/charges", content=b'{"amount":60000}',
                   headers={"X-AILink-Approval-Wait": "20"})
    t.join()
    assert r.status_code == 200
    assert r.json()["echo"]["json"] == {"amount": 60000}
    assert time.monotonic() - start < 10


def test_sync_wait_rejected(hitl_gateway):
    url = hitl_gateway
    t = decide_when_pending(url, 70000, "reject", "too large")
    with agent(url) as c:
        r = c.post("/v1/charges", content=b'{"amount":70000}',
                   headers={"X-AILink-Approval-Wait": "20"})
    t.join()
    assert r.status_code == 403
    err = r.json()["error"]
    assert err["code"] == "approval_rejected"
    assert err["reason"] == "too large"
    assert err["approval_id"].startswith("apr_")


def test_sync_wait_timeout(hitl_gateway):
    with agent(hitl_gateway) as c:
        r = c.post("/v1/charges", content=b'{"amount":80000}',
                   headers={"X-AILink-Approval-Wait": "1"})
    assert r.status_code == 408
    assert r.json()["error"]["code"] == "approval_timeout"
    assert r.json()["error"]["timeout"] == 1
