"""GET /metrics read by Prometheus's own Python parser (prometheus_client):
the whole exposition parses, every family has its type, label values with
a quote, a backslash and a line feed come back as they were sent, and the
histograms add up.

A gateway of its own (the session one has no metrics zone): the mock of the
session fixture, a metrics zone, a policy, and /metrics.
"""

import signal
import subprocess
import urllib.request

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

import gateway as gatewaylib
from gateway import LLM_TOKEN, NGINX, REPO, free_port, stop_process

POLICIES = """
policies:
  - name: e2e-metrics-deny
    apply_to: {tokens: [tok_llm]}
    rules:
      - when: {field: model, op: eq, value: mock-denied}
        then: {deny: {reason: "not this one"}}
"""

ODD_MODEL = 'mock-q"uo\\te\nnl \u00e9'


@pytest.fixture(scope="module")
def metrics_gateway(gateway, tmp_path_factory):
    prefix = tmp_path_factory.mktemp("ailink-e2e-metrics")
    (prefix / "logs").mkdir()
    (prefix / "tmp").mkdir()
    yaml = prefix / "ailink.yaml"
    yaml.write_text((REPO / "t" / "conf" / "ailink.yaml").read_text() + POLICIES)

    port = free_port()
    template = gatewaylib.NGINX_CONF.replace(
        "ailink_config {repo}/t/conf/ailink.yaml;",
        "ailink_config %s;\n    ailink_metrics_zone ailink_e2e_metrics;" % yaml)
    template = template.replace(
        "        location / {{",
        "        location = /metrics {{\n"
        "            ailink_metrics;\n"
        "            ailink_audit_log off;\n"
        "        }}\n\n"
        "        location / {{", 1)
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
        yield url
    finally:
        stop_process(proc, signal.SIGQUIT, "nginx")


def scrape(url):
    with urllib.request.urlopen(url + "/metrics", timeout=10) as res:
        assert res.status == 200
        assert res.headers["Content-Type"].startswith(
            "text/plain; version=0.0.4")
        text = res.read().decode("utf-8")
    # the parser raises on anything it cannot read; list() reads it all
    return {f.name: f for f in text_string_to_metric_families(text)}, text


def samples(family, name, **labels):
    return [s for s in family.samples
            if s.name == name
            and all(s.labels.get(k) == v for k, v in labels.items())]


def test_the_whole_exposition_parses(metrics_gateway):
    url = metrics_gateway
    c = openai.OpenAI(api_key=LLM_TOKEN, base_url=url + "/v1", max_retries=0)
    msgs = [{"role": "user", "content": "Hi"}]

    for _ in range(3):
        c.chat.completions.create(model="mock-1", messages=msgs)
    for _ in c.chat.completions.create(model="mock-1", messages=msgs,
                                       stream=True):
        pass
    c.chat.completions.create(model=ODD_MODEL, messages=msgs)
    with pytest.raises(openai.PermissionDeniedError):
        c.chat.completions.create(model="mock-denied", messages=msgs)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="ailink_v1_proj_bogus", base_url=url + "/v1",
                      max_retries=0).chat.completions.create(
            model="mock-1", messages=msgs)

    fam, text = scrape(url)

    types = {
        "ailink_requests": "counter",
        "ailink_tokens": "counter",
        "ailink_cost_usd": "counter",
        "ailink_request_duration_seconds": "histogram",
        "ailink_time_to_first_token_seconds": "histogram",
        "ailink_errors": "counter",
        "ailink_policy_decisions": "counter",
        "ailink_cache_requests": "counter",
        "ailink_metrics_series": "gauge",
        "ailink_metrics_overflow": "counter",
    }
    for name, t in types.items():
        assert name in fam, name
        assert fam[name].type == t, name
        assert fam[name].documentation, name

    req = fam["ailink_requests"]
    ok = samples(req, "ailink_requests_total", provider="openai",
                 model="mock-1", project="test", code="200", **{"class": "2xx"})
    assert [s.value for s in ok] == [4.0]

    # the odd model name comes back exactly as it was sent
    odd = samples(req, "ailink_requests_total", model=ODD_MODEL)
    assert [s.value for s in odd] == [1.0], text

    assert [s.value for s in samples(fam["ailink_errors"], "ailink_errors_total",
                                     error="policy_denied", code="403")] == [1.0]
    assert [s.value for s in samples(fam["ailink_errors"], "ailink_errors_total",
                                     error="invalid_token", code="401")] == [1.0]
    deny = samples(fam["ailink_policy_decisions"],
                   "ailink_policy_decisions_total", policy="e2e-metrics-deny",
                   action="deny")
    assert sum(s.value for s in deny) == 1.0

    # histograms: cumulative buckets, +Inf == _count == the requests
    for name, n in (("ailink_request_duration_seconds", 4),
                    ("ailink_time_to_first_token_seconds", 1)):
        h = fam[name]
        lab = dict(provider="openai", model="mock-1", project="test")
        buckets = samples(h, name + "_bucket", **lab)
        bounds = [float(s.labels["le"]) for s in buckets]
        counts = [s.value for s in buckets]
        assert bounds == sorted(bounds) and bounds[-1] == float("inf")
        assert counts == sorted(counts)
        (count,) = samples(h, name + "_count", **lab)
        (total,) = samples(h, name + "_sum", **lab)
        assert counts[-1] == count.value == n
        assert total.value >= 0

    tokens = samples(fam["ailink_tokens"], "ailink_tokens_total",
                     model="mock-1", type="completion")
    assert tokens and tokens[0].value > 0
