"""The Realtime API over a WebSocket through the gateway (``pip install ailink[realtime]``)."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Dict, Mapping, Optional

import httpx

from . import _base
from ._base import Options
from .errors import AIlinkError, error_from_response


class RealtimeConnection:
    """``async with client.realtime(model) as ws``: ``await ws.send(dict)``,
    ``await ws.recv()`` (a dict), ``async for event in ws``.

    Connects to ``GET /v1/realtime?model=...`` on the gateway with the token; a
    refused upgrade raises the gateway's error (:class:`AuthenticationError`,
    :class:`PolicyDeniedError`...), an unreachable gateway
    :class:`GatewayUnavailableError`."""

    def __init__(self, opts: Options, model: str, params: Optional[Mapping[str, Any]] = None,
                 open_timeout: Optional[float] = None) -> None:
        self._opts = opts
        self.model = model
        self.url = _base.ws_url(opts.gateway_url, "/v1/realtime",
                                dict(params or {}, model=model))
        self.open_timeout = open_timeout if open_timeout is not None else opts.timeout
        self._ws: Any = None

    def _headers(self) -> Dict[str, str]:
        h = self._opts.all_headers()
        h.setdefault("OpenAI-Beta", "realtime=v1")
        h.pop("User-Agent", None)
        return h

    async def connect(self) -> "RealtimeConnection":
        try:
            from websockets.asyncio.client import connect
            new_api = True
        except ImportError:  # websockets < 13
            try:
                from websockets import connect  # type: ignore[no-redef,attr-defined]
            except ImportError as e:  # pragma: no cover
                raise ImportError("realtime needs the websockets package: "
                                  "pip install 'ailink[realtime]'") from e
            new_api = False
        import websockets.exceptions as wse

        kw: Dict[str, Any] = {"open_timeout": self.open_timeout, "max_size": 2 ** 24,
                              "user_agent_header": _base.USER_AGENT}
        if new_api:
            kw["additional_headers"] = self._headers()
        else:
            kw["extra_headers"] = self._headers()
            kw.pop("user_agent_header")
        try:
            self._ws = await connect(self.url, **kw)
        except wse.InvalidStatus as e:  # type: ignore[attr-defined]
            raise self._refused(e) from e
        except getattr(wse, "InvalidStatusCode", ()) as e:  # pragma: no cover - old websockets
            raise AIlinkError("realtime upgrade refused: HTTP %s" % e.status_code,
                              status_code=e.status_code) from e
        except (OSError, TimeoutError, wse.InvalidHandshake) as e:
            raise _base.GatewayUnavailableError(
                "AILink gateway at %s: realtime connection failed: %s"
                % (self._opts.gateway_url, e)) from e
        return self

    @staticmethod
    def _refused(e: Any) -> AIlinkError:
        r = e.response
        resp = httpx.Response(r.status_code, headers=list(r.headers.raw_items()),
                              content=bytes(r.body or b""))
        return error_from_response(resp)

    async def send(self, event: Mapping[str, Any]) -> None:
        """Send one client event (a dict, sent as JSON text)."""
        await self._conn().send(json.dumps(dict(event), separators=(",", ":")))

    async def recv(self) -> Dict[str, Any]:
        """The next server event, parsed."""
        msg = await self._conn().recv()
        if isinstance(msg, bytes):
            msg = msg.decode("utf-8")
        data = json.loads(msg)
        return data if isinstance(data, dict) else {"data": data}

    def __aiter__(self) -> AsyncIterator[Dict[str, Any]]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[Dict[str, Any]]:
        import websockets.exceptions as wse

        while True:
            try:
                yield await self.recv()
            except wse.ConnectionClosedOK:
                return

    async def close(self) -> None:
        if self._ws is not None:
            ws, self._ws = self._ws, None
            await ws.close()

    def _conn(self) -> Any:
        if self._ws is None:
            raise AIlinkError("realtime connection is not open (use 'async with')")
        return self._ws

    async def __aenter__(self) -> "RealtimeConnection":
        return await self.connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
