"""The synchronous client: ``AIlinkClient``."""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import contextmanager
from typing import (TYPE_CHECKING, Any, Dict, Generator, Iterator, Mapping, Optional,
                    Sequence)

import httpx

from . import _base
from ._base import ApprovalResult, HeldRequest, Options
from .errors import AIlinkError, ApprovalTimeoutError, error_from_response, is_gateway_error

if TYPE_CHECKING:  # pragma: no cover
    import openai

    from .admin import AdminClient
    from .realtime import RealtimeConnection


class AIlinkClient:
    """A client of the AILink gateway holding one virtual token.

    ``openai()`` gives an ``openai.OpenAI`` pointed at the gateway;
    ``get``/``post``/``put``/``patch``/``delete`` call the action gateway (any
    path, forwarded to the token's upstream) and return the ``httpx.Response``.
    Errors the gateway itself produces raise the matching :class:`AIlinkError`;
    an upstream's own answers, errors included, are returned as they are.

    ``gateway_url`` defaults to ``$AILINK_GATEWAY_URL``, then
    ``http://localhost:8080``; ``api_key`` to ``$AILINK_API_KEY``.
    ``retries`` applies to connection failures, rate limits and open circuits
    (for any method: the gateway refused them before the upstream) and to
    upstream failures of idempotent requests.
    """

    def __init__(
        self,
        api_key: Optional[str] = None,
        gateway_url: Optional[str] = None,
        agent_name: Optional[str] = None,
        timeout: float = _base.DEFAULT_TIMEOUT,
        retries: int = _base.DEFAULT_RETRIES,
        verify_ssl: bool = True,
        *,
        headers: Optional[Mapping[str, str]] = None,
        _options: Optional[Options] = None,
        _pending: Optional[Dict[str, HeldRequest]] = None,
    ) -> None:
        if _options is None:
            _options = Options(
                api_key=_base.resolve_api_key(api_key),
                gateway_url=_base.resolve_gateway_url(gateway_url),
                agent_name=agent_name, timeout=float(timeout), retries=max(0, int(retries)),
                verify_ssl=verify_ssl).with_headers(dict(headers or {}))
        self._opts = _options
        self._http: Optional[httpx.Client] = None
        self._openai: Optional["openai.OpenAI"] = None
        self._lock = threading.Lock()
        # held requests by approval id, shared with derived clients
        self._pending: Dict[str, HeldRequest] = _pending if _pending is not None else {}

    # ------------------------------------------------------------------ properties

    @property
    def api_key(self) -> str:
        return self._opts.api_key

    @property
    def gateway_url(self) -> str:
        return self._opts.gateway_url

    @property
    def agent_name(self) -> Optional[str]:
        return self._opts.agent_name

    @property
    def timeout(self) -> float:
        return self._opts.timeout

    @property
    def retries(self) -> int:
        return self._opts.retries

    @property
    def verify_ssl(self) -> bool:
        return self._opts.verify_ssl

    @property
    def headers(self) -> Dict[str, str]:
        """The AILink headers every request of this client carries (not Authorization)."""
        return self._opts.default_headers()

    def __repr__(self) -> str:
        return "%s(gateway_url=%r, agent_name=%r)" % (type(self).__name__, self.gateway_url,
                                                      self.agent_name)

    # ------------------------------------------------------------------ lifecycle

    @property
    def http(self) -> httpx.Client:
        """The underlying ``httpx.Client`` (created on first use)."""
        with self._lock:
            if self._http is None:
                self._http = httpx.Client(timeout=self._opts.timeout, verify=self._opts.verify_ssl,
                                          follow_redirects=False)
            return self._http

    def close(self) -> None:
        with self._lock:
            http, self._http = self._http, None
            oai, self._openai = self._openai, None
        if http is not None:
            http.close()
        if oai is not None:
            oai.close()

    def __enter__(self) -> "AIlinkClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _derive(self, extra: Mapping[str, Optional[str]]) -> "AIlinkClient":
        return type(self)(_options=self._opts.with_headers(extra), _pending=self._pending)

    # ------------------------------------------------------------------ OpenAI

    def openai(self) -> "openai.OpenAI":
        """An ``openai.OpenAI`` client through the gateway (chat, streaming,
        embeddings, files, batches, fine-tuning... unchanged)."""
        import openai

        with self._lock:
            if self._openai is None:
                kw: Dict[str, Any] = {}
                if not self._opts.verify_ssl:
                    kw["http_client"] = openai.DefaultHttpxClient(verify=False)
                self._openai = openai.OpenAI(
                    api_key=self._opts.api_key, base_url=self._opts.gateway_url + "/v1",
                    timeout=self._opts.timeout, max_retries=self._opts.retries,
                    default_headers=self._opts.default_headers(), **kw)
            return self._openai

    # ------------------------------------------------------------------ requests

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self._opts.gateway_url + "/" + path.lstrip("/")

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        content: Any = None,
        params: Any = None,
        headers: Optional[Mapping[str, str]] = None,
        idempotency_key: Optional[str] = None,
        wait_for_approval: bool = False,
        approval_timeout: float = 300,
        timeout: Optional[float] = None,
    ) -> httpx.Response:
        """Send a request through the gateway and return its response.

        ``wait_for_approval=True`` asks the gateway to hold the request until an
        approver decides (``X-AILink-Approval-Wait``, at most ``approval_timeout``
        seconds) and returns the upstream's answer; a rejection raises
        :class:`ApprovalRejectedError`, no decision :class:`ApprovalTimeoutError`.
        Without it, a held request comes back as ``202`` with
        ``{"status": "pending_approval", "request_id": ...}``: pass that id to
        :meth:`wait_for_approval`."""
        method = method.upper()
        url = self._url(path)
        wait = float(approval_timeout) if wait_for_approval else None
        hdrs = _base.request_headers(self._opts, headers, idempotency_key, wait)
        req_timeout = _base.request_timeout(self._opts, wait)
        if timeout is not None:
            req_timeout = httpx.Timeout(timeout) if wait is None else httpx.Timeout(
                timeout, read=timeout + wait)
        req = self.http.build_request(method, url, json=json, data=data, content=content,
                                      params=params, headers=hdrs, timeout=req_timeout)
        body = req.read()
        resp = self._send(req, idempotent=bool(idempotency_key))
        held = _base.pending_approval(resp)
        if held is not None:
            apr = str(held["request_id"])
            self._pending[apr] = HeldRequest(method, str(req.url), dict(req.headers), body, held)
            if wait is not None:
                # the gateway answered at once: wait here instead
                result = self._wait(apr, wait, 1.0, None)
                if not result.approved:
                    raise _base.rejected_error(result)
                assert result.response is not None
                return result.response
        return resp

    def _send(self, req: httpx.Request, idempotent: bool) -> httpx.Response:
        attempt = 0
        while True:
            try:
                resp = self.http.send(req)
            except httpx.TransportError as exc:
                delay = _base.transport_retry_delay(self._opts, exc, req.method, idempotent, attempt)
                if delay is None:
                    raise _base.transport_error(exc, self._opts.gateway_url) from exc
                time.sleep(delay)
                attempt += 1
                continue
            if resp.status_code >= 400 and is_gateway_error(resp):
                err = error_from_response(resp)
                delay = _base.error_retry_delay(self._opts, err, req.method, idempotent, attempt)
                if delay is None:
                    raise err
                time.sleep(delay)
                attempt += 1
                continue
            return resp

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    def head(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("HEAD", path, **kw)

    # ------------------------------------------------------------------ health

    def is_healthy(self, timeout: Optional[float] = None) -> bool:
        """Whether the gateway answers ``GET /healthz`` with 200 (never raises)."""
        t = timeout if timeout is not None else min(self._opts.timeout, 5.0)
        try:
            r = self.http.get(self._opts.gateway_url + "/healthz", timeout=t,
                              headers={"User-Agent": _base.USER_AGENT})
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    # ------------------------------------------------------------------ HITL

    def get_approval(self, request_id: str) -> Dict[str, Any]:
        """``GET /v1/approvals/<id>``: this token's view of an approval."""
        r = self.request("GET", "/v1/approvals/" + request_id)
        if r.status_code >= 400:
            raise error_from_response(r)
        data = r.json()
        return data if isinstance(data, dict) else {"status": "pending"}

    def wait_for_approval(self, request_id: str, timeout: float = 300,
                          poll_interval: float = 1.0) -> "PendingApproval":
        """Wait until the held request ``request_id`` is decided.

        Poll ``GET /v1/approvals/<id>``; once approved, claim the request (repeat
        it once with ``X-AILink-Approval-Id``) and return an
        :class:`ApprovalResult` whose ``response`` is the upstream's answer.
        A rejection or expiry gives ``approved=False`` and the ``reason``; no
        decision within ``timeout`` seconds raises :class:`ApprovalTimeoutError`.

        The result can be awaited (``await client.wait_for_approval(...)``,
        the wait then runs in a thread) or used directly (``.approved``,
        ``.reason``, ``.response`` or ``.result()`` block until it is known)."""
        return PendingApproval(self, request_id, float(timeout), float(poll_interval))

    def _wait(self, request_id: str, timeout: float, poll_interval: float,
              cancelled: Optional[threading.Event]) -> ApprovalResult:
        deadline = time.monotonic() + timeout
        while True:
            data = self.get_approval(request_id)
            status, reason = _base.approval_state(data)
            if status == "approved":
                return ApprovalResult(request_id, "approved", True, reason,
                                      self._claim(request_id), data)
            done = _base.finished_result(request_id, data)
            if done is not None:
                self._pending.pop(request_id, None)
                return done
            left = deadline - time.monotonic()
            if left <= 0:
                raise ApprovalTimeoutError(
                    "approval %s not decided within %gs" % (request_id, timeout),
                    timeout=timeout, approval_id=request_id, code="approval_timeout")
            if cancelled is not None:
                if cancelled.wait(min(poll_interval, left)):
                    raise asyncio.CancelledError()
            else:
                time.sleep(min(poll_interval, left))

    def _claim(self, request_id: str) -> Optional[httpx.Response]:
        held = self._pending.pop(request_id, None)
        if held is None:
            return None
        req = self.http.build_request(held.method, held.url, content=held.content,
                                      headers=held.claim_headers(request_id))
        return self._send(req, idempotent=True)

    # ------------------------------------------------------------------ derived clients

    @contextmanager
    def with_upstream_key(self, key: str) -> Iterator["AIlinkClient"]:
        """A client that sends ``key`` as the upstream key (bring your own key)."""
        with self._derive({_base.H_UPSTREAM_KEY: key}) as c:
            yield c

    @contextmanager
    def trace(self, session_id: Optional[str] = None,
              properties: Optional[Mapping[str, Any]] = None,
              parent_span_id: Optional[str] = None) -> Iterator["AIlinkClient"]:
        """A client whose requests carry the session id (a new one when None),
        properties and parent span id, recorded in the audit."""
        sid = session_id or _base.new_session_id()
        with self._derive(_base.trace_headers(sid, properties, parent_span_id)) as c:
            yield c

    @contextmanager
    def with_guardrails(self, guardrails: Sequence[str]) -> Iterator["AIlinkClient"]:
        """A client whose requests ask for these guardrails (``X-AILink-Guardrails``)."""
        with self._derive({_base.H_GUARDRAILS: _base.guardrail_header(guardrails)}) as c:
            yield c

    @contextmanager
    def with_fallback(self, fallback: "openai.OpenAI") -> Generator["openai.OpenAI", None, None]:
        """The gateway's OpenAI client, or ``fallback`` when the gateway is unreachable.

        Checked on entry, and again on every call: a connection failure to the
        gateway sends that call, and the rest of the block, to ``fallback``. Each
        switch warns (:class:`GatewayBypassWarning`): the fallback bypasses
        policy enforcement, audit and spend tracking."""
        from .fallback import FallbackOpenAI

        if not self.is_healthy():
            _base.warn_bypass(stacklevel=3)
            yield fallback
            return
        yield FallbackOpenAI.wrap(self.openai(), fallback)

    # ------------------------------------------------------------------ realtime

    def realtime(self, model: str, **params: Any) -> "RealtimeConnection":
        """``async with client.realtime(model) as ws``: the Realtime API over a
        WebSocket through the gateway (``send(dict)``, ``recv()``)."""
        from .realtime import RealtimeConnection

        return RealtimeConnection(self._opts, model, params)

    # ------------------------------------------------------------------ admin

    @staticmethod
    def admin(admin_key: Optional[str] = None, gateway_url: Optional[str] = None,
              timeout: float = _base.DEFAULT_TIMEOUT, verify_ssl: bool = True) -> "AdminClient":
        """A client of the admin API (``/api/v1/``) with an ``ailink_admin_...`` key
        (default ``$AILINK_ADMIN_KEY``)."""
        from .admin import AdminClient

        return AdminClient(admin_key=admin_key, gateway_url=gateway_url, timeout=timeout,
                           verify_ssl=verify_ssl)


class PendingApproval:
    """What :meth:`AIlinkClient.wait_for_approval` returns: awaitable, or blocking on use."""

    def __init__(self, client: AIlinkClient, request_id: str, timeout: float,
                 poll_interval: float) -> None:
        self._client = client
        self.request_id = request_id
        self.timeout = timeout
        self.poll_interval = poll_interval
        self._result: Optional[ApprovalResult] = None

    def result(self) -> ApprovalResult:
        """Block until the approval is decided (see ``wait_for_approval``)."""
        if self._result is None:
            self._result = self._client._wait(self.request_id, self.timeout, self.poll_interval,
                                              None)
        return self._result

    def __await__(self) -> Generator[Any, None, ApprovalResult]:
        return self._async().__await__()

    async def _async(self) -> ApprovalResult:
        if self._result is None:
            cancelled = threading.Event()
            try:
                self._result = await asyncio.to_thread(
                    self._client._wait, self.request_id, self.timeout, self.poll_interval,
                    cancelled)
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return self._result

    @property
    def approved(self) -> bool:
        return self.result().approved

    @property
    def reason(self) -> Optional[str]:
        return self.result().reason

    @property
    def response(self) -> Optional[httpx.Response]:
        return self.result().response

    @property
    def status(self) -> str:
        return self.result().status


__all__ = ["AIlinkClient", "PendingApproval", "AIlinkError"]
