"""Give a held message back because of a stop, without SQS counting it as an attempt.

The copy, carrying the message's history (lineage.py), is sent first and the original
deleted after: a crash in between leaves a duplicate, which idempotent handlers absorb,
never a gap. When the copy cannot be sent (the queue refuses it, or a FIFO queue, where a
copy would need a group of its own), the message is made visible again instead: handed back
all the same, but that receive counts.

A receive the stop cut short is still long-polling while the stop sends its copies, and may
be answered with one of them. Such a copy was never ours to run: it goes back unchanged
(sent again with the same history, the received one deleted), not handed back a second time.
"""

from __future__ import annotations

from typing import Any

import structlog

from worker.adapters.sqs import ReceivedMessage
from worker.engine import lineage
from worker.engine.batching import Batcher
from worker.engine.leases import VisibilityEntry

log = structlog.get_logger("worker.engine.handback")

SendEntry = tuple[str, dict[str, Any]]  # (body, message attributes)


class HandBack:
    def __init__(
        self,
        *,
        sends: Batcher[SendEntry],
        deletes: Batcher[str],
        visibility: Batcher[VisibilityEntry],
        copies: bool = True,
    ) -> None:
        self._sends = sends
        self._deletes = deletes
        self._visibility = visibility
        self._copies = copies
        self._sent: set[str] = set()  # the histories of the copies this worker sent

    async def __call__(self, message: ReceivedMessage) -> bool:
        """Hand `message` (with its newest receipt handle) back; False if it stays leased."""
        if self._copies:
            attributes = lineage.copy_attributes(message)
            history = attributes[lineage.ATTRIBUTE]["StringValue"]
            self._sent.add(history)  # before the send: its answer may come after a receive's
            if await self._resend(message, attributes):
                return True
            self._sent.discard(history)
            log.warning("handback.copy_refused", message_id=message.message_id)
        return await self._visibility.submit((message.receipt_handle, 0))

    def sent_here(self, message: ReceivedMessage) -> bool:
        """Whether `message` is one of the copies this worker handed back."""
        return lineage.raw_history(message) in self._sent

    async def return_unchanged(self, message: ReceivedMessage) -> bool:
        """Send a copy this worker handed back, and then received, again as it was."""
        return await self._resend(message, lineage.unchanged_attributes(message))

    async def _resend(self, message: ReceivedMessage, attributes: dict[str, Any]) -> bool:
        if not await self._sends.submit((message.body, attributes)):
            return False
        if not await self._deletes.submit(message.receipt_handle):
            # The lease ran out first: the original comes back too, a duplicate.
            log.warning("handback.original_kept", message_id=message.message_id)
        return True
