"""Give a held message back because of a stop, without SQS counting it as an attempt.

The copy, carrying the message's history (lineage.py), is sent first and the original
deleted after: a crash in between leaves a duplicate, which idempotent handlers absorb,
never a gap. When the copy cannot be sent (the queue refuses it, or a FIFO queue, where a
copy would need a group of its own), the message is made visible again instead: handed back
all the same, but that receive counts.
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

    async def __call__(self, message: ReceivedMessage) -> bool:
        """Hand `message` (with its newest receipt handle) back; False if it stays leased."""
        if self._copies:
            if await self._sends.submit((message.body, lineage.copy_attributes(message))):
                if not await self._deletes.submit(message.receipt_handle):
                    # The lease ran out first: the original comes back too, a duplicate.
                    log.warning("handback.original_kept", message_id=message.message_id)
                return True
            log.warning("handback.copy_refused", message_id=message.message_id)
        return await self._visibility.submit((message.receipt_handle, 0))
