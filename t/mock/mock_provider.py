#!/usr/bin/env python3
"""AILink test mock: one process playing OpenAI, Anthropic, Gemini and generic REST upstreams.

Standard library only (asyncio streams).  See t/mock/README.md for the API.

    python3 t/mock/mock_provider.py --port P [--host 127.0.0.1]
        [--tls-port P2 --cert C --key K] [--ready-file F]
"""

import argparse
import asyncio
import base64
import collections
import email.parser
import email.policy
import email.utils
import hashlib
import http
import itertools
import json
import logging
import os
import re
import signal
import ssl
import struct
import sys
import time
import uuid
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger("mock_provider")

MAX_HEADER = 1 << 20          # bytes of request head
MAX_BODY = 512 << 20          # bytes of request body
MAX_RECORDS = 1000
DEFAULT_EVENTS = 3
DEFAULT_CHUNK_DELAY_MS = 5
MISSING = object()


# --------------------------------------------------------------------------- helpers

def now():
    return int(time.time())


def rid(prefix, n=24):
    return prefix + uuid.uuid4().hex[:n]


def jdump(obj, indent=None):
    if indent:
        return json.dumps(obj, ensure_ascii=False, indent=indent).encode("utf-8")
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def est_tokens(nchars):
    """Deterministic prompt-token estimate: characters // 4 + 1."""
    return nchars // 4 + 1


def words(s):
    return re.findall(r"\S+", s or "")


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_str(v):
    return isinstance(v, str)


def jtype(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def reply_text(provider, user_text):
    return "Mock reply from %s to: %s" % (provider, (user_text or "")[:60])


def split_reply(reply, n):
    """Split `reply` into exactly n pieces whose concatenation is the streamed text.

    Pieces are groups of whole words (each word keeps its trailing whitespace).  When n exceeds
    the number of words, filler words " word1 word2 ..." are appended so that there is exactly one
    word per piece.  Returns (pieces, full_streamed_text)."""
    if n <= 0:
        return [], ""
    toks = re.findall(r"\S+\s*", reply)
    if n > len(toks):
        extra = n - len(toks)
        sep = "" if (not reply or reply[-1].isspace()) else " "
        reply = reply + sep + " ".join("word%d" % i for i in range(1, extra + 1))
        toks = re.findall(r"\S+\s*", reply)
    q, r = divmod(len(toks), n)
    pieces, i = [], 0
    for k in range(n):
        size = q + (1 if k < r else 0)
        pieces.append("".join(toks[i:i + size]))
        i += size
    return pieces, reply


def stream_pieces(ctl, text):
    """X-Mock-Stream-Pieces (a JSON array of strings) replaces the streamed text, piece by piece."""
    if ctl.stream_pieces is not None:
        return list(ctl.stream_pieces), "".join(ctl.stream_pieces)
    return split_reply(text, ctl.events) if text is not None else ([], "")


def fragments(s, size=5):
    return [s[i:i + size] for i in range(0, len(s), size)] or [""]


def sample_args(schema, default_name=None):
    """Deterministic arguments for a tool call, derived from its JSON schema."""
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict) or not schema["properties"]:
        if default_name == "get_weather":
            return {"location": "Paris"}
        return {}
    out = {}
    for k, p in list(schema["properties"].items())[:8]:
        t = str((p or {}).get("type", "string")).lower() if isinstance(p, dict) else "string"
        if isinstance(p, dict) and isinstance(p.get("enum"), list) and p["enum"]:
            out[k] = p["enum"][0]
        elif t == "integer":
            out[k] = 1
        elif t == "number":
            out[k] = 1.5
        elif t == "boolean":
            out[k] = True
        elif t == "array":
            out[k] = []
        elif t == "object":
            out[k] = {}
        else:
            out[k] = "Paris" if k in ("location", "city") else "mock"
    return out


def tool_tokens(args_json):
    return len(args_json) // 4 + 1


def fake_vec(s):
    h = hashlib.sha256(s.encode("utf-8", "replace")).digest()
    return [round((h[i] - 128) / 128.0, 6) for i in range(8)]


def to_int(v, default=None):
    try:
        return int(str(v).strip())
    except (TypeError, ValueError):
        return default


# --------------------------------------------------------------------------- errors

class HttpError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class ApiError(Exception):
    """Provider-level error; formatted with the provider's own error shape."""

    def __init__(self, status, message, etype=None, param=None, code=None, gstatus=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.etype = etype
        self.param = param
        self.code = code
        self.gstatus = gstatus


OPENAI_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
                404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
                422: "invalid_request_error", 429: "requests"}
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                   403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                   429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error"}
GEMINI_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
                 501: "NOT_IMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def error_body(provider, status, message, etype=None, param=None, code=None, gstatus=None):
    if provider == "openai":
        if etype is None:
            etype = OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        if code is None:
            code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
        return {"error": {"message": message, "type": etype, "param": param, "code": code}}
    if provider == "anthropic":
        if etype is None:
            etype = ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": etype, "message": message}, "request_id": rid("req_mock")}
    if provider == "gemini":
        if gstatus is None:
            gstatus = GEMINI_STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        return {"error": {"code": status, "message": message, "status": gstatus}}
    return {"error": {"status": status, "message": message}}


def api_error_body(provider, e):
    return error_body(provider, e.status, e.message, e.etype, e.param, e.code, e.gstatus)


# --------------------------------------------------------------------------- HTTP layer

class Request:
    def __init__(self):
        self.method = "GET"
        self.target = "/"
        self.path = "/"        # raw path as sent (no query)
        self.upath = "/"       # percent-decoded path, used for routing
        self.query = ""
        self.args = {}
        self.version = "HTTP/1.1"
        self.h = {}            # lowercase name -> joined value
        self.body = b""
        self.keep_alive = True
        self.sni = None
        self.tls = False
        self.conn = 0          # which client connection carried it
        self._json = MISSING

    def json(self):
        if self._json is MISSING:
            try:
                self._json = json.loads(self.body.decode("utf-8")) if self.body else None
            except (ValueError, UnicodeDecodeError):
                self._json = None
        return self._json

    def json_or_error(self):
        """Returns (ok, value)."""
        try:
            return True, json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            return False, str(e)


async def read_chunked(reader):
    body = bytearray()
    while True:
        line = await reader.readline()
        if not line.endswith(b"\n"):
            raise asyncio.IncompleteReadError(bytes(line), None)
        size_s = line.split(b";", 1)[0].strip()
        try:
            size = int(size_s, 16)
        except ValueError:
            raise HttpError(400, "bad chunk size")
        if size < 0:
            raise HttpError(400, "bad chunk size")
        if size == 0:
            while True:  # trailers
                t = await reader.readline()
                if t in (b"\r\n", b"\n", b""):
                    break
            return bytes(body)
        if len(body) + size > MAX_BODY:
            raise HttpError(413, "request body too large")
        body += await reader.readexactly(size)
        await reader.readline()  # CRLF after chunk data


async def read_request(reader, writer):
    """Returns a Request, or None on clean EOF.  Raises HttpError for malformed requests."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if e.partial.strip():
                raise HttpError(400, "incomplete request head")
            return None
        except asyncio.LimitOverrunError:
            raise HttpError(431, "request header fields too large")
        head = head.lstrip(b"\r\n")
        if head:
            break
    text = head.decode("utf-8", "replace")
    lines = text.split("\r\n")
    reqline = lines[0]
    parts = reqline.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
        raise HttpError(400, "bad request line")
    req = Request()
    req.method, req.target, req.version = parts[0].upper(), parts[1], parts[2]
    hd = collections.OrderedDict()
    last = None
    for ln in lines[1:]:
        if not ln:
            continue
        if ln[0] in " \t" and last:  # obsolete line folding
            hd[last][-1] += " " + ln.strip()
            continue
        if ":" not in ln:
            raise HttpError(400, "bad header line")
        k, v = ln.split(":", 1)
        k = k.strip().lower()
        if not k:
            raise HttpError(400, "bad header line")
        hd.setdefault(k, []).append(v.strip())
        last = k
    req.h = {k: ", ".join(v) for k, v in hd.items()}
    target = req.target
    if not target.startswith("/"):
        sp = urlsplit(target)
        target = (sp.path or "/") + ("?" + sp.query if sp.query else "")
    path, _, query = target.partition("?")
    req.path = path or "/"
    req.query = query
    req.upath = unquote(req.path)
    try:
        req.args = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
    except Exception:
        req.args = {}
    conn = req.h.get("connection", "").lower()
    if req.version == "HTTP/1.0":
        req.keep_alive = "keep-alive" in conn
    else:
        req.keep_alive = "close" not in conn
    # body
    te = req.h.get("transfer-encoding", "").lower()
    if req.h.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
    if "chunked" in te:
        req.body = await read_chunked(reader)
    elif "content-length" in req.h:
        vals = {v.strip() for v in req.h["content-length"].split(",")}
        if len(vals) != 1:
            raise HttpError(400, "conflicting content-length")
        n = to_int(vals.pop())
        if n is None or n < 0:
            raise HttpError(400, "bad content-length")
        if n > MAX_BODY:
            raise HttpError(413, "request body too large")
        req.body = await reader.readexactly(n) if n else b""
    return req


def reason(status):
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return {529: "Overloaded", 499: "Client Closed Request"}.get(status, "Unknown")


class Responder:
    def __init__(self, writer, req):
        self.w = writer
        self.req = req
        self.extra = []       # headers added to every response (x-mock-seq, retry-after, ...)
        self.started = False
        self.aborted = False
        self.close = False
        self.status = None
        self.nbytes = 0
        self.chunked = True

    def _head(self, status, headers):
        self.status = status
        self.started = True
        keep = self.req.keep_alive and not self.close
        out = ["HTTP/1.1 %d %s" % (status, reason(status)),
               "Date: " + email.utils.formatdate(usegmt=True),
               "Server: ailink-mock-provider",
               "Connection: " + ("keep-alive" if keep else "close")]
        for k, v in list(headers) + self.extra:
            v = str(v).replace("\r", " ").replace("\n", " ")
            out.append("%s: %s" % (k, v))
        return ("\r\n".join(out) + "\r\n\r\n").encode("utf-8", "replace")

    async def send(self, status, body=b"", ctype="application/json", headers=()):
        if isinstance(body, str):
            body = body.encode("utf-8")
        hs = []
        if ctype:
            hs.append(("Content-Type", ctype))
        hs += list(headers)
        hs.append(("Content-Length", str(len(body))))
        data = self._head(status, hs)
        self.w.write(data)
        if self.req.method != "HEAD" and body:
            self.w.write(body)
            self.nbytes += len(body)
        await self.w.drain()

    async def send_json(self, status, obj, headers=(), indent=None):
        await self.send(status, jdump(obj, indent), "application/json; charset=utf-8"
                        if indent else "application/json", headers)

    async def start_stream(self, status, ctype, headers=()):
        # HTTP/1.0 clients cannot receive chunked encoding: stream raw and close the connection at the end.
        self.chunked = self.req.version != "HTTP/1.0"
        hs = [("Content-Type", ctype), ("Cache-Control", "no-cache")]
        if self.chunked:
            hs.append(("Transfer-Encoding", "chunked"))
        else:
            self.close = True
        hs += list(headers)
        self.w.write(self._head(status, hs))
        await self.w.drain()

    async def chunk(self, data):
        if self.req.method == "HEAD" or not data:
            return
        if self.chunked:
            self.w.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.w.write(data)
        self.nbytes += len(data)
        await self.w.drain()

    async def end(self):
        if self.req.method != "HEAD" and self.chunked:
            self.w.write(b"0\r\n\r\n")
        await self.w.drain()

    async def abort(self):
        try:
            await self.w.drain()
        except Exception:
            pass
        self.aborted = True
        try:
            self.w.transport.abort()
        except Exception:
            pass


class Ctl:
    """Per-request controls from X-Mock-* headers (+ armed /_mock/next headers)."""

    def __init__(self, h):
        self.h = h
        self.status = to_int(h.get("x-mock-status"))
        self.retry_after = h.get("x-mock-retry-after")
        self.delay_ms = to_int(h.get("x-mock-delay-ms"), 0)
        self.chunk_delay_ms = to_int(h.get("x-mock-chunk-delay-ms"), DEFAULT_CHUNK_DELAY_MS)
        self.events = max(0, to_int(h.get("x-mock-events"), DEFAULT_EVENTS))
        da = to_int(h.get("x-mock-drop-after"))
        self.drop_after = da if da is not None and da >= 0 else None
        self.scenario = (h.get("x-mock-scenario") or "").strip().lower() or None
        self.raw_body = h.get("x-mock-raw-body")
        try:
            sp = json.loads(h.get("x-mock-stream-pieces") or "null")
        except ValueError:
            sp = None
        self.stream_pieces = ([str(x) for x in sp]
                              if isinstance(sp, list) and sp else None)
        self.size = max(0, to_int(h.get("x-mock-size"), 1 << 20))

    def public(self):
        return dict(self.h)


async def run_stream(resp, ctl, status, ctype, events, headers=()):
    """Write each event as its own chunk, drained, with ctl.chunk_delay_ms between events."""
    delay = max(0, ctl.chunk_delay_ms) / 1000.0
    drop = ctl.drop_after
    await resp.start_stream(status, ctype, headers)
    if drop == 0:
        await resp.abort()
        return
    n = 0
    for ev in events:
        if n and delay > 0:
            await asyncio.sleep(delay)
        await resp.chunk(ev)
        n += 1
        if drop is not None and n >= drop:
            await resp.abort()
            return
    if drop is not None:
        await resp.abort()
        return
    await resp.end()


# --------------------------------------------------------------------------- state

class State:
    def __init__(self):
        self.seq = 0
        self.records = collections.deque(maxlen=MAX_RECORDS)
        self.reset()

    def reset(self):
        self.records.clear()
        self.fails = []
        self.nexts = []
        self.anthropic_cache = set()
        self.gemini_sigs = {}
        self.files = collections.OrderedDict()
        self.batches = collections.OrderedDict()
        self.ftjobs = collections.OrderedDict()


STATE = State()


def classify(req):
    p = req.upath
    if re.match(r"^/v1(beta|alpha)?/(models|tunedModels)/[^/]+:[A-Za-z]+$", p) or p.startswith("/v1beta/") \
            or p.startswith("/v1alpha/"):
        return "gemini"
    if p == "/v1/messages" or p.startswith("/v1/messages/"):
        return "anthropic"
    if p == "/v1/models" or p.startswith("/v1/models/"):
        if "anthropic-version" in req.h or ("x-api-key" in req.h and "authorization" not in req.h):
            return "anthropic"
        return "openai"
    for pre in ("/v1/chat/completions", "/v1/embeddings", "/v1/files", "/v1/batches", "/v1/fine_tuning",
                "/v1/realtime"):
        if p == pre or p.startswith(pre + "/"):
            return "openai"
    return "rest"


def make_record(req, provider, ctl):
    STATE.seq += 1
    body = req.body.decode("utf-8", "replace")
    rec = {
        "seq": STATE.seq,
        "time": time.time(),
        "method": req.method,
        "path": req.path,
        "query": req.query,
        "args": req.args,
        "headers": dict(req.h),
        "body": body,
        "json": req.json(),
        "sni": req.sni,
        "conn": req.conn,
        "tls": req.tls,
        "provider": provider,
        "controls": ctl.public(),
    }
    STATE.records.append(rec)
    return rec


# --------------------------------------------------------------------------- control API

async def control(req, resp):
    p = req.upath.rstrip("/") or "/"
    m = req.method
    ok, body = req.json_or_error()
    if not req.body:
        ok, body = True, {}

    if p == "/_mock/health":
        return await resp.send_json(200, {"ok": True})
    if p == "/_mock/requests":
        if m in ("GET", "HEAD"):
            recs = list(STATE.records)
            a = req.args
            if "provider" in a:
                recs = [r for r in recs if r["provider"] == a["provider"]]
            if "path_prefix" in a:
                recs = [r for r in recs if r["path"].startswith(a["path_prefix"])]
            if "since" in a:
                s = to_int(a["since"], 0)
                recs = [r for r in recs if r["seq"] > s]
            return await resp.send_json(200, recs)
        if m == "DELETE":
            STATE.reset()
            return await resp.send_json(200, {"ok": True})
    if p == "/_mock/requests/last" and m in ("GET", "HEAD"):
        if not STATE.records:
            return await resp.send_json(404, {"error": "no requests recorded"})
        return await resp.send_json(200, STATE.records[-1])
    if p == "/_mock/reset" and m in ("POST", "DELETE"):
        STATE.reset()
        return await resp.send_json(200, {"ok": True})
    if p in ("/_mock/fail", "/_mock/next"):
        lst = STATE.fails if p == "/_mock/fail" else STATE.nexts
        if m in ("GET", "HEAD"):
            return await resp.send_json(200, lst)
        if m == "DELETE":
            lst.clear()
            return await resp.send_json(200, {"ok": True})
        if m == "POST":
            if not ok or not isinstance(body, dict):
                return await resp.send_json(400, {"error": "body must be a JSON object"})
            count = body.get("count", 1)
            if not is_int(count):
                return await resp.send_json(400, {"error": "count must be an integer (-1 = unlimited)"})
            prefix = body.get("path_prefix", "/")
            if not is_str(prefix):
                return await resp.send_json(400, {"error": "path_prefix must be a string"})
            method = body.get("method")
            if method is not None and not is_str(method):
                return await resp.send_json(400, {"error": "method must be a string"})
            hdrs = body.get("headers", {})
            if not isinstance(hdrs, dict):
                return await resp.send_json(400, {"error": "headers must be an object"})
            hdrs = {str(k).lower(): str(v) for k, v in hdrs.items()}
            entry = {"path_prefix": prefix, "count": count, "headers": hdrs,
                     "method": method.upper() if method else None}
            if p == "/_mock/fail":
                st = body.get("status")
                if not is_int(st) or not 100 <= st <= 599:
                    return await resp.send_json(400, {"error": "status must be an integer 100..599"})
                entry["status"] = st
                entry["body"] = body.get("body", None)
                entry["has_body"] = "body" in body
            lst.append(entry)
            return await resp.send_json(200, {"ok": True, "armed": lst})
    return await resp.send_json(404, {"error": "unknown control endpoint %s %s" % (m, req.path)})


def take_armed(lst, req):
    for i, e in enumerate(lst):
        if not req.path.startswith(e["path_prefix"]) and not req.upath.startswith(e["path_prefix"]):
            continue
        if e.get("method") and e["method"] != req.method:
            continue
        if e["count"] > 0:
            e["count"] -= 1
            if e["count"] == 0:
                del lst[i]
        return e
    return None


# --------------------------------------------------------------------------- dispatch

async def dispatch(req, resp):
    if req.upath == "/_mock" or req.upath.startswith("/_mock/"):
        return await control(req, resp)

    provider = classify(req)
    h = {k: v for k, v in req.h.items() if k.startswith("x-mock-")}
    nxt = take_armed(STATE.nexts, req)
    if nxt:
        h.update(nxt["headers"])
    ctl = Ctl(h)
    rec = make_record(req, provider, ctl)
    req.rec = rec
    resp.extra.append(("X-Mock-Seq", str(rec["seq"])))
    if ctl.retry_after is not None:
        resp.extra.append(("Retry-After", ctl.retry_after))
    if ctl.delay_ms > 0:
        await asyncio.sleep(ctl.delay_ms / 1000.0)

    fail = take_armed(STATE.fails, req)
    if fail:
        st = fail["status"]
        if fail["has_body"]:
            b = fail["body"]
            if isinstance(b, str):
                return await resp.send(st, b.encode("utf-8"), "application/json", fail["headers"].items())
            return await resp.send_json(st, b, fail["headers"].items())
        return await resp.send_json(st, error_body(provider, st, "mock error %d" % st), fail["headers"].items())

    if ctl.raw_body is not None:
        return await resp.send(200, ctl.raw_body.encode("utf-8"), "application/json")
    if ctl.status is not None and 100 <= ctl.status <= 599:
        return await resp.send_json(ctl.status, error_body(provider, ctl.status, "mock error %d" % ctl.status))
    if ctl.scenario == "malformed":
        return await resp.send(200, b'{"id": "x", "choices": [', "application/json")
    if ctl.scenario == "no_status_line":
        # what a broken upstream or a non-HTTP service sends: no status line
        resp.w.write(b"garbage that is not HTTP\r\n\r\n{}")
        await resp.w.drain()
        resp.started = True
        return await resp.abort()
    if ctl.scenario == "drop":
        full = jdump({"id": "dropped", "pad": "x" * 400})
        resp.w.write(resp._head(200, [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(full)))]))
        resp.w.write(full[:len(full) // 3])
        return await resp.abort()
    if ctl.scenario == "overloaded" and provider != "rest":
        if provider == "anthropic":
            return await resp.send_json(529, error_body("anthropic", 529, "Overloaded"))
        if provider == "gemini":
            return await resp.send_json(503, error_body("gemini", 503,
                                                        "The model is overloaded. Please try again later."))
        return await resp.send_json(503, error_body("openai", 503, "The server is overloaded or not ready yet."))

    handler = {"openai": openai_route, "anthropic": anthropic_route, "gemini": gemini_route}.get(provider)
    if handler is None:
        return await rest_handler(req, resp, ctl)
    try:
        await handler(req, resp, ctl)
    except ApiError as e:
        if resp.started:
            raise
        await resp.send_json(e.status, api_error_body(provider, e), indent=2 if provider == "gemini" else None)


# --------------------------------------------------------------------------- OpenAI realtime (WebSocket)

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_frame(op, data, fin=True, rsv1=False):
    """One unmasked (server) frame."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | op
    n = len(data)
    if n < 126:
        hdr = bytes([b0, n])
    elif n < 65536:
        hdr = bytes([b0, 126]) + struct.pack("!H", n)
    else:
        hdr = bytes([b0, 127]) + struct.pack("!Q", n)
    return hdr + data


def ws_unmask(data, mask):
    if not data:
        return data
    m = int.from_bytes((mask * (len(data) // 4 + 1))[:len(data)], "big")
    return (int.from_bytes(data, "big") ^ m).to_bytes(len(data), "big")


async def ws_read_frame(reader):
    """(fin, opcode, masked, payload) of the next frame."""
    h = await reader.readexactly(2)
    fin, op, masked, n = h[0] & 0x80, h[0] & 0x0f, h[1] & 0x80, h[1] & 0x7f
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    mask = await reader.readexactly(4) if masked else None
    data = await reader.readexactly(n) if n else b""
    if mask:
        data = ws_unmask(data, mask)
    return bool(fin), op, bool(masked), data


class RealtimeSession:
    """A session of the mock Realtime API: events out, what came in recorded."""

    def __init__(self, req, resp, ctl, rec):
        self.req, self.resp, self.ctl, self.rec = req, resp, ctl, rec
        self.w = resp.w
        self.model = req.args.get("model", "")
        self.n = 0
        self.session = {"id": rid("sess_mock"), "object": "realtime.session", "model": self.model,
                        "modalities": ["text", "audio"], "instructions": "", "voice": "alloy"}
        self.last_text = "Hello"
        self.responses = 0

    def ev(self, typ, **kw):
        self.n += 1
        d = {"type": typ, "event_id": "event_mock_%d" % self.n}
        d.update(kw)
        return jdump(d)

    async def write(self, data):
        """Frames as bytes; scenario ws_split trickles them a few bytes at a time."""
        if self.ctl.scenario == "ws_split":
            for i in range(0, len(data), 7):
                self.w.write(data[i:i + 7])
                await self.w.drain()
                await asyncio.sleep(0.001)
            return
        self.w.write(data)
        await self.w.drain()

    async def send_text(self, payload):
        sc = self.ctl.scenario
        if sc == "ws_fragmented" and len(payload) > 8:
            # the message in pieces, a ping between two of them
            k = max(1, len(payload) // 4)
            parts = [payload[i:i + k] for i in range(0, len(payload), k)]
            out = b""
            for i, part in enumerate(parts):
                out += ws_frame(0x1 if i == 0 else 0x0, part, fin=(i == len(parts) - 1))
                if i == 0:
                    out += ws_frame(0x9, b"mock-ping")
            return await self.write(out)
        if sc == "ws_compressed":
            return await self.write(ws_frame(0x1, payload, rsv1=True))
        await self.write(ws_frame(0x1, payload))

    async def respond(self):
        self.responses += 1
        ctl = self.ctl
        resp_id = rid("resp_mock")
        item_id = rid("item_mock")
        reply = reply_text("openai realtime", self.last_text)
        pieces, streamed = split_reply(reply, ctl.events)
        reply = streamed or reply
        base = {"object": "realtime.response", "id": resp_id}
        await self.send_text(self.ev("response.created", response=dict(base, status="in_progress",
                                                                        output=[], usage=None)))
        await self.send_text(self.ev("response.output_item.added", response_id=resp_id, output_index=0,
                                     item={"id": item_id, "object": "realtime.item", "type": "message",
                                           "role": "assistant", "content": []}))
        if ctl.scenario == "ws_large_delta":
            # an audio delta as large as X-Mock-Size (base64): read past, never kept
            audio = base64.b64encode(b"\0" * max(1, ctl.size * 3 // 4)).decode()
            await self.send_text(self.ev("response.audio.delta", response_id=resp_id, item_id=item_id,
                                         output_index=0, content_index=0, delta=audio))
        for piece in pieces:
            await self.send_text(self.ev("response.text.delta", response_id=resp_id, item_id=item_id,
                                         output_index=0, content_index=0, delta=piece))
        await self.send_text(self.ev("response.text.done", response_id=resp_id, item_id=item_id,
                                     output_index=0, content_index=0, text=reply))
        in_toks = est_tokens(len(self.last_text))
        out_toks = len(words(reply))
        usage = {"total_tokens": in_toks + out_toks, "input_tokens": in_toks, "output_tokens": out_toks,
                 "input_token_details": {"cached_tokens": 0, "text_tokens": in_toks, "audio_tokens": 0},
                 "output_token_details": {"text_tokens": out_toks, "audio_tokens": 0}}
        done = dict(base, status="completed", status_details=None,
                    output=[{"id": item_id, "object": "realtime.item", "type": "message",
                             "status": "completed", "role": "assistant",
                             "content": [{"type": "text", "text": reply}]}],
                    usage=usage)
        if ctl.scenario == "ws_large_done":
            done["metadata"] = {"pad": "x" * ctl.size}
        await self.send_text(self.ev("response.done", response=done))

    async def handle(self, typ, ev):
        if typ == "session.update":
            s = ev.get("session")
            if isinstance(s, dict):
                self.session.update(s)
            await self.send_text(self.ev("session.updated", session=self.session))
        elif typ == "conversation.item.create":
            item = ev.get("item") or {}
            texts = [c.get("text", "") for c in (item.get("content") or [])
                     if isinstance(c, dict) and c.get("type") in ("input_text", "text")]
            if texts:
                self.last_text = " ".join(texts)
            await self.send_text(self.ev("conversation.item.created", previous_item_id=None,
                                         item=dict(item, id=rid("item_mock"), object="realtime.item")))
        elif typ == "response.create":
            await self.respond()
            if self.ctl.scenario == "ws_close_after_done":
                await self.write(ws_frame(0x8, struct.pack("!H", 1000) + b"done"))
                return False
        elif typ in ("input_audio_buffer.append", "input_audio_buffer.commit", "input_audio_buffer.clear",
                     "response.cancel", "conversation.item.truncate", "conversation.item.delete"):
            pass
        else:
            await self.send_text(self.ev("error", error={
                "type": "invalid_request_error", "code": "invalid_value", "param": "type",
                "message": "Invalid value: '%s'. Supported values are: 'session.update', ..." % typ,
                "event_id": ev.get("event_id")}))
        return True

    async def run(self, reader):
        await self.send_text(self.ev("session.created", session=self.session))
        msg, msg_op = b"", None
        while True:
            try:
                fin, op, masked, data = await ws_read_frame(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                self.rec["ws"]["closed_by"] = "eof"
                return
            self.rec["ws"]["bytes_in"] += len(data)
            if not masked:
                self.rec["ws"]["unmasked"] += 1
            if op == 0x8:
                self.rec["ws"]["closed_by"] = "client"
                self.rec["ws"]["close"] = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                await self.write(ws_frame(0x8, data[:2]))
                return
            if op == 0x9:
                await self.write(ws_frame(0xA, data))
                continue
            if op == 0xA:
                continue
            if op in (0x1, 0x2):
                msg, msg_op = data, op
            elif op == 0x0:
                msg += data
            if not fin:
                continue
            if msg_op != 0x1:
                self.rec["ws"]["binary"] += 1
                continue
            try:
                ev = json.loads(msg.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                ev = None
            typ = ev.get("type") if isinstance(ev, dict) else None
            self.rec["ws"]["received"].append(typ)
            if typ is None:
                await self.send_text(self.ev("error", error={"type": "invalid_request_error",
                                                             "code": "invalid_json",
                                                             "message": "could not parse the event"}))
                continue
            if not await self.handle(typ, ev):
                self.rec["ws"]["closed_by"] = "server"
                return


async def openai_realtime(req, resp, ctl):
    """GET /v1/realtime?model=... with a WebSocket upgrade (openai_auth already passed)."""
    if "websocket" not in req.h.get("upgrade", "").lower() \
            or "upgrade" not in req.h.get("connection", "").lower():
        raise ApiError(400, "This endpoint requires a WebSocket upgrade.")
    key = req.h.get("sec-websocket-key", "")
    if req.h.get("sec-websocket-version") != "13" or not key:
        raise ApiError(400, "Sec-WebSocket-Key and Sec-WebSocket-Version: 13 are required.")
    if not req.args.get("model"):
        raise ApiError(400, "Missing required parameter: 'model'.", param="model")
    rec = req.rec
    rec["ws"] = {"received": [], "bytes_in": 0, "unmasked": 0, "binary": 0, "closed_by": None,
                 "close": None}
    accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    hs = [("Upgrade", "websocket"), ("Sec-WebSocket-Accept", accept)]
    offered = [p.strip() for p in req.h.get("sec-websocket-protocol", "").split(",") if p.strip()]
    if "realtime" in offered:
        hs.append(("Sec-WebSocket-Protocol", "realtime"))
    out = ["HTTP/1.1 101 Switching Protocols", "Connection: Upgrade"]
    out += ["%s: %s" % kv for kv in hs + resp.extra]
    resp.status = 101
    resp.started = True
    resp.close = True
    resp.w.write(("\r\n".join(out) + "\r\n\r\n").encode())
    await resp.w.drain()
    session = RealtimeSession(req, resp, ctl, rec)
    await session.run(resp.reader)
    try:
        await resp.w.drain()
    finally:
        resp.w.close()


# --------------------------------------------------------------------------- REST echo

async def rest_handler(req, resp, ctl):
    extra = [("X-Upstream-Echo", "1"), ("Set-Cookie", "a=b")]
    if ctl.scenario == "sse":
        def gen():
            for i in range(ctl.events):
                yield b"data: " + jdump({"n": i}) + b"\n\n"
        return await run_stream(resp, ctl, 200, "text/event-stream", gen(), extra)
    if ctl.scenario == "large":
        pat = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
        n = ctl.size
        body = (pat * (n // len(pat) + 1))[:n]
        return await resp.send(200, body, "application/octet-stream", extra)
    echo = {"echo": {"method": req.method, "path": req.path, "query": req.query, "headers": dict(req.h),
                     "body": req.body.decode("utf-8", "replace"), "json": req.json()}}
    await resp.send_json(200, echo, extra)


# --------------------------------------------------------------------------- OpenAI

OPENAI_CHAT_FIELDS = {
    "model", "messages", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "max_tokens",
    "max_completion_tokens", "n", "presence_penalty", "response_format", "seed", "service_tier", "stop",
    "stream", "stream_options", "temperature", "top_p", "tools", "tool_choice", "parallel_tool_calls", "user",
    "functions", "function_call", "modalities", "audio", "prediction", "reasoning_effort", "store", "metadata",
    "web_search_options", "verbosity", "prompt_cache_key", "safety_identifier", "prompt_cache_retention",
}
OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
OPENAI_PART_TYPES = {
    "system": ("text",), "developer": ("text",), "user": ("text", "image_url", "input_audio", "file"),
    "assistant": ("text", "refusal"), "tool": ("text",), "function": ("text",),
}
OPENAI_MODELS = ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3-mini", "text-embedding-3-small"]


def oa_missing(param):
    return ApiError(400, "Missing required parameter: '%s'." % param, param=param, code="missing_required_parameter")


def oa_type(param, expected, v):
    return ApiError(400, "Invalid type for '%s': expected %s, but got %s instead." % (param, expected, jtype(v)),
                    param=param, code="invalid_type")


def oa_range(param, v, lo, hi):
    if not is_num(v):
        raise oa_type(param, "a decimal", v)
    if v < lo:
        raise ApiError(400, "Invalid '%s': decimal below minimum value. Expected a value >= %s, but got %s instead."
                       % (param, lo, v), param=param, code="decimal_below_min_value")
    if v > hi:
        raise ApiError(400, "Invalid '%s': decimal above maximum value. Expected a value <= %s, but got %s instead."
                       % (param, hi, v), param=param, code="decimal_above_max_value")


def openai_auth(req):
    a = req.h.get("authorization", "")
    m = re.match(r"(?i)^bearer\s+(\S.*)$", a.strip())
    if not m:
        raise ApiError(401, "You didn't provide an API key. You need to provide your API key in an Authorization "
                            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password "
                            "field (with blank username) if you're accessing the API from your browser and are "
                            "prompted for a username and password. You can obtain an API key from "
                            "https://platform.openai.com/account/api-keys.", code="invalid_api_key")


def openai_body(req):
    ok, b = req.json_or_error()
    if not ok:
        raise ApiError(400, "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                            "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
                            "sent was not valid JSON. If you have trouble figuring out how to fix this, please "
                            "contact us through our help center at help.openai.com.)")
    if not isinstance(b, dict):
        raise ApiError(400, "Invalid type for request body: expected an object, but got %s instead." % jtype(b),
                       code="invalid_type")
    return b


def oa_content_text(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, dict) and p.get("type") == "text" and is_str(p.get("text")))
    return ""


def validate_openai_chat(b):
    for k in b:
        if k not in OPENAI_CHAT_FIELDS:
            raise ApiError(400, "Unrecognized request argument supplied: %s" % k)
    if "model" not in b:
        raise ApiError(400, "you must provide a model parameter")
    if not is_str(b["model"]) or not b["model"]:
        raise oa_type("model", "a string", b["model"])
    msgs = b.get("messages", MISSING)
    if msgs is MISSING:
        raise oa_missing("messages")
    if not isinstance(msgs, list):
        raise oa_type("messages", "an array", msgs)
    if not msgs:
        raise ApiError(400, "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an "
                            "empty array instead.", param="messages", code="empty_array")
    pending = None   # tool_call ids awaiting tool responses
    for i, m in enumerate(msgs):
        pm = "messages[%d]" % i
        if not isinstance(m, dict):
            raise oa_type(pm, "an object", m)
        role = m.get("role", MISSING)
        if role is MISSING:
            raise oa_missing(pm + ".role")
        if role not in OPENAI_ROLES:
            raise ApiError(400, "Invalid value: '%s'. Supported values are: 'system', 'assistant', 'user', "
                                "'function', 'tool', and 'developer'." % role, param=pm + ".role",
                           code="invalid_value")
        if role != "tool" and pending:
            raise ApiError(400, "An assistant message with 'tool_calls' must be followed by tool messages "
                                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                                "response messages: %s" % ", ".join(sorted(pending)), param="messages",
                           code=None)
        content = m.get("content", MISSING)
        if role == "assistant":
            tcs = m.get("tool_calls")
            if (content is MISSING or content is None) and not tcs and not m.get("function_call"):
                raise oa_missing(pm + ".content")
            if tcs is not None:
                if not isinstance(tcs, list):
                    raise oa_type(pm + ".tool_calls", "an array", tcs)
                ids = set()
                for j, tc in enumerate(tcs):
                    pt = "%s.tool_calls[%d]" % (pm, j)
                    if not isinstance(tc, dict):
                        raise oa_type(pt, "an object", tc)
                    if not is_str(tc.get("id")):
                        raise oa_missing(pt + ".id")
                    if tc.get("type", "function") not in ("function", "custom"):
                        raise ApiError(400, "Invalid value: '%s'. Supported values are: 'function' and 'custom'."
                                       % tc.get("type"), param=pt + ".type", code="invalid_value")
                    fn = tc.get("function")
                    if tc.get("type", "function") == "function":
                        if not isinstance(fn, dict):
                            raise oa_missing(pt + ".function")
                        if not is_str(fn.get("name")):
                            raise oa_missing(pt + ".function.name")
                        if not is_str(fn.get("arguments")):
                            if "arguments" not in fn:
                                raise oa_missing(pt + ".function.arguments")
                            raise oa_type(pt + ".function.arguments", "a string", fn.get("arguments"))
                    ids.add(tc["id"])
                pending = ids or None
        elif role == "tool":
            tid = m.get("tool_call_id", MISSING)
            if tid is MISSING:
                raise oa_missing(pm + ".tool_call_id")
            if not is_str(tid):
                raise oa_type(pm + ".tool_call_id", "a string", tid)
            if content is MISSING:
                raise oa_missing(pm + ".content")
            if pending is None or tid not in pending:
                raise ApiError(400, "Invalid parameter: messages with role 'tool' must be a response to a "
                                    "preceeding message with 'tool_calls'.", param="%s.role" % pm)
            pending.discard(tid)
            if not pending:
                pending = None
        elif role == "function":
            if not is_str(m.get("name")):
                raise oa_missing(pm + ".name")
            if content is MISSING:
                raise oa_missing(pm + ".content")
        else:
            if content is MISSING or content is None:
                raise oa_missing(pm + ".content")
        if content is not MISSING and content is not None:
            if isinstance(content, list):
                allowed = OPENAI_PART_TYPES[role]
                for j, part in enumerate(content):
                    pp = "%s.content[%d]" % (pm, j)
                    if not isinstance(part, dict):
                        raise oa_type(pp, "an object", part)
                    t = part.get("type", MISSING)
                    if t is MISSING:
                        raise oa_missing(pp + ".type")
                    if t not in allowed:
                        raise ApiError(400, "Invalid value: '%s'. Supported values are: %s." % (
                            t, ", ".join("'%s'" % a for a in allowed)), param=pp + ".type", code="invalid_value")
                    if t == "text" and not is_str(part.get("text")):
                        raise oa_missing(pp + ".text")
                    if t == "image_url":
                        iu = part.get("image_url")
                        if not isinstance(iu, dict) or not is_str(iu.get("url")):
                            raise oa_missing(pp + ".image_url.url")
            elif not is_str(content):
                raise oa_type(pm + ".content", "one of a string or array of objects", content)
    for k, lo, hi in (("temperature", 0, 2), ("top_p", 0, 1), ("presence_penalty", -2, 2),
                      ("frequency_penalty", -2, 2)):
        if b.get(k) is not None:
            oa_range(k, b[k], lo, hi)
    for k in ("max_tokens", "max_completion_tokens", "n"):
        v = b.get(k)
        if v is not None:
            if not is_int(v):
                raise oa_type(k, "an integer", v)
            if v < 1:
                raise ApiError(400, "Invalid '%s': integer below minimum value. Expected a value >= 1, but got %d "
                                    "instead." % (k, v), param=k, code="integer_below_min_value")
    if "stream" in b and b["stream"] is not None and not isinstance(b["stream"], bool):
        raise oa_type("stream", "a boolean", b["stream"])
    so = b.get("stream_options")
    if so is not None:
        if b.get("stream") is not True:
            raise ApiError(400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                           param="stream_options")
        if not isinstance(so, dict):
            raise oa_type("stream_options", "an object", so)
        if "include_usage" in so and not isinstance(so["include_usage"], bool):
            raise oa_type("stream_options.include_usage", "a boolean", so["include_usage"])
    stop = b.get("stop")
    if stop is not None:
        if isinstance(stop, list):
            if len(stop) > 4 or not all(is_str(s) for s in stop):
                raise ApiError(400, "Invalid 'stop': expected a string or an array of at most 4 strings.",
                               param="stop")
        elif not is_str(stop):
            raise oa_type("stop", "a string or array", stop)
    tools = b.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise oa_type("tools", "an array", tools)
        for j, t in enumerate(tools):
            pt = "tools[%d]" % j
            if not isinstance(t, dict):
                raise oa_type(pt, "an object", t)
            if t.get("type") not in ("function", "custom"):
                if "type" not in t:
                    raise oa_missing(pt + ".type")
                raise ApiError(400, "Invalid value: '%s'. Supported values are: 'function' and 'custom'."
                               % t.get("type"), param=pt + ".type", code="invalid_value")
            if t.get("type") == "function":
                fn = t.get("function")
                if not isinstance(fn, dict):
                    raise oa_missing(pt + ".function")
                name = fn.get("name")
                if not is_str(name):
                    raise oa_missing(pt + ".function.name")
                if not re.match(r"^[a-zA-Z0-9_-]{1,64}$", name):
                    raise ApiError(400, "Invalid '%s.function.name': string does not match pattern. Expected a "
                                        "string that matches the pattern '^[a-zA-Z0-9_-]+$'." % pt,
                                   param=pt + ".function.name", code="invalid_value")
                if "parameters" in fn and not isinstance(fn["parameters"], dict):
                    raise oa_type(pt + ".function.parameters", "an object", fn["parameters"])
    tc = b.get("tool_choice")
    if tc is not None:
        if not tools:
            raise ApiError(400, "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
                                "specified.", param="tool_choice")
        if is_str(tc):
            if tc not in ("none", "auto", "required"):
                raise ApiError(400, "Invalid value: '%s'. Supported values are: 'none', 'auto', and 'required'."
                               % tc, param="tool_choice", code="invalid_value")
        elif isinstance(tc, dict):
            if tc.get("type") == "function" and not (isinstance(tc.get("function"), dict)
                                                     and is_str(tc["function"].get("name"))):
                raise oa_missing("tool_choice.function.name")
        else:
            raise oa_type("tool_choice", "a string or object", tc)
    rf = b.get("response_format")
    if rf is not None:
        if not isinstance(rf, dict):
            raise oa_type("response_format", "an object", rf)
        if rf.get("type") not in ("text", "json_object", "json_schema"):
            raise ApiError(400, "Invalid value: '%s'. Supported values are: 'text', 'json_object', and "
                                "'json_schema'." % rf.get("type"), param="response_format.type",
                           code="invalid_value")
        if rf.get("type") == "json_schema" and not (isinstance(rf.get("json_schema"), dict)
                                                    and is_str(rf["json_schema"].get("name"))):
            raise oa_missing("response_format.json_schema.name")


def openai_tools(b):
    out = []
    for t in b.get("tools") or []:
        if isinstance(t, dict) and isinstance(t.get("function"), dict) and is_str(t["function"].get("name")):
            out.append((t["function"]["name"], t["function"].get("parameters")))
    for f in b.get("functions") or []:
        if isinstance(f, dict) and is_str(f.get("name")):
            out.append((f["name"], f.get("parameters")))
    return out


def make_calls(tools, scenario, size=None):
    """[(name, args_json_string)] for tool scenarios; large_tool_call adds a
    "notes" argument of X-Mock-Size bytes (sent as one stream event)."""
    if scenario == "large_tool_call":
        name = tools[0][0] if tools else "get_weather"
        pat = "0123456789abcdefghijklmnopqrstuvwxyz"
        return [(name, json.dumps({"location": "Paris", "notes": (pat * (size // len(pat) + 1))[:size]}))]
    if scenario not in ("tool_call", "parallel_tools", "text_and_tool"):
        return []
    if not tools:
        tools = [("get_weather", None)]
    n = 2 if scenario == "parallel_tools" else 1
    out = []
    for i in range(n):
        name, schema = tools[i] if i < len(tools) else tools[0]
        args = sample_args(schema, name)
        if i == 1 and "location" in args:
            args["location"] = "London"
        out.append((name, json.dumps(args)))
    return out


async def openai_route(req, resp, ctl):
    p = req.upath.rstrip("/")
    m = req.method
    openai_auth(req)
    if p == "/v1/chat/completions" and m == "POST":
        return await openai_chat(req, resp, ctl)
    if p == "/v1/embeddings" and m == "POST":
        return await openai_embeddings(req, resp)
    if p == "/v1/realtime" and m == "GET":
        return await openai_realtime(req, resp, ctl)
    if p == "/v1/models" and m in ("GET", "HEAD"):
        return await resp.send_json(200, {"object": "list", "data": [
            {"id": x, "object": "model", "created": 1700000000, "owned_by": "openai"} for x in OPENAI_MODELS]})
    mm = re.match(r"^/v1/models/(.+)$", p)
    if mm and m in ("GET", "HEAD"):
        return await resp.send_json(200, {"id": mm.group(1), "object": "model", "created": 1700000000,
                                          "owned_by": "openai"})
    if p == "/v1/files":
        if m == "POST":
            return await openai_file_upload(req, resp)
        if m in ("GET", "HEAD"):
            return await resp.send_json(200, {"object": "list", "data": list(STATE.files.values()),
                                              "has_more": False})
    mm = re.match(r"^/v1/files/([^/]+)(/content)?$", p)
    if mm:
        f = STATE.files.get(mm.group(1))
        if f is None:
            raise ApiError(404, "No such File object: %s" % mm.group(1), param="id")
        if m == "DELETE":
            STATE.files.pop(mm.group(1), None)
            return await resp.send_json(200, {"id": mm.group(1), "object": "file", "deleted": True})
        if mm.group(2):
            return await resp.send(200, f.get("_content", b""), "application/octet-stream")
        return await resp.send_json(200, {k: v for k, v in f.items() if not k.startswith("_")})
    if p == "/v1/batches":
        if m == "POST":
            return await openai_batch_create(req, resp)
        if m in ("GET", "HEAD"):
            return await resp.send_json(200, {"object": "list", "data": list(STATE.batches.values()),
                                              "has_more": False})
    mm = re.match(r"^/v1/batches/([^/]+)(/cancel)?$", p)
    if mm:
        bt = STATE.batches.get(mm.group(1))
        if bt is None:
            raise ApiError(404, "No batch found with id '%s'." % mm.group(1))
        if mm.group(2) and m == "POST":
            bt["status"] = "cancelling"
            bt["cancelling_at"] = now()
        return await resp.send_json(200, bt)
    if p == "/v1/fine_tuning/jobs":
        if m == "POST":
            return await openai_ft_create(req, resp)
        if m in ("GET", "HEAD"):
            return await resp.send_json(200, {"object": "list", "data": list(STATE.ftjobs.values()),
                                              "has_more": False})
    mm = re.match(r"^/v1/fine_tuning/jobs/([^/]+)(/cancel)?$", p)
    if mm:
        j = STATE.ftjobs.get(mm.group(1))
        if j is None:
            raise ApiError(404, "Could not find fine-tune job: %s" % mm.group(1))
        if mm.group(2) and m == "POST":
            j["status"] = "cancelled"
        return await resp.send_json(200, j)
    raise ApiError(404, "Invalid URL (%s %s)" % (m, req.path))


async def openai_chat(req, resp, ctl):
    b = openai_body(req)
    validate_openai_chat(b)
    model = b["model"]
    msgs = b["messages"]
    ptoks = est_tokens(sum(len(oa_content_text(m.get("content"))) for m in msgs))
    user_text = ""
    for m in reversed(msgs):
        if m.get("role") == "user":
            user_text = oa_content_text(m.get("content"))
            break
    scen = ctl.scenario
    reply = reply_text("openai", user_text)
    calls = make_calls(openai_tools(b), scen)
    text = None if (calls and scen != "text_and_tool") else reply
    finish = "tool_calls" if calls else ("length" if scen == "max_tokens" else "stop")
    cid = rid("chatcmpl-mock")
    created = now()
    stream = b.get("stream") is True
    headers = [("x-request-id", rid("req_mock")), ("openai-processing-ms", "1")]

    def usage(ctoks):
        return {"prompt_tokens": ptoks, "completion_tokens": ctoks, "total_tokens": ptoks + ctoks,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}

    call_objs = [{"id": "call_mock_%d" % (i + 1), "type": "function", "function": {"name": n, "arguments": a}}
                 for i, (n, a) in enumerate(calls)]
    ttoks = sum(tool_tokens(a) for _, a in calls)

    if not stream:
        ctoks = len(words(text)) + ttoks
        msg = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
        if call_objs:
            msg["tool_calls"] = call_objs
        n = b.get("n") or 1
        out = {"id": cid, "object": "chat.completion", "created": created, "model": model,
               "choices": [{"index": i, "message": msg, "logprobs": None, "finish_reason": finish}
                           for i in range(n)],
               "usage": usage(ctoks), "service_tier": "default", "system_fingerprint": "fp_mock"}
        return await resp.send_json(200, out, headers)

    include_usage = isinstance(b.get("stream_options"), dict) and b["stream_options"].get("include_usage") is True
    pieces, streamed = stream_pieces(ctl, text)
    ctoks = len(words(streamed)) + ttoks

    def chunk(delta, fin=None):
        d = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
             "service_tier": "default", "system_fingerprint": "fp_mock",
             "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": fin}]}
        if include_usage:
            d["usage"] = None
        return b"data: " + jdump(d) + b"\n\n"

    def gen():
        if text is not None:
            yield chunk({"role": "assistant", "content": "", "refusal": None})
            for i, p in enumerate(pieces):
                if scen == "error_mid_stream" and i == 2:
                    yield b"data: " + jdump(error_body("openai", 500, "The server had an error while processing "
                                                                      "your request. Sorry about that!")) + b"\n\n"
                    return
                yield chunk({"content": p})
        for idx, (name, args) in enumerate(calls):
            first = {"tool_calls": [{"index": idx, "id": "call_mock_%d" % (idx + 1), "type": "function",
                                     "function": {"name": name, "arguments": ""}}]}
            if idx == 0 and text is None:
                first = dict({"role": "assistant", "content": None, "refusal": None}, **first)
            yield chunk(first)
            for frag in fragments(args, 6):
                yield chunk({"tool_calls": [{"index": idx, "function": {"arguments": frag}}]})
        yield chunk({}, finish)
        if include_usage:
            d = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "service_tier": "default", "system_fingerprint": "fp_mock", "choices": [], "usage": usage(ctoks)}
            yield b"data: " + jdump(d) + b"\n\n"
        yield b"data: [DONE]\n\n"

    await run_stream(resp, ctl, 200, "text/event-stream; charset=utf-8", gen(), headers)


async def openai_embeddings(req, resp):
    b = openai_body(req)
    for k in b:
        if k not in ("input", "model", "encoding_format", "dimensions", "user"):
            raise ApiError(400, "Unrecognized request argument supplied: %s" % k)
    if "input" not in b:
        raise oa_missing("input")
    if "model" not in b:
        raise ApiError(400, "you must provide a model parameter")
    if not is_str(b["model"]):
        raise oa_type("model", "a string", b["model"])
    inp = b["input"]
    if is_str(inp):
        inputs = [inp]
    elif isinstance(inp, list) and inp and all(is_str(x) for x in inp):
        inputs = inp
    elif isinstance(inp, list) and inp and all(is_int(x) for x in inp):
        inputs = [inp]
    elif isinstance(inp, list) and inp and all(isinstance(x, list) and x and all(is_int(y) for y in x)
                                               for x in inp):
        inputs = inp
    else:
        raise ApiError(400, "'$.input' is invalid. Please check the API reference: "
                            "https://platform.openai.com/docs/api-reference.", param=None)
    if any(x == "" for x in inputs):
        raise ApiError(400, "'$.input' is invalid. Please check the API reference: "
                            "https://platform.openai.com/docs/api-reference.")
    fmt = b.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise ApiError(400, "Invalid value: '%s'. Supported values are: 'float' and 'base64'." % fmt,
                       param="encoding_format", code="invalid_value")
    data, ptoks = [], 0
    for i, x in enumerate(inputs):
        if is_str(x):
            vec = fake_vec(x)
            ptoks += est_tokens(len(x))
        else:
            vec = fake_vec(json.dumps(x))
            ptoks += len(x)
        emb = base64.b64encode(struct.pack("<8f", *vec)).decode() if fmt == "base64" else vec
        data.append({"object": "embedding", "index": i, "embedding": emb})
    await resp.send_json(200, {"object": "list", "data": data, "model": b["model"],
                               "usage": {"prompt_tokens": ptoks, "total_tokens": ptoks}})


def parse_multipart(ctype, body):
    try:
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode("latin-1", "replace") + b"\r\n\r\n" + body)
        if not msg.is_multipart():
            return None
        fields = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not name:
                continue
            fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
        return fields
    except Exception:
        return None


async def openai_file_upload(req, resp):
    ctype = req.h.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise ApiError(400, "Invalid Content-Type header (%s), expected multipart/form-data." % (ctype or "none"))
    fields = parse_multipart(ctype, req.body)
    if fields is None:
        raise ApiError(400, "Could not parse multipart form")
    if "purpose" not in fields:
        raise oa_missing("purpose")
    if "file" not in fields:
        raise oa_missing("file")
    fname, content = fields["file"]
    purpose = fields["purpose"][1].decode("utf-8", "replace")
    fid = rid("file-mock")
    f = {"id": fid, "object": "file", "bytes": len(content), "created_at": now(), "filename": fname or "upload",
         "purpose": purpose, "status": "processed", "status_details": None, "_content": content}
    STATE.files[fid] = f
    await resp.send_json(200, {k: v for k, v in f.items() if not k.startswith("_")})


async def openai_batch_create(req, resp):
    b = openai_body(req)
    for k in ("input_file_id", "endpoint", "completion_window"):
        if k not in b:
            raise oa_missing(k)
    if b["completion_window"] != "24h":
        raise ApiError(400, "Invalid value: '%s'. Supported values are: '24h'." % b["completion_window"],
                       param="completion_window", code="invalid_value")
    bid = rid("batch_mock")
    bt = {"id": bid, "object": "batch", "endpoint": b["endpoint"], "errors": None,
          "input_file_id": b["input_file_id"], "completion_window": b["completion_window"], "status": "validating",
          "output_file_id": None, "error_file_id": None, "created_at": now(), "in_progress_at": None,
          "expires_at": now() + 86400, "finalizing_at": None, "completed_at": None, "failed_at": None,
          "expired_at": None, "cancelling_at": None, "cancelled_at": None,
          "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": b.get("metadata")}
    STATE.batches[bid] = bt
    await resp.send_json(200, bt)


async def openai_ft_create(req, resp):
    b = openai_body(req)
    for k in ("model", "training_file"):
        if k not in b:
            raise oa_missing(k)
    jid = rid("ftjob-mock")
    j = {"object": "fine_tuning.job", "id": jid, "model": b["model"], "created_at": now(), "finished_at": None,
         "fine_tuned_model": None, "organization_id": "org-mock", "result_files": [], "status": "queued",
         "validation_file": b.get("validation_file"), "training_file": b["training_file"],
         "hyperparameters": b.get("hyperparameters") or {"n_epochs": "auto", "batch_size": "auto",
                                                         "learning_rate_multiplier": "auto"},
         "trained_tokens": None, "error": {}, "user_provided_suffix": b.get("suffix"), "seed": b.get("seed", 42),
         "estimated_finish": None, "integrations": b.get("integrations") or [], "metadata": b.get("metadata"),
         "method": b.get("method") or {"type": "supervised"}}
    STATE.ftjobs[jid] = j
    await resp.send_json(200, j)


# --------------------------------------------------------------------------- Anthropic

ANTHROPIC_FIELDS = {
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature", "top_p",
    "top_k", "tools", "tool_choice", "thinking", "service_tier", "container", "mcp_servers", "context_management",
    "output_config", "output_format",
}
ANTHROPIC_BLOCKS_USER = ("text", "image", "document", "tool_result", "search_result")
ANTHROPIC_BLOCKS_ASSISTANT = ("text", "tool_use", "thinking", "redacted_thinking", "server_tool_use",
                              "web_search_tool_result")
ANTHROPIC_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
ANTHROPIC_MODELS = ["claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805", "claude-3-5-haiku-20241022"]


def an_err(msg):
    return ApiError(400, msg)


def an_check_cc(block, where):
    cc = block.get("cache_control")
    if cc is None:
        return
    if not isinstance(cc, dict) or cc.get("type") != "ephemeral":
        raise an_err("%s.cache_control.ephemeral.type: Input should be 'ephemeral'" % where)
    if "ttl" in cc and cc["ttl"] not in ("5m", "1h"):
        raise an_err("%s.cache_control.ephemeral.ttl: Input should be '5m' or '1h'" % where)


def an_validate_block(blk, where, role, prev_tool_use_ids):
    if not isinstance(blk, dict):
        raise an_err("%s: Input should be a valid dictionary or object to extract fields from" % where)
    t = blk.get("type", MISSING)
    if t is MISSING:
        raise an_err("%s.type: Field required" % where)
    allowed = ANTHROPIC_BLOCKS_USER if role == "user" else ANTHROPIC_BLOCKS_ASSISTANT
    if t not in ANTHROPIC_BLOCKS_USER + ANTHROPIC_BLOCKS_ASSISTANT:
        raise an_err("%s: Input tag '%s' found using 'type' does not match any of the expected tags: %s"
                     % (where, t, ", ".join("'%s'" % a for a in ANTHROPIC_BLOCKS_USER + ANTHROPIC_BLOCKS_ASSISTANT)))
    if t not in allowed:
        raise an_err("%s: `%s` blocks are not permitted in `%s` messages" % (where, t, role))
    an_check_cc(blk, where + "." + t)
    if t == "text":
        if not is_str(blk.get("text")):
            raise an_err("%s.text.text: Field required" % where)
        if not blk["text"]:
            raise an_err("messages: text content blocks must be non-empty")
    elif t == "image":
        src = blk.get("source")
        if not isinstance(src, dict):
            raise an_err("%s.image.source: Field required" % where)
        st = src.get("type")
        if st == "base64":
            if src.get("media_type") not in ANTHROPIC_IMAGE_TYPES:
                raise an_err("%s.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', "
                             "'image/gif' or 'image/webp'" % where)
            if not is_str(src.get("data")):
                raise an_err("%s.image.source.base64.data: Field required" % where)
            try:
                base64.b64decode(src["data"], validate=True)
            except Exception:
                raise an_err("%s.image.source.base64.data: Invalid base64 data" % where)
        elif st == "url":
            if not is_str(src.get("url")):
                raise an_err("%s.image.source.url.url: Field required" % where)
        elif st == "file":
            if not is_str(src.get("file_id")):
                raise an_err("%s.image.source.file.file_id: Field required" % where)
        else:
            raise an_err("%s.image.source: Input tag '%s' found using 'type' does not match any of the expected "
                         "tags: 'base64', 'url', 'file'" % (where, st))
    elif t == "document":
        src = blk.get("source")
        if not isinstance(src, dict):
            raise an_err("%s.document.source: Field required" % where)
        st = src.get("type")
        if st == "base64":
            if src.get("media_type") != "application/pdf" or not is_str(src.get("data")):
                raise an_err("%s.document.source.base64: media_type 'application/pdf' and data required" % where)
        elif st == "text":
            if src.get("media_type") != "text/plain" or not is_str(src.get("data")):
                raise an_err("%s.document.source.text: media_type 'text/plain' and data required" % where)
        elif st == "url":
            if not is_str(src.get("url")):
                raise an_err("%s.document.source.url.url: Field required" % where)
        elif st in ("content", "file"):
            pass
        else:
            raise an_err("%s.document.source: Input tag '%s' found using 'type' does not match any of the "
                         "expected tags: 'base64', 'content', 'file', 'text', 'url'" % (where, st))
    elif t == "tool_use":
        if not is_str(blk.get("id")):
            raise an_err("%s.tool_use.id: Field required" % where)
        if not re.match(r"^[a-zA-Z0-9_-]+$", blk["id"]):
            raise an_err("%s.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'" % where)
        if not is_str(blk.get("name")):
            raise an_err("%s.tool_use.name: Field required" % where)
        if "input" not in blk:
            raise an_err("%s.tool_use.input: Field required" % where)
        if not isinstance(blk["input"], dict):
            raise an_err("%s.tool_use.input: Input should be a valid dictionary" % where)
    elif t == "tool_result":
        tid = blk.get("tool_use_id")
        if not is_str(tid):
            raise an_err("%s.tool_result.tool_use_id: Field required" % where)
        c = blk.get("content")
        if c is not None and not is_str(c):
            if not isinstance(c, list):
                raise an_err("%s.tool_result.content: Input should be a valid string or list" % where)
            for k, sub in enumerate(c):
                if not isinstance(sub, dict) or sub.get("type") not in ("text", "image", "document",
                                                                          "search_result"):
                    raise an_err("%s.tool_result.content.%d: Input tag found using 'type' does not match any of "
                                 "the expected tags: 'text', 'image', 'document', 'search_result'" % (where, k))
                if sub.get("type") == "text" and not is_str(sub.get("text")):
                    raise an_err("%s.tool_result.content.%d.text: Field required" % (where, k))
        if "is_error" in blk and not isinstance(blk["is_error"], bool):
            raise an_err("%s.tool_result.is_error: Input should be a valid boolean" % where)
    elif t == "thinking":
        if not is_str(blk.get("thinking")) or not is_str(blk.get("signature")):
            raise an_err("%s.thinking: fields 'thinking' and 'signature' are required" % where)
    elif t == "redacted_thinking":
        if not is_str(blk.get("data")):
            raise an_err("%s.redacted_thinking.data: Field required" % where)


def validate_anthropic(b, count_tokens=False):
    for k in b:
        if k not in ANTHROPIC_FIELDS or (count_tokens and k in ("max_tokens", "stream", "stop_sequences",
                                                                "temperature", "top_p", "top_k", "metadata")):
            raise an_err("%s: Extra inputs are not permitted" % k)
    if "model" not in b:
        raise an_err("model: Field required")
    if not is_str(b["model"]):
        raise an_err("model: Input should be a valid string")
    if not count_tokens:
        if "max_tokens" not in b:
            raise an_err("max_tokens: Field required")
        mt = b["max_tokens"]
        if not is_int(mt):
            raise an_err("max_tokens: Input should be a valid integer")
        if mt < 1:
            raise an_err("max_tokens: Input should be greater than or equal to 1")
    if "messages" not in b:
        raise an_err("messages: Field required")
    msgs = b["messages"]
    if not isinstance(msgs, list):
        raise an_err("messages: Input should be a valid list")
    if not msgs:
        raise an_err("messages: at least one message is required")
    prev_role = None
    prev_tool_use_ids = set()
    for i, m in enumerate(msgs):
        w = "messages.%d" % i
        if not isinstance(m, dict):
            raise an_err("%s: Input should be a valid dictionary or object to extract fields from" % w)
        for k in m:
            if k not in ("role", "content"):
                raise an_err("%s.%s: Extra inputs are not permitted" % (w, k))
        role = m.get("role", MISSING)
        if role is MISSING:
            raise an_err("%s.role: Field required" % w)
        if role == "system":
            raise an_err('messages: Unexpected role "system". The Messages API accepts a top-level `system` '
                         'parameter, not "system" as an input message role.')
        if role not in ("user", "assistant"):
            raise an_err("%s.role: Input should be 'user' or 'assistant'" % w)
        if i == 0 and role != "user":
            raise an_err('messages: first message must use the "user" role')
        if role == prev_role:
            raise an_err('messages: roles must alternate between "user" and "assistant", but found multiple '
                         '"%s" roles in a row' % role)
        if "content" not in m:
            raise an_err("%s.content: Field required" % w)
        c = m["content"]
        is_last_assistant = (i == len(msgs) - 1 and role == "assistant")
        tool_use_ids = set()
        result_ids = []
        if is_str(c):
            if not c and not is_last_assistant:
                raise an_err("%s: all messages must have non-empty content except for the optional final "
                             "assistant message" % w)
        elif isinstance(c, list):
            if not c and not is_last_assistant:
                raise an_err("%s: all messages must have non-empty content except for the optional final "
                             "assistant message" % w)
            for j, blk in enumerate(c):
                an_validate_block(blk, "%s.content.%d" % (w, j), role, prev_tool_use_ids)
                if blk.get("type") == "tool_use":
                    if blk["id"] in tool_use_ids:
                        raise an_err("%s: `tool_use` ids must be unique" % w)
                    tool_use_ids.add(blk["id"])
                if blk.get("type") == "tool_result":
                    result_ids.append((j, blk["tool_use_id"]))
        else:
            raise an_err("%s.content: Input should be a valid string or list" % w)
        for j, tid in result_ids:
            if tid not in prev_tool_use_ids:
                raise an_err("%s.content.%d: unexpected `tool_use_id` found in `tool_result` blocks: %s. Each "
                             "`tool_result` block must have a corresponding `tool_use` block in the previous "
                             "message." % (w, j, tid))
        if role == "user" and prev_tool_use_ids:
            missing = prev_tool_use_ids - {tid for _, tid in result_ids}
            if missing:
                raise an_err("messages.%d: `tool_use` ids were found without `tool_result` blocks immediately "
                             "after: %s. Each `tool_use` block must have a corresponding `tool_result` block in "
                             "the next message." % (i - 1, ", ".join(sorted(missing))))
        prev_tool_use_ids = tool_use_ids if role == "assistant" else set()
        prev_role = role
    sysv = b.get("system")
    if sysv is not None and not is_str(sysv):
        if not isinstance(sysv, list):
            raise an_err("system: Input should be a valid string or list")
        for j, blk in enumerate(sysv):
            if not isinstance(blk, dict) or blk.get("type") != "text":
                raise an_err("system.%d.type: Input should be 'text'" % j)
            if not is_str(blk.get("text")):
                raise an_err("system.%d.text: Field required" % j)
            if not blk["text"]:
                raise an_err("system: text content blocks must be non-empty")
            an_check_cc(blk, "system.%d" % j)
    tools = b.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise an_err("tools: Input should be a valid list")
        names = set()
        for j, t in enumerate(tools):
            if not isinstance(t, dict):
                raise an_err("tools.%d: Input should be a valid dictionary" % j)
            ttype = t.get("type")
            if ttype not in (None, "custom"):
                continue  # server / versioned tools (web_search_..., bash_..., etc.)
            for k in t:
                if k not in ("name", "description", "input_schema", "cache_control", "type", "strict",
                             "input_examples"):
                    raise an_err("tools.%d.custom.%s: Extra inputs are not permitted" % (j, k))
            if not is_str(t.get("name")):
                raise an_err("tools.%d.custom.name: Field required" % j)
            if not re.match(r"^[a-zA-Z0-9_-]{1,128}$", t["name"]):
                raise an_err("tools.%d.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'" % j)
            if t["name"] in names:
                raise an_err("tools: Tool names must be unique.")
            names.add(t["name"])
            if "input_schema" not in t:
                raise an_err("tools.%d.custom.input_schema: Field required" % j)
            if not isinstance(t["input_schema"], dict):
                raise an_err("tools.%d.custom.input_schema: Input should be a valid dictionary" % j)
            if t["input_schema"].get("type") != "object":
                raise an_err("tools.%d.custom.input_schema.type: Input should be 'object'" % j)
            an_check_cc(t, "tools.%d.custom" % j)
    tc = b.get("tool_choice")
    if tc is not None:
        if not isinstance(tc, dict):
            raise an_err("tool_choice: Input should be a valid dictionary or object to extract fields from")
        tt = tc.get("type")
        if tt not in ("auto", "any", "tool", "none"):
            raise an_err("tool_choice: Input tag '%s' found using 'type' does not match any of the expected tags: "
                         "'auto', 'any', 'tool', 'none'" % tt)
        if tt == "tool" and not is_str(tc.get("name")):
            raise an_err("tool_choice.tool.name: Field required")
        for k in tc:
            if k not in ("type", "name", "disable_parallel_tool_use"):
                raise an_err("tool_choice.%s.%s: Extra inputs are not permitted" % (tt, k))
    if b.get("temperature") is not None:
        v = b["temperature"]
        if not is_num(v):
            raise an_err("temperature: Input should be a valid number")
        if v < 0 or v > 1:
            raise an_err("temperature: Input should be %s" % ("greater than or equal to 0" if v < 0
                                                               else "less than or equal to 1"))
    if b.get("top_p") is not None and (not is_num(b["top_p"]) or not 0 <= b["top_p"] <= 1):
        raise an_err("top_p: Input should be a number between 0 and 1")
    if b.get("top_k") is not None and (not is_int(b["top_k"]) or b["top_k"] < 0):
        raise an_err("top_k: Input should be greater than or equal to 0")
    ss = b.get("stop_sequences")
    if ss is not None and (not isinstance(ss, list) or not all(is_str(s) for s in ss)):
        raise an_err("stop_sequences: Input should be a valid list of strings")
    if "stream" in b and not isinstance(b["stream"], bool):
        raise an_err("stream: Input should be a valid boolean")
    md = b.get("metadata")
    if md is not None:
        if not isinstance(md, dict):
            raise an_err("metadata: Input should be a valid dictionary")
        for k in md:
            if k != "user_id":
                raise an_err("metadata.%s: Extra inputs are not permitted" % k)
    th = b.get("thinking")
    if th is not None:
        if not isinstance(th, dict) or th.get("type") not in ("enabled", "disabled"):
            raise an_err("thinking: Input tag found using 'type' does not match any of the expected tags: "
                         "'enabled', 'disabled'")
        if th["type"] == "enabled":
            bt = th.get("budget_tokens")
            if not is_int(bt):
                raise an_err("thinking.enabled.budget_tokens: Field required")
            if bt < 1024:
                raise an_err("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
            if not count_tokens and bt >= b["max_tokens"]:
                raise an_err("`max_tokens` must be greater than `thinking.budget_tokens`.")
            an_validate_thinking(b)


def an_thinking_sig(text):
    """The mock's signature of a thinking text: a later request must bring
    the same text with the same signature, as Anthropic checks."""
    return base64.b64encode(("mocksig:" + hashlib.sha256(text.encode()).hexdigest()[:32]).encode()).decode()


def an_validate_thinking(b):
    """What Anthropic refuses beside thinking: sampling changes, forced tools,
    and a tool-use loop whose assistant turn lost its thinking blocks."""
    if b.get("temperature") is not None and b["temperature"] != 1:
        raise an_err("`temperature` may only be set to 1 when thinking is enabled. Please consult our "
                     "documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking")
    if b.get("top_p") is not None and b["top_p"] < 0.95:
        raise an_err("`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled.")
    if b.get("top_k") is not None:
        raise an_err("`top_k` must be unset when thinking is enabled.")
    tc = b.get("tool_choice")
    if isinstance(tc, dict) and tc.get("type") in ("any", "tool"):
        raise an_err("Thinking may not be enabled when tool_choice forces tool use.")
    msgs = b["messages"]
    for mi, m in enumerate(msgs):
        if m.get("role") != "assistant" or not isinstance(m.get("content"), list):
            continue
        for bi, blk in enumerate(m["content"]):
            if isinstance(blk, dict) and blk.get("type") == "thinking":
                if blk.get("signature") != an_thinking_sig(blk.get("thinking", "")):
                    raise an_err("messages.%d.content.%d: Invalid `signature` in `thinking` block" % (mi, bi))
    # the last assistant turn, when the conversation ends on its tool results
    last = msgs[-1]
    lc = last.get("content")
    if last.get("role") == "user" and isinstance(lc, list) and any(
            isinstance(x, dict) and x.get("type") == "tool_result" for x in lc) and len(msgs) >= 2:
        a = msgs[-2]
        ac = a.get("content")
        if isinstance(ac, str):
            ac = [{"type": "text"}]
        first = ac[0].get("type") if ac and isinstance(ac[0], dict) else None
        if first not in ("thinking", "redacted_thinking"):
            raise an_err("messages.%d.content.0.type: Expected `thinking` or `redacted_thinking`, but found `%s`. "
                         "When `thinking` is enabled, a final `assistant` message must start with a thinking "
                         "block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We "
                         "recommend you include thinking blocks from previous turns. To avoid this requirement, "
                         "disable `thinking`. Please consult our documentation at "
                         "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
                         % (len(msgs) - 2, first))


def an_block_text(blk):
    if not isinstance(blk, dict):
        return ""
    t = blk.get("type")
    if t == "text":
        return blk.get("text") or ""
    if t == "tool_result":
        c = blk.get("content")
        if is_str(c):
            return c
        if isinstance(c, list):
            return "".join(s.get("text", "") for s in c if isinstance(s, dict) and s.get("type") == "text")
    return ""


def an_msg_text(c):
    if is_str(c):
        return c
    if isinstance(c, list):
        return "".join(an_block_text(x) for x in c)
    return ""


def an_system_text(s):
    if is_str(s):
        return s
    if isinstance(s, list):
        return "".join(x.get("text", "") for x in s if isinstance(x, dict))
    return ""


def an_prompt_tokens(b):
    n = len(an_system_text(b.get("system")))
    for m in b["messages"]:
        n += len(an_msg_text(m.get("content")))
    return est_tokens(n)


def canon(x):
    if isinstance(x, dict):
        x = {k: v for k, v in x.items() if k != "cache_control"}
    return json.dumps(x, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def an_cache(b, mutate=True):
    """Prompt caching model.  Segments in order: tools (canonical JSON), system blocks (text),
    message content (strings; text blocks as text, other blocks as canonical JSON).  If any segment
    carries cache_control, the cached prefix is everything up to and including the LAST such segment:
    tokens = len(prefix) // 4 + 1.  First time a (model, prefix) is seen -> cache_creation_input_tokens,
    afterwards -> cache_read_input_tokens.  Returns (creation, read)."""
    segs = []
    for t in b.get("tools") or []:
        segs.append((canon(t), isinstance(t, dict) and "cache_control" in t))
    s = b.get("system")
    if is_str(s):
        segs.append((s, False))
    elif isinstance(s, list):
        for blk in s:
            segs.append((blk.get("text", "") if isinstance(blk, dict) else "",
                         isinstance(blk, dict) and "cache_control" in blk))
    for m in b.get("messages") or []:
        c = m.get("content")
        if is_str(c):
            segs.append((c, False))
        elif isinstance(c, list):
            for blk in c:
                txt = blk.get("text", "") if isinstance(blk, dict) and blk.get("type") == "text" else canon(blk)
                segs.append((txt, isinstance(blk, dict) and "cache_control" in blk))
    last = max((i for i, (_, cc) in enumerate(segs) if cc), default=-1)
    if last < 0:
        return 0, 0
    prefix = "".join(t for t, _ in segs[:last + 1])
    toks = est_tokens(len(prefix))
    key = hashlib.sha256((str(b.get("model")) + "\0" + prefix).encode("utf-8", "replace")).hexdigest()
    if key in STATE.anthropic_cache:
        return 0, toks
    if mutate:
        STATE.anthropic_cache.add(key)
    return toks, 0


def anthropic_auth(req):
    if not req.h.get("x-api-key", "").strip():
        raise ApiError(401, "x-api-key header is required")
    if not req.h.get("anthropic-version", "").strip():
        raise ApiError(400, "anthropic-version: header is required")


def anthropic_body(req):
    ok, b = req.json_or_error()
    if not ok:
        raise an_err("There was an issue with your request body: invalid JSON (%s)" % b)
    if not isinstance(b, dict):
        raise an_err("Input should be a valid dictionary or object to extract fields from")
    return b


async def anthropic_route(req, resp, ctl):
    p = req.upath.rstrip("/")
    m = req.method
    if p in ("/v1/models",) and m in ("GET", "HEAD"):
        anthropic_auth(req)
        data = [{"type": "model", "id": x, "display_name": x, "created_at": "2025-01-01T00:00:00Z"}
                for x in ANTHROPIC_MODELS]
        return await resp.send_json(200, {"data": data, "has_more": False, "first_id": data[0]["id"],
                                          "last_id": data[-1]["id"]})
    if p == "/v1/messages" and m == "POST":
        anthropic_auth(req)
        return await anthropic_messages(req, resp, ctl)
    if p == "/v1/messages/count_tokens" and m == "POST":
        anthropic_auth(req)
        b = anthropic_body(req)
        validate_anthropic(b, count_tokens=True)
        return await resp.send_json(200, {"input_tokens": an_prompt_tokens(b)})
    raise ApiError(404, "Not Found")


def an_tools(b):
    return [(t["name"], t.get("input_schema")) for t in b.get("tools") or []
            if isinstance(t, dict) and is_str(t.get("name")) and t.get("type") in (None, "custom")]


async def anthropic_messages(req, resp, ctl):
    b = anthropic_body(req)
    validate_anthropic(b)
    model = b["model"]
    msgs = b["messages"]
    ptoks = an_prompt_tokens(b)
    cache_create, cache_read = an_cache(b)
    user_text = ""
    for mm in reversed(msgs):
        if mm.get("role") == "user":
            user_text = an_msg_text(mm.get("content"))
            break
    scen = ctl.scenario
    reply = reply_text("anthropic", user_text)
    calls = make_calls(an_tools(b), "parallel_tools" if scen == "parallel_tools" else
                       ("tool_call" if scen in ("tool_call", "text_and_tool") else scen), ctl.size)
    forced = False
    tc = b.get("tool_choice") or {}
    if not calls and tc.get("type") in ("tool", "any") and an_tools(b):
        # a forced tool is called, without text, as Anthropic does
        tools = an_tools(b)
        name, schema = tools[0]
        if tc.get("type") == "tool":
            name, schema = next((t for t in tools if t[0] == tc.get("name")), tools[0])
        calls = [(name, json.dumps(sample_args(schema, name)))]
        forced = True
    stop = "tool_use" if calls else ("max_tokens" if scen == "max_tokens" else "end_turn")
    mid = rid("msg_mock")
    headers = [("request-id", rid("req_mock")), ("anthropic-organization-id", "org-mock")]
    ttoks = sum(tool_tokens(a) for _, a in calls)
    stream = b.get("stream") is True
    th = b.get("thinking") or {}
    thinking = None
    redacted = None
    if th.get("type") == "enabled":
        thinking = "Let me think about %s step by step (budget %d)." % (
            json.dumps(user_text[:40]), th["budget_tokens"])
        if scen == "redacted_thinking":
            redacted = base64.b64encode(b"mock-redacted:" + user_text[:20].encode()).decode()
        ttoks += len(words(thinking))
    think_blocks = []
    if thinking is not None:
        think_blocks.append({"type": "thinking", "thinking": thinking, "signature": an_thinking_sig(thinking)})
    if redacted is not None:
        think_blocks.append({"type": "redacted_thinking", "data": redacted})

    def usage(out_toks):
        return {"input_tokens": ptoks, "cache_creation_input_tokens": cache_create,
                "cache_read_input_tokens": cache_read, "output_tokens": out_toks,
                "service_tier": "standard"}

    if not stream:
        if scen == "error_mid_stream":
            return await resp.send_json(529, error_body("anthropic", 529, "Overloaded"))
        content = think_blocks + ([] if forced else [{"type": "text", "text": reply}])
        for i, (name, args) in enumerate(calls):
            content.append({"type": "tool_use", "id": "toolu_mock_%d" % (i + 1), "name": name,
                            "input": json.loads(args)})
        out = {"id": mid, "type": "message", "role": "assistant", "model": model, "content": content,
               "stop_reason": stop, "stop_sequence": None, "usage": usage(len(words(reply)) + ttoks)}
        return await resp.send_json(200, out, headers)

    pieces, streamed = stream_pieces(ctl, reply)
    if forced:
        pieces, streamed = [], ""
    out_toks = len(words(streamed)) + ttoks

    def ev(name, data):
        return b"event: " + name.encode() + b"\ndata: " + jdump(data) + b"\n\n"

    def gen():
        yield ev("message_start", {"type": "message_start", "message": {
            "id": mid, "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": usage(1)}})
        tb = 0
        if thinking is not None:
            yield ev("content_block_start", {"type": "content_block_start", "index": tb, "content_block": {
                "type": "thinking", "thinking": "", "signature": ""}})
            for p in fragments(thinking, 12):
                yield ev("content_block_delta", {"type": "content_block_delta", "index": tb,
                                                 "delta": {"type": "thinking_delta", "thinking": p}})
            yield ev("content_block_delta", {"type": "content_block_delta", "index": tb,
                                             "delta": {"type": "signature_delta",
                                                       "signature": an_thinking_sig(thinking)}})
            yield ev("content_block_stop", {"type": "content_block_stop", "index": tb})
            tb += 1
        if redacted is not None:
            yield ev("content_block_start", {"type": "content_block_start", "index": tb, "content_block": {
                "type": "redacted_thinking", "data": redacted}})
            yield ev("content_block_stop", {"type": "content_block_stop", "index": tb})
            tb += 1
        if forced:
            tb -= 1
        else:
            yield ev("content_block_start", {"type": "content_block_start", "index": tb,
                                             "content_block": {"type": "text", "text": ""}})
        yield ev("ping", {"type": "ping"})
        for i, p in enumerate(pieces):
            if scen == "error_mid_stream" and i == 2:
                yield ev("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                return
            yield ev("content_block_delta", {"type": "content_block_delta", "index": tb,
                                             "delta": {"type": "text_delta", "text": p}})
        if scen == "error_mid_stream":
            yield ev("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
            return
        if not forced:
            yield ev("content_block_stop", {"type": "content_block_stop", "index": tb})
        for i, (name, args) in enumerate(calls):
            idx = tb + i + 1
            yield ev("content_block_start", {"type": "content_block_start", "index": idx, "content_block": {
                "type": "tool_use", "id": "toolu_mock_%d" % (i + 1), "name": name, "input": {}}})
            yield ev("content_block_delta", {"type": "content_block_delta", "index": idx,
                                             "delta": {"type": "input_json_delta", "partial_json": ""}})
            for frag in ([args] if scen == "large_tool_call" else fragments(args, 5)):
                yield ev("content_block_delta", {"type": "content_block_delta", "index": idx,
                                                 "delta": {"type": "input_json_delta", "partial_json": frag}})
            yield ev("content_block_stop", {"type": "content_block_stop", "index": idx})
        yield ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                   "usage": {"output_tokens": out_toks}})
        yield ev("message_stop", {"type": "message_stop"})

    await run_stream(resp, ctl, 200, "text/event-stream; charset=utf-8", gen(), headers)


# --------------------------------------------------------------------------- Gemini

GEMINI_FIELDS = {"contents", "systemInstruction", "tools", "toolConfig", "safetySettings", "generationConfig",
                 "cachedContent", "labels", "model"}
GEMINI_GENCONFIG = {
    "stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema", "responseModalities",
    "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed", "presencePenalty",
    "frequencyPenalty", "responseLogprobs", "logprobs", "enableEnhancedCivicAnswers", "speechConfig",
    "thinkingConfig", "mediaResolution", "imageConfig", "audioTimestamp",
}
GEMINI_PART_DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
                    "codeExecutionResult")
GEMINI_PART_META = ("thought", "thoughtSignature", "videoMetadata", "partMetadata", "mediaResolution")
GEMINI_SCHEMA_KEYS = {"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
                      "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
                      "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum",
                      "maximum"}
GEMINI_TYPES = {"TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}
GEMINI_TOOL_KEYS = {"functionDeclarations", "googleSearch", "googleSearchRetrieval", "codeExecution",
                    "urlContext", "computerUse", "fileSearch", "googleMaps"}
GEMINI_FD_KEYS = {"name", "description", "parameters", "parametersJsonSchema", "response", "responseJsonSchema",
                  "behavior"}
HARM_CATEGORIES = {"HARM_CATEGORY_UNSPECIFIED", "HARM_CATEGORY_DEROGATORY", "HARM_CATEGORY_TOXICITY",
                   "HARM_CATEGORY_VIOLENCE", "HARM_CATEGORY_SEXUAL", "HARM_CATEGORY_MEDICAL",
                   "HARM_CATEGORY_DANGEROUS", "HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_HATE_SPEECH",
                   "HARM_CATEGORY_SEXUALLY_EXPLICIT", "HARM_CATEGORY_DANGEROUS_CONTENT",
                   "HARM_CATEGORY_CIVIC_INTEGRITY"}
HARM_THRESHOLDS = {"HARM_BLOCK_THRESHOLD_UNSPECIFIED", "BLOCK_LOW_AND_ABOVE", "BLOCK_MEDIUM_AND_ABOVE",
                   "BLOCK_ONLY_HIGH", "BLOCK_NONE", "OFF"}
GEMINI_MODELS = ["gemini-2.0-flash", "gemini-2.5-flash", "gemini-2.5-pro", "gemini-3-pro-preview"]


def camel(k):
    if "_" not in k:
        return k
    head, *rest = k.split("_")
    return head + "".join(x[:1].upper() + x[1:] for x in rest)


def snake(k):
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), k)


def gnorm(obj):
    """Proto JSON accepts lowerCamelCase and snake_case field names; normalise to camelCase (shallow)."""
    return {camel(k): v for k, v in obj.items()} if isinstance(obj, dict) else obj


def g_err(msg):
    return ApiError(400, msg, gstatus="INVALID_ARGUMENT")


def g_unknown(name, at=None):
    if at:
        return g_err('Invalid JSON payload received. Unknown name "%s" at \'%s\': Cannot find field.' % (name, at))
    return g_err('Invalid JSON payload received. Unknown name "%s": Cannot find field.' % name)


def g_check_keys(obj, allowed, at):
    for k in obj:
        if camel(k) not in allowed:
            raise g_unknown(k, at)


def g_validate_schema(s, at, depth=0):
    if depth > 40:
        return
    if not isinstance(s, dict):
        raise g_err("Invalid value at '%s' (type.googleapis.com/google.ai.generativelanguage.v1beta.Schema), %s"
                    % (at, json.dumps(s)))
    g_check_keys(s, GEMINI_SCHEMA_KEYS, at)
    s = gnorm(s)
    if "type" in s:
        t = s["type"]
        if isinstance(t, list):
            raise g_err("Invalid JSON payload received. Proto field is not repeating, cannot start list. at '%s.type'"
                        % at)
        if not is_str(t) or t.upper() not in GEMINI_TYPES:
            raise g_err("Invalid value at '%s.type' (type.googleapis.com/google.ai.generativelanguage.v1beta.Type), "
                        "%s" % (at, json.dumps(t)))
    if "properties" in s:
        if not isinstance(s["properties"], dict):
            raise g_err("Invalid value at '%s.properties'" % at)
        for k, v in s["properties"].items():
            g_validate_schema(v, "%s.properties[%s].value" % (at, k), depth + 1)
    if "items" in s:
        g_validate_schema(s["items"], at + ".items", depth + 1)
    if "anyOf" in s:
        if not isinstance(s["anyOf"], list):
            raise g_err("Invalid value at '%s.any_of'" % at)
        for i, v in enumerate(s["anyOf"]):
            g_validate_schema(v, "%s.any_of[%d]" % (at, i), depth + 1)


def g_validate_content(c, at, allow_role=True):
    if not isinstance(c, dict):
        raise g_err("Invalid value at '%s' (type.googleapis.com/google.ai.generativelanguage.v1beta.Content), %s"
                    % (at, json.dumps(c)[:200]))
    g_check_keys(c, {"role", "parts"}, at)
    c = gnorm(c)
    role = c.get("role", "")
    if allow_role and role not in ("", "user", "model"):
        raise g_err("Please use a valid role: user, model.")
    parts = c.get("parts")
    if parts is None or (isinstance(parts, list) and not parts):
        raise g_err("* GenerateContentRequest.%s.parts: contents.parts must not be empty.\n" % at)
    if not isinstance(parts, list):
        raise g_err("Invalid JSON payload received. Expected an array for '%s.parts'." % at)
    for j, p in enumerate(parts):
        pa = "%s.parts[%d]" % (at, j)
        if not isinstance(p, dict):
            raise g_err("Invalid value at '%s' (type.googleapis.com/google.ai.generativelanguage.v1beta.Part), %s"
                        % (pa, json.dumps(p)[:200]))
        g_check_keys(p, set(GEMINI_PART_DATA) | set(GEMINI_PART_META), pa)
        p = gnorm(p)
        data = [k for k in GEMINI_PART_DATA if k in p]
        if not data:
            raise g_err("* GenerateContentRequest.%s.data: required oneof field 'data' must have one initialized "
                        "field\n" % pa)
        if len(data) > 1:
            raise g_err("Invalid JSON payload received. Oneof field 'data' is already set. Cannot set '%s'" % data[1])
        d = data[0]
        v = p[d]
        if d == "text":
            if not is_str(v):
                raise g_err("Invalid value at '%s.text' (TYPE_STRING), %s" % (pa, json.dumps(v)[:100]))
        elif d == "inlineData":
            if not isinstance(v, dict):
                raise g_err("Invalid value at '%s.inline_data'" % pa)
            g_check_keys(v, {"mimeType", "data"}, pa + ".inline_data")
            v = gnorm(v)
            if not is_str(v.get("mimeType")) or not v["mimeType"]:
                raise g_err("* GenerateContentRequest.%s.inline_data.mime_type: mime_type must be set\n" % pa)
            if not is_str(v.get("data")):
                raise g_err("* GenerateContentRequest.%s.inline_data.data: data must be set\n" % pa)
            try:
                base64.b64decode(v["data"].replace("-", "+").replace("_", "/") + "==")
            except Exception:
                raise g_err("Invalid value at '%s.inline_data.data' (TYPE_BYTES), Base64 decoding failed" % pa)
        elif d == "fileData":
            if not isinstance(v, dict):
                raise g_err("Invalid value at '%s.file_data'" % pa)
            g_check_keys(v, {"mimeType", "fileUri", "displayName"}, pa + ".file_data")
            if not is_str(gnorm(v).get("fileUri")):
                raise g_err("* GenerateContentRequest.%s.file_data.file_uri: file_uri must be set\n" % pa)
        elif d == "functionCall":
            if not isinstance(v, dict):
                raise g_err("Invalid value at '%s.function_call'" % pa)
            g_check_keys(v, {"name", "args", "id"}, pa + ".function_call")
            if not is_str(v.get("name")) or not v["name"]:
                raise g_err("* GenerateContentRequest.%s.function_call.name: Name cannot be empty.\n" % pa)
            if "args" in v and not isinstance(v["args"], dict):
                raise g_err("Invalid value at '%s.function_call.args' (type.googleapis.com/google.protobuf.Struct), "
                            "%s" % (pa, json.dumps(v["args"])[:100]))
        elif d == "functionResponse":
            if not isinstance(v, dict):
                raise g_err("Invalid value at '%s.function_response'" % pa)
            g_check_keys(v, {"name", "response", "id", "willContinue", "scheduling", "parts"},
                         pa + ".function_response")
            if not is_str(v.get("name")) or not v["name"]:
                raise g_err("* GenerateContentRequest.%s.function_response.name: Name cannot be empty.\n" % pa)
            if "response" not in v:
                raise g_err("* GenerateContentRequest.%s.function_response.response: response must be set\n" % pa)
            if not isinstance(v["response"], dict):
                raise g_err("Invalid value at '%s.function_response.response' "
                            "(type.googleapis.com/google.protobuf.Struct), %s" % (pa, json.dumps(v["response"])[:100]))


def g_validate_thinking(tc, model):
    """Gemini 2.5 takes a budget, Gemini 3 a level (a budget still works but
    not both); 2.5 Pro cannot turn thinking off; older models do not think."""
    v3 = "gemini-3" in model
    if "thinkingLevel" in tc and "thinkingBudget" in tc:
        raise g_err("Only one of thinking_level and thinking_budget may be set.")
    if "thinkingLevel" in tc:
        if not v3:
            raise g_err("Thinking level is not supported for this model.")
        levels = ("minimal", "low", "medium", "high") if "flash" in model else ("low", "high")
        if str(tc["thinkingLevel"]).lower() not in levels:
            raise g_err("Invalid value at 'generation_config.thinking_config.thinking_level' (%s)"
                        % tc["thinkingLevel"])
    if "thinkingBudget" in tc:
        bt = tc["thinkingBudget"]
        if not is_int(bt):
            raise g_err("Invalid value at 'generation_config.thinking_config.thinking_budget'")
        if not ("2.5" in model or v3 or "thinking" in model):
            raise g_err("Thinking is not supported for this model.")
        if bt == 0 and "pro" in model:
            raise g_err("Budget 0 is invalid. This model only works in thinking mode.")
        if bt != -1 and bt != 0 and not 128 <= bt <= 32768:
            raise g_err("The thinking budget %d is invalid. Please choose a value between 128 and 32768." % bt)


def g_logprobs(text, top):
    """logprobsResult for a text: one chosen candidate per word, and `top`
    alternatives at each step."""
    toks = [w + " " for w in (text or "").split(" ")]
    toks[-1] = toks[-1][:-1]
    chosen = [{"token": t, "tokenId": 100 + i, "logProbability": round(-0.125 * (i + 1), 6)}
              for i, t in enumerate(toks) if t]
    tops = [{"candidates": [dict(c)] + [{"token": "alt%d" % j, "tokenId": 900 + j,
                                          "logProbability": round(c["logProbability"] - j, 6)}
                                         for j in range(1, top)]}
            for c in chosen] if top else []
    out = {"chosenCandidates": chosen}
    if tops:
        out["topCandidates"] = tops
    return out


def validate_gemini(b, model):
    g_check_keys(b, GEMINI_FIELDS, None)
    b = gnorm(b)
    contents = b.get("contents")
    if not contents:
        raise g_err("* GenerateContentRequest.contents: contents is not specified\n")
    if not isinstance(contents, list):
        raise g_err("Invalid JSON payload received. Expected an array for 'contents'.")
    for i, c in enumerate(contents):
        g_validate_content(c, "contents[%d]" % i)
    si = b.get("systemInstruction")
    if si is not None:
        if not isinstance(si, dict):
            raise g_err("Invalid value at 'system_instruction' "
                        "(type.googleapis.com/google.ai.generativelanguage.v1beta.Content), %s" % json.dumps(si)[:200])
        g_validate_content(si, "system_instruction", allow_role=False)
    gc = b.get("generationConfig")
    if gc is not None:
        if not isinstance(gc, dict):
            raise g_err("Invalid value at 'generation_config'")
        g_check_keys(gc, GEMINI_GENCONFIG, "generation_config")
        gc = gnorm(gc)
        for k, lo, hi in (("temperature", 0, 2), ("topP", 0, 1)):
            if k in gc:
                if not is_num(gc[k]):
                    raise g_err("Invalid value at 'generation_config.%s' (TYPE_FLOAT), %s" % (snake(k),
                                                                                             json.dumps(gc[k])))
                if not lo <= gc[k] <= hi:
                    raise g_err("* GenerateContentRequest.generation_config.%s: %s must be in the range [%s, %s]\n"
                                % (snake(k), snake(k), lo, hi))
        for k in ("maxOutputTokens", "candidateCount", "topK", "seed"):
            if k in gc and not is_int(gc[k]):
                raise g_err("Invalid value at 'generation_config.%s' (TYPE_INT32), %s" % (snake(k),
                                                                                         json.dumps(gc[k])))
        if "maxOutputTokens" in gc and gc["maxOutputTokens"] < 1:
            raise g_err("* GenerateContentRequest.generation_config.max_output_tokens: max_output_tokens must be "
                        "positive.\n")
        if "candidateCount" in gc and not 1 <= gc["candidateCount"] <= 8:
            raise g_err("* GenerateContentRequest.generation_config.candidate_count: candidate_count must be in "
                        "the range [1, 8]\n")
        if "stopSequences" in gc:
            ss = gc["stopSequences"]
            if not isinstance(ss, list) or not all(is_str(s) for s in ss):
                raise g_err("Invalid value at 'generation_config.stop_sequences'")
            if len(ss) > 5:
                raise g_err("* GenerateContentRequest.generation_config.stop_sequences: the number of stop_sequences "
                            "must not exceed 5.\n")
        if "responseMimeType" in gc and gc["responseMimeType"] not in (
                "text/plain", "application/json", "text/x.enum", "application/xml", "application/yaml"):
            raise g_err("* GenerateContentRequest.generation_config.response_mime_type: allowed mimetypes are "
                        "`text/plain`, `application/json`, `application/xml`, `application/yaml` and `text/x.enum`.\n")
        if "responseSchema" in gc:
            g_validate_schema(gc["responseSchema"], "generation_config.response_schema")
        if "thinkingConfig" in gc:
            tc = gc["thinkingConfig"]
            if not isinstance(tc, dict):
                raise g_err("Invalid value at 'generation_config.thinking_config'")
            g_check_keys(tc, {"includeThoughts", "thinkingBudget", "thinkingLevel"},
                         "generation_config.thinking_config")
            g_validate_thinking(gnorm(tc), model)
    gcn = gnorm(b.get("generationConfig") or {})
    cc = gcn.get("candidateCount")
    if cc is not None and (not is_int(cc) or not 1 <= cc <= 8):
        raise g_err("* GenerateContentRequest.generation_config.candidate_count: must be between 1 and 8.\n")
    if "logprobs" in gcn:
        if gcn.get("responseLogprobs") is not True:
            raise g_err("logprobs is only valid when response_logprobs is true.")
        if not is_int(gcn["logprobs"]) or not 0 <= gcn["logprobs"] <= 20:
            raise g_err("* GenerateContentRequest.generation_config.logprobs: must be in the range [0, 20].\n")
    if gcn.get("responseMimeType") == "application/json" and "gemini-3" not in model and any(
            isinstance(t, dict) and gnorm(t).get("functionDeclarations") for t in b.get("tools") or []):
        raise g_err("Function calling with a response mime type: 'application/json' is unsupported")
    tools = b.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise g_err("Invalid JSON payload received. Expected an array for 'tools'.")
        for i, t in enumerate(tools):
            at = "tools[%d]" % i
            if not isinstance(t, dict):
                raise g_err("Invalid value at '%s' (type.googleapis.com/google.ai.generativelanguage.v1beta.Tool)"
                            % at)
            g_check_keys(t, GEMINI_TOOL_KEYS, at)
            t = gnorm(t)
            fds = t.get("functionDeclarations")
            if fds is None:
                continue
            if not isinstance(fds, list):
                raise g_err("Invalid JSON payload received. Expected an array for '%s.function_declarations'." % at)
            for j, fd in enumerate(fds):
                fa = "%s.function_declarations[%d]" % (at, j)
                if not isinstance(fd, dict):
                    raise g_err("Invalid value at '%s'" % fa)
                g_check_keys(fd, GEMINI_FD_KEYS, fa)
                fd = gnorm(fd)
                name = fd.get("name")
                if not is_str(name) or not name:
                    raise g_err("* GenerateContentRequest.%s.name: [FIELD_INVALID] Invalid function name. Must "
                                "start with a letter or an underscore. Must be a-z, A-Z, 0-9, or contain "
                                "underscores, dots, colons and dashes, with a maximum length of 64.\n" % fa)
                if not re.match(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$", name):
                    raise g_err("* GenerateContentRequest.%s.name: [FIELD_INVALID] Invalid function name. Must "
                                "start with a letter or an underscore. Must be a-z, A-Z, 0-9, or contain "
                                "underscores, dots, colons and dashes, with a maximum length of 64.\n" % fa)
                if "parameters" in fd:
                    g_validate_schema(fd["parameters"], fa + ".parameters")
                    if "parametersJsonSchema" in fd:
                        raise g_err("* GenerateContentRequest.%s: parameters and parameters_json_schema cannot "
                                    "both be set\n" % fa)
    tcfg = b.get("toolConfig")
    if tcfg is not None:
        if not isinstance(tcfg, dict):
            raise g_err("Invalid value at 'tool_config'")
        g_check_keys(tcfg, {"functionCallingConfig", "retrievalConfig"}, "tool_config")
        fcc = gnorm(tcfg).get("functionCallingConfig")
        if fcc is not None:
            if not isinstance(fcc, dict):
                raise g_err("Invalid value at 'tool_config.function_calling_config'")
            g_check_keys(fcc, {"mode", "allowedFunctionNames"}, "tool_config.function_calling_config")
            fcc = gnorm(fcc)
            mode = fcc.get("mode")
            if mode is not None and mode not in ("MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"):
                raise g_err("Invalid value at 'tool_config.function_calling_config.mode' "
                            "(type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), "
                            "%s" % json.dumps(mode))
            afn = fcc.get("allowedFunctionNames")
            if afn is not None:
                if not isinstance(afn, list) or not all(is_str(x) for x in afn):
                    raise g_err("Invalid value at 'tool_config.function_calling_config.allowed_function_names'")
                if mode not in ("ANY", "VALIDATED"):
                    raise g_err("* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names:"
                                " allowed_function_names is only allowed when mode is ANY.\n")
    ss = b.get("safetySettings")
    if ss is not None:
        if not isinstance(ss, list):
            raise g_err("Invalid JSON payload received. Expected an array for 'safety_settings'.")
        for i, s in enumerate(ss):
            at = "safety_settings[%d]" % i
            if not isinstance(s, dict):
                raise g_err("Invalid value at '%s'" % at)
            g_check_keys(s, {"category", "threshold", "method"}, at)
            s = gnorm(s)
            if not is_str(s.get("category")) or s["category"] not in HARM_CATEGORIES:
                raise g_err("Invalid value at '%s.category' (type.googleapis.com/google.ai.generativelanguage."
                            "v1beta.HarmCategory), %s" % (at, json.dumps(s.get("category"))))
            if not is_str(s.get("threshold")) or s["threshold"] not in HARM_THRESHOLDS:
                raise g_err("Invalid value at '%s.threshold' (type.googleapis.com/google.ai.generativelanguage."
                            "v1beta.SafetySetting.HarmBlockThreshold), %s" % (at, json.dumps(s.get("threshold"))))
    # Gemini 3 thought signatures: function calls the mock issued a signature for must carry it back.
    if "gemini-3" in model and STATE.gemini_sigs:
        for i, c in enumerate(contents):
            c = gnorm(c)
            if c.get("role") != "model":
                continue
            for j, p in enumerate(c.get("parts") or []):
                p = gnorm(p)
                fc = p.get("functionCall")
                if not isinstance(fc, dict):
                    continue
                key = (fc.get("name"), canon(fc.get("args") or {}))
                want = STATE.gemini_sigs.get(key)
                if want is not None and p.get("thoughtSignature") != want:
                    raise g_err("Function call is missing a thought_signature in functionCall parts. This is "
                                "required for tools to work correctly, and missing thought_signature may lead to "
                                "degraded model performance. Additional data, function call `default_api:%s` , "
                                "position %d. Please refer to https://ai.google.dev/gemini-api/docs/"
                                "thought-signatures for more details." % (fc.get("name"), i + 1))


def g_content_text(c):
    if not isinstance(c, dict) or not isinstance(c.get("parts"), list):
        return ""
    out = []
    for p in c["parts"]:
        if isinstance(p, dict) and is_str(p.get("text")) and not p.get("thought"):
            out.append(p["text"])
    return "".join(out)


def g_tools(b):
    out = []
    for t in b.get("tools") or []:
        t = gnorm(t)
        for fd in t.get("functionDeclarations") or []:
            fd = gnorm(fd)
            if is_str(fd.get("name")):
                out.append((fd["name"], fd.get("parameters") or fd.get("parametersJsonSchema")))
    return out


def gemini_auth(req):
    if req.h.get("x-goog-api-key", "").strip() or req.args.get("key", "").strip():
        return
    if req.h.get("authorization", "").strip():
        raise ApiError(401, "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
                            "cookie or other valid authentication credential. See https://developers.google.com/"
                            "identity/sign-in/web/devconsole-project.", gstatus="UNAUTHENTICATED")
    raise ApiError(403, "Method doesn't allow unregistered callers (callers without established identity). Please "
                        "use API Key or other form of API consumer identity to call this API.",
                   gstatus="PERMISSION_DENIED")


async def gemini_route(req, resp, ctl):
    p = req.upath.rstrip("/")
    m = req.method
    mm = re.match(r"^/(v1beta|v1|v1alpha)/(?:models|tunedModels)/([^/:]+):([A-Za-z]+)$", p)
    if mm:
        gemini_auth(req)
        model, method = mm.group(2), mm.group(3)
        if m != "POST":
            raise ApiError(404, "Method not found.", gstatus="NOT_FOUND")
        if method in ("generateContent", "streamGenerateContent"):
            return await gemini_generate(req, resp, ctl, model, method == "streamGenerateContent")
        if method == "countTokens":
            b = gemini_json(req)
            if "generateContentRequest" in b or "generate_content_request" in b:
                b = b.get("generateContentRequest") or b.get("generate_content_request") or {}
                if not isinstance(b, dict):
                    raise g_err("Invalid value at 'generate_content_request'")
            return await resp.send_json(200, {"totalTokens": g_prompt_tokens(gnorm(b))}, indent=2)
        if method == "embedContent":
            b = gemini_json(req)
            if not isinstance(b.get("content"), dict):
                raise g_err("* EmbedContentRequest.content: content must be set\n")
            txt = g_content_text(gnorm(b["content"]))
            return await resp.send_json(200, {"embedding": {"values": fake_vec(txt)}}, indent=2)
        raise ApiError(404, "Method not found.", gstatus="NOT_FOUND")
    if re.match(r"^/(v1beta|v1|v1alpha)/models$", p) and m in ("GET", "HEAD"):
        gemini_auth(req)
        return await resp.send_json(200, {"models": [
            {"name": "models/" + x, "displayName": x, "supportedGenerationMethods": [
                "generateContent", "countTokens"]} for x in GEMINI_MODELS]}, indent=2)
    mm = re.match(r"^/(v1beta|v1|v1alpha)/models/([^/:]+)$", p)
    if mm and m in ("GET", "HEAD"):
        gemini_auth(req)
        return await resp.send_json(200, {"name": "models/" + mm.group(2), "displayName": mm.group(2)}, indent=2)
    raise ApiError(404, "The requested URL %s was not found on this server." % req.path, gstatus="NOT_FOUND")


def gemini_json(req):
    ok, b = req.json_or_error()
    if not ok:
        raise g_err("Invalid JSON payload received. %s" % b)
    if not isinstance(b, dict):
        raise g_err("Invalid JSON payload received. Expected an object.")
    return b


def g_prompt_tokens(b):
    n = len(g_content_text(gnorm(b.get("systemInstruction") or {})))
    contents = b.get("contents")
    for c in contents if isinstance(contents, list) else []:
        n += len(g_content_text(gnorm(c)))
    return est_tokens(n)


async def gemini_generate(req, resp, ctl, model, stream):
    b = gemini_json(req)
    validate_gemini(b, model)
    b = gnorm(b)
    contents = [gnorm(c) for c in b["contents"]]
    ptoks = g_prompt_tokens(b)
    user_text = ""
    for c in reversed(contents):
        if c.get("role", "user") == "user":
            user_text = g_content_text(c)
            break
    scen = ctl.scenario
    reply = reply_text("gemini", user_text)
    calls = make_calls(g_tools(b), scen, ctl.size)
    text = None if (calls and scen != "text_and_tool") else reply
    gcj = gnorm(b.get("generationConfig") or {})
    if text is not None and gcj.get("responseMimeType") == "application/json":
        # JSON mode: an object from the schema (or a fixed one)
        sch = gcj.get("responseSchema") or gcj.get("responseJsonSchema")
        text = json.dumps(sample_args(sch) if sch else {"reply": reply})
    finish = "MAX_TOKENS" if scen == "max_tokens" else "STOP"
    thoughts = 10 if ("thinking" in model or "2.5" in model) else None
    response_id = rid("mockresp", 20)
    gc = gnorm(b.get("generationConfig") or {})
    ncand = gc.get("candidateCount") or 1
    tcfg = gnorm(gc.get("thinkingConfig") or {})
    if tcfg.get("thinkingBudget") == 0:
        thoughts = None
    thought_text = None
    if thoughts and tcfg.get("includeThoughts") is True:
        thought_text = "**Thinking** about %s (%s)." % (json.dumps(user_text[:40]), tcfg.get(
            "thinkingLevel") or "budget %s" % tcfg.get("thinkingBudget", -1))
    sse = req.args.get("alt") == "sse"

    call_parts = []
    for i, (name, args) in enumerate(calls):
        part = {"functionCall": {"name": name, "args": json.loads(args)}}
        if i == 0 and "gemini-3" in model:
            sig = base64.b64encode(("mock-thought-sig:" + uuid.uuid4().hex).encode()).decode()
            part["thoughtSignature"] = sig
            STATE.gemini_sigs[(name, canon(json.loads(args)))] = sig
        call_parts.append(part)
    ttoks = sum(tool_tokens(a) for _, a in calls)

    def usage(ctoks):
        u = {"promptTokenCount": ptoks, "candidatesTokenCount": ctoks, "totalTokenCount": ptoks + ctoks}
        if thoughts:
            u["thoughtsTokenCount"] = thoughts
            u["totalTokenCount"] += thoughts
        u["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": ptoks}]
        return u

    ratings = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
               {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
               {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
               {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"}]
    special = None
    if scen == "safety_block":
        special = {"candidates": [{"finishReason": "SAFETY", "index": 0, "safetyRatings": ratings}],
                   "usageMetadata": {"promptTokenCount": ptoks, "totalTokenCount": ptoks},
                   "modelVersion": model, "responseId": response_id}
    elif scen == "prompt_block":
        special = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": ratings},
                   "usageMetadata": {"promptTokenCount": ptoks, "totalTokenCount": ptoks},
                   "modelVersion": model, "responseId": response_id}

    if not stream:
        if special:
            return await resp.send_json(200, special, indent=2)
        if scen == "error_mid_stream":
            return await resp.send_json(503, error_body("gemini", 503, "The model is overloaded. Please try again "
                                                                        "later."), indent=2)
        parts = ([{"text": text}] if text is not None else []) + call_parts
        if thought_text is not None:
            parts = [{"text": thought_text, "thought": True}] + parts
        ctoks = len(words(text)) + ttoks
        cands = [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": i}
                 for i in range(ncand)]
        if gc.get("responseLogprobs") is True:
            for c in cands:
                c["logprobsResult"] = g_logprobs(text, gc.get("logprobs") or 0)
                c["avgLogprobs"] = -0.5
        out = {"candidates": cands,
               "usageMetadata": usage(ctoks), "modelVersion": model, "responseId": response_id}
        return await resp.send_json(200, out, indent=2)

    def chunks():
        if special:
            yield special
            return
        pieces, streamed = stream_pieces(ctl, text)
        if text is not None and gcj.get("responseMimeType") == "application/json":
            pieces, streamed = fragments(text, 8), text
        sofar = 0
        items = [("text", p) for p in pieces] + [("call", None)] if call_parts else [("text", p) for p in pieces]
        if not items:
            items = [("text", "")]
        if thought_text is not None:
            items = [("thought", p) for p in fragments(thought_text, 16)] + items
        for i, (kind, p) in enumerate(items):
            if scen == "error_mid_stream" and i == 2:
                yield {"error": {"code": 503, "message": "The model is overloaded. Please try again later.",
                                 "status": "UNAVAILABLE"}}
                return
            last = i == len(items) - 1
            if kind == "thought":
                parts = [{"text": p, "thought": True}]
            elif kind == "text":
                sofar += len(words(p))
                parts = [{"text": p}]
            else:
                sofar += ttoks
                parts = call_parts
            cands = []
            for ci in range(ncand):
                cand = {"content": {"role": "model", "parts": parts}, "index": ci}
                if gc.get("responseLogprobs") is True and kind == "text":
                    cand["logprobsResult"] = g_logprobs(p, gc.get("logprobs") or 0)
                if last:
                    cand["finishReason"] = "MAX_TOKENS" if (ci == 1 and scen == "n_lengths") else finish
                cands.append(cand)
            yield {"candidates": cands, "usageMetadata": usage(sofar), "modelVersion": model,
                   "responseId": response_id}

    if sse:
        gen = (b"data: " + jdump(c) + b"\r\n\r\n" for c in chunks())
        return await run_stream(resp, ctl, 200, "text/event-stream", gen)

    def array_gen():
        first = True
        for c in chunks():
            yield (b"[" if first else b",\r\n") + jdump(c, indent=2)
            first = False
        yield b"]" if not first else b"[]"
    await run_stream(resp, ctl, 200, "application/json; charset=UTF-8", array_gen())


# --------------------------------------------------------------------------- server

CONNECTIONS = itertools.count(1)


async def handle_conn(reader, writer, tls):
    peer = writer.get_extra_info("peername")
    conn = next(CONNECTIONS)
    sni = None
    if tls:
        sslobj = writer.get_extra_info("ssl_object")
        sni = getattr(sslobj, "_mock_sni", None) if sslobj is not None else None
    try:
        while True:
            try:
                req = await read_request(reader, writer)
            except HttpError as e:
                log.info("%s bad request: %s", peer, e.message)
                body = jdump({"error": {"status": e.status, "message": e.message}})
                writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n%s" % (e.status, reason(e.status).encode(), len(body), body))
                await writer.drain()
                break
            if req is None:
                break
            req.sni = sni
            req.tls = tls
            req.conn = conn
            resp = Responder(writer, req)
            resp.reader = reader
            t0 = time.monotonic()
            try:
                await dispatch(req, resp)
            except (ConnectionError, asyncio.IncompleteReadError):
                raise
            except Exception:
                log.exception("handler error for %s %s", req.method, req.target)
                if not resp.started:
                    resp.close = True
                    await resp.send_json(500, {"error": {"status": 500, "message": "mock internal error"}})
                else:
                    await resp.abort()
                break
            log.info("%s %s %s -> %s (%d bytes, %.1f ms)%s", "https" if tls else "http", req.method, req.target,
                     resp.status, resp.nbytes, (time.monotonic() - t0) * 1000, " [aborted]" if resp.aborted else "")
            if resp.aborted or resp.close or not req.keep_alive:
                break
    except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError) as e:
        log.debug("connection %s closed: %r", peer, e)
    except asyncio.CancelledError:
        pass
    except Exception:
        log.exception("connection handler crashed")
    finally:
        try:
            if not writer.transport.is_closing():
                writer.close()
        except Exception:
            pass


def make_ssl_ctx(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])

    def sni_cb(sslobj, server_name, _ctx):
        try:
            sslobj._mock_sni = server_name   # read back in handle_conn via get_extra_info("ssl_object")
        except Exception:
            pass
        return None
    ctx.sni_callback = sni_cb
    return ctx


def loop_exception_handler(loop, context):
    exc = context.get("exception")
    msg = context.get("message", "")
    log.warning("asyncio: %s %r", msg, exc)


async def main_async(args):
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(loop_exception_handler)
    servers = []
    servers.append(await asyncio.start_server(lambda r, w: handle_conn(r, w, False), args.host, args.port,
                                              limit=MAX_HEADER, reuse_address=True, backlog=1024))
    log.info("listening on http://%s:%d", args.host, args.port)
    if args.tls_port:
        ctx = make_ssl_ctx(args.cert, args.key)
        servers.append(await asyncio.start_server(lambda r, w: handle_conn(r, w, True), args.host, args.tls_port,
                                                  ssl=ctx, limit=MAX_HEADER, reuse_address=True, backlog=1024,
                                                  ssl_handshake_timeout=10))
        log.info("listening on https://%s:%d", args.host, args.tls_port)
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("ready\n")
        os.replace(tmp, args.ready_file)
    stop = asyncio.Event()
    for s in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(s, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    await stop.wait()
    for s in servers:
        s.close()
    log.info("shutting down")


def main():
    ap = argparse.ArgumentParser(description="AILink mock upstream provider")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--tls-port", type=int)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--ready-file")
    ap.add_argument("--log-level", default=os.environ.get("MOCK_LOG_LEVEL", "INFO"))
    args = ap.parse_args()
    if args.tls_port and not (args.cert and args.key):
        ap.error("--tls-port requires --cert and --key")
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s mock[%(process)d] %(levelname)s %(message)s")
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
