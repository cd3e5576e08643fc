"""Contract tests of the SDK (not of the gateway): error mapping, retries and
timeouts against the local stub answering ARCHITECTURE.md §4.5's documented
error envelopes."""

import asyncio
import time

import pytest

import ailink
from ailink import (AIlinkClient, AsyncClient, AIlinkError, ApprovalRejectedError,
                    ApprovalTimeoutError, AuthenticationError, BudgetExceededError,
                    CircuitOpenError, ContentBlockedError, GatewayTimeoutError,
                    GatewayUnavailableError, IdempotencyConflictError, InvalidRequestError,
                    NotFoundError, PolicyDeniedError, RateLimitError, UpstreamError)
from sdktest import dead_url, envelope

TOKEN = "ailink_v1_proj_test_tok_contract000000000000000001"

CASES = [
    (401, "invalid_token", {}, AuthenticationError, {}),
    (402, "budget_exceeded", {"budget": "monthly", "spent_usd": 10.5, "limit_usd": 10},
     BudgetExceededError, {"budget": "monthly", "spent_usd": 10.5, "limit_usd": 10.0}),
    (403, "policy_denied", {"policy_name": "no-deletes", "reason": "deletes are off"},
     PolicyDeniedError, {"policy_name": "no-deletes", "reason": "deletes are off"}),
    (403, "content_blocked", {"guardrail": "pii_redaction", "matches": ["email", "ssn"]},
     ContentBlockedError, {"guardrail": "pii_redaction", "matches": ["email", "ssn"]}),
    (403, "approval_rejected", {"reason": "too large"}, ApprovalRejectedError,
     {"reason": "too large"}),
    (408, "approval_timeout", {"timeout": 300}, ApprovalTimeoutError, {"timeout": 300.0}),
    (409, "idempotency_conflict", {}, IdempotencyConflictError, {}),
    (413, "payload_too_large", {}, InvalidRequestError, {}),
    (400, "invalid_request", {"param": "model"}, InvalidRequestError, {}),
    (404, "not_found", {}, NotFoundError, {}),
    (429, "rate_limited", {"retry_after": 7}, RateLimitError, {"retry_after": 7.0}),
    (502, "upstream_error", {}, UpstreamError, {}),
    (504, "upstream_timeout", {}, UpstreamError, {}),
    (503, "circuit_open", {"retry_after": 30}, CircuitOpenError, {"retry_after": 30.0}),
]


@pytest.mark.parametrize("status,code,extra,cls,attrs", CASES, ids=[c[1] for c in CASES])
def test_every_error_class(stub, status, code, extra, cls, attrs):
    answer = envelope(status, code, "message of " + code, **extra)
    stub.on("POST", "/v1/things", answer)
    client = AIlinkClient(api_key=TOKEN, gateway_url=stub.url, retries=0)
    with pytest.raises(cls) as ei:
        client.post("/v1/things", json={"a": 1})
    e = ei.value
    assert isinstance(e, AIlinkError)
    assert e.status_code == status and e.code == code
    assert e.request_id == answer[2]["X-AILink-Request-Id"]
    assert code in e.body and e.response.status_code == status
    assert e.message == "message of " + code
    for k, v in attrs.items():
        assert getattr(e, k) == v, k
    assert len(stub.calls()) == 1


def test_every_error_class_is_exported():
    for _, _, _, cls, _ in CASES:
        assert getattr(ailink, cls.__name__) is cls
        assert issubclass(cls, AIlinkError)
    assert issubclass(GatewayTimeoutError, GatewayUnavailableError)


def test_retry_after_header_when_body_has_none(stub):
    stub.on("GET", "/x", envelope(429, "rate_limited", headers={"Retry-After": "2"}))
    with pytest.raises(RateLimitError) as ei:
        AIlinkClient(api_key=TOKEN, gateway_url=stub.url, retries=0).get("/x")
    assert ei.value.retry_after == 2.0


def test_upstream_errors_are_returned_not_raised(stub):
    """An upstream's own error (no gateway envelope) is the caller's to read."""
    stub.on("POST", "/v1/charges", (402, {"error": {"type": "card_error", "code": "card_declined",
                                                    "message": "Your card was declined."}},
                                    {"X-AILink-Request-Id": "a" * 32}))
    r = AIlinkClient(api_key=TOKEN, gateway_url=stub.url).post("/v1/charges", json={})
    assert r.status_code == 402 and r.json()["error"]["code"] == "card_declined"


# --------------------------------------------------------------------------- retries

def fast(client):
    client._opts = client._opts.__class__(**{**client._opts.__dict__, "backoff_base": 0.01})
    return client


def test_rate_limit_is_retried_for_any_method(stub):
    stub.on("POST", "/v1/charges", envelope(429, "rate_limited", retry_after=0),
            envelope(429, "rate_limited", retry_after=0), (200, {"ok": True}))
    r = AIlinkClient(api_key=TOKEN, gateway_url=stub.url, retries=3).post("/v1/charges", json={})
    assert r.json() == {"ok": True}
    assert len(stub.calls("POST", "/v1/charges")) == 3


def test_retries_run_out(stub):
    stub.on("GET", "/x", envelope(503, "circuit_open", retry_after=0))
    with pytest.raises(CircuitOpenError):
        AIlinkClient(api_key=TOKEN, gateway_url=stub.url, retries=2).get("/x")
    assert len(stub.calls()) == 3


def test_long_retry_after_is_not_waited_for(stub):
    stub.on("GET", "/x", envelope(429, "rate_limited", retry_after=3600))
    t0 = time.monotonic()
    with pytest.raises(RateLimitError) as ei:
        AIlinkClient(api_key=TOKEN, gateway_url=stub.url, retries=3).get("/x")
    assert time.monotonic() - t0 < 2 and ei.value.retry_after == 3600
    assert len(stub.calls()) == 1


def test_upstream_failure_retried_only_when_safe(stub):
    stub.on("POST", "/p", envelope(502, "upstream_error"))
    stub.on("GET", "/g", envelope(502, "upstream_error"), (200, {"ok": 1}))
    client = fast(AIlinkClient(api_key=TOKEN, gateway_url=stub.url, retries=3))
    with pytest.raises(UpstreamError):
        client.post("/p", json={})
    assert len(stub.calls("POST", "/p")) == 1           # not idempotent: once
    assert client.get("/g").json() == {"ok": 1}
    assert len(stub.calls("GET", "/g")) == 2
    # with an idempotency key a POST is retried too, with the same key
    stub.on("POST", "/k", envelope(504, "upstream_timeout"), (200, {"ok": 2}))
    assert client.post("/k", json={}, idempotency_key="order-1").json() == {"ok": 2}
    assert [r.headers["idempotency-key"] for r in stub.calls("POST", "/k")] == ["order-1"] * 2


def test_unreachable_gateway(stub):
    client = fast(AIlinkClient(api_key=TOKEN, gateway_url=dead_url(), retries=2))
    with pytest.raises(GatewayUnavailableError) as ei:
        client.post("/v1/charges", json={})
    assert not isinstance(ei.value, GatewayTimeoutError)
    assert client.is_healthy() is False


def test_timeout(stub):
    stub.on("GET", "/slow", lambda req: (time.sleep(1.5), (200, {"late": True}))[1])
    client = AIlinkClient(api_key=TOKEN, gateway_url=stub.url, timeout=0.3, retries=0)
    t0 = time.monotonic()
    with pytest.raises(GatewayTimeoutError):
        client.get("/slow")
    assert time.monotonic() - t0 < 1.2
    # a per-call timeout overrides the client's
    assert client.get("/slow", timeout=5).json() == {"late": True}


# --------------------------------------------------------------------------- async

def test_async_errors_and_retries(stub):
    stub.on("POST", "/d", envelope(403, "policy_denied", policy_name="p1", reason="no"))
    stub.on("GET", "/r", envelope(429, "rate_limited", retry_after=0), (200, {"ok": True}))

    async def run():
        async with AsyncClient(api_key=TOKEN, gateway_url=stub.url, retries=1) as c:
            with pytest.raises(PolicyDeniedError) as ei:
                await c.post("/d", json={})
            assert (ei.value.policy_name, ei.value.reason) == ("p1", "no")
            assert (await c.get("/r")).json() == {"ok": True}
        async with AsyncClient(api_key=TOKEN, gateway_url=dead_url(), retries=0) as c:
            with pytest.raises(GatewayUnavailableError):
                await c.get("/x")
            assert await c.is_healthy() is False

    asyncio.run(run())
    assert len(stub.calls("GET", "/r")) == 2


# --------------------------------------------------------------------------- headers

def test_contract_headers(stub):
    stub.on("POST", "/v1/chat/completions", (200, {"ok": True}))
    client = AIlinkClient(api_key=TOKEN, gateway_url=stub.url + "/v1/", agent_name="agent-7")
    with client.trace(session_id="s-1", properties={"env": "prod"}, parent_span_id="span-9") as t:
        with t.with_guardrails(["pii_redaction", "prompt_injection"]) as g:
            with g.with_upstream_key("sk-own") as byok:
                byok.post("/v1/chat/completions", json={}, idempotency_key="idem-1",
                          headers={"x-ailink-no-cache": "true"})
    h = stub.calls()[-1].headers
    assert h["authorization"] == "Bearer " + TOKEN
    assert h["x-ailink-agent-name"] == "agent-7"
    assert h["x-ailink-session-id"] == "s-1"
    assert h["x-ailink-properties"] == '{"env":"prod"}'
    assert h["x-ailink-parent-span-id"] == "span-9"
    assert h["x-ailink-guardrails"] == "pii_redaction,prompt_injection"
    assert h["x-ailink-upstream-key"] == "sk-own"
    assert h["idempotency-key"] == "idem-1"
    assert h["x-ailink-no-cache"] == "true"
    # the parent client carries none of the derived headers
    client.post("/v1/chat/completions", json={})
    h = stub.calls()[-1].headers
    assert "x-ailink-session-id" not in h and "x-ailink-upstream-key" not in h


def test_openai_client_carries_the_headers(stub):
    body = {"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "hi"}}]}
    stub.on("POST", "/v1/chat/completions", (200, body))
    client = AIlinkClient(api_key=TOKEN, gateway_url=stub.url, agent_name="a1")
    with client.with_guardrails(["pii_redaction"]) as g:
        r = g.openai().chat.completions.create(model="gpt-4o",
                                               messages=[{"role": "user", "content": "x"}])
    assert r.choices[0].message.content == "hi"
    h = stub.calls()[-1].headers
    assert h["authorization"] == "Bearer " + TOKEN
    assert h["x-ailink-guardrails"] == "pii_redaction" and h["x-ailink-agent-name"] == "a1"
