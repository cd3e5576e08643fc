"""The official Node `openai` client (t/e2e/openai_node.mjs) against the gateway.

    npm ci --prefix t/e2e
    python3 -m pytest -q t/e2e/test_openai_node.py

Nothing is skipped: without node or t/e2e/node_modules the test fails and
says what to install.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BOGUS_TOKEN, LLM_TOKEN, mock_reply

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "openai_node.mjs"
HEX32 = re.compile(r"\A[0-9a-f]{32}\Z")


def node_binary():
    node = shutil.which("node")
    if not node:
        pytest.fail("node (v20 or later) is not on PATH: install Node.js, then run "
                    "`npm ci --prefix t/e2e`", pytrace=False)
    if not (HERE / "node_modules" / "openai" / "package.json").is_file():
        pytest.fail("t/e2e/node_modules/openai is missing: run `npm ci --prefix t/e2e` "
                    "from the repository root", pytrace=False)
    return node


def run_node(gateway, *args, token_env=None):
    env = dict(gateway.env)
    env.pop("AILINK_TOKEN", None)
    if token_env:
        env["AILINK_TOKEN"] = token_env
    proc = subprocess.run(
        [node_binary(), str(SCRIPT), "--base-url", gateway.base_url, *args],
        env=env,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, "openai_node.mjs failed (%d):\n%s%s" % (
        proc.returncode, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


def check_usage(usage):
    assert usage, "no usage"
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_node_chat_and_stream(gateway):
    prompt = "Hello from the Node client"
    out = run_node(gateway, "--token", LLM_TOKEN, "--prompt", prompt, "--events", "4",
                   "--bad-token", BOGUS_TOKEN)

    assert out["content"] == mock_reply(prompt)
    assert out["streamed"] == out["content"]
    # role chunk + 4 content chunks + finish chunk + usage chunk
    assert out["content_chunks"] == 4
    assert out["chunks"] > 2

    check_usage(out["usage"])
    check_usage(out["stream_usage"])
    assert out["stream_usage"]["prompt_tokens"] == out["usage"]["prompt_tokens"]
    assert out["stream_usage"]["completion_tokens"] == out["usage"]["completion_tokens"]
    assert HEX32.match(out["request_id"])

    err = out["auth_error"]
    assert err["class"] == "AuthenticationError"
    assert err["status"] == 401
    assert err["code"] == "invalid_token"
    assert err["message"] == "invalid token"
    assert HEX32.match(err["request_id"])


def test_node_token_from_env(gateway):
    """--token defaults to $AILINK_TOKEN."""
    out = run_node(gateway, "--prompt", "token from env", token_env=LLM_TOKEN)
    assert out["content"] == out["streamed"] == mock_reply("token from env")
    check_usage(out["usage"])
    assert out["auth_error"] is None


@pytest.mark.parametrize("model,provider", [
    ("claude-3-5-haiku-20241022", "anthropic"),
    ("gemini-2.0-flash", "gemini"),
])
def test_node_translated_providers(gateway, model, provider):
    """The same Node code reaches Claude and Gemini: only the model changes.

    Plain and streamed chat, a tool-call round trip and an image message."""
    prompt = "Hello from Node to %s" % provider
    out = run_node(gateway, "--token", LLM_TOKEN, "--model", model,
                   "--prompt", prompt, "--tools")

    assert out["content"] == "Mock reply from %s to: %s" % (provider, prompt)
    assert out["streamed"] == out["content"]
    check_usage(out["usage"])
    check_usage(out["stream_usage"])
    assert out["stream_usage"]["prompt_tokens"] == out["usage"]["prompt_tokens"]

    assert out["tool_call"]["finish_reason"] == "tool_calls"
    assert out["tool_call"]["name"] == "get_weather"
    assert isinstance(out["tool_call"]["arguments"], dict)
    assert out["tool_answer"].startswith("Mock reply from %s" % provider)
    assert out["image_answer"] == \
        "Mock reply from %s to: What is in this image?" % provider


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "gemini-2.5-flash"])
def test_node_reasoning_and_structured_outputs(gateway, model):
    """reasoning_effort round trips (JSON and streamed history) and
    response_format json_schema with the Node client, Claude and Gemini."""
    out = run_node(gateway, "--token", LLM_TOKEN, "--model", model,
                   "--prompt", "hi", "--reasoning")["reasoning"]

    assert out["reasoning_content"]
    assert out["streamed_reasoning"] == out["reasoning_content"]
    assert out["round_trip"] == "stop"
    assert out["stream_round_trip"] == "stop"
    if model.startswith("claude"):
        assert out["thinking_blocks"] == ["thinking"]
    else:
        assert out["reasoning_tokens"] == 10
    assert set(out["structured"]) == {"city", "temperature_c"}
    assert out["structured_finish"] == "stop"
    assert out["structured_streamed"] == out["structured"]
