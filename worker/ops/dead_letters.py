"""Dead letters as the worker writes them: read without taking them, grouped by reason."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from worker.engine.lineage import sendable

if TYPE_CHECKING:  # the stubs are a test dependency only
    from types_boto3_sqs import SQSClient
    from types_boto3_sqs.type_defs import MessageTypeDef

REASON = "spotdrain-reason"
ORIGINAL_ID = "spotdrain-original-message-id"
RECEIVE_COUNT = "spotdrain-receive-count"
SOURCE_QUEUE = "spotdrain-source-queue"
NO_REASON = "(no reason: moved by the queue's redrive policy)"
EMPTY_REASON = "(empty reason)"
SAMPLES = 3
BATCH = 10  # SQS's limit for ReceiveMessage and every *Batch call
DEFAULT_LEASE_SECONDS = 60
DEFAULT_MAX = 10_000
# A short poll may answer empty while messages exist; an empty long poll after it settles it.
CONFIRM_WAIT_SECONDS = 1
EMPTY_RECEIVES = 2


@dataclass(frozen=True, kw_only=True)
class DeadLetter:
    """One received dead letter: its body, its message attributes and SQS's own."""

    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, Any]
    system: dict[str, str]

    @classmethod
    def from_raw(cls, raw: MessageTypeDef) -> DeadLetter:
        return cls(
            message_id=str(raw["MessageId"]),
            receipt_handle=str(raw["ReceiptHandle"]),
            body=str(raw.get("Body", "")),
            attributes=dict(raw.get("MessageAttributes", {})),
            system={k: str(v) for k, v in raw.get("Attributes", {}).items()},
        )

    def _string(self, name: str) -> str | None:
        value = self.attributes.get(name, {}).get("StringValue")
        return value if isinstance(value, str) else None

    @property
    def reason(self) -> str:
        """The worker's reason; a message moved by the redrive policy has none."""
        reason = self._string(REASON)
        if reason is None:
            return NO_REASON
        return reason or EMPTY_REASON

    @property
    def original_id(self) -> str | None:
        return self._string(ORIGINAL_ID)

    @property
    def attempts(self) -> int | None:
        """Real attempts, as the worker counted them (None when it did not say)."""
        raw = self._string(RECEIVE_COUNT)
        try:
            return int(raw) if raw is not None else None
        except ValueError:
            return None

    @property
    def source_queue(self) -> str | None:
        return self._string(SOURCE_QUEUE)

    @property
    def sqs_receive_count(self) -> int:
        return int(self.system.get("ApproximateReceiveCount", "0") or 0)

    def has_id(self, wanted: str) -> bool:
        return wanted in (self.message_id, self.original_id)

    def matches(self, text: str | None) -> bool:
        """None matches every dead letter; otherwise the reason (as listed) must contain it."""
        return text is None or text in self.reason

    def redriven(self) -> dict[str, Any]:
        """The body unchanged and the sender's attributes: every `spotdrain-` one is dropped,
        so the worker counts attempts from zero again."""
        return {"body": self.body, "attributes": sendable(self.attributes)}

    def size(self) -> int:
        """Bytes SQS counts for the message as redriven: body, names, types and values."""
        total = len(self.body.encode())
        for name, value in sendable(self.attributes).items():
            data = value.get("StringValue") or value.get("BinaryValue") or b""
            data = data.encode() if isinstance(data, str) else data
            total += len(name.encode()) + len(str(value.get("DataType", "")).encode()) + len(data)
        return total


@dataclass
class Group:
    reason: str
    count: int = 0
    samples: list[str] = field(default_factory=list)


def group(letters: Iterable[DeadLetter]) -> list[Group]:
    """Dead letters by reason, the largest group first, with a few sample message ids."""
    groups: dict[str, Group] = {}
    for letter in letters:
        entry = groups.setdefault(letter.reason, Group(letter.reason))
        entry.count += 1
        if len(entry.samples) < SAMPLES:
            entry.samples.append(letter.message_id)
    return sorted(groups.values(), key=lambda g: (-g.count, g.reason))


def attribute_rows(letter: DeadLetter) -> list[dict[str, str]]:
    """Every message attribute as name, type and value (binary ones in base64)."""
    rows = []
    for name, value in sorted(letter.attributes.items()):
        kind = str(value.get("DataType", ""))
        if "BinaryValue" in value:
            raw = value["BinaryValue"]
            text = base64.b64encode(raw if isinstance(raw, bytes) else str(raw).encode()).decode()
        else:
            text = str(value.get("StringValue", ""))
        rows.append({"name": name, "type": kind, "value": text})
    return rows


class Lease:
    """Dead letters received and held invisible while a command works through them.

    `batches()` yields each receive's new messages (a message whose lease ran out comes back
    with a new receipt handle: it is held again, not yielded twice). What the command did not
    delete is made visible again at once when the block ends, an error included; after a
    crash, when the lease ends.
    """

    def __init__(self, sqs: SQSClient, url: str, *, seconds: int, most: int) -> None:
        self._sqs = sqs
        self.url = url
        self._seconds = seconds
        self._most = most
        self.held: dict[str, DeadLetter] = {}
        self.seen = 0
        self.release_failures = 0

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            self.release()
            return
        try:  # the error in flight says more; what is still held reappears when its lease ends
            self.release()
        except Exception:
            self.release_failures += len(self.held)

    @property
    def complete(self) -> bool:
        """False when the scan stopped at `most` messages and more may be waiting."""
        return self.seen < self._most

    def batches(self) -> Iterator[list[DeadLetter]]:
        empties = 0
        seen: set[str] = set()
        while self.seen < self._most and empties < EMPTY_RECEIVES:
            raw = self._sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=min(BATCH, self._most - self.seen),
                WaitTimeSeconds=CONFIRM_WAIT_SECONDS if empties else 0,
                VisibilityTimeout=self._seconds,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
            fresh = []
            for letter in map(DeadLetter.from_raw, raw):
                self.held[letter.message_id] = letter  # the newest receipt handle counts
                if letter.message_id not in seen:
                    seen.add(letter.message_id)
                    fresh.append(letter)
            empties = 0 if fresh else empties + 1
            if fresh:
                self.seen += len(fresh)
                yield fresh

    def forget(self, message_ids: Iterable[str]) -> None:
        """These are deleted: nothing to make visible again."""
        for message_id in message_ids:
            self.held.pop(message_id, None)

    def release(self) -> None:
        """Visibility 0 for every held message, ten at a time."""
        letters = list(self.held.values())
        self.held.clear()
        for chunk in chunks(letters, BATCH):
            response = self._sqs.change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": 0}
                    for i, m in enumerate(chunk)
                ],
            )
            # A failed entry was received again elsewhere, or its lease ran out: it is visible
            # already or will be when that receiver's lease ends.
            self.release_failures += len(response.get("Failed", []))


def chunks(items: Sequence[DeadLetter], size: int) -> Iterator[Sequence[DeadLetter]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def read_all(lease: Lease) -> list[DeadLetter]:
    return [letter for batch in lease.batches() for letter in batch]


def find(lease: Lease, wanted: str) -> DeadLetter | None:
    """The first dead letter whose message id or original message id is `wanted`."""
    for batch in lease.batches():
        for letter in batch:
            if letter.has_id(wanted):
                return letter
    return None
