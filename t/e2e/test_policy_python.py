"""Policies through the official openai Python client: a deny surfaces as
PermissionDeniedError whose body carries policy_name and reason, and a 429
rate_limited is retried by the client after Retry-After.

A gateway of its own (the session one has no policies): the mock of the
session fixture, t/conf/ailink.yaml with policies appended, a state zone.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import openai
import pytest

import gateway as gatewaylib
from gateway import LLM_TOKEN, NGINX, REPO, free_port, stop_process

POLICIES = """
policies:
  - name: e2e-deny
    apply_to: {tokens: [tok_llm]}
    rules:
      - name: forbidden-model
        when: {field: model, op: eq, value: mock-denied}
        then: {deny: {reason: "this model is not for agents"}}
  - name: e2e-rate
    apply_to: {tokens: [tok_llm]}
    rules:
      - when: {field: model, op: eq, value: mock-limited}
        then: {rate_limit: {requests_per_second: 1}}
"""


@pytest.fixture(scope="module")
def policy_gateway(gateway, tmp_path_factory):
    prefix = tmp_path_factory.mktemp("ailink-e2e-policy")
    (prefix / "logs").mkdir()
    (prefix / "tmp").mkdir()
    yaml = prefix / "ailink.yaml"
    yaml.write_text((REPO / "t" / "conf" / "ailink.yaml").read_text() + POLICIES)

    port = free_port()
    template = gatewaylib.NGINX_CONF.replace(
        "ailink_config {repo}/t/conf/ailink.yaml;",
        "ailink_config %s;" % yaml)     # the template has a state zone
    conf = prefix / "nginx.conf"
    conf.write_text(gatewaylib.render_conf(prefix, port, template))

    out = prefix / "nginx.stderr"
    with open(out, "ab") as out_f:
        proc = subprocess.Popen([NGINX, "-p", str(prefix) + "/", "-c", str(conf)],
                                stdin=subprocess.DEVNULL, stdout=out_f,
                                stderr=subprocess.STDOUT, env=gateway.env)
    url = "http://127.0.0.1:%d" % port
    try:
        gatewaylib._wait_healthz(proc, url, [out, prefix / "logs" / "error.log"])
        yield url, prefix
    finally:
        stop_process(proc, signal.SIGQUIT, "nginx")


def client(url, **kw):
    return openai.OpenAI(api_key=LLM_TOKEN, base_url=url + "/v1", **kw)


def test_deny_is_permission_denied_with_policy_name_and_reason(policy_gateway):
    url, _ = policy_gateway
    with pytest.raises(openai.PermissionDeniedError) as exc:
        client(url, max_retries=0).chat.completions.create(
            model="mock-denied", messages=[{"role": "user", "content": "Hi"}])
    e = exc.value
    assert e.status_code == 403
    assert e.body["code"] == "policy_denied"
    assert e.body["policy_name"] == "e2e-deny"
    assert e.body["reason"] == "this model is not for agents"
    assert "e2e-deny" in str(e)


def test_rate_limited_request_is_retried_after_retry_after(policy_gateway):
    url, prefix = policy_gateway
    c = client(url, max_retries=2)
    msgs = [{"role": "user", "content": "Hi"}]

    # start early in a second, so both calls fall into the same window
    time.sleep(1 - (time.time() % 1) + 0.05)
    first = c.chat.completions.create(model="mock-limited", messages=msgs)
    start = time.monotonic()
    second = c.chat.completions.with_raw_response.create(model="mock-limited",
                                                         messages=msgs)
    waited = time.monotonic() - start

    assert first.choices[0].message.content
    assert second.http_response.status_code == 200
    assert second.headers["x-ratelimit-limit-requests"] == "1"
    assert waited >= 0.5, "the client waited for Retry-After"

    # the audit has the refused attempt between the two successes
    for _ in range(50):
        lines = (prefix / "logs" / "audit.jsonl").read_text().splitlines()
        recs = [json.loads(l) for l in lines]
        limited = [r for r in recs if r["model"] == "mock-limited"]
        if len(limited) >= 3:
            break
        time.sleep(0.1)
    assert [r["status"] for r in limited] == [200, 429, 200]
    assert limited[1]["error"] == "rate_limited"
    assert limited[1]["policies"][0]["result"] == "limited"

    # without retries the 429 reaches the caller as RateLimitError
    with pytest.raises(openai.RateLimitError) as exc:
        client(url, max_retries=0).chat.completions.create(model="mock-limited",
                                                           messages=msgs)
        client(url, max_retries=0).chat.completions.create(model="mock-limited",
                                                           messages=msgs)
    assert exc.value.body["code"] == "rate_limited"
    assert exc.value.response.headers["retry-after"] == "1"
