"""The official `openai` Python client against the gateway (mock provider behind it).

    python3 -m pip install openai pytest
    python3 -m pytest -q t/e2e/test_openai_python.py
"""

import asyncio
import re
import time

import openai
import pytest

from conftest import BOGUS_TOKEN, LLM_TOKEN, mock_reply

MODEL = "gpt-4o-mini"
EMBED_MODEL = "text-embedding-3-small"
HEX32 = re.compile(r"\A[0-9a-f]{32}\Z")


def user(text):
    return [{"role": "system", "content": "You are a test."},
            {"role": "user", "content": text}]


@pytest.fixture
def client(gateway):
    with openai.OpenAI(api_key=LLM_TOKEN, base_url=gateway.base_url,
                       max_retries=0, timeout=10) as c:
        yield c


@pytest.fixture
def bad_client(gateway):
    with openai.OpenAI(api_key=BOGUS_TOKEN, base_url=gateway.base_url,
                       max_retries=0, timeout=10) as c:
        yield c


def collect_stream(stream):
    """Chunks of a chat stream, the concatenated content deltas and the arrival times."""
    chunks, parts, times = [], [], []
    for ch in stream:
        chunks.append(ch)
        times.append(time.monotonic())
        for choice in ch.choices:
            if choice.delta and choice.delta.content:
                parts.append(choice.delta.content)
    return chunks, "".join(parts), times


def check_usage(usage):
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


# --------------------------------------------------------------------------- chat

def test_chat_completion(gateway, client):
    prompt = "Say hello to the gateway"
    seq = gateway.mock_seq()

    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=user(prompt))
    resp = raw.parse()

    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].message.content == mock_reply(prompt)
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == MODEL
    check_usage(resp.usage)
    assert resp.usage.total_tokens > 0
    assert HEX32.match(raw.headers["x-ailink-request-id"])

    # the provider saw the upstream key, never the gateway token
    recs = gateway.mock_requests(since=seq)
    assert [(r["method"], r["path"]) for r in recs] == [("POST", "/v1/chat/completions")]
    headers = recs[0]["headers"]
    assert headers["authorization"] == "Bearer " + gateway.upstream_keys["AILINK_TEST_OPENAI_KEY"]
    assert LLM_TOKEN not in repr(recs[0])
    assert recs[0]["json"]["model"] == MODEL


def test_chat_stream_matches_non_stream(client):
    prompt = "Stream this answer please"
    plain = client.chat.completions.create(model=MODEL, messages=user(prompt))

    stream = client.chat.completions.create(
        model=MODEL, messages=user(prompt), stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Mock-Events": "4"})
    chunks, streamed, _ = collect_stream(stream)

    assert streamed == plain.choices[0].message.content == mock_reply(prompt)
    # role chunk + 4 content chunks + finish chunk + usage chunk
    assert len(chunks) > 2
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == 4
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"

    last = chunks[-1]
    assert last.choices == []
    check_usage(last.usage)
    assert last.usage.prompt_tokens == plain.usage.prompt_tokens
    assert last.usage.completion_tokens == plain.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_is_not_buffered(client):
    """Events reach the client as the provider sends them, not all at the end."""
    prompt = "Take your time"
    stream = client.chat.completions.create(
        model=MODEL, messages=user(prompt), stream=True,
        extra_headers={"X-Mock-Events": "4", "X-Mock-Chunk-Delay-Ms": "80"})
    chunks, streamed, times = collect_stream(stream)

    assert streamed == mock_reply(prompt)
    assert len(chunks) > 2
    # the provider waits 80 ms between events: at least 5 gaps between the
    # first and the last event; a gateway holding the stream back (a filter
    # collecting the whole body, say) would deliver them at once
    assert times[-1] - times[0] >= 0.2, times


# --------------------------------------------------------------------------- embeddings

def test_embeddings(client):
    resp = client.embeddings.create(model=EMBED_MODEL, input=["first text", "second text"])
    assert resp.model == EMBED_MODEL
    assert [d.index for d in resp.data] == [0, 1]
    for d in resp.data:
        assert len(d.embedding) == 8
        assert all(isinstance(x, float) for x in d.embedding)
    assert resp.data[0].embedding != resp.data[1].embedding
    assert resp.usage.prompt_tokens > 0

    # the same vectors when asked for floats instead of the client's default base64
    floats = client.embeddings.create(model=EMBED_MODEL, input=["first text", "second text"],
                                      encoding_format="float")
    for a, b in zip(resp.data, floats.data):
        assert a.embedding == pytest.approx(b.embedding, rel=1e-5)


# --------------------------------------------------------------------------- async client

def test_async_chat(gateway):
    prompt = "Hello from asyncio"

    async def run():
        async with openai.AsyncOpenAI(api_key=LLM_TOKEN, base_url=gateway.base_url,
                                      max_retries=0, timeout=10) as c:
            plain = await c.chat.completions.create(model=MODEL, messages=user(prompt))
            stream = await c.chat.completions.create(
                model=MODEL, messages=user(prompt), stream=True,
                stream_options={"include_usage": True})
            parts, last = [], None
            async for ch in stream:
                last = ch
                if ch.choices and ch.choices[0].delta.content:
                    parts.append(ch.choices[0].delta.content)
            return plain, "".join(parts), last

    plain, streamed, last = asyncio.run(run())
    assert plain.choices[0].message.content == mock_reply(prompt)
    check_usage(plain.usage)
    assert streamed == mock_reply(prompt)
    check_usage(last.usage)


# --------------------------------------------------------------------------- errors

def test_invalid_token(gateway, bad_client):
    seq = gateway.mock_seq()
    with pytest.raises(openai.AuthenticationError) as ei:
        bad_client.chat.completions.create(model=MODEL, messages=user("hi"))
    e = ei.value

    assert e.status_code == 401
    assert e.body["message"] == "invalid token"
    assert e.code == "invalid_token"
    assert "invalid token" in e.message
    rid = e.response.headers["x-ailink-request-id"]
    assert HEX32.match(rid)
    assert e.body.get("request_id", rid) == rid
    assert gateway.mock_requests(since=seq) == []      # refused at the gateway


def test_unknown_model(gateway, client):
    seq = gateway.mock_seq()
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model="mystery-7b", messages=user("hi"))
    e = ei.value

    assert e.status_code == 400
    assert e.body["message"] == 'no provider route for model "mystery-7b"'
    assert e.param == "model"
    assert 'no provider route for model "mystery-7b"' in e.message
    rid = e.response.headers["x-ailink-request-id"]
    assert HEX32.match(rid)
    assert e.body.get("request_id", rid) == rid
    assert gateway.mock_requests(since=seq) == []


# --------------------------------------------------------------------------- audit

def test_audit_records(gateway, client, bad_client):
    """One audit line per call, found by the call's X-AILink-Request-Id, and no secret in it."""
    calls = {}      # request id -> what the record must say

    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=user("audit one"))
    r = raw.parse()
    calls[raw.headers["x-ailink-request-id"]] = dict(
        path="/v1/chat/completions", model=MODEL, status=200, stream=False,
        prompt_tokens=r.usage.prompt_tokens, completion_tokens=r.usage.completion_tokens)

    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=user("audit two"), stream=True, stream_options={"include_usage": True})
    chunks, _, _ = collect_stream(raw.parse())
    u = chunks[-1].usage
    calls[raw.headers["x-ailink-request-id"]] = dict(
        path="/v1/chat/completions", model=MODEL, status=200, stream=True,
        prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens)

    raw = client.embeddings.with_raw_response.create(model=EMBED_MODEL, input="audit three")
    r = raw.parse()
    calls[raw.headers["x-ailink-request-id"]] = dict(
        path="/v1/embeddings", model=EMBED_MODEL, status=200, stream=False,
        prompt_tokens=r.usage.prompt_tokens)

    async def async_call():
        async with openai.AsyncOpenAI(api_key=LLM_TOKEN, base_url=gateway.base_url,
                                      max_retries=0, timeout=10) as c:
            raw = await c.chat.completions.with_raw_response.create(
                model=MODEL, messages=user("audit four"))
            return raw.headers["x-ailink-request-id"], raw.parse()

    rid, r = asyncio.run(async_call())
    calls[rid] = dict(path="/v1/chat/completions", model=MODEL, status=200, stream=False,
                      prompt_tokens=r.usage.prompt_tokens, completion_tokens=r.usage.completion_tokens)

    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model="mystery-7b", messages=user("audit five"))
    calls[ei.value.response.headers["x-ailink-request-id"]] = dict(
        path="/v1/chat/completions", model="mystery-7b", status=400, error="invalid_request",
        prompt_tokens=None)

    with pytest.raises(openai.AuthenticationError) as ei:
        bad_client.chat.completions.create(model=MODEL, messages=user("audit six"))
    calls[ei.value.response.headers["x-ailink-request-id"]] = dict(
        path="/v1/chat/completions", token_id=None, status=401, error="invalid_token",
        prompt_tokens=None)

    assert len(calls) == 6 and all(HEX32.match(k) for k in calls)

    # records are written in the log phase, maybe just after the client is done
    deadline = time.monotonic() + 5
    while True:
        records = gateway.audit_records()       # every complete line parses as JSON
        ids = [rec.get("request_id") for rec in records]
        if all(k in ids for k in calls) or time.monotonic() > deadline:
            break
        time.sleep(0.02)

    for rid, want in calls.items():
        mine = [rec for rec in records if rec.get("request_id") == rid]
        assert len(mine) == 1, "%d audit records for request %s" % (len(mine), rid)
        rec = mine[0]
        want = dict({"token_id": "tok_llm", "method": "POST", "error": None}, **want)
        got = {k: rec.get(k, "<missing>") for k in want}
        assert got == want, rec
        if want["token_id"]:
            assert rec["project"] == "test"
            assert rec["token_name"] == "llm test token"
        if want["status"] == 200:
            assert rec["provider"] == "openai"
            assert rec["total_tokens"] >= rec["prompt_tokens"] > 0

    text = gateway.audit_text()
    assert text.endswith("\n")
    secrets = [LLM_TOKEN, BOGUS_TOKEN] + list(gateway.upstream_keys.values())
    for secret in secrets:
        assert secret not in text, "the audit log holds a secret"
    errlog = gateway.error_log.read_text(errors="replace")
    for secret in secrets:
        assert secret not in errlog, "the error log holds a secret"
