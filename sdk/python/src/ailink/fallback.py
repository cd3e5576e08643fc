"""An OpenAI client that moves to a fallback client when the gateway cannot be reached."""

from __future__ import annotations

import inspect
from typing import Any, List, Tuple, cast

from . import _base


class _State:
    def __init__(self, primary: Any, fallback: Any) -> None:
        self.primary = primary
        self.fallback = fallback
        self.bypassed = False

    def active(self) -> Any:
        return self.fallback if self.bypassed else self.primary

    def switch(self) -> None:
        if not self.bypassed:
            self.bypassed = True
            _base.warn_bypass(stacklevel=4)


def _resolve(root: Any, path: Tuple[str, ...]) -> Any:
    obj = root
    for name in path:
        obj = getattr(obj, name)
    return obj


def _is_resource(obj: Any) -> bool:
    mod = type(obj).__module__ or ""
    return mod.startswith("openai.resources") or mod == "openai._resource"


def _connection_errors() -> Tuple[type, ...]:
    import openai

    return (openai.APIConnectionError,)


class FallbackOpenAI:
    """Stands for ``openai.OpenAI`` / ``AsyncOpenAI``: every call goes to the gateway's
    client until one fails to connect, then (with a warning) to the fallback."""

    def __init__(self, state: _State, path: Tuple[str, ...] = ()) -> None:
        self._state = state
        self._path = path

    @classmethod
    def wrap(cls, primary: Any, fallback: Any) -> Any:
        return cast(Any, cls(_State(primary, fallback)))

    @property
    def bypassed(self) -> bool:
        """True once calls go to the fallback."""
        return self._state.bypassed

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        path = self._path + (name,)
        value = _resolve(self._state.active(), path)
        if callable(value) or _is_resource(value):
            return FallbackOpenAI(self._state, path)
        return value

    def __dir__(self) -> List[str]:
        return dir(_resolve(self._state.active(), self._path))

    def __call__(self, *args: Any, **kw: Any) -> Any:
        state = self._state
        target = _resolve(state.active(), self._path)
        if state.bypassed:
            return target(*args, **kw)
        if inspect.iscoroutinefunction(target):
            return self._acall(target, args, kw)
        try:
            return target(*args, **kw)
        except _connection_errors():
            state.switch()
            return _resolve(state.fallback, self._path)(*args, **kw)

    async def _acall(self, target: Any, args: Any, kw: Any) -> Any:
        state = self._state
        try:
            return await target(*args, **kw)
        except _connection_errors():
            state.switch()
            return await _resolve(state.fallback, self._path)(*args, **kw)
