"""The stop request: set by SIGTERM/SIGINT or a Spot notice; a second signal hurries it."""

from __future__ import annotations

import asyncio
import signal

import structlog

log = structlog.get_logger("worker.engine.stopping")


class StopRequest:
    def __init__(self) -> None:
        self.reason: str | None = None
        self._requested = asyncio.Event()
        self._hurry = asyncio.Event()

    @property
    def requested(self) -> bool:
        return self._requested.is_set()

    def request(self, reason: str) -> None:
        if self._requested.is_set():
            log.warning("stop.hurried", reason=reason)
            self._hurry.set()
            return
        log.info("stop.requested", reason=reason)
        self.reason = reason
        self._requested.set()

    async def wait(self) -> None:
        await self._requested.wait()

    async def wait_hurry(self) -> None:
        await self._hurry.wait()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request, signal.Signals(signum).name.lower())
