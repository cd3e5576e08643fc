"""What the framework tools share: one gateway call, its outcome as text an agent can read."""

from __future__ import annotations

import json
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

from ..client import AIlinkClient
from ..errors import (AIlinkError, ApprovalRejectedError, ApprovalTimeoutError,
                      BudgetExceededError, ContentBlockedError, PolicyDeniedError,
                      RateLimitError)

ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
DEFAULT_METHODS = ("GET",)
MAX_RESULT_CHARS = 20000


def normalize_methods(methods: Optional[Iterable[str]]) -> Tuple[str, ...]:
    if methods is None:
        return DEFAULT_METHODS
    out = tuple(dict.fromkeys(m.strip().upper() for m in methods if m and m.strip()))
    bad = [m for m in out if m not in ALL_METHODS + ("HEAD",)]
    if not out or bad:
        raise ValueError("methods must be among %s, got %r" % (", ".join(ALL_METHODS), methods))
    return out


def tool_description(description: str, methods: Sequence[str]) -> str:
    return ("%s\nCalls go through the AILink gateway (policies, approvals and audit apply). "
            "Arguments: method (one of %s), path (the API path, starting with '/', e.g. "
            "'/v1/customers'), optional query (object) and body (JSON object)."
            % (description.rstrip(), ", ".join(methods)))


class GatewayTool:
    """Calls the gateway with one token, allowing only some methods."""

    def __init__(self, token: str, name: str, methods: Optional[Iterable[str]] = None,
                 gateway_url: Optional[str] = None, agent_name: Optional[str] = None,
                 approval_timeout: Optional[float] = None, timeout: float = 30.0,
                 max_result_chars: int = MAX_RESULT_CHARS) -> None:
        self.name = name
        self.methods = normalize_methods(methods)
        self.approval_timeout = approval_timeout
        self.max_result_chars = max_result_chars
        self.client = AIlinkClient(api_key=token, gateway_url=gateway_url,
                                   agent_name=agent_name or name, timeout=timeout)

    def call(self, method: str = "GET", path: str = "/", body: Any = None,
             query: Optional[Dict[str, Any]] = None) -> str:
        method = (method or "GET").strip().upper()
        if method not in self.methods:
            return ("REFUSED: method %s is not allowed for tool '%s' (allowed: %s). "
                    "The call was not sent." % (method, self.name, ", ".join(self.methods)))
        if not isinstance(path, str) or not path.startswith("/") or "://" in path \
                or path.startswith("//"):
            return ("REFUSED: path must be an API path starting with '/' (got %r). "
                    "The call was not sent." % (path,))
        kw: Dict[str, Any] = {}
        if query:
            kw["params"] = query
        if body is not None and method not in ("GET", "HEAD"):
            if isinstance(body, str):
                try:
                    kw["json"] = json.loads(body)
                except ValueError:
                    kw["content"] = body.encode("utf-8")
            else:
                kw["json"] = body
        if self.approval_timeout:
            kw["wait_for_approval"] = True
            kw["approval_timeout"] = self.approval_timeout
        try:
            resp = self.client.request(method, path, **kw)
        except PolicyDeniedError as e:
            return ("DENIED by AILink policy '%s': %s. The call was not executed; do not retry it "
                    "unchanged." % (e.policy_name or "unknown", e.reason))
        except ContentBlockedError as e:
            return ("BLOCKED by AILink guardrail '%s' (%s). The call was not executed."
                    % (e.guardrail or "unknown", ", ".join(map(str, e.matches)) or e.message))
        except ApprovalRejectedError as e:
            return "REJECTED by a human approver: %s. The call was not executed." % (e.reason,)
        except ApprovalTimeoutError as e:
            return ("APPROVAL TIMED OUT after %ss: nobody approved the call, it was not executed."
                    % (e.timeout,))
        except RateLimitError as e:
            return ("RATE LIMITED by the AILink gateway%s. The call was not executed."
                    % (", retry after %gs" % e.retry_after if e.retry_after is not None else ""))
        except BudgetExceededError as e:
            return "BUDGET EXCEEDED: %s. The call was not executed." % (e.message,)
        except AIlinkError as e:
            return "ERROR from the AILink gateway (%s): %s" % (e.code or e.status_code, e.message)
        if resp.status_code == 202:
            try:
                data = resp.json()
            except ValueError:
                data = None
            if isinstance(data, dict) and data.get("status") == "pending_approval":
                return ("PENDING APPROVAL: the call needs a human's approval and has NOT been "
                        "executed yet (approval id %s, policy '%s', expires %s)."
                        % (data.get("request_id"), data.get("policy_name"),
                           data.get("expires_at")))
        text = resp.text
        if len(text) > self.max_result_chars:
            text = text[:self.max_result_chars] + "\n...[truncated]"
        return "HTTP %d\n%s" % (resp.status_code, text)
