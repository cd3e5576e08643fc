"""The official `openai` Python client reaching Claude and Gemini through the gateway.

The same OpenAI-format code, only the model changes: plain and streamed
chat (the accumulated stream equals the plain answer), a tool-call round
trip (call → tool result → answer), a streamed tool call whose argument
deltas add up to the plain call's arguments, and an image message.

    python3 -m pytest -q t/e2e/test_translation_python.py
"""

import base64
import json

import openai
import pytest

from conftest import LLM_TOKEN

MODELS = {
    "anthropic": "claude-3-5-haiku-20241022",
    "gemini": "gemini-2.0-flash",
}

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}]

# a 1x1 transparent PNG
PIXEL = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)).decode()


@pytest.fixture
def client(gateway):
    with openai.OpenAI(api_key=LLM_TOKEN, base_url=gateway.base_url,
                       max_retries=0, timeout=10) as c:
        yield c


def accumulate(stream):
    """Content, tool calls (by index) and chunks of a streamed completion."""
    content, calls, chunks = [], {}, []
    for chunk in stream:
        chunks.append(chunk)
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                content.append(delta.content)
            for tc in delta.tool_calls or []:
                call = calls.setdefault(tc.index, {"id": None, "name": None,
                                                   "arguments": ""})
                if tc.id:
                    call["id"] = tc.id
                if tc.function and tc.function.name:
                    call["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    call["arguments"] += tc.function.arguments
    return "".join(content), calls, chunks


@pytest.mark.parametrize("provider", sorted(MODELS))
def test_chat_and_stream_agree(client, gateway, provider):
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Summarise this contract."}]

    plain = client.chat.completions.create(model=MODELS[provider],
                                           messages=messages)
    assert plain.object == "chat.completion"
    assert plain.model == MODELS[provider]
    assert plain.choices[0].message.content == \
        "Mock reply from %s to: Summarise this contract." % provider
    assert plain.choices[0].finish_reason == "stop"
    assert plain.usage.prompt_tokens > 0 and plain.usage.completion_tokens > 0

    raw = client.chat.completions.with_raw_response.create(
        model=MODELS[provider], messages=messages, stream=True,
        stream_options={"include_usage": True})
    assert raw.headers["x-ailink-provider"] == provider
    content, calls, chunks = accumulate(raw.parse())

    assert content == plain.choices[0].message.content
    assert not calls
    assert len(chunks) > 3
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


@pytest.mark.parametrize("provider", sorted(MODELS))
def test_tool_call_round_trip(client, gateway, provider):
    model = MODELS[provider]
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]

    first = client.chat.completions.create(
        model=model, messages=messages, tools=TOOLS, tool_choice="auto",
        extra_headers={"X-Mock-Scenario": "tool_call"})
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert isinstance(args, dict)

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id,
                     "content": json.dumps({"temperature_c": 18})})

    second = client.chat.completions.create(model=model, messages=messages,
                                            tools=TOOLS)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content.startswith(
        "Mock reply from %s" % provider)

    # what the provider got: the call and its result, in its own shape
    sent = gateway.mock("/_mock/requests/last")["json"]
    text = json.dumps(sent)
    if provider == "anthropic":
        assert '"tool_use"' in text and '"tool_result"' in text
        assert call.id in text
    else:
        assert '"functionCall"' in text and '"functionResponse"' in text


@pytest.mark.parametrize("provider", sorted(MODELS))
def test_streamed_tool_call(client, provider):
    model = MODELS[provider]
    messages = [{"role": "user", "content": "Weather in Oslo?"}]
    headers = {"X-Mock-Scenario": "tool_call"}

    plain = client.chat.completions.create(model=model, messages=messages,
                                           tools=TOOLS, extra_headers=headers)
    expected = plain.choices[0].message.tool_calls[0]

    stream = client.chat.completions.create(model=model, messages=messages,
                                            tools=TOOLS, stream=True,
                                            extra_headers=headers)
    _, calls, chunks = accumulate(stream)

    assert calls[0]["name"] == expected.function.name
    assert calls[0]["id"]
    assert json.loads(calls[0]["arguments"]) == \
        json.loads(expected.function.arguments)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == \
        "tool_calls"


@pytest.mark.parametrize("provider", sorted(MODELS))
def test_image_message(client, gateway, provider):
    reply = client.chat.completions.create(
        model=MODELS[provider],
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is in this image?"},
            {"type": "image_url",
             "image_url": {"url": "data:image/png;base64," + PIXEL}},
        ]}])
    assert reply.choices[0].message.content.startswith(
        "Mock reply from %s" % provider)

    sent = json.dumps(gateway.mock("/_mock/requests/last")["json"])
    assert PIXEL in sent
    assert ('"media_type": "image/png"' in sent if provider == "anthropic"
            else '"mimeType": "image/png"' in sent)
