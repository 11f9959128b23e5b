"""The drain engine put together from its parts, and its final flush: once, for the worker
and for the tests that run it on an in-memory queue."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from worker import routing
from worker.adapters.sqs import Queue
from worker.engine.batching import Batcher
from worker.engine.consumer import Consumer
from worker.engine.handback import HandBack, SendEntry
from worker.engine.leases import Leases, VisibilityEntry
from worker.engine.settling import Settler
from worker.engine.stats import Stats
from worker.engine.stopping import StopRequest
from worker.metrics import Metrics
from worker.settings import Settings

# How long a delete, visibility change or send waits for others to share its batch call.
ACK_LINGER_SECONDS = 0.01
DEFAULT_MAX_MESSAGE_BYTES = 1_048_576


@dataclass(frozen=True)
class Engine:
    consumer: Consumer
    sends: Batcher[SendEntry]
    deletes: Batcher[str]
    visibility: Batcher[VisibilityEntry]

    async def flush(self, seconds: float) -> None:
        """Send what the batchers still hold, within `seconds` (TimeoutError past them)."""
        async with asyncio.timeout(seconds):
            await self.sends.close()  # hand-back copies go before their originals' deletes
            await self.deletes.close()
            await self.visibility.close()


def assemble(
    settings: Settings,
    *,
    queue: Queue,
    dead_letter: Queue | None,
    attributes: Mapping[str, str],
    handlers: Mapping[str, routing.Handler],
    stats: Stats,
    stop: StopRequest,
    metrics: Metrics,
    dead_letter_max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    clock: Callable[[], float] = time.monotonic,
) -> Engine:
    """The consumer on `queue` with its batchers, hand-back, leases and settler."""
    deletes: Batcher[str] = Batcher(
        "DeleteMessageBatch",
        lambda entries: queue.delete_batch(entries),
        linger=ACK_LINGER_SECONDS,
    )
    visibility: Batcher[VisibilityEntry] = Batcher(
        "ChangeMessageVisibilityBatch",
        lambda entries: queue.change_visibility_batch([(i, h, s) for i, (h, s) in entries]),
        linger=ACK_LINGER_SECONDS,
    )
    sends: Batcher[SendEntry] = Batcher(
        "SendMessageBatch", queue.send_batch, linger=ACK_LINGER_SECONDS
    )
    hand_back = HandBack(
        sends=sends,
        deletes=deletes,
        visibility=visibility,
        copies=not settings.queue_url.endswith(".fifo"),
    )
    leases = Leases(
        visibility,
        give_back=hand_back,
        visibility_seconds=settings.visibility_seconds,
        clock=clock,
    )
    settler = Settler(
        queue=queue,
        dead_letter=dead_letter,
        deletes=deletes,
        visibility=visibility,
        max_receives=attempt_limit(settings.max_receives, attributes, dead_letter is not None),
        has_redrive="RedrivePolicy" in attributes,
        dead_letter_max_bytes=dead_letter_max_bytes,
    )
    consumer = Consumer(
        settings=settings,
        queue=queue,
        handlers=handlers,
        settler=settler,
        leases=leases,
        hand_back=hand_back,
        stats=stats,
        stop=stop,
        metrics=metrics,
    )
    return Engine(consumer, sends, deletes, visibility)


def attempt_limit(max_receives: int, attributes: Mapping[str, str], own_dead_letter: bool) -> int:
    """Attempts after which the worker dead-letters a failing message itself.

    With DLQ_URL, never later than the queue's redrive policy would move it: the worker's
    dead letter carries the reason and the real attempt count, the redrive's carries neither.
    """
    if not own_dead_letter or "RedrivePolicy" not in attributes:
        return max_receives
    try:
        redrive = int(json.loads(attributes["RedrivePolicy"])["maxReceiveCount"])
    except (ValueError, KeyError, TypeError):
        return max_receives
    return max(1, min(max_receives, redrive))
