"""The asynchronous client: ``AsyncClient``."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, Mapping, Optional, Sequence

import httpx

from . import _base
from ._base import ApprovalResult, HeldRequest, Options
from .errors import ApprovalTimeoutError, error_from_response, is_gateway_error

if TYPE_CHECKING:  # pragma: no cover
    import openai

    from .admin import AdminClient
    from .realtime import RealtimeConnection


class AsyncClient:
    """The asyncio twin of :class:`AIlinkClient` (``async with AsyncClient(...) as client``).

    ``openai()`` gives an ``openai.AsyncOpenAI``; ``get``/``post``/... and
    ``wait_for_approval`` are coroutines. It may also be used without
    ``async with`` (call ``await client.aclose()`` when done)."""

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
        self._http: Optional[httpx.AsyncClient] = None
        self._openai: Optional["openai.AsyncOpenAI"] = None
        self._pending: Dict[str, HeldRequest] = _pending if _pending is not None else {}

    api_key = property(lambda self: self._opts.api_key)
    gateway_url = property(lambda self: self._opts.gateway_url)
    agent_name = property(lambda self: self._opts.agent_name)
    timeout = property(lambda self: self._opts.timeout)
    retries = property(lambda self: self._opts.retries)
    verify_ssl = property(lambda self: self._opts.verify_ssl)

    @property
    def headers(self) -> Dict[str, str]:
        return self._opts.default_headers()

    def __repr__(self) -> str:
        return "%s(gateway_url=%r, agent_name=%r)" % (type(self).__name__, self.gateway_url,
                                                      self.agent_name)

    # ------------------------------------------------------------------ lifecycle

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self._opts.timeout,
                                           verify=self._opts.verify_ssl, follow_redirects=False)
        return self._http

    async def aclose(self) -> None:
        http, self._http = self._http, None
        oai, self._openai = self._openai, None
        if http is not None:
            await http.aclose()
        if oai is not None:
            await oai.close()

    close = aclose

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    def _derive(self, extra: Mapping[str, Optional[str]]) -> "AsyncClient":
        return type(self)(_options=self._opts.with_headers(extra), _pending=self._pending)

    # ------------------------------------------------------------------ OpenAI

    def openai(self) -> "openai.AsyncOpenAI":
        """An ``openai.AsyncOpenAI`` client through the gateway."""
        import openai

        if self._openai is None:
            kw: Dict[str, Any] = {}
            if not self._opts.verify_ssl:
                kw["http_client"] = openai.DefaultAsyncHttpxClient(verify=False)
            self._openai = openai.AsyncOpenAI(
                api_key=self._opts.api_key, base_url=self._opts.gateway_url + "/v1",
                timeout=self._opts.timeout, max_retries=self._opts.retries,
                default_headers=self._opts.default_headers(), **kw)
        return self._openai

    # ------------------------------------------------------------------ requests

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self._opts.gateway_url + "/" + path.lstrip("/")

    async def request(
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
        """See :meth:`AIlinkClient.request`."""
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
        body = await req.aread()
        resp = await self._send(req, idempotent=bool(idempotency_key))
        held = _base.pending_approval(resp)
        if held is not None:
            apr = str(held["request_id"])
            self._pending[apr] = HeldRequest(method, str(req.url), dict(req.headers), body, held)
            if wait is not None:
                result = await self.wait_for_approval(apr, wait)
                if not result.approved:
                    raise _base.rejected_error(result)
                assert result.response is not None
                return result.response
        return resp

    async def _send(self, req: httpx.Request, idempotent: bool) -> httpx.Response:
        attempt = 0
        while True:
            try:
                resp = await self.http.send(req)
            except httpx.TransportError as exc:
                delay = _base.transport_retry_delay(self._opts, exc, req.method, idempotent, attempt)
                if delay is None:
                    raise _base.transport_error(exc, self._opts.gateway_url) from exc
                await asyncio.sleep(delay)
                attempt += 1
                continue
            if resp.status_code >= 400 and is_gateway_error(resp):
                err = error_from_response(resp)
                delay = _base.error_retry_delay(self._opts, err, req.method, idempotent, attempt)
                if delay is None:
                    raise err
                await asyncio.sleep(delay)
                attempt += 1
                continue
            return resp

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("POST", path, **kw)

    async def put(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("PUT", path, **kw)

    async def patch(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("PATCH", path, **kw)

    async def delete(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kw)

    async def head(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("HEAD", path, **kw)

    # ------------------------------------------------------------------ health

    async def is_healthy(self, timeout: Optional[float] = None) -> bool:
        """Whether the gateway answers ``GET /healthz`` with 200 (never raises)."""
        t = timeout if timeout is not None else min(self._opts.timeout, 5.0)
        try:
            r = await self.http.get(self._opts.gateway_url + "/healthz", timeout=t,
                                    headers={"User-Agent": _base.USER_AGENT})
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    # ------------------------------------------------------------------ HITL

    async def get_approval(self, request_id: str) -> Dict[str, Any]:
        r = await self.request("GET", "/v1/approvals/" + request_id)
        if r.status_code >= 400:
            raise error_from_response(r)
        data = r.json()
        return data if isinstance(data, dict) else {"status": "pending"}

    async def wait_for_approval(self, request_id: str, timeout: float = 300,
                                poll_interval: float = 1.0) -> ApprovalResult:
        """See :meth:`AIlinkClient.wait_for_approval`."""
        deadline = time.monotonic() + timeout
        while True:
            data = await self.get_approval(request_id)
            status, reason = _base.approval_state(data)
            if status == "approved":
                return ApprovalResult(request_id, "approved", True, reason,
                                      await self._claim(request_id), data)
            done = _base.finished_result(request_id, data)
            if done is not None:
                self._pending.pop(request_id, None)
                return done
            left = deadline - time.monotonic()
            if left <= 0:
                raise ApprovalTimeoutError(
                    "approval %s not decided within %gs" % (request_id, timeout),
                    timeout=timeout, approval_id=request_id, code="approval_timeout")
            await asyncio.sleep(min(poll_interval, left))

    async def _claim(self, request_id: str) -> Optional[httpx.Response]:
        held = self._pending.pop(request_id, None)
        if held is None:
            return None
        req = self.http.build_request(held.method, held.url, content=held.content,
                                      headers=held.claim_headers(request_id))
        return await self._send(req, idempotent=True)

    # ------------------------------------------------------------------ derived clients

    @asynccontextmanager
    async def with_upstream_key(self, key: str) -> AsyncIterator["AsyncClient"]:
        async with self._derive({_base.H_UPSTREAM_KEY: key}) as c:
            yield c

    @asynccontextmanager
    async def trace(self, session_id: Optional[str] = None,
                    properties: Optional[Mapping[str, Any]] = None,
                    parent_span_id: Optional[str] = None) -> AsyncIterator["AsyncClient"]:
        sid = session_id or _base.new_session_id()
        async with self._derive(_base.trace_headers(sid, properties, parent_span_id)) as c:
            yield c

    @asynccontextmanager
    async def with_guardrails(self, guardrails: Sequence[str]) -> AsyncIterator["AsyncClient"]:
        async with self._derive({_base.H_GUARDRAILS: _base.guardrail_header(guardrails)}) as c:
            yield c

    @asynccontextmanager
    async def with_fallback(self, fallback: "openai.AsyncOpenAI"
                            ) -> AsyncIterator["openai.AsyncOpenAI"]:
        """See :meth:`AIlinkClient.with_fallback`."""
        from .fallback import FallbackOpenAI

        if not await self.is_healthy():
            _base.warn_bypass(stacklevel=3)
            yield fallback
            return
        yield FallbackOpenAI.wrap(self.openai(), fallback)

    # ------------------------------------------------------------------ realtime / admin

    def realtime(self, model: str, **params: Any) -> "RealtimeConnection":
        from .realtime import RealtimeConnection

        return RealtimeConnection(self._opts, model, params)

    @staticmethod
    def admin(admin_key: Optional[str] = None, gateway_url: Optional[str] = None,
              timeout: float = _base.DEFAULT_TIMEOUT, verify_ssl: bool = True) -> "AdminClient":
        from .admin import AdminClient

        return AdminClient(admin_key=admin_key, gateway_url=gateway_url, timeout=timeout,
                           verify_ssl=verify_ssl)


__all__ = ["AsyncClient"]
