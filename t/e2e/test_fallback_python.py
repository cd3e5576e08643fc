"""Provider fallbacks seen by the official `openai` Python client.

A "gpt-fallback-*" model (t/conf/ailink.yaml) whose OpenAI upstream fails
is answered by Claude, plain and streamed, with no retry by the client:
the response names the model that answered and X-AILink-Provider says
which provider did.

    python3 -m pytest -q t/e2e/test_fallback_python.py
"""

import json
import urllib.request

import openai
import pytest

from conftest import LLM_TOKEN

CLAUDE = "claude-3-5-haiku-20241022"


def arm_failure(gateway, path_prefix, status, count=1):
    req = urllib.request.Request(
        "http://127.0.0.1:%d/_mock/fail" % gateway.mock_port,
        data=json.dumps({"path_prefix": path_prefix, "status": status,
                         "count": count}).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


@pytest.fixture
def client(gateway):
    urllib.request.urlopen(urllib.request.Request(
        "http://127.0.0.1:%d/_mock/reset" % gateway.mock_port, method="POST"),
        timeout=5).close()
    with openai.OpenAI(api_key=LLM_TOKEN, base_url=gateway.base_url,
                       max_retries=0, timeout=10) as c:
        yield c


def test_openai_503_is_answered_by_claude(client, gateway):
    arm_failure(gateway, "/v1/chat/completions", 503)

    raw = client.chat.completions.with_raw_response.create(
        model="gpt-fallback-1",
        messages=[{"role": "user", "content": "Who answers?"}])
    resp = raw.parse()

    assert raw.headers["x-ailink-provider"] == "anthropic"
    assert resp.model == CLAUDE
    assert resp.choices[0].message.content == \
        "Mock reply from anthropic to: Who answers?"


def test_stream_falls_back_before_its_first_byte(client, gateway):
    arm_failure(gateway, "/v1/chat/completions", 429)

    stream = client.chat.completions.create(
        model="gpt-fallback-1", stream=True,
        messages=[{"role": "user", "content": "Stream it"}])
    chunks = list(stream)

    assert chunks and all(c.model == CLAUDE for c in chunks)
    text = "".join(c.choices[0].delta.content or ""
                   for c in chunks if c.choices)
    assert text == "Mock reply from anthropic to: Stream it"


def test_all_targets_failing_is_an_api_error(client, gateway):
    arm_failure(gateway, "/v1/chat/completions", 503)
    arm_failure(gateway, "/v1/messages", 500)
    arm_failure(gateway, "/v1beta", 503)

    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(
            model="gpt-fallback-1",
            messages=[{"role": "user", "content": "Anyone?"}])

    assert e.value.status_code == 503
