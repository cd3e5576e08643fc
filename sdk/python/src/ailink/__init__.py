"""AILink: a policy-enforced, audited gateway for AI agents — the Python SDK.

    from ailink import AIlinkClient
    client = AIlinkClient(api_key="ailink_v1_...", gateway_url="http://127.0.0.1:8080")
    oai = client.openai()
"""

from ._base import ApprovalResult, GatewayBypassWarning
from ._version import __version__
from .admin import AdminClient
from .async_client import AsyncClient
from .client import AIlinkClient, PendingApproval
from .errors import (AIlinkError, ApprovalRejectedError, ApprovalTimeoutError,
                     AuthenticationError, BudgetExceededError, CircuitOpenError,
                     ContentBlockedError, GatewayTimeoutError, GatewayUnavailableError,
                     IdempotencyConflictError, InvalidRequestError, NotFoundError,
                     PolicyDeniedError, RateLimitError, UpstreamError)
from .health import AsyncHealthPoller, HealthPoller

AsyncAIlinkClient = AsyncClient

__all__ = [
    "__version__",
    "AIlinkClient", "AsyncClient", "AsyncAIlinkClient", "AdminClient",
    "HealthPoller", "AsyncHealthPoller", "ApprovalResult", "PendingApproval",
    "GatewayBypassWarning",
    "AIlinkError", "AuthenticationError", "PolicyDeniedError", "ContentBlockedError",
    "ApprovalRejectedError", "ApprovalTimeoutError", "RateLimitError",
    "BudgetExceededError", "CircuitOpenError", "IdempotencyConflictError",
    "InvalidRequestError", "NotFoundError", "UpstreamError",
    "GatewayUnavailableError", "GatewayTimeoutError",
]
