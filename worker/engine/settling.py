"""Carry out an outcome: delete in batches, re-time with backoff, or dead-letter with reason."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import structlog

from worker.adapters.sqs import Queue, ReceivedMessage
from worker.engine import lineage
from worker.engine.backoff import retry_delay
from worker.engine.batching import Batcher
from worker.engine.leases import VisibilityEntry
from worker.engine.outcomes import Action, Outcome, Settled
from worker.errors import JobError

log = structlog.get_logger("worker.engine.settling")

REASON_LIMIT = 1024
# SQS allows ten message attributes; ours take four, the original keeps up to six.
_OWN_ATTRIBUTES = 4


class Settler:
    """Carries out an outcome: deletes in batches, re-times with backoff, or dead-letters."""

    def __init__(
        self,
        *,
        queue: Queue,
        dead_letter: Queue | None,
        deletes: Batcher[str],
        visibility: Batcher[VisibilityEntry],
        max_receives: int,
        has_redrive: bool,
        dead_letter_max_bytes: int = 1_048_576,
    ) -> None:
        self._queue = queue
        self._dead_letter = dead_letter
        self._deletes = deletes
        self._visibility = visibility
        self._max_receives = max_receives
        self._has_redrive = has_redrive
        self._dead_letter_max_bytes = dead_letter_max_bytes

    async def settle(
        self,
        message: ReceivedMessage,
        outcome: Outcome,
        receipt_handle: str,
        *,
        let_go: Callable[[], None] = lambda: None,
    ) -> tuple[Settled, dict[str, Any]]:
        """Apply `outcome` using the newest receipt handle; return what was done and log fields.

        `let_go` is called right before the message is made visible again (a retry, or a
        rejection left to the redrive): from then on a receive may hand it to us anew, and
        must find it no longer held, or it would take the new delivery for a duplicate.
        """
        if outcome.action is Action.ACK:
            return (Settled.ACKED if await self.ack(receipt_handle) else Settled.ACK_LOST), {}
        message = dataclasses.replace(message, receipt_handle=receipt_handle)
        reason = _clip(outcome.reason or "unknown")
        attempt = lineage.attempt(message)  # hand-backs never count (lineage.py)
        exhausted = attempt >= self._max_receives
        if outcome.action is Action.REJECT or (exhausted and self._dead_letter is not None):
            if outcome.action is Action.RETRY:
                reason = _clip(f"gave up after {attempt} attempts: {reason}")
            return await self._reject(message, reason, let_go)
        return await self._retry(message, reason, let_go)

    def ack(self, receipt_handle: str) -> asyncio.Future[bool]:
        """Delete in a batch; the future tells whether SQS deleted the message."""
        return self._deletes.submit(receipt_handle)

    async def _retry(
        self, message: ReceivedMessage, reason: str, let_go: Callable[[], None]
    ) -> tuple[Settled, dict[str, Any]]:
        delay = retry_delay(lineage.attempt(message))
        let_go()
        await self._visibility.submit((message.receipt_handle, delay))
        return Settled.RETRIED, {"retry_in_s": delay, "reason": reason}

    async def _reject(
        self, message: ReceivedMessage, reason: str, let_go: Callable[[], None]
    ) -> tuple[Settled, dict[str, Any]]:
        if self._dead_letter is None:
            # The queue's redrive policy moves it after maxReceiveCount receives: come back soon.
            delay = 0 if self._has_redrive else retry_delay(lineage.attempt(message))
            let_go()
            await self._visibility.submit((message.receipt_handle, delay))
            return Settled.REJECTED, {
                "reason": reason,
                "left_to": "redrive" if self._has_redrive else "backoff",
            }
        try:
            await self._send_to_dead_letter(message, reason)
        except JobError as exc:
            log.warning("dead_letter.failed", message_id=message.message_id, error=str(exc))
            return await self._retry(message, f"dead-letter failed ({exc}); {reason}", let_go)
        await self._deletes.submit(message.receipt_handle)
        return Settled.DEAD_LETTERED, {"reason": reason}

    async def _send_to_dead_letter(self, message: ReceivedMessage, reason: str) -> None:
        assert self._dead_letter is not None
        history = lineage.history(message)
        own = {
            "spotdrain-reason": {"DataType": "String", "StringValue": reason},
            "spotdrain-original-message-id": {
                "DataType": "String",
                "StringValue": history.origin_id,
            },
            "spotdrain-receive-count": {  # real attempts: hand-backs are not counted
                "DataType": "Number",
                "StringValue": str(lineage.attempt(message)),
            },
            "spotdrain-source-queue": {"DataType": "String", "StringValue": self._queue.url},
        }
        kept = dict(
            list(lineage.sendable(message.attributes).items())[
                : lineage.MAX_ATTRIBUTES - _OWN_ATTRIBUTES
            ]
        )
        attributes = _fit(message.body, {**kept, **own}, self._dead_letter_max_bytes)
        await self._dead_letter.send(message.body, attributes=attributes)


def _fit(body: str, attributes: dict[str, Any], limit: int) -> dict[str, Any]:
    """Drop attributes (the original's first, then ours but the reason) until body and
    attributes fit in the dead-letter queue's size limit; the body always goes unchanged."""
    room = limit - len(body.encode())
    names = list(attributes)
    keep = dict(attributes)
    for name in [n for n in names if not n.startswith("spotdrain-")] + [
        "spotdrain-source-queue",
        "spotdrain-receive-count",
        "spotdrain-original-message-id",
    ]:
        if _attributes_size(keep) <= room:
            return keep
        keep.pop(name, None)
    reason = keep.get("spotdrain-reason")
    if reason is not None and _attributes_size(keep) > room:
        spare = room - _attributes_size(
            {"spotdrain-reason": {"DataType": "String", "StringValue": ""}}
        )
        if spare < 16:
            return {}
        text = reason["StringValue"].encode()[: spare - 3].decode(errors="ignore") + "..."
        keep = {"spotdrain-reason": {"DataType": "String", "StringValue": text}}
    return keep


def _attributes_size(attributes: dict[str, Any]) -> int:
    """SQS counts each attribute's name, type and value against the message size."""
    total = 0
    for name, value in attributes.items():
        payload = value.get("StringValue") or value.get("BinaryValue") or b""
        data = payload.encode() if isinstance(payload, str) else payload
        total += len(name.encode()) + len(value.get("DataType", "").encode()) + len(data)
    return total


def _clip(text: str) -> str:
    return text if len(text) <= REASON_LIMIT else text[: REASON_LIMIT - 3] + "..."
