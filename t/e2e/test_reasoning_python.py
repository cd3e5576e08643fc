"""Reasoning and structured outputs with the official `openai` Python client,
through the gateway, on Claude and Gemini (the strict mock provider).

* reasoning_effort: the thinking comes back as `reasoning_content` (never in
  `content`), reasoning tokens in usage where the provider counts them.
* Claude tool use with thinking: the assistant message the client got
  (`model_dump()`, which keeps `thinking_blocks`) goes back in the history,
  and the follow-up is accepted, as Anthropic only accepts it with the
  signed thinking.  Also from a stream: reasoning_content deltas plus the
  signature delta make the block.
* Structured outputs: `response_format` json_schema, and the client's own
  `chat.completions.parse()` with a pydantic model, JSON and streamed.

    python3 -m pytest -q t/e2e/test_reasoning_python.py
"""

import json

import openai
import pydantic
import pytest

from conftest import LLM_TOKEN

CLAUDE = "claude-sonnet-4-5"
GEMINI = "gemini-2.5-flash"

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}]


class Weather(pydantic.BaseModel):
    city: str
    temperature_c: float


@pytest.fixture
def client(gateway):
    with openai.OpenAI(api_key=LLM_TOKEN, base_url=gateway.base_url,
                       max_retries=0, timeout=10) as c:
        yield c


def extra(obj, key):
    return (obj.model_extra or {}).get(key)


@pytest.mark.parametrize("model", [CLAUDE, GEMINI])
def test_reasoning_content_apart_from_content(client, model):
    r = client.chat.completions.create(
        model=model, reasoning_effort="low",
        messages=[{"role": "user", "content": "Why is the sky blue?"}])
    msg = r.choices[0].message
    reasoning = extra(msg, "reasoning_content")
    assert reasoning and "sky is blue" not in msg.content
    assert reasoning not in msg.content
    assert msg.content.startswith("Mock reply from")
    assert r.choices[0].finish_reason == "stop"
    if model == GEMINI:
        assert r.usage.completion_tokens_details.reasoning_tokens == 10

    stream = client.chat.completions.create(
        model=model, reasoning_effort="low", stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Why is the sky blue?"}])
    content, thinking, usage = "", "", None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            content += ch.delta.content or ""
            thinking += extra(ch.delta, "reasoning_content") or ""
    assert content == msg.content
    assert thinking == reasoning
    if model == GEMINI:
        assert usage.completion_tokens_details.reasoning_tokens == 10


def test_claude_thinking_round_trip(client):
    history = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(
        model=CLAUDE, reasoning_effort="low", tools=TOOLS, messages=history,
        extra_headers={"X-Mock-Scenario": "tool_call"})
    assert first.choices[0].finish_reason == "tool_calls"
    msg = first.choices[0].message
    blocks = extra(msg, "thinking_blocks")
    assert blocks and blocks[0]["type"] == "thinking" and blocks[0]["signature"]

    history.append(msg.model_dump(exclude_none=True))
    history.append({"role": "tool", "tool_call_id": msg.tool_calls[0].id,
                    "content": json.dumps({"temperature_c": 18})})
    second = client.chat.completions.create(
        model=CLAUDE, reasoning_effort="low", tools=TOOLS, messages=history)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content.startswith("Mock reply")

    # without the thinking, Anthropic refuses the follow-up
    history[1] = {k: v for k, v in history[1].items()
                  if k not in ("thinking_blocks", "reasoning_content")}
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=CLAUDE, reasoning_effort="low", tools=TOOLS, messages=history)
    assert "thinking" in str(e.value)


def test_claude_thinking_round_trip_from_stream(client):
    history = [{"role": "user", "content": "Weather in Paris?"}]
    stream = client.chat.completions.create(
        model=CLAUDE, reasoning_effort="low", tools=TOOLS, messages=history,
        stream=True, extra_headers={"X-Mock-Scenario": "tool_call"})
    reasoning, sig, calls, content = "", None, {}, ""
    for chunk in stream:
        for ch in chunk.choices:
            d = ch.delta
            content += d.content or ""
            reasoning += extra(d, "reasoning_content") or ""
            for b in extra(d, "thinking_blocks") or []:
                sig = b.get("signature", sig)
            for tc in d.tool_calls or []:
                c = calls.setdefault(tc.index, {"id": None, "name": None, "args": ""})
                c["id"] = tc.id or c["id"]
                if tc.function.name:
                    c["name"] = tc.function.name
                c["args"] += tc.function.arguments or ""
    assert reasoning and sig and calls[0]["name"] == "get_weather"

    history.append({
        "role": "assistant", "content": content, "reasoning_content": reasoning,
        "thinking_blocks": [{"type": "thinking", "signature": sig}],
        "tool_calls": [{"id": calls[0]["id"], "type": "function",
                        "function": {"name": "get_weather", "arguments": calls[0]["args"]}}]})
    history.append({"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"})
    r = client.chat.completions.create(
        model=CLAUDE, reasoning_effort="low", tools=TOOLS, messages=history)
    assert r.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", [CLAUDE, GEMINI])
def test_structured_outputs(client, model):
    schema = Weather.model_json_schema()
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Weather in Paris as JSON"}],
        response_format={"type": "json_schema",
                         "json_schema": {"name": "weather", "schema": schema}})
    assert r.choices[0].finish_reason == "stop"
    assert not r.choices[0].message.tool_calls
    Weather.model_validate_json(r.choices[0].message.content)

    parsed = client.chat.completions.parse(
        model=model, messages=[{"role": "user", "content": "Weather in Paris"}],
        response_format=Weather)
    w = parsed.choices[0].message.parsed
    assert isinstance(w, Weather) and w.city

    with client.chat.completions.stream(
            model=model, messages=[{"role": "user", "content": "Weather in Paris"}],
            response_format=Weather) as s:
        for _ in s:
            pass
        final = s.get_final_completion()
    assert final.choices[0].message.parsed == w
    assert final.choices[0].finish_reason == "stop"

    j = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Any JSON"}],
        response_format={"type": "json_object"})
    assert isinstance(json.loads(j.choices[0].message.content), dict)
