"""Errors raised by the SDK, mapped from the gateway's error envelope.

The gateway answers its own errors as
``{"error": {"type", "code", "message", "param", "request_id", ...extra}}``
(ARCHITECTURE.md §4.5).  :func:`error_from_response` turns such a response into
the matching subclass of :class:`AIlinkError`; every one keeps the HTTP status,
the ``code``, the gateway's request id and the raw body.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Type

import httpx

__all__ = [
    "AIlinkError",
    "AuthenticationError",
    "PolicyDeniedError",
    "ContentBlockedError",
    "ApprovalRejectedError",
    "ApprovalTimeoutError",
    "RateLimitError",
    "BudgetExceededError",
    "CircuitOpenError",
    "IdempotencyConflictError",
    "InvalidRequestError",
    "NotFoundError",
    "UpstreamError",
    "GatewayUnavailableError",
    "GatewayTimeoutError",
    "error_from_response",
    "is_gateway_error",
]


class AIlinkError(Exception):
    """Base class of every error the SDK raises.

    ``status_code``, ``code``, ``request_id`` (the gateway's ``X-AILink-Request-Id``),
    ``body`` (the raw response text) and ``response`` (the ``httpx.Response``)
    are ``None`` when the error did not come from a response.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: Optional[int] = None,
        code: Optional[str] = None,
        request_id: Optional[str] = None,
        body: Optional[str] = None,
        response: Optional[httpx.Response] = None,
        error: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.request_id = request_id
        self.body = body
        self.response = response
        self.error: Dict[str, Any] = dict(error or {})

    @property
    def status(self) -> Optional[int]:
        """Alias of ``status_code``."""
        return self.status_code

    def __str__(self) -> str:
        parts = [self.message]
        if self.status_code is not None or self.code:
            parts.append("(%s%s%s)" % (self.status_code if self.status_code is not None else "",
                                       " " if self.status_code is not None and self.code else "",
                                       self.code or ""))
        if self.request_id:
            parts.append("[request %s]" % self.request_id)
        return " ".join(parts)

    def __repr__(self) -> str:
        return "%s(%r, status_code=%r, code=%r, request_id=%r)" % (
            type(self).__name__, self.message, self.status_code, self.code, self.request_id)


class AuthenticationError(AIlinkError):
    """401 ``invalid_token``: the token or admin key is missing, unknown, disabled or expired."""


class PolicyDeniedError(AIlinkError):
    """403 ``policy_denied``: a policy refused the request."""

    def __init__(self, message: str, *, policy_name: Optional[str] = None,
                 reason: Optional[str] = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.policy_name = policy_name
        self.reason = reason if reason is not None else message


class ContentBlockedError(AIlinkError):
    """403 ``content_blocked``: a guardrail blocked the content (``matches`` holds types only)."""

    def __init__(self, message: str, *, guardrail: Optional[str] = None,
                 matches: Optional[List[Any]] = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.guardrail = guardrail
        self.matches: List[Any] = list(matches or [])


class ApprovalRejectedError(AIlinkError):
    """403 ``approval_rejected``: an approver rejected the held request."""

    def __init__(self, message: str, *, approval_id: Optional[str] = None,
                 reason: Optional[str] = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.approval_id = approval_id
        self.reason = reason if reason is not None else message


class ApprovalTimeoutError(AIlinkError):
    """408 ``approval_timeout`` (or the SDK's own wait ran out): nobody decided in time."""

    def __init__(self, message: str, *, timeout: Optional[float] = None,
                 approval_id: Optional[str] = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.timeout = timeout
        self.approval_id = approval_id


class RateLimitError(AIlinkError):
    """429 ``rate_limited``; ``retry_after`` in seconds (from the body or ``Retry-After``)."""

    def __init__(self, message: str, *, retry_after: Optional[float] = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class BudgetExceededError(AIlinkError):
    """402 ``budget_exceeded``: the token's or project's spend cap is reached."""

    def __init__(self, message: str, *, budget: Optional[str] = None,
                 spent_usd: Optional[float] = None, limit_usd: Optional[float] = None,
                 **kw: Any) -> None:
        super().__init__(message, **kw)
        self.budget = budget
        self.spent_usd = spent_usd
        self.limit_usd = limit_usd


class CircuitOpenError(AIlinkError):
    """503 ``circuit_open``: the upstream's circuit breaker is open."""

    def __init__(self, message: str, *, retry_after: Optional[float] = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class IdempotencyConflictError(AIlinkError):
    """409 ``idempotency_conflict``: a request with the same key is still in flight."""


class InvalidRequestError(AIlinkError):
    """400/405/413/414/431/501 from the gateway itself (``invalid_request``, ``payload_too_large``...)."""


class NotFoundError(AIlinkError):
    """404 ``not_found`` from the gateway (a route the token cannot use, an unknown admin object)."""


class UpstreamError(AIlinkError):
    """502 ``upstream_error`` / 504 ``upstream_timeout``: the gateway could not get an answer upstream."""


class GatewayUnavailableError(AIlinkError):
    """The gateway itself could not be reached (connection refused, DNS, TLS, timeout)."""


class GatewayTimeoutError(GatewayUnavailableError):
    """The gateway accepted the connection but did not answer within the client's timeout."""


_BY_CODE: Dict[str, Type[AIlinkError]] = {
    "invalid_token": AuthenticationError,
    "policy_denied": PolicyDeniedError,
    "content_blocked": ContentBlockedError,
    "approval_rejected": ApprovalRejectedError,
    "approval_timeout": ApprovalTimeoutError,
    "rate_limited": RateLimitError,
    "budget_exceeded": BudgetExceededError,
    "circuit_open": CircuitOpenError,
    "idempotency_conflict": IdempotencyConflictError,
    "invalid_request": InvalidRequestError,
    "payload_too_large": InvalidRequestError,
    "method_not_allowed": InvalidRequestError,
    "not_found": NotFoundError,
    "upstream_error": UpstreamError,
    "upstream_timeout": UpstreamError,
}

_BY_STATUS: Dict[int, Type[AIlinkError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    402: BudgetExceededError,
    404: NotFoundError,
    408: ApprovalTimeoutError,
    409: IdempotencyConflictError,
    413: InvalidRequestError,
    429: RateLimitError,
    502: UpstreamError,
    504: UpstreamError,
}


def _num(v: Any) -> Optional[float]:
    if v is None or isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _envelope(response: httpx.Response) -> Optional[Dict[str, Any]]:
    try:
        data = json.loads(response.content or b"")
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return data["error"]
    return None


def is_gateway_error(response: httpx.Response) -> bool:
    """Whether an error response was produced by the gateway itself (its envelope).

    The gateway's envelope carries ``request_id`` inside ``error``, equal to the
    ``X-AILink-Request-Id`` header; an upstream's own error (a Stripe 402, an
    OpenAI 400 passed through) does not, and is returned to the caller as is.
    """
    if response.status_code < 400:
        return False
    err = _envelope(response)
    if err is None or not isinstance(err.get("code"), str):
        return False
    rid = err.get("request_id")
    if not isinstance(rid, str) or not rid:
        return False
    if err["code"] in _BY_CODE:
        return True
    header = response.headers.get("x-ailink-request-id")
    return header is None or header == rid


def error_from_response(response: httpx.Response) -> AIlinkError:
    """The :class:`AIlinkError` subclass for an error response (envelope or not)."""
    err = _envelope(response) or {}
    try:
        text: Optional[str] = response.text
    except Exception:  # pragma: no cover - undecodable body
        text = None
    status = response.status_code
    code = err.get("code") if isinstance(err.get("code"), str) else None
    message = err.get("message") if isinstance(err.get("message"), str) else None
    if not message:
        message = "gateway answered HTTP %d" % status
    request_id = response.headers.get("x-ailink-request-id") or (
        err.get("request_id") if isinstance(err.get("request_id"), str) else None)
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status) or AIlinkError
    if cls is AIlinkError and status == 403:
        cls = PolicyDeniedError if err.get("policy_name") else AIlinkError
    if cls is AIlinkError and status == 503:
        cls = CircuitOpenError if code == "circuit_open" else UpstreamError
    base: Dict[str, Any] = dict(status_code=status, code=code, request_id=request_id,
                                body=text, response=response, error=err)
    retry_after = _num(err.get("retry_after"))
    if retry_after is None:
        retry_after = _num(response.headers.get("retry-after"))
    if cls is PolicyDeniedError:
        return PolicyDeniedError(message, policy_name=err.get("policy_name"),
                                 reason=err.get("reason"), **base)
    if cls is ContentBlockedError:
        matches = err.get("matches")
        return ContentBlockedError(message, guardrail=err.get("guardrail"),
                                   matches=matches if isinstance(matches, list) else None, **base)
    if cls is ApprovalRejectedError:
        # in this envelope, request_id is the approval's id (ARCHITECTURE.md §4.5)
        apr = err.get("approval_id") or err.get("request_id")
        return ApprovalRejectedError(message, approval_id=apr, reason=err.get("reason"), **base)
    if cls is ApprovalTimeoutError:
        return ApprovalTimeoutError(message, timeout=_num(err.get("timeout")),
                                    approval_id=err.get("approval_id"), **base)
    if cls is RateLimitError:
        return RateLimitError(message, retry_after=retry_after, **base)
    if cls is CircuitOpenError:
        return CircuitOpenError(message, retry_after=retry_after, **base)
    if cls is BudgetExceededError:
        return BudgetExceededError(message, budget=err.get("budget"),
                                   spent_usd=_num(err.get("spent_usd")),
                                   limit_usd=_num(err.get("limit_usd")), **base)
    return cls(message, **base)
