"""Put messages on the queue with SendMessageBatch: 10 per call, within the queue's size limit.

Entries that fail for a reason on AWS's side (`SenderFault` false, throttling) are sent again
with backoff; entries refused as the sender's fault, and messages larger than the queue's
MaximumMessageSize, fail at once with the reason. The caller maps failures back to the parts
of the event they came from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from launcher.aws import backoff, describe, is_transient, is_transient_code

if TYPE_CHECKING:  # the stubs are a test dependency only
    from types_boto3_sqs import SQSClient

BATCH_MAX_ENTRIES = 10
# SendMessageBatch's cap on the sum of its bodies, whatever the queue allows per message.
BATCH_MAX_BYTES = 1_048_576
SEND_ATTEMPTS = 4


@dataclass(frozen=True)
class Outgoing:
    """One message body to send; `unit` says which part of the event it came from."""

    entry_id: str
    body: str
    unit: int

    @property
    def size(self) -> int:
        return len(self.body.encode("utf-8"))


@dataclass
class SendResult:
    """Which entries reached the queue, which did not (and why), and how many calls it took."""

    sent: list[Outgoing] = field(default_factory=list)
    failed: list[tuple[Outgoing, str]] = field(default_factory=list)
    calls: int = 0


def read_max_message_size(sqs: SQSClient, queue_url: str) -> int:
    """The queue's MaximumMessageSize attribute, in bytes."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["MaximumMessageSize"])
    return int(attributes["Attributes"]["MaximumMessageSize"])


def plan_batches(
    messages: Sequence[Outgoing], max_message_size: int
) -> tuple[list[list[Outgoing]], list[Outgoing]]:
    """Group messages, in order, into batches of at most 10 whose bodies fit the size limit.

    Returns the batches and the messages too large to send at all.
    """
    limit = min(max_message_size, BATCH_MAX_BYTES)
    batches: list[list[Outgoing]] = []
    oversized: list[Outgoing] = []
    current: list[Outgoing] = []
    current_bytes = 0
    for message in messages:
        if message.size > limit:
            oversized.append(message)
            continue
        if len(current) == BATCH_MAX_ENTRIES or current_bytes + message.size > limit:
            batches.append(current)
            current, current_bytes = [], 0
        current.append(message)
        current_bytes += message.size
    if current:
        batches.append(current)
    return batches, oversized


def send_all(
    sqs: SQSClient,
    queue_url: str,
    messages: Sequence[Outgoing],
    max_message_size: int,
    sleep: Callable[[float], None],
) -> SendResult:
    """Send every message, batch by batch; failures are returned, never raised."""
    result = SendResult()
    batches, oversized = plan_batches(messages, max_message_size)
    for message in oversized:
        result.failed.append(
            (message, f"message of {message.size} bytes exceeds the queue's {max_message_size}")
        )
    for batch in batches:
        _send_batch(sqs, queue_url, batch, sleep, result)
    return result


def _send_batch(
    sqs: SQSClient,
    queue_url: str,
    batch: list[Outgoing],
    sleep: Callable[[float], None],
    result: SendResult,
) -> None:
    pending = {message.entry_id: message for message in batch}
    reasons: dict[str, str] = {}
    for attempt in range(SEND_ATTEMPTS):
        if attempt:
            sleep(backoff(attempt))
        result.calls += 1
        try:
            response = sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": m.entry_id, "MessageBody": m.body} for m in pending.values()],
            )
        except (ClientError, BotoCoreError) as exc:
            reason = describe(exc)
            reasons = dict.fromkeys(pending, reason)
            if is_transient(exc):
                continue
            break
        for ok in response.get("Successful", []):
            result.sent.append(pending.pop(ok["Id"]))
        retry: dict[str, Outgoing] = {}
        for entry in response.get("Failed", []):
            message = pending.pop(entry["Id"])
            code = str(entry.get("Code", "unknown"))
            reasons[message.entry_id] = f"{code}: {entry.get('Message', '')}".strip(": ")
            if not entry.get("SenderFault", False) or is_transient_code(code):
                retry[message.entry_id] = message
            else:
                result.failed.append((message, reasons[message.entry_id]))
        # Anything SQS neither confirmed nor refused is sent again too.
        pending = {**pending, **retry}
        if not pending:
            return
    for entry_id, message in pending.items():
        result.failed.append((message, reasons.get(entry_id, "not confirmed by SQS")))
