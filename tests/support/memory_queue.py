"""An in-memory SQS queue with the semantics the drain engine relies on, and a virtual clock.

`MemoryQueue` has the methods of worker/adapters/sqs.py's `Queue` that the engine calls
(receive, delete_batch, change_visibility_batch, send, send_batch, counts, check, url) and
answers them the way SQS does:

- every receive of a message makes a new receipt handle and counts (ApproximateReceiveCount);
- a received message is invisible until its visibility timeout passes or is changed (to 0:
  visible at once); a delayed message (DelaySeconds) is invisible until its delay passes;
- a receive returns at most MaxNumberOfMessages (1 to 10) and, when nothing is visible,
  waits up to WaitTimeSeconds for a message to become visible (a long poll);
- a batch entry with a handle that is not the message's newest (or of a deleted message)
  fails as SQS reports it, per entry: ReceiptHandleIsInvalid, sender's fault; changing the
  visibility of a message that is no longer in flight fails with MessageNotInflight;
- with a redrive policy, a message received `max_receive_count` times moves to the
  dead-letter queue on its next receive.

A request SQS would refuse as a whole (more than ten entries, MaxNumberOfMessages out of
range, duplicate entry ids, more than ten message attributes...) raises
`SqsContractError` and is kept in `violations`, so a test fails rather than passes on a fake.

Time is the running loop's (`loop.time()`). Under `VirtualTimeLoop` that is a virtual clock
that jumps to the next timer whenever nothing is ready to run: a heartbeat of seconds or a
backoff of minutes costs no wall time, and the order of events does not depend on the load.
"""

from __future__ import annotations

import asyncio
import copy
import json
import selectors
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.adapters.sqs import MAX_BATCH, BatchFailure, QueueCounts, ReceivedMessage

MAX_ATTRIBUTES = 10
MAX_VISIBILITY = 43_200
MAX_DELAY = 900
MAX_WAIT = 20
# Virtual timers fire at their exact time, but float sums may land a hair before it.
_EPSILON = 1e-6


class SqsContractError(AssertionError):
    """A request that SQS would reject as a whole: the engine broke the API's rules."""


class VirtualDeadlock(RuntimeError):
    """The loop has nothing to run, no timer and no I/O: it would wait forever."""


@dataclass
class Delivery:
    receipt_handle: str
    at: float
    receive_count: int


@dataclass
class StoredMessage:
    message_id: str
    body: str
    attributes: dict[str, Any]
    sent_at: float
    sent_timestamp_ms: int
    visible_at: float
    receive_count: int = 0
    receipt_handle: str | None = None  # the newest; None before the first receive
    deliveries: list[Delivery] = field(default_factory=list)
    visibility_changes: list[tuple[float, int]] = field(default_factory=list)
    deleted_at: float | None = None

    def state(self, now: float) -> str:
        if self.visible_at <= now + _EPSILON:
            return "visible"
        return "in_flight" if self.receive_count else "delayed"


@dataclass(frozen=True)
class ReceiveCall:
    at: float
    max_messages: int
    wait_seconds: int
    visibility: int
    returned_at: float
    message_ids: tuple[str, ...]


@dataclass(frozen=True)
class BatchCall:
    operation: str
    at: float
    entries: tuple[Any, ...]
    failed: tuple[BatchFailure, ...]


@dataclass
class _Refusal:
    code: str
    message: str
    sender_fault: bool
    remaining: int


class MemoryQueue:
    def __init__(
        self,
        name: str = "work",
        *,
        dead_letter: MemoryQueue | None = None,
        max_receive_count: int | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.name = name
        self.url = f"https://sqs.eu-west-1.amazonaws.com/123456789012/{name}"
        self._redrive_to = dead_letter
        self._max_receive_count = max_receive_count
        self._clock = clock
        self._sequence = 0
        self.messages: dict[str, StoredMessage] = {}  # not deleted, in send order
        self.deleted: dict[str, StoredMessage] = {}
        self.receives: list[ReceiveCall] = []
        self.batches: list[BatchCall] = []
        self.sent: list[str] = []  # ids, in order
        self.violations: list[str] = []
        self._refusals: dict[str, list[_Refusal]] = {}
        self._call_failures: dict[str, list[BaseException]] = {}
        self._changed: asyncio.Event | None = None
        self._receiving = 0

    # -- what tests look at -------------------------------------------------------------

    def now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def in_state(self, state: str) -> list[StoredMessage]:
        now = self.now()
        return [m for m in self.messages.values() if m.state(now) == state]

    def operations(self, operation: str) -> list[BatchCall]:
        return [call for call in self.batches if call.operation == operation]

    @property
    def receives_in_flight(self) -> int:
        return self._receiving

    # -- faults a test injects ----------------------------------------------------------

    def refuse_entries(
        self,
        operation: str,
        code: str,
        *,
        sender_fault: bool,
        times: int = 1,
        message: str = "refused by the test",
    ) -> None:
        """Fail the next `times` entries of a batch `operation` with `code`, untouched."""
        self._refusals.setdefault(operation, []).append(
            _Refusal(code, message, sender_fault, times)
        )

    def fail_calls(self, operation: str, error: BaseException, *, times: int = 1) -> None:
        """Raise `error` (as the adapter would: a JobError) from the next `times` calls."""
        self._call_failures.setdefault(operation, []).extend([error] * times)

    # -- the Queue adapter's methods ----------------------------------------------------

    async def check(self, option: str) -> dict[str, str]:
        attributes = {"VisibilityTimeout": "30", "MaximumMessageSize": "1048576"}
        if self._redrive_to is not None and self._max_receive_count is not None:
            target = f"arn:aws:sqs:eu-west-1:123456789012:{self._redrive_to.name}"
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": target, "maxReceiveCount": str(self._max_receive_count)}
            )
        return attributes

    async def send(
        self, body: str, *, attributes: dict[str, Any] | None = None, delay_seconds: int = 0
    ) -> str:
        self._raise_injected("SendMessage")
        self._check_attributes("SendMessage", attributes or {})
        if not 0 <= delay_seconds <= MAX_DELAY:
            self._violation(f"SendMessage: DelaySeconds {delay_seconds} out of 0..{MAX_DELAY}")
        return self._store(body, attributes or {}, delay_seconds)

    async def send_batch(
        self, entries: Sequence[tuple[str, tuple[str, dict[str, Any]]]]
    ) -> list[BatchFailure]:
        self._raise_injected("SendMessageBatch")
        self._check_batch("SendMessageBatch", [entry_id for entry_id, _ in entries])
        failed: list[BatchFailure] = []
        for entry_id, (body, attributes) in entries:
            self._check_attributes("SendMessageBatch", attributes or {})
            refusal = self._refusal("SendMessageBatch", entry_id)
            if refusal is not None:
                failed.append(refusal)
                continue
            self._store(body, attributes or {}, 0)
        self._record("SendMessageBatch", entries, failed)
        return failed

    async def receive(
        self, *, max_messages: int, wait_seconds: int, visibility: int
    ) -> list[ReceivedMessage]:
        started = self.now()
        self._raise_injected("ReceiveMessage")
        if not 1 <= max_messages <= MAX_BATCH:
            self._violation(f"ReceiveMessage: MaxNumberOfMessages {max_messages} not in 1..10")
        if not 0 <= wait_seconds <= MAX_WAIT:
            self._violation(f"ReceiveMessage: WaitTimeSeconds {wait_seconds} not in 0..20")
        if not 0 <= visibility <= MAX_VISIBILITY:
            self._violation(f"ReceiveMessage: VisibilityTimeout {visibility} out of range")
        deadline = started + wait_seconds
        self._receiving += 1
        try:
            while True:
                taken = self._take(max_messages, visibility)
                now = self.now()
                if taken or now >= deadline - _EPSILON:
                    break
                # Wait for a send, a visibility change to 0, or the next message to show.
                wake = min([deadline, *(m.visible_at for m in self.messages.values())])
                changed = self._change_event()
                try:
                    async with asyncio.timeout(max(wake - now, 0.0)):
                        await changed.wait()
                except TimeoutError:
                    pass
        finally:
            self._receiving -= 1
        self.receives.append(
            ReceiveCall(
                at=started,
                max_messages=max_messages,
                wait_seconds=wait_seconds,
                visibility=visibility,
                returned_at=self.now(),
                message_ids=tuple(m.message_id for m in taken),
            )
        )
        return taken

    async def delete_batch(self, entries: Sequence[tuple[str, str]]) -> list[BatchFailure]:
        self._raise_injected("DeleteMessageBatch")
        self._check_batch("DeleteMessageBatch", [entry_id for entry_id, _ in entries])
        failed: list[BatchFailure] = []
        for entry_id, handle in entries:
            refusal = self._refusal("DeleteMessageBatch", entry_id)
            message = self._by_handle(handle)
            if refusal is not None:
                failed.append(refusal)
            elif message is None:
                failed.append(_invalid_handle(entry_id, handle))
            else:
                message.deleted_at = self.now()
                self.deleted[message.message_id] = self.messages.pop(message.message_id)
        self._record("DeleteMessageBatch", entries, failed)
        return failed

    async def change_visibility_batch(
        self, entries: Sequence[tuple[str, str, int]]
    ) -> list[BatchFailure]:
        self._raise_injected("ChangeMessageVisibilityBatch")
        self._check_batch("ChangeMessageVisibilityBatch", [entry_id for entry_id, _, _ in entries])
        failed: list[BatchFailure] = []
        now = self.now()
        for entry_id, handle, seconds in entries:
            if not 0 <= seconds <= MAX_VISIBILITY:
                self._violation(f"ChangeMessageVisibilityBatch: VisibilityTimeout {seconds}")
            refusal = self._refusal("ChangeMessageVisibilityBatch", entry_id)
            message = self._by_handle(handle)
            if refusal is not None:
                failed.append(refusal)
            elif message is None:
                failed.append(_invalid_handle(entry_id, handle))
            elif message.state(now) != "in_flight":
                failed.append(
                    BatchFailure(
                        entry_id=entry_id,
                        code="AWS.SimpleQueueService.MessageNotInflight",
                        message="Message does not exist or is not available for visibility"
                        " timeout change.",
                        sender_fault=True,
                    )
                )
            else:
                message.visible_at = now + seconds
                message.visibility_changes.append((now, seconds))
                self._wake()  # a long poll waits for the new time, not the old
        self._record("ChangeMessageVisibilityBatch", entries, failed)
        return failed

    async def counts(self) -> QueueCounts:
        self._raise_injected("GetQueueAttributes")
        now = self.now()
        states = [m.state(now) for m in self.messages.values()]
        return QueueCounts(
            visible=states.count("visible"),
            in_flight=states.count("in_flight"),
            delayed=states.count("delayed"),
        )

    # -- inside -------------------------------------------------------------------------

    def _store(self, body: str, attributes: dict[str, Any], delay_seconds: int) -> str:
        self._sequence += 1
        message_id = f"{self.name}-{self._sequence:04d}"
        now = self.now()
        self.messages[message_id] = StoredMessage(
            message_id=message_id,
            body=body,
            attributes=copy.deepcopy(attributes),
            sent_at=now,
            sent_timestamp_ms=int(time.time() * 1000),
            visible_at=now + delay_seconds,
        )
        self.sent.append(message_id)
        self._wake()
        return message_id

    def _take(self, most: int, visibility: int) -> list[ReceivedMessage]:
        now = self.now()
        taken: list[ReceivedMessage] = []
        for message in sorted(self.messages.values(), key=lambda m: m.visible_at):
            if len(taken) >= most:
                break
            if message.state(now) != "visible":
                continue
            if (
                self._redrive_to is not None
                and self._max_receive_count is not None
                and message.receive_count >= self._max_receive_count
            ):
                del self.messages[message.message_id]
                self._redrive_to.messages[message.message_id] = message
                message.visible_at = now
                self._redrive_to._wake()
                continue
            message.receive_count += 1
            message.receipt_handle = f"{message.message_id}/rh{message.receive_count}"
            message.visible_at = now + visibility
            message.deliveries.append(Delivery(message.receipt_handle, now, message.receive_count))
            taken.append(
                ReceivedMessage(
                    message_id=message.message_id,
                    receipt_handle=message.receipt_handle,
                    body=message.body,
                    receive_count=message.receive_count,
                    sent_timestamp_ms=message.sent_timestamp_ms,
                    attributes=copy.deepcopy(message.attributes),
                )
            )
        return taken

    def _by_handle(self, handle: str) -> StoredMessage | None:
        message_id = handle.rpartition("/rh")[0]
        message = self.messages.get(message_id)
        if message is None or message.receipt_handle != handle:
            return None
        return message

    def _change_event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _refusal(self, operation: str, entry_id: str) -> BatchFailure | None:
        pending = self._refusals.get(operation)
        if not pending:
            return None
        refusal = pending[0]
        refusal.remaining -= 1
        if refusal.remaining <= 0:
            pending.pop(0)
        return BatchFailure(
            entry_id=entry_id,
            code=refusal.code,
            message=refusal.message,
            sender_fault=refusal.sender_fault,
        )

    def _raise_injected(self, operation: str) -> None:
        pending = self._call_failures.get(operation)
        if pending:
            raise pending.pop(0)

    def _record(self, operation: str, entries: Sequence[Any], failed: list[BatchFailure]) -> None:
        self.batches.append(BatchCall(operation, self.now(), tuple(entries), tuple(failed)))

    def _check_batch(self, operation: str, entry_ids: list[str]) -> None:
        if not entry_ids:
            self._violation(f"{operation}: EmptyBatchRequest")
        if len(entry_ids) > MAX_BATCH:
            self._violation(f"{operation}: TooManyEntriesInBatchRequest ({len(entry_ids)})")
        if len(set(entry_ids)) != len(entry_ids):
            self._violation(f"{operation}: BatchEntryIdsNotDistinct {entry_ids}")

    def _check_attributes(self, operation: str, attributes: dict[str, Any]) -> None:
        if len(attributes) > MAX_ATTRIBUTES:
            self._violation(f"{operation}: {len(attributes)} message attributes (at most 10)")
        for name, value in attributes.items():
            kinds = {"StringValue", "BinaryValue"} & set(value)
            if not str(value.get("DataType", "")) or len(kinds) != 1:
                self._violation(f"{operation}: attribute {name!r} is malformed: {value!r}")

    def _violation(self, text: str) -> None:
        self.violations.append(text)
        raise SqsContractError(text)


def _invalid_handle(entry_id: str, handle: str) -> BatchFailure:
    return BatchFailure(
        entry_id=entry_id,
        code="ReceiptHandleIsInvalid",
        message=f'The input receipt handle "{handle}" is not a valid receipt handle.',
        sender_fault=True,
    )


class _Clock:
    def __init__(self, start: float) -> None:
        self.now = start


class _VirtualSelector(selectors.DefaultSelector):
    """Polls without blocking; a wait for a timer moves the virtual clock to it instead."""

    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # only a thread could wake the loop: give it a real second
            ready = super().select(1.0)
            if not ready:
                raise VirtualDeadlock("nothing to run and no timer: the loop would hang")
            return ready
        self._clock.now += timeout
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on a virtual clock: idle time passes at once, in timer order."""

    def __init__(self, start: float = 1_000.0) -> None:
        self._virtual = _Clock(start)
        super().__init__(_VirtualSelector(self._virtual))

    def time(self) -> float:
        return self._virtual.now
