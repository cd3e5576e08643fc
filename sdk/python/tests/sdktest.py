"""Helpers of the SDK tests (imported by conftest.py and the test modules)."""

import json
import os
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "t" / "e2e"))

import gateway as gwlib  # noqa: E402  (t/e2e/gateway.py)

LLM_TOKEN = gwlib.LLM_TOKEN
LLM_BYOK_TOKEN = gwlib.LLM_BYOK_TOKEN
ACTION_TOKEN = gwlib.ACTION_TOKEN
BOGUS_TOKEN = gwlib.BOGUS_TOKEN
# the admin key the tests use once the admin API lands (ARCHITECTURE.md §4.7)
ADMIN_KEY = "ailink_admin_test0000000000000000000000001"
mock_reply = gwlib.mock_reply




def dead_url():
    """A URL where nothing listens."""
    return "http://127.0.0.1:%d" % gwlib.free_port()


# --------------------------------------------------------------------------- the contract stub

def envelope(status, code, message="", etype=None, headers=None, **extra):
    """A gateway error answer as ARCHITECTURE.md §4.5 documents it."""
    rid = uuid.uuid4().hex
    err = {"type": etype or code, "code": code, "message": message or code, "param": None,
           "request_id": rid}
    err.update(extra)
    h = {"X-AILink-Request-Id": rid}
    h.update(headers or {})
    return (status, {"error": err}, h)


class StubRequest:
    def __init__(self, method, target, headers, body):
        self.method = method
        parts = urlsplit(target)
        self.path = parts.path
        self.query = parts.query
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body

    def json(self):
        return json.loads(self.body or b"null")


class Stub:
    """Routes ``(method, path)`` to queued answers; records every request."""

    def __init__(self):
        self.routes = {}
        self.requests = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                req = StubRequest(self.command, self.path, dict(self.headers.items()), body)
                status, obj, headers = stub._answer(req)
                data = obj if isinstance(obj, bytes) else (
                    obj.encode() if isinstance(obj, str) else json.dumps(obj).encode())
                try:
                    self.send_response(status)
                    h = {"Content-Type": "application/json"}
                    h.update(headers or {})
                    for k, v in h.items():
                        self.send_header(k, str(v))
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reset(self):
        with self.lock:
            self.routes.clear()
            self.requests.clear()

    def on(self, method, path, *answers):
        """Answers, in turn (the last one repeats): (status, body, headers) tuples
        or callables taking the StubRequest and returning one."""
        with self.lock:
            self.routes[(method.upper(), path)] = list(answers)

    def _answer(self, req):
        with self.lock:
            self.requests.append(req)
            answers = self.routes.get((req.method, req.path))
            if not answers:
                return envelope(404, "not_found", "stub: no route %s %s" % (req.method, req.path))
            a = answers.pop(0) if len(answers) > 1 else answers[0]
        if callable(a):
            a = a(req)
        if len(a) == 2:
            a = (a[0], a[1], {})
        return a

    def calls(self, method=None, path=None):
        return [r for r in self.requests
                if (method is None or r.method == method) and (path is None or r.path == path)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()




def wait_until(pred, timeout=5.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()
