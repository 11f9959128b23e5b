"""When is the queue drained? Only after repeated checks that it holds nothing at all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from worker.adapters.sqs import QueueCounts
from worker.errors import JobError

log = structlog.get_logger("worker.engine.idle")


class IdleWatch:
    """Resolves once the queue's visible, in-flight and delayed counts have all been zero,
    on at least two checks spanning `idle_seconds`, while nothing ran here."""

    def __init__(
        self,
        counts: Callable[[], Awaitable[QueueCounts]],
        *,
        idle_seconds: float,
        busy: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._counts = counts
        self._idle_seconds = idle_seconds
        self._busy = busy
        self._clock = clock
        self._idle_since: float | None = None
        self._confirmations = 0

    def activity(self) -> None:
        """Something arrived or ran here: the idle period starts over."""
        self._idle_since = None
        self._confirmations = 0

    @property
    def interval(self) -> float:
        return min(5.0, max(0.25, self._idle_seconds / 4))

    async def wait_drained(self) -> None:
        if self._idle_seconds == 0:  # service mode: never drained
            await asyncio.Event().wait()
        while True:
            await asyncio.sleep(self.interval)
            if await self._check():
                return

    async def _check(self) -> bool:
        if self._busy():
            self.activity()
            return False
        try:
            counts = await self._counts()
        except JobError as exc:
            log.warning("drain.count_failed", error=str(exc))
            return False
        if not counts.empty or self._busy():
            if self._idle_since is not None:
                log.debug(
                    "drain.not_empty",
                    visible=counts.visible,
                    in_flight=counts.in_flight,
                    delayed=counts.delayed,
                )
            self.activity()
            return False
        now = self._clock()
        if self._idle_since is None:
            self._idle_since = now
        self._confirmations += 1
        return self._confirmations >= 2 and now - self._idle_since >= self._idle_seconds
