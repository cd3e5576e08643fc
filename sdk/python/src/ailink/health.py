"""Background health polling: ``HealthPoller`` (thread) and ``AsyncHealthPoller`` (task)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Optional

from .async_client import AsyncClient
from .client import AIlinkClient


class HealthPoller:
    """Checks ``client.is_healthy()`` every ``interval`` seconds in a daemon thread.

    ``is_healthy`` is right from the moment the poller is entered: entering
    checks once before returning. ``on_change(healthy)`` is called on each change."""

    def __init__(self, client: AIlinkClient, interval: float = 15.0,
                 timeout: Optional[float] = None,
                 on_change: Optional[Callable[[bool], Any]] = None) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.client = client
        self.interval = float(interval)
        self.timeout = timeout if timeout is not None else min(5.0, max(0.5, self.interval))
        self.on_change = on_change
        self._healthy = False
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def is_healthy(self) -> bool:
        return self._healthy

    def check(self) -> bool:
        """Check now and update ``is_healthy``."""
        healthy = self.client.is_healthy(timeout=self.timeout)
        changed = healthy != self._healthy
        self._healthy = healthy
        if changed and self.on_change is not None:
            self.on_change(healthy)
        return healthy

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def start(self) -> "HealthPoller":
        if self._thread is None:
            self._stop.clear()
            self.check()
            self._thread = threading.Thread(target=self._run, name="ailink-health-poller",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> "HealthPoller":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class AsyncHealthPoller:
    """The asyncio twin of :class:`HealthPoller`: a task checking every ``interval`` s."""

    def __init__(self, client: AsyncClient, interval: float = 15.0,
                 timeout: Optional[float] = None,
                 on_change: Optional[Callable[[bool], Any]] = None) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.client = client
        self.interval = float(interval)
        self.timeout = timeout if timeout is not None else min(5.0, max(0.5, self.interval))
        self.on_change = on_change
        self._healthy = False
        self._task: Optional["asyncio.Task[None]"] = None

    @property
    def is_healthy(self) -> bool:
        return self._healthy

    async def check(self) -> bool:
        healthy = await self.client.is_healthy(timeout=self.timeout)
        changed = healthy != self._healthy
        self._healthy = healthy
        if changed and self.on_change is not None:
            self.on_change(healthy)
        return healthy

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.check()

    async def start(self) -> "AsyncHealthPoller":
        if self._task is None:
            await self.check()
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def __aenter__(self) -> "AsyncHealthPoller":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
