"""Coalesce single SQS entries into batch calls of up to ten, retrying what fails."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import structlog

from worker.adapters.sqs import MAX_BATCH, BatchFailure
from worker.errors import JobError

T = TypeVar("T")
SendBatch = Callable[[Sequence[tuple[str, T]]], Awaitable[list[BatchFailure]]]

log = structlog.get_logger("worker.engine.batching")

# Entry failures that a second try cannot fix: the lease is gone, the message was handled.
_FINAL_CODES = frozenset(
    {
        "ReceiptHandleIsInvalid",
        "InvalidReceiptHandle",
        "MessageNotInflight",
        "InvalidParameterValue",
    }
)


class Batcher(Generic[T]):
    """Collects entries for `linger` seconds (or until ten wait) and sends them as one call.

    Each `submit` returns a future that resolves to True once SQS accepted the entry, or False
    when it was refused for good (for example the receipt handle expired). Calls that fail as
    a whole, and entries that fail for a transient reason, are retried with backoff.
    """

    def __init__(self, name: str, send: SendBatch[T], *, linger: float, attempts: int = 5) -> None:
        self._name = name
        self._send = send
        self._linger = linger
        self._attempts = attempts
        self._pending: list[tuple[T, asyncio.Future[bool]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    def submit(self, entry: T) -> asyncio.Future[bool]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending.append((entry, future))
        if len(self._pending) >= MAX_BATCH:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._linger, self._flush)
        return future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            task = asyncio.get_running_loop().create_task(self._deliver(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def close(self) -> None:
        """Send everything still pending and wait for every call under way."""
        self._flush()
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    async def _deliver(self, batch: list[tuple[T, asyncio.Future[bool]]]) -> None:
        waiting = {str(i): item for i, item in enumerate(batch)}
        for attempt in range(1, self._attempts + 1):
            try:
                failures = await self._send([(i, entry) for i, (entry, _) in waiting.items()])
            except JobError as exc:
                log.warning("batch.failed", call=self._name, attempt=attempt, error=str(exc))
                failures = [
                    BatchFailure(entry_id=i, code="", message=str(exc), sender_fault=False)
                    for i in waiting
                ]
            failed_ids = set()
            for failure in failures:
                entry_future = waiting[failure.entry_id][1]
                if failure.code in _FINAL_CODES or (failure.sender_fault and failure.code):
                    log.warning(
                        "batch.entry_refused",
                        call=self._name,
                        code=failure.code,
                        error=failure.message,
                    )
                    _resolve(entry_future, False)
                else:
                    failed_ids.add(failure.entry_id)
            for entry_id, (_, entry_future) in waiting.items():
                if entry_id not in failed_ids:
                    _resolve(entry_future, True)
            waiting = {i: waiting[i] for i in failed_ids}
            if not waiting:
                return
            await asyncio.sleep(min(5.0, 0.2 * 2**attempt) * random.uniform(0.5, 1.0))
        log.error("batch.gave_up", call=self._name, entries=len(waiting), attempts=self._attempts)
        for _, entry_future in waiting.values():
            _resolve(entry_future, False)


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)
