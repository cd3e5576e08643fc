"""Contract tests of the SDK (not of the gateway): human approvals (ARCHITECTURE.md
§4.6) and the admin API (§4.7) against the local stub answering what the
contract documents."""

import asyncio
import json
import threading

import pytest

from ailink import (AIlinkClient, ApprovalRejectedError, ApprovalTimeoutError, AsyncClient,
                    AuthenticationError, NotFoundError)
from sdktest import envelope

TOKEN = "ailink_v1_proj_test_tok_contract000000000000000001"
ADMIN = "ailink_admin_contract0000000000000000000001"
HELD = {"status": "pending_approval", "request_id": "apr_123", "policy_name": "big-charges",
        "expires_at": "2030-01-01T00:00:00Z"}


class Approvals:
    """The stub's side of §4.6: a held POST /v1/charges, its state, the claim."""

    def __init__(self, stub, states):
        self.states = list(states)
        self.claims = []
        stub.on("POST", "/v1/charges", self.charge)
        stub.on("GET", "/v1/approvals/apr_123", self.state)

    def charge(self, req):
        if req.headers.get("x-ailink-approval-id") == "apr_123":
            self.claims.append(req)
            return (200, {"id": "ch_1", "amount": req.json()["amount"]})
        return (202, HELD)

    def state(self, req):
        s = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return (200, dict({"request_id": "apr_123"}, **s))


def test_async_mode_approved_claims_the_request(stub):
    apr = Approvals(stub, [{"status": "pending"}, {"status": "approved", "reason": "fine"}])
    client = AIlinkClient(api_key=TOKEN, gateway_url=stub.url)

    async def example():
        response = client.post("/v1/charges", json={"amount": 50000})
        assert response.status_code == 202
        request_id = response.json()["request_id"]
        return await client.wait_for_approval(request_id, timeout=10, poll_interval=0.05)

    result = asyncio.run(example())
    assert result.approved and result.reason == "fine"
    assert result.response.json() == {"id": "ch_1", "amount": 50000}
    # claimed once, with the same method, path and body
    first = stub.calls("POST", "/v1/charges")[0]
    assert len(apr.claims) == 1 and apr.claims[0].body == first.body
    assert "x-ailink-approval-wait" not in apr.claims[0].headers


def test_blocking_use_and_rejection(stub):
    Approvals(stub, [{"status": "rejected", "reason": "too large"}])
    client = AIlinkClient(api_key=TOKEN, gateway_url=stub.url)
    client.post("/v1/charges", json={"amount": 50000})
    result = client.wait_for_approval("apr_123", timeout=5, poll_interval=0.05)
    assert result.approved is False and result.reason == "too large"
    assert result.response is None
    assert result.result().status == "rejected"


def test_expired_and_timeout(stub):
    Approvals(stub, [{"status": "expired"}])
    client = AIlinkClient(api_key=TOKEN, gateway_url=stub.url)
    res = client.wait_for_approval("apr_123", timeout=5, poll_interval=0.05).result()
    assert (res.approved, res.reason) == (False, "expired")

    Approvals(stub, [{"status": "pending"}])
    with pytest.raises(ApprovalTimeoutError) as ei:
        client.wait_for_approval("apr_123", timeout=0.3, poll_interval=0.05).result()
    assert ei.value.timeout == 0.3


def test_unknown_approval(stub):
    client = AIlinkClient(api_key=TOKEN, gateway_url=stub.url)
    with pytest.raises(NotFoundError):
        client.wait_for_approval("apr_nope", timeout=1).result()


def test_sync_mode_header_and_outcomes(stub):
    stub.on("POST", "/v1/charges",
            (200, {"id": "ch_2"}),
            envelope(403, "approval_rejected", "rejected by approver", request_id="apr_9",
                     reason="no budget"),
            envelope(408, "approval_timeout", "nobody decided", timeout=300))
    client = AIlinkClient(api_key=TOKEN, gateway_url=stub.url)
    kw = dict(json={"amount": 50000}, wait_for_approval=True, approval_timeout=300)
    assert client.post("/v1/charges", **kw).json() == {"id": "ch_2"}
    assert stub.calls()[-1].headers["x-ailink-approval-wait"] == "300"
    with pytest.raises(ApprovalRejectedError) as ei:
        client.post("/v1/charges", **kw)
    assert (ei.value.approval_id, ei.value.reason) == ("apr_9", "no budget")
    with pytest.raises(ApprovalTimeoutError) as ei:
        client.post("/v1/charges", **kw)
    assert ei.value.timeout == 300


def test_sync_mode_when_the_gateway_answers_202(stub):
    """A gateway that holds nothing open still gives the caller the final answer."""
    apr = Approvals(stub, [{"status": "pending"}, {"status": "approved"}])
    client = AIlinkClient(api_key=TOKEN, gateway_url=stub.url)
    r = client.post("/v1/charges", json={"amount": 7}, wait_for_approval=True,
                    approval_timeout=10)
    assert r.json() == {"id": "ch_1", "amount": 7} and len(apr.claims) == 1

    Approvals(stub, [{"status": "rejected", "reason": "nope"}])
    with pytest.raises(ApprovalRejectedError):
        client.post("/v1/charges", json={"amount": 7}, wait_for_approval=True,
                    approval_timeout=10)


def test_async_client_approvals(stub):
    apr = Approvals(stub, [{"status": "pending"}, {"status": "approved"}])

    async def run():
        async with AsyncClient(api_key=TOKEN, gateway_url=stub.url) as client:
            r = await client.post("/v1/charges", json={"amount": 3})
            assert r.status_code == 202
            res = await client.wait_for_approval("apr_123", timeout=5, poll_interval=0.05)
            return res

    res = asyncio.run(run())
    assert res.approved and res.response.json()["amount"] == 3 and len(apr.claims) == 1


# --------------------------------------------------------------------------- admin API

def test_admin_api_requests(stub):
    calls = []

    def ok(req):
        try:
            body = req.json() if req.body else None
        except ValueError:
            body = req.body
        calls.append((req.method, req.path, req.query, body, req.headers.get("content-type")))
        return (200, {"token_id": "tok_1", "token": "ailink_v1_proj_p_tok_x", "data": [{"x": 1}]})

    routes = [("POST", "/api/v1/tokens"), ("GET", "/api/v1/tokens"), ("GET", "/api/v1/tokens/tok_1"),
              ("DELETE", "/api/v1/tokens/tok_1"), ("GET", "/api/v1/tokens/tok_1/circuit-breaker"),
              ("PATCH", "/api/v1/tokens/tok_1/circuit-breaker"), ("GET", "/api/v1/health/upstreams"),
              ("POST", "/api/v1/credentials"), ("GET", "/api/v1/credentials"),
              ("POST", "/api/v1/services"), ("DELETE", "/api/v1/services/stripe"),
              ("POST", "/api/v1/policies"), ("PATCH", "/api/v1/policies/p1"),
              ("GET", "/api/v1/approvals"), ("POST", "/api/v1/approvals/apr_1/decision"),
              ("GET", "/api/v1/audit"), ("GET", "/api/v1/spend")]
    for m, p in routes:
        stub.on(m, p, ok)
    stub.on("GET", "/api/v1/config/export", (200, "tokens: []\n", {"Content-Type": "application/yaml"}))
    stub.on("POST", "/api/v1/config/import", ok)

    admin = AIlinkClient.admin(admin_key=ADMIN, gateway_url=stub.url)
    tok = admin.tokens.create(name="prod-gpt", upstream_url="https://api.openai.com/v1",
                              credential_id="cred-uuid",
                              circuit_breaker={"enabled": True, "failure_threshold": 5})
    assert tok["token_id"] == "tok_1"
    assert admin.tokens.list() == [{"x": 1}]
    admin.tokens.get("tok_1")
    admin.tokens.revoke("tok_1")
    admin.tokens.get_circuit_breaker("tok_1")
    admin.tokens.set_circuit_breaker("tok_1", enabled=True, failure_threshold=3)
    admin.tokens.upstream_health()
    admin.credentials.create(name="stripe", secret="sk_live_x")
    admin.credentials.list()
    admin.services.create(name="stripe", base_url="https://api.stripe.com",
                          service_type="generic", credential_id="cred-uuid")
    admin.services.delete("stripe")
    admin.policies.create(name="p1", rules=[])
    admin.policies.update("p1", mode="shadow")
    admin.approvals.list(status="pending")
    admin.approvals.reject("apr_1", reason="no")
    admin.audit.query(session_id="s1")
    admin.spend.get(project="demo", period="month")
    assert admin.config.export() == "tokens: []\n"
    admin.config.import_yaml("tokens: []\n")

    assert all(r.headers["authorization"] == "Bearer " + ADMIN for r in stub.calls())
    by = {(m, p): (q, b, ct) for m, p, q, b, ct in calls}
    assert by[("PATCH", "/api/v1/tokens/tok_1/circuit-breaker")][1] == {
        "enabled": True, "failure_threshold": 3}                  # only what was given
    assert by[("POST", "/api/v1/approvals/apr_1/decision")][1] == {"decision": "reject",
                                                                   "reason": "no"}
    assert by[("GET", "/api/v1/approvals")][0] == "status=pending"
    assert by[("POST", "/api/v1/credentials")][1] == {"name": "stripe", "secret": "sk_live_x"}
    assert by[("POST", "/api/v1/services")][1]["credential_id"] == "cred-uuid"
    imp = [c for c in stub.calls("POST", "/api/v1/config/import")][0]
    assert imp.headers["content-type"] == "application/yaml" and imp.body == b"tokens: []\n"


def test_admin_errors(stub):
    stub.on("GET", "/api/v1/tokens", envelope(401, "invalid_token", "bad admin key"))
    admin = AIlinkClient.admin(admin_key=ADMIN, gateway_url=stub.url)
    with pytest.raises(AuthenticationError):
        admin.tokens.list()
