"""The messages this worker holds, and the heartbeat that keeps them invisible while they run."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from worker.adapters.sqs import ReceivedMessage
from worker.engine.batching import Batcher

log = structlog.get_logger("worker.engine.leases")

VisibilityEntry = tuple[str, int]  # (receipt handle, seconds)
# Gives a message (with its newest receipt handle) back to the queue: handback.py.
GiveBack = Callable[[ReceivedMessage], Awaitable[bool]]


@dataclass
class Lease:
    message: ReceivedMessage
    receipt_handle: str
    expires_at: float

    @property
    def message_id(self) -> str:
        return self.message.message_id


class Leases:
    """Tracks each held message's lease and extends it in batches before it runs out."""

    def __init__(
        self,
        visibility: Batcher[VisibilityEntry],
        *,
        give_back: GiveBack,
        visibility_seconds: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._visibility = visibility
        self._give_back = give_back
        self._seconds = visibility_seconds
        self._clock = clock
        self._held: dict[str, Lease] = {}

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, message: ReceivedMessage, *, received_at: float) -> None:
        self._held[message.message_id] = Lease(
            message, message.receipt_handle, received_at + self._seconds
        )

    def __contains__(self, message_id: str) -> bool:
        return message_id in self._held

    def receipt_handle(self, message_id: str, fallback: str) -> str:
        lease = self._held.get(message_id)
        return lease.receipt_handle if lease is not None else fallback

    def renew(self, message_id: str, receipt_handle: str, *, received_at: float) -> None:
        """The same message arrived again while held here: keep its newest receipt handle."""
        lease = self._held[message_id]
        lease.receipt_handle = receipt_handle
        lease.expires_at = received_at + self._seconds

    def release(self, message_id: str) -> None:
        """Forget a message whose fate is settled (deleted, re-timed or handed back)."""
        self._held.pop(message_id, None)

    @property
    def tick_seconds(self) -> float:
        return max(0.25, self._seconds / 4)

    async def heartbeat(self) -> None:
        """Every tick, extend the leases that would expire within half a visibility period."""
        while True:
            await asyncio.sleep(self.tick_seconds)
            await self.extend_due()

    async def extend_due(self) -> None:
        now = self._clock()
        due = [
            lease for lease in self._held.values() if lease.expires_at - now <= self._seconds / 2
        ]
        if not due:
            return
        for lease in due:
            lease.expires_at = now + self._seconds
        results = await asyncio.gather(
            *(self._visibility.submit((lease.receipt_handle, self._seconds)) for lease in due)
        )
        lost = [lease.message_id for lease, ok in zip(due, results, strict=True) if not ok]
        log.debug("leases.extended", count=len(due) - len(lost))
        for message_id in lost:
            log.warning("lease.lost", message_id=message_id)

    async def hand_back(self, message_id: str) -> bool:
        """Give a held message back at once, so another worker takes it, uncounted."""
        lease = self._held.pop(message_id, None)
        if lease is None:
            return False
        return await self._give_back(
            dataclasses.replace(lease.message, receipt_handle=lease.receipt_handle)
        )
