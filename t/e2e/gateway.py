"""Starting the mock provider and a real nginx with the AILink module, for pytest.

Shared by t/e2e/conftest.py and sdk/python/tests/conftest.py (which puts this
folder on sys.path).  ``run_gateway(prefix)`` starts, as direct children of the
calling process:

* t/mock/mock_provider.py on a free port (it plays OpenAI), and
* /usr/sbin/nginx (or $TEST_NGINX_BINARY) with build/release/ngx_ailink_module.so
  (or $AILINK_E2E_MODULE), serving t/conf/ailink.yaml on another free port,
  with the location set-up of t/lib/AILink/Test.pm and conf-examples/,

yields a ``Gateway``, and stops both at the end (nginx with SIGQUIT, the mock
with SIGTERM), waiting for them.  ``Gateway.stop_nginx()`` and
``Gateway.start_nginx()`` stop and start nginx alone, on the same port.
Their files live in ``prefix``: nginx.conf, logs/error.log, logs/audit.jsonl,
mock.log.
"""

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from contextlib import contextmanager

REPO = Path(__file__).resolve().parents[2]

# the admin key of the tests (sdk/python/tests/sdktest.py has it too)
ADMIN_KEY = "ailink_admin_test0000000000000000000000001"
ADMIN_HASH = hashlib.sha256(ADMIN_KEY.encode()).hexdigest()

# public test fixtures of t/conf/ailink.yaml (see t/lib/AILink/Test.pm)
LLM_TOKEN = "ailink_v1_proj_test_tok_llm0000000000000000000001"
LLM_BYOK_TOKEN = "ailink_v1_proj_test_tok_llmbyok0000000000000000001"
ACTION_TOKEN = "ailink_v1_proj_test_tok_action00000000000000000001"
BYOK_TOKEN = "ailink_v1_proj_test_tok_byok000000000000000000001"
BOGUS_TOKEN = "ailink_v1_proj_test_tok_bogus000000000000000000001"

UPSTREAM_KEYS = {
    "AILINK_TEST_OPENAI_KEY": "sk-test-openai-secret-0001",
    "AILINK_TEST_ACTION_KEY": "sk-test-action-secret-0001",
    "AILINK_TEST_BASIC_KEY": "user:test-basic-secret-0001",
    "AILINK_TEST_ANTHROPIC_KEY": "sk-ant-test-0001",
    "AILINK_TEST_GEMINI_KEY": "gm-test-0001",
}

NGINX = os.environ.get("TEST_NGINX_BINARY", "/usr/sbin/nginx")
MODULE = Path(os.environ.get("AILINK_E2E_MODULE",
                             REPO / "build" / "release" / "ngx_ailink_module.so"))

# the gateway is on the loopback: never send the clients through a proxy
for _var in ("NO_PROXY", "no_proxy"):
    os.environ[_var] = ",".join(x for x in (os.environ.get(_var), "127.0.0.1", "localhost") if x)

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


def mock_reply(user_text):
    """The mock's deterministic OpenAI chat answer (t/mock/mock_provider.py reply_text)."""
    return "Mock reply from openai to: %s" % user_text[:60]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_text(path, limit=20000):
    try:
        return Path(path).read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def stop_process(proc, sig, name):
    """Signal a direct child and wait for it; escalate to SIGKILL after STOP_TIMEOUT."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        sys.stderr.write("e2e: %s did not stop on signal %d, killing it\n" % (name, sig))
        proc.kill()
        proc.wait()


NGINX_CONF = """\
load_module {module};

worker_processes 1;
daemon off;
master_process on;
{user}
error_log {prefix}/logs/error.log notice;
pid {prefix}/logs/nginx.pid;


events {{
    worker_connections 256;
}}

http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/client_body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;

    ailink_config {repo}/t/conf/ailink.yaml;
    ailink_cache_zone ailink_e2e_cache 4m;
    ailink_state_zone ailink_e2e 4m;   # idempotency keys, approvals
    ailink_breaker_zone ailink_e2e_breaker 1m;   # /health/upstreams

    # the admin API (ARCHITECTURE.md 4.7) with its store and vault
    ailink_store_dir {prefix}/data;
    ailink_admin_key {admin_hash};
    ailink_vault_master_key file:{prefix}/master.key;
    ailink_admin_audit_source {prefix}/logs/audit.jsonl;   # /audit, /spend

    server {{
        listen 127.0.0.1:{port};

        ailink_audit_log logs/audit.jsonl;

        include {repo}/conf-examples/ailink-errors.conf;

        location = /healthz {{
            ailink_health;
            ailink_audit_log off;
        }}

        # the response cache, below /cached/ only: the other tests count
        # what reaches the mock
        location /cached/ {{
            rewrite ^/cached(/.*)$ $1 break;
            ailink_auth on;
            ailink_cache on;
            include {repo}/conf-examples/ailink-proxy.conf;
        }}

        location /api/v1/ {{
            ailink_audit_log off;
            ailink_admin_api;
        }}

        location / {{
            ailink_auth on;
            include {repo}/conf-examples/ailink-proxy.conf;
        }}
    }}
}}
"""


def render_conf(prefix, port, template=NGINX_CONF):
    """nginx.conf text for a gateway under ``prefix`` (a variant of NGINX_CONF
    may be given), with the vault's master key file it names."""
    key = Path(prefix) / "master.key"
    if not key.exists():
        key.write_text(os.urandom(32).hex() + "\n")
        key.chmod(0o600)
    return template.format(
        module=MODULE, prefix=prefix, repo=REPO, port=port,
        admin_hash=ADMIN_HASH,
        user="user root;" if os.geteuid() == 0 else "")


class Gateway:
    """A running mock + nginx pair; what the tests need to reach and inspect them."""

    def __init__(self, prefix, port, mock_port, env):
        self.prefix = Path(prefix)
        self.port = port
        self.mock_port = mock_port
        self.env = env
        self.url = "http://127.0.0.1:%d" % port
        self.base_url = self.url + "/v1"
        self.audit_path = self.prefix / "logs" / "audit.jsonl"
        self.error_log = self.prefix / "logs" / "error.log"
        self.upstream_keys = {k: env[k] for k in UPSTREAM_KEYS}
        self.nginx = None

    # -- nginx alone (the mock keeps running)

    def start_nginx(self):
        """Start nginx on this gateway's port and wait until /healthz answers."""
        conf = self.prefix / "nginx.conf"
        conf.write_text(render_conf(self.prefix, self.port))
        nginx_out = self.prefix / "nginx.stderr"
        with open(nginx_out, "ab") as out_f:
            self.nginx = subprocess.Popen(
                [NGINX, "-p", str(self.prefix) + "/", "-c", str(conf)],
                stdin=subprocess.DEVNULL, stdout=out_f, stderr=subprocess.STDOUT, env=self.env)
        _wait_healthz(self.nginx, self.url, [nginx_out, self.error_log])

    def stop_nginx(self):
        """Stop nginx gracefully and wait for it; the port then refuses connections."""
        if self.nginx is not None:
            stop_process(self.nginx, signal.SIGQUIT, "nginx")

    # -- the mock's records (reached directly, not through the gateway)

    def mock(self, path, method="GET"):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.mock_port, path),
                                     method=method)
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read().decode("utf-8"))

    def mock_requests(self, since=0):
        return self.mock("/_mock/requests?since=%d" % since)

    def mock_seq(self):
        recs = self.mock("/_mock/requests")
        return recs[-1]["seq"] if recs else 0

    # -- the audit file

    def audit_text(self):
        try:
            return self.audit_path.read_text()
        except FileNotFoundError:
            return ""

    def audit_records(self):
        """Complete lines of the audit file, parsed (a trailing partial line is left out)."""
        text = self.audit_text()
        lines = text.split("\n")[:-1]          # only lines ended by "\n"
        return [json.loads(line) for line in lines]

    def wait_audit(self, count, timeout=5.0):
        """Wait until the audit file holds at least `count` records; return them all.

        The gateway writes a record in the log phase, which may come a moment
        after the client has read the end of the response (streams)."""
        deadline = time.monotonic() + timeout
        while True:
            recs = self.audit_records()
            if len(recs) >= count or time.monotonic() > deadline:
                return recs
            time.sleep(0.02)


def _wait_ready_file(proc, ready, log):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if ready.exists() and ready.stat().st_size > 0:
            return
        if proc.poll() is not None:
            pytest.fail("mock provider exited with %s:\n%s" % (proc.returncode, read_text(log)),
                        pytrace=False)
        time.sleep(0.02)
    pytest.fail("mock provider did not become ready in %.0fs:\n%s"
                % (START_TIMEOUT, read_text(log)), pytrace=False)


def _wait_healthz(proc, url, logs):
    deadline = time.monotonic() + START_TIMEOUT
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail("nginx exited with %s:\n%s" % (proc.returncode,
                        "\n".join(read_text(p) for p in logs)), pytrace=False)
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            last = e
        time.sleep(0.02)
    pytest.fail("nginx did not answer /healthz in %.0fs (%s):\n%s"
                % (START_TIMEOUT, last, "\n".join(read_text(p) for p in logs)), pytrace=False)




@contextmanager
def run_gateway(prefix):
    """Start the mock and nginx under ``prefix``; yield the Gateway; stop both.

    On leaving, an alert, emerg or crit line in nginx's error.log, or a worker
    that exited on a signal, fails the caller (after both are stopped)."""
    if not MODULE.is_file():
        pytest.fail("%s is missing: build it with ./build.sh" % MODULE, pytrace=False)
    if not os.access(NGINX, os.X_OK):
        pytest.fail("nginx binary %s not found (set TEST_NGINX_BINARY)" % NGINX, pytrace=False)

    prefix = Path(prefix)
    (prefix / "logs").mkdir(exist_ok=True)
    (prefix / "tmp").mkdir(exist_ok=True)

    env = dict(os.environ)
    for k, v in UPSTREAM_KEYS.items():
        if not env.get(k):
            env[k] = v

    mock = None
    gw = None
    try:
        # the mock provider
        mock_port = free_port()
        ready = prefix / "mock.ready"
        mock_log = prefix / "mock.log"
        with open(mock_log, "ab") as log_f:
            mock = subprocess.Popen(
                [sys.executable, str(REPO / "t" / "mock" / "mock_provider.py"),
                 "--port", str(mock_port), "--ready-file", str(ready),
                 "--log-level", "WARNING"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_f, env=env)
        _wait_ready_file(mock, ready, mock_log)
        env["TEST_NGINX_MOCK_PORT"] = str(mock_port)

        # nginx
        gw = Gateway(prefix, free_port(), mock_port, env)
        gw.start_nginx()

        yield gw

        # a crash of a worker during the session is a failure of its own
        errors = [l for l in read_text(gw.error_log, 1 << 20).splitlines()
                  if re.search(r"\[(alert|emerg|crit)\]|exited on signal", l)]
    finally:
        if gw is not None:
            gw.stop_nginx()
        if mock is not None:
            stop_process(mock, signal.SIGTERM, "mock provider")

    assert not errors, "nginx error.log has alerts:\n" + "\n".join(errors)
