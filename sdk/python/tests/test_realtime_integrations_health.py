"""Realtime (a contract test against a local WebSocket stub, and sessions through
the real gateway; the seed example is test_seed_examples.py::test_realtime), the LangChain and CrewAI tools (real
gateway, and the stub for policy answers), and the health pollers switching as
a real gateway stops and starts."""

import asyncio
import json
import threading
import time

import pytest

from ailink import (AIlinkClient, AsyncClient, AsyncHealthPoller, AuthenticationError,
                    GatewayUnavailableError, HealthPoller)
from sdktest import ACTION_TOKEN, dead_url, envelope, wait_until

TOKEN = "ailink_v1_proj_test_tok_contract000000000000000001"


# --------------------------------------------------------------------------- realtime (contract)

@pytest.fixture
def ws_stub():
    """A WebSocket server playing the gateway's /v1/realtime: checks the token,
    answers session.update with session.updated and echoes anything else."""
    from websockets.asyncio.server import serve
    from websockets.http11 import Response
    from websockets.datastructures import Headers

    seen = {}
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = None
    port = []

    async def handler(ws):
        async for msg in ws:
            ev = json.loads(msg)
            if ev.get("type") == "session.update":
                await ws.send(json.dumps({"type": "session.updated", "session": ev["session"]}))
            else:
                await ws.send(json.dumps({"type": "echo", "event": ev}))

    def check(conn, request):
        seen["path"] = request.path
        seen["headers"] = dict(request.headers.raw_items())
        if request.headers.get("Authorization") != "Bearer " + TOKEN:
            status, body, h = envelope(401, "invalid_token", "invalid token")
            return Response(401, "Unauthorized",
                            Headers([("Content-Type", "application/json")] + list(h.items())),
                            json.dumps(body).encode())
        return None

    async def main():
        nonlocal stop
        stop = asyncio.Event()
        async with serve(handler, "127.0.0.1", 0, process_request=check) as server:
            port.append(server.sockets[0].getsockname()[1])
            started.set()
            await stop.wait()

    t = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    t.start()
    assert started.wait(5)
    yield "http://127.0.0.1:%d" % port[0], seen
    loop.call_soon_threadsafe(stop.set)
    t.join(5)


def test_realtime_send_recv(ws_stub):
    url, seen = ws_stub
    client = AIlinkClient(api_key=TOKEN, gateway_url=url, agent_name="voice-bot")

    async def example():
        async with client.realtime("gpt-4o-realtime-preview") as ws:
            await ws.send({"type": "session.update", "session": {"modalities": ["text"]}})
            event = await ws.recv()
            await ws.send({"type": "response.create"})
            echo = await ws.recv()
        return event, echo

    event, echo = asyncio.run(example())
    assert event == {"type": "session.updated", "session": {"modalities": ["text"]}}
    assert echo == {"type": "echo", "event": {"type": "response.create"}}
    assert seen["path"] == "/v1/realtime?model=gpt-4o-realtime-preview"
    h = {k.lower(): v for k, v in seen["headers"].items()}
    assert h["x-ailink-agent-name"] == "voice-bot"


def test_realtime_async_client_and_errors(ws_stub):
    url, _ = ws_stub

    async def run():
        async with AsyncClient(api_key=TOKEN, gateway_url=url) as c:
            async with c.realtime("gpt-4o-realtime-preview") as ws:
                await ws.send({"type": "ping"})
                assert (await ws.recv())["type"] == "echo"
        bad = AIlinkClient(api_key="ailink_v1_proj_x_tok_wrong", gateway_url=url)
        with pytest.raises(AuthenticationError):
            async with bad.realtime("gpt-4o-realtime-preview"):
                pass
        dead = AIlinkClient(api_key=TOKEN, gateway_url=dead_url())
        with pytest.raises(GatewayUnavailableError):
            async with dead.realtime("gpt-4o-realtime-preview"):
                pass

    asyncio.run(run())


# --------------------------------------------------------------------------- realtime (gateway)

def test_realtime_session_through_the_gateway(gateway):
    """send/recv through the real gateway to the mock's Realtime API: the
    provider sees the real key, and the session is one audit record with
    the usage of its response.done events."""
    from sdktest import LLM_TOKEN

    n = len(gateway.audit_records())
    client = AIlinkClient(api_key=LLM_TOKEN, gateway_url=gateway.url, agent_name="voice-bot")

    async def session():
        async with client.realtime("gpt-4o-realtime-preview") as ws:
            assert (await ws.recv())["type"] == "session.created"
            await ws.send({"type": "conversation.item.create",
                           "item": {"type": "message", "role": "user",
                                    "content": [{"type": "input_text", "text": "Hello there"}]}})
            assert (await ws.recv())["type"] == "conversation.item.created"
            await ws.send({"type": "response.create"})
            events = []
            async for ev in ws:
                events.append(ev)
                if ev["type"] == "response.done":
                    break
            return events

    events = asyncio.run(asyncio.wait_for(session(), 10))
    assert "".join(e["delta"] for e in events if e["type"] == "response.text.delta") \
        .startswith("Mock reply from openai realtime to: Hello there")
    usage = events[-1]["response"]["usage"]
    rec = gateway.mock_requests()[-1]
    assert rec["path"] == "/v1/realtime" and rec["args"]["model"] == "gpt-4o-realtime-preview"
    assert rec["headers"]["authorization"] == "Bearer " + gateway.upstream_keys["AILINK_TEST_OPENAI_KEY"]
    assert LLM_TOKEN not in json.dumps(rec)
    audit = gateway.wait_audit(n + 1)[n:]
    assert len(audit) == 1
    a = audit[0]
    assert a["status"] == 101 and a["agent_name"] == "voice-bot"
    assert a["prompt_tokens"] == usage["input_tokens"]
    assert a["completion_tokens"] == usage["output_tokens"]
    assert a["realtime"]["responses"] == 1 and a["realtime"]["bytes_upstream_to_client"] > 0


def test_realtime_gateway_refusals(gateway):
    from ailink import InvalidRequestError
    from sdktest import BOGUS_TOKEN, LLM_TOKEN

    async def run():
        client = AsyncClient(api_key=LLM_TOKEN, gateway_url=gateway.url)
        with pytest.raises(InvalidRequestError) as e:
            async with client.realtime("claude-3-5-sonnet-20241022"):
                pass
        assert e.value.status_code == 400 and "anthropic" in str(e.value)
        bad = AIlinkClient(api_key=BOGUS_TOKEN, gateway_url=gateway.url)
        with pytest.raises(AuthenticationError):
            async with bad.realtime("gpt-4o-realtime-preview"):
                pass

    asyncio.run(run())


# --------------------------------------------------------------------------- integrations

def test_langchain_tool_against_the_gateway(gateway):
    from langchain_core.tools import BaseTool
    from ailink.integrations import langchain_tool

    tool = langchain_tool(token=ACTION_TOKEN, name="stripe_api",
                          description="Make Stripe API calls", methods=["GET", "POST"])
    assert isinstance(tool, BaseTool)
    assert set(tool.args) >= {"method", "path", "body", "query"}
    seq = gateway.mock_seq()
    out = tool.invoke({"method": "POST", "path": "/v1/charges", "body": {"amount": 5}})
    assert out.startswith("HTTP 200")
    assert json.loads(out.split("\n", 1)[1])["echo"]["json"] == {"amount": 5}
    out = asyncio.run(tool.ainvoke({"method": "GET", "path": "/v1/customers",
                                    "query": {"limit": "3"}}))
    assert out.startswith("HTTP 200") and "limit=3" in out
    # refused without a request: a method not allowed, a URL instead of a path
    assert tool.invoke({"method": "DELETE", "path": "/v1/customers/c1"}).startswith("REFUSED")
    assert tool.invoke({"method": "GET", "path": "http://evil.example/x"}).startswith("REFUSED")
    assert len(gateway.mock_requests(since=seq)) == 2
    rec = gateway.audit_records()[-1]
    assert rec["agent_name"] == "stripe_api"


def test_crewai_tool_against_the_gateway(gateway):
    from crewai.tools import BaseTool
    from ailink.integrations import crewai_tool

    tool = crewai_tool(token=ACTION_TOKEN, name="github_api",
                       description="Interact with GitHub repositories", methods=["GET"])
    assert isinstance(tool, BaseTool)
    out = tool.run(method="GET", path="/repos/acme/widgets/issues")
    assert out.startswith("HTTP 200") and "/api/repos/acme/widgets/issues" in out
    assert tool.run(method="POST", path="/repos/acme/widgets/issues").startswith("REFUSED")


@pytest.mark.parametrize("kind", ["langchain", "crewai"])
def test_tools_report_policy_answers(stub, kind):
    """Denials, approvals and rate limits come back as text the agent reads (contract stub)."""
    from ailink import integrations

    stub.on("POST", "/v1/charges",
            envelope(403, "policy_denied", "denied", policy_name="no-big-charges",
                     reason="amount over 1000"),
            (202, {"status": "pending_approval", "request_id": "apr_7",
                   "policy_name": "big-charges", "expires_at": "2030-01-01T00:00:00Z"}),
            envelope(429, "rate_limited", retry_after=3600))
    if kind == "langchain":
        tool = integrations.langchain_tool(TOKEN, "pay", "payments", ["POST"], gateway_url=stub.url)
        call = lambda: tool.invoke({"method": "POST", "path": "/v1/charges", "body": {"a": 1}})
    else:
        tool = integrations.crewai_tool(TOKEN, "pay", "payments", ["POST"], gateway_url=stub.url)
        call = lambda: tool.run(method="POST", path="/v1/charges", body={"a": 1})
    denied, pending, limited = call(), call(), call()
    assert denied.startswith("DENIED") and "no-big-charges" in denied and "amount over 1000" in denied
    assert pending.startswith("PENDING APPROVAL") and "apr_7" in pending
    assert limited.startswith("RATE LIMITED") and "3600" in limited


# --------------------------------------------------------------------------- pollers

def test_health_poller_follows_the_gateway(restartable):
    gw = restartable
    client = AIlinkClient(api_key=ACTION_TOKEN, gateway_url=gw.url)
    changes = []
    with HealthPoller(client, interval=0.1, on_change=changes.append) as poller:
        assert poller.is_healthy is True                      # right from the start
        gw.stop_nginx()
        assert wait_until(lambda: not poller.is_healthy, timeout=5)
        assert client.is_healthy() is False
        gw.start_nginx()
        assert wait_until(lambda: poller.is_healthy, timeout=5)
    assert changes == [True, False, True]

    # entered while the gateway is down: unhealthy from the start
    gw.stop_nginx()
    try:
        with HealthPoller(client, interval=15) as poller:
            assert poller.is_healthy is False
    finally:
        gw.start_nginx()


def test_async_health_poller_follows_the_gateway(restartable):
    gw = restartable

    async def run():
        client = AsyncClient(api_key=ACTION_TOKEN, gateway_url=gw.url)
        async with AsyncHealthPoller(client, interval=0.1) as poller:
            assert poller.is_healthy is True
            await asyncio.to_thread(gw.stop_nginx)
            for _ in range(100):
                if not poller.is_healthy:
                    break
                await asyncio.sleep(0.05)
            assert poller.is_healthy is False
            await asyncio.to_thread(gw.start_nginx)
            for _ in range(100):
                if poller.is_healthy:
                    break
                await asyncio.sleep(0.05)
            assert poller.is_healthy is True
        await client.aclose()

    asyncio.run(run())


def test_fallback_switches_mid_block(restartable):
    """The gateway goes away inside a with_fallback block: the next call goes to the fallback."""
    import openai
    from ailink import GatewayBypassWarning

    gw = restartable
    fallback = openai.OpenAI(api_key=gw.upstream_keys["AILINK_TEST_OPENAI_KEY"],
                             base_url="http://127.0.0.1:%d/v1" % gw.mock_port)
    client = AIlinkClient(api_key="ailink_v1_proj_test_tok_llm0000000000000000000001",
                          gateway_url=gw.url, retries=0)
    msgs = [{"role": "user", "content": "hi"}]
    try:
        with client.with_fallback(fallback) as oai:
            r1 = oai.chat.completions.create(model="gpt-4o-mini", messages=msgs)
            assert r1.choices[0].message.content
            assert not oai.bypassed
            gw.stop_nginx()
            with pytest.warns(GatewayBypassWarning):
                r2 = oai.chat.completions.create(model="gpt-4o-mini", messages=msgs)
            assert r2.choices[0].message.content == r1.choices[0].message.content
            assert oai.bypassed
    finally:
        gw.start_nginx()
