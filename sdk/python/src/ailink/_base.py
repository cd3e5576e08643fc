"""What the sync and async clients share: options, headers, retry decisions."""

from __future__ import annotations

import json
import os
import uuid
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit, urlunsplit

import httpx

from ._version import __version__
from .errors import (AIlinkError, ApprovalRejectedError, CircuitOpenError,
                     GatewayTimeoutError, GatewayUnavailableError, RateLimitError,
                     UpstreamError)

DEFAULT_GATEWAY_URL = "http://localhost:8080"
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
USER_AGENT = "ailink-python/%s" % __version__

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})

# header names of the wire contract (ARCHITECTURE.md §4.3)
H_AGENT = "X-AILink-Agent-Name"
H_UPSTREAM_KEY = "X-AILink-Upstream-Key"
H_SESSION = "X-AILink-Session-Id"
H_PARENT_SPAN = "X-AILink-Parent-Span-Id"
H_PROPERTIES = "X-AILink-Properties"
H_GUARDRAILS = "X-AILink-Guardrails"
H_APPROVAL_ID = "X-AILink-Approval-Id"
H_APPROVAL_WAIT = "X-AILink-Approval-Wait"
H_IDEMPOTENCY = "Idempotency-Key"


class GatewayBypassWarning(UserWarning):
    """Requests are going straight to the provider: no policy, no audit, no spend tracking."""


BYPASS_MESSAGE = ("AILink gateway unreachable: using the fallback client, which bypasses "
                  "the gateway (no policy enforcement, no audit logs, no spend tracking)")


def warn_bypass(stacklevel: int = 3) -> None:
    import logging

    logging.getLogger("ailink").warning(BYPASS_MESSAGE)
    warnings.warn(BYPASS_MESSAGE, GatewayBypassWarning, stacklevel=stacklevel)


def resolve_gateway_url(gateway_url: Optional[str]) -> str:
    """The gateway's root URL: the argument, else $AILINK_GATEWAY_URL, else localhost:8080.

    A trailing ``/`` or ``/v1`` is dropped: paths (``/v1/customers``) are given whole."""
    url = gateway_url or os.environ.get("AILINK_GATEWAY_URL") or DEFAULT_GATEWAY_URL
    url = url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[:-3]
    if "://" not in url:
        url = "http://" + url
    return url


def resolve_api_key(api_key: Optional[str]) -> str:
    key = api_key or os.environ.get("AILINK_API_KEY")
    if not key:
        raise AIlinkError("no api_key given and AILINK_API_KEY is not set")
    return key


def ws_url(gateway_url: str, path: str, params: Mapping[str, Any]) -> str:
    parts = urlsplit(gateway_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    query = str(httpx.QueryParams({k: v for k, v in params.items() if v is not None}))
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, query, ""))


@dataclass(frozen=True)
class Options:
    """Everything a client and the clients derived from it (``trace``...) share."""

    api_key: str
    gateway_url: str
    agent_name: Optional[str] = None
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    verify_ssl: bool = True
    headers: Tuple[Tuple[str, str], ...] = ()
    # retry pacing: backoff_base * 2**attempt, capped; a Retry-After longer than
    # max_retry_wait is not waited for (the error is raised at once)
    backoff_base: float = 0.25
    backoff_max: float = 8.0
    max_retry_wait: float = 30.0

    def with_headers(self, extra: Mapping[str, Optional[str]]) -> "Options":
        merged: Dict[str, str] = {}
        for k, v in self.headers:
            merged[k.lower()] = v
        names = {k.lower(): k for k, _ in self.headers}
        for k, v in extra.items():
            if v is None:
                merged.pop(k.lower(), None)
            else:
                merged[k.lower()] = v
                names[k.lower()] = k
        return replace(self, headers=tuple((names[k], v) for k, v in merged.items()))

    def default_headers(self) -> Dict[str, str]:
        """Headers of every request but Authorization (the openai client adds its own)."""
        h: Dict[str, str] = {"User-Agent": USER_AGENT}
        if self.agent_name:
            h[H_AGENT] = self.agent_name
        for k, v in self.headers:
            h[k] = v
        return h

    def all_headers(self) -> Dict[str, str]:
        h = self.default_headers()
        h["Authorization"] = "Bearer " + self.api_key
        return h


def trace_headers(session_id: Optional[str], properties: Optional[Mapping[str, Any]],
                  parent_span_id: Optional[str]) -> Dict[str, Optional[str]]:
    h: Dict[str, Optional[str]] = {H_SESSION: session_id}
    if properties is not None:
        h[H_PROPERTIES] = json.dumps(dict(properties), separators=(",", ":"), ensure_ascii=True)
    if parent_span_id is not None:
        h[H_PARENT_SPAN] = parent_span_id
    return h


def new_session_id() -> str:
    return "sess-" + uuid.uuid4().hex


def guardrail_header(guardrails: Sequence[str]) -> str:
    names = [g.strip() for g in guardrails if g and g.strip()]
    if not names:
        raise ValueError("with_guardrails needs at least one guardrail name")
    return ",".join(names)


def request_headers(opts: Options, headers: Optional[Mapping[str, str]],
                    idempotency_key: Optional[str], approval_wait: Optional[float]) -> Dict[str, str]:
    h = opts.all_headers()
    if idempotency_key:
        h[H_IDEMPOTENCY] = idempotency_key
    if approval_wait is not None:
        h[H_APPROVAL_WAIT] = str(max(1, int(round(approval_wait))))
    if headers:
        for k, v in headers.items():
            # a caller's header replaces ours whatever its case
            for old in [x for x in h if x.lower() == k.lower()]:
                del h[old]
            h[k] = v
    return h


def request_timeout(opts: Options, approval_wait: Optional[float]) -> httpx.Timeout:
    if approval_wait is None:
        return httpx.Timeout(opts.timeout)
    # the gateway holds the connection until the approval is decided
    return httpx.Timeout(opts.timeout, read=opts.timeout + approval_wait)


def transport_error(exc: Exception, url: str) -> GatewayUnavailableError:
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return GatewayTimeoutError("AILink gateway at %s did not answer in time: %s" % (url, exc))
    return GatewayUnavailableError("AILink gateway at %s is unreachable: %s" % (url, exc))


def transport_retry_delay(opts: Options, exc: Exception, method: str, idempotent: bool,
                          attempt: int) -> Optional[float]:
    """Seconds to wait before retrying after a transport error, or None to give up."""
    if attempt >= opts.retries:
        return None
    never_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
    if never_sent or idempotent or method in IDEMPOTENT_METHODS:
        return backoff(opts, attempt)
    return None


def error_retry_delay(opts: Options, err: AIlinkError, method: str, idempotent: bool,
                      attempt: int) -> Optional[float]:
    """Seconds to wait before retrying after a gateway error, or None to raise it.

    Rate limits and open circuits are refused before anything reaches the
    upstream, so any method is retried; an upstream failure only for idempotent
    methods or requests with an idempotency key."""
    if attempt >= opts.retries:
        return None
    if isinstance(err, (RateLimitError, CircuitOpenError)):
        wait = err.retry_after if err.retry_after is not None else backoff(opts, attempt)
        return wait if wait <= opts.max_retry_wait else None
    if isinstance(err, UpstreamError) and (idempotent or method in IDEMPOTENT_METHODS):
        return backoff(opts, attempt)
    return None


def backoff(opts: Options, attempt: int) -> float:
    return min(opts.backoff_max, opts.backoff_base * (2 ** attempt))


def pending_approval(response: httpx.Response) -> Optional[Dict[str, Any]]:
    """The body of a ``202 pending_approval`` answer, else None."""
    if response.status_code != 202:
        return None
    try:
        data = response.json()
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("status") == "pending_approval" and data.get("request_id"):
        return data
    return None


@dataclass
class HeldRequest:
    """A request the gateway held for approval, kept to claim it once approved."""

    method: str
    url: str
    headers: Dict[str, str]
    content: bytes
    approval: Dict[str, Any] = field(default_factory=dict)

    def claim_headers(self, approval_id: str) -> Dict[str, str]:
        h = {k: v for k, v in self.headers.items()
             if k.lower() not in ("content-length", H_APPROVAL_WAIT.lower(), "host")}
        h[H_APPROVAL_ID] = approval_id
        return h


@dataclass
class ApprovalResult:
    """The outcome of :meth:`AIlinkClient.wait_for_approval`.

    ``approved`` is True once an approver approved the request; ``response`` is
    then the upstream's answer to the claimed request (None when the request
    was not sent by this client, so it could not be repeated). ``reason`` is the
    approver's reason (or ``"expired"``)."""

    request_id: str
    status: str
    approved: bool
    reason: Optional[str] = None
    response: Optional[httpx.Response] = None
    approval: Dict[str, Any] = field(default_factory=dict)


def approval_state(data: Any) -> Tuple[str, Optional[str]]:
    if not isinstance(data, dict):
        return "pending", None
    status = str(data.get("status") or "pending").lower()
    reason = data.get("reason")
    return status, reason if isinstance(reason, str) else None


def finished_result(request_id: str, data: Dict[str, Any]) -> Optional[ApprovalResult]:
    status, reason = approval_state(data)
    if status in ("rejected", "denied"):
        return ApprovalResult(request_id, "rejected", False, reason, None, data)
    if status == "expired":
        return ApprovalResult(request_id, "expired", False, reason or "expired", None, data)
    return None


def rejected_error(result: ApprovalResult) -> ApprovalRejectedError:
    return ApprovalRejectedError("approval %s was %s%s" % (
        result.request_id, result.status, ": " + result.reason if result.reason else ""),
        approval_id=result.request_id, reason=result.reason, code="approval_rejected")


__all__: List[str] = []
