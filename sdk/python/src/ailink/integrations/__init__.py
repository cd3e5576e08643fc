"""Framework integrations: tools that call APIs through the gateway with a token.

``langchain_tool`` needs ``pip install 'ailink[langchain]'``, ``crewai_tool``
``pip install 'ailink[crewai]'``; the frameworks are imported only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Optional

if TYPE_CHECKING:  # pragma: no cover
    from langchain_core.tools import StructuredTool

    from .crewai import AIlinkGatewayTool


def langchain_tool(token: str, name: str, description: str,
                   methods: Optional[Iterable[str]] = None, **kw: Any) -> "StructuredTool":
    """A LangChain tool calling the API behind ``token`` through the gateway;
    see :func:`ailink.integrations.langchain.langchain_tool`."""
    from .langchain import langchain_tool as make

    return make(token, name, description, methods, **kw)


def crewai_tool(token: str, name: str, description: str,
                methods: Optional[Iterable[str]] = None, **kw: Any) -> "AIlinkGatewayTool":
    """A CrewAI tool calling the API behind ``token`` through the gateway;
    see :func:`ailink.integrations.crewai.crewai_tool`."""
    from .crewai import crewai_tool as make

    return make(token, name, description, methods, **kw)


__all__ = ["langchain_tool", "crewai_tool"]
