"""``langchain_tool``: a LangChain ``StructuredTool`` calling an API through the gateway."""

from __future__ import annotations

import asyncio
from typing import Any, Dict, Iterable, Optional, Union

from ._core import GatewayTool, normalize_methods, tool_description

try:
    from langchain_core.tools import StructuredTool
    from pydantic import BaseModel, Field
except ImportError as e:  # pragma: no cover
    raise ImportError("langchain_tool needs langchain-core: pip install 'ailink[langchain]'") from e


class GatewayCallInput(BaseModel):
    """Arguments of a gateway call."""

    method: str = Field(default="GET", description="HTTP method")
    path: str = Field(description="API path starting with '/', e.g. /v1/customers")
    query: Optional[Dict[str, Any]] = Field(default=None, description="query parameters")
    body: Optional[Union[Dict[str, Any], list, str]] = Field(
        default=None, description="JSON body for POST, PUT and PATCH")


def langchain_tool(token: str, name: str, description: str,
                   methods: Optional[Iterable[str]] = None, *,
                   gateway_url: Optional[str] = None, agent_name: Optional[str] = None,
                   approval_timeout: Optional[float] = None,
                   timeout: float = 30.0) -> StructuredTool:
    """A LangChain tool calling the API behind ``token`` through the gateway.

    ``methods`` are the HTTP methods the tool may use (default ``["GET"]``);
    others are refused without a request. Policy denials, pending approvals,
    rejections and rate limits come back as the tool's text result, so an agent
    can read them. ``gateway_url`` defaults to ``$AILINK_GATEWAY_URL``."""
    allowed = normalize_methods(methods)
    core = GatewayTool(token, name, allowed, gateway_url=gateway_url, agent_name=agent_name,
                       approval_timeout=approval_timeout, timeout=timeout)

    def call(method: str = "GET", path: str = "/", query: Optional[Dict[str, Any]] = None,
             body: Any = None) -> str:
        return core.call(method, path, body, query)

    async def acall(method: str = "GET", path: str = "/",
                    query: Optional[Dict[str, Any]] = None, body: Any = None) -> str:
        return await asyncio.to_thread(core.call, method, path, body, query)

    tool = StructuredTool.from_function(
        func=call, coroutine=acall, name=name,
        description=tool_description(description, allowed),
        args_schema=GatewayCallInput)
    tool.metadata = {"ailink_methods": list(allowed), "ailink_gateway_url": core.client.gateway_url}
    return tool
