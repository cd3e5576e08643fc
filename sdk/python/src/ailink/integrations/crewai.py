"""``crewai_tool``: a CrewAI ``BaseTool`` calling an API through the gateway."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Type, Union

from ._core import GatewayTool, normalize_methods, tool_description

try:
    from crewai.tools import BaseTool
    from pydantic import BaseModel, Field, PrivateAttr
except ImportError as e:  # pragma: no cover
    raise ImportError("crewai_tool needs crewai: pip install 'ailink[crewai]'") from e


class GatewayCallSchema(BaseModel):
    """Arguments of a gateway call."""

    method: str = Field(default="GET", description="HTTP method")
    path: str = Field(description="API path starting with '/', e.g. /repos/org/repo/issues")
    query: Optional[Dict[str, Any]] = Field(default=None, description="query parameters")
    body: Optional[Union[Dict[str, Any], List[Any], str]] = Field(
        default=None, description="JSON body for POST, PUT and PATCH")


class AIlinkGatewayTool(BaseTool):
    """A CrewAI tool whose calls go through the AILink gateway with one token."""

    name: str = "ailink_gateway"
    description: str = "Call an API through the AILink gateway"
    args_schema: Type[BaseModel] = GatewayCallSchema
    allowed_methods: List[str] = Field(default_factory=lambda: ["GET"])
    _core: Any = PrivateAttr(default=None)

    def _run(self, method: str = "GET", path: str = "/",
             query: Optional[Dict[str, Any]] = None, body: Any = None, **_: Any) -> str:
        return self._core.call(method, path, body, query)


def crewai_tool(token: str, name: str, description: str,
                methods: Optional[Iterable[str]] = None, *,
                gateway_url: Optional[str] = None, agent_name: Optional[str] = None,
                approval_timeout: Optional[float] = None,
                timeout: float = 30.0) -> AIlinkGatewayTool:
    """A CrewAI tool calling the API behind ``token`` through the gateway
    (same behaviour as :func:`ailink.integrations.langchain_tool`)."""
    allowed = normalize_methods(methods)
    tool = AIlinkGatewayTool(name=name, description=tool_description(description, allowed),
                             allowed_methods=list(allowed))
    tool._core = GatewayTool(token, name, allowed, gateway_url=gateway_url,
                             agent_name=agent_name, approval_timeout=approval_timeout,
                             timeout=timeout)
    return tool
