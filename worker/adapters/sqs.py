"""SQS calls the worker makes, with typed results; the only module that speaks SQS's API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore import xform_name
from botocore.exceptions import ClientError

from worker.adapters.aws_errors import error_code, mapped
from worker.adapters.sqs_wire import SqsWire
from worker.errors import ConfigError

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

MAX_BATCH = 10
_MISSING_QUEUE_CODES = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
)


@dataclass(frozen=True, kw_only=True)
class ReceivedMessage:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    sent_timestamp_ms: int | None
    attributes: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class QueueCounts:
    visible: int
    in_flight: int
    delayed: int

    @property
    def empty(self) -> bool:
        return self.visible == 0 and self.in_flight == 0 and self.delayed == 0


@dataclass(frozen=True, kw_only=True)
class BatchFailure:
    entry_id: str
    code: str
    message: str
    sender_fault: bool


class Queue:
    """One SQS queue: receive, delete, change visibility, send, count.

    With `wire`, the calls made for every message (receive, batched delete and visibility
    change) take the lean path of adapters/sqs_wire.py; the rest always go through `client`.
    """

    def __init__(self, client: SQSClient, url: str, wire: SqsWire | None = None) -> None:
        self._client = client
        self._wire = wire
        self.url = url

    async def check(self, option: str) -> dict[str, str]:
        """Fail with a ConfigError naming `option` when the queue does not exist."""

        def missing(exc: ClientError, what: str) -> ConfigError | None:
            if error_code(exc) not in _MISSING_QUEUE_CODES:
                return None
            return ConfigError(option, f"names a queue that does not exist: {self.url}")

        with mapped("GetQueueAttributes", missing):
            response = await self._client.get_queue_attributes(
                QueueUrl=self.url, AttributeNames=["All"]
            )
        return {str(name): value for name, value in response.get("Attributes", {}).items()}

    async def receive(
        self, *, max_messages: int, wait_seconds: int, visibility: int
    ) -> list[ReceivedMessage]:
        request = {
            "QueueUrl": self.url,
            "MaxNumberOfMessages": max_messages,
            "WaitTimeSeconds": wait_seconds,
            "VisibilityTimeout": visibility,
            "MessageSystemAttributeNames": ["ApproximateReceiveCount", "SentTimestamp"],
            "MessageAttributeNames": ["All"],
        }
        response = await self._hot_call("ReceiveMessage", request)
        return [_received(raw) for raw in response.get("Messages", [])]

    async def delete_batch(self, entries: Sequence[tuple[str, str]]) -> list[BatchFailure]:
        """Delete (id, receipt handle) pairs; return the entries SQS did not delete."""
        request = {
            "QueueUrl": self.url,
            "Entries": [{"Id": i, "ReceiptHandle": h} for i, h in entries],
        }
        return _failures(await self._hot_call("DeleteMessageBatch", request))

    async def change_visibility_batch(
        self, entries: Sequence[tuple[str, str, int]]
    ) -> list[BatchFailure]:
        """Set (id, receipt handle, seconds) leases; return the entries that failed."""
        request = {
            "QueueUrl": self.url,
            "Entries": [
                {"Id": i, "ReceiptHandle": h, "VisibilityTimeout": s} for i, h, s in entries
            ],
        }
        return _failures(await self._hot_call("ChangeMessageVisibilityBatch", request))

    async def _hot_call(self, operation: str, request: dict[str, Any]) -> Any:
        with mapped(operation):
            if self._wire is not None:
                return await self._wire.call(operation, request)
            return await getattr(self._client, xform_name(operation))(**request)

    async def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        with mapped("ChangeMessageVisibility"):
            await self._client.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
            )

    async def send(
        self,
        body: str,
        *,
        attributes: dict[str, Any] | None = None,
        delay_seconds: int = 0,
    ) -> str:
        """Send one message; return its id."""
        request: dict[str, Any] = {"QueueUrl": self.url, "MessageBody": body}
        if attributes:
            request["MessageAttributes"] = attributes
        if delay_seconds:
            request["DelaySeconds"] = delay_seconds
        with mapped("SendMessage"):
            response = await self._client.send_message(**request)
        return str(response["MessageId"])

    async def send_batch(
        self, entries: Sequence[tuple[str, tuple[str, dict[str, Any]]]]
    ) -> list[BatchFailure]:
        """Send (id, (body, attributes)) entries; return the entries SQS did not take."""
        batch: list[SendMessageBatchRequestEntryTypeDef] = []
        for i, (body, attributes) in entries:
            entry: SendMessageBatchRequestEntryTypeDef = {"Id": i, "MessageBody": body}
            if attributes:
                entry["MessageAttributes"] = attributes
            batch.append(entry)
        with mapped("SendMessageBatch"):
            response = await self._client.send_message_batch(QueueUrl=self.url, Entries=batch)
        return _failures(response)

    async def counts(self) -> QueueCounts:
        with mapped("GetQueueAttributes"):
            response = await self._client.get_queue_attributes(
                QueueUrl=self.url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                    "ApproximateNumberOfMessagesDelayed",
                ],
            )
        attributes = response.get("Attributes", {})
        return QueueCounts(
            visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
            delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
        )


def _received(raw: dict[str, Any]) -> ReceivedMessage:
    system = raw.get("Attributes", {})
    sent = system.get("SentTimestamp")
    return ReceivedMessage(
        message_id=raw["MessageId"],
        receipt_handle=raw["ReceiptHandle"],
        body=raw.get("Body", ""),
        receive_count=int(system.get("ApproximateReceiveCount", 1)),
        sent_timestamp_ms=int(sent) if sent else None,
        attributes=dict(raw.get("MessageAttributes", {})),
    )


def _failures(response: Mapping[str, Any]) -> list[BatchFailure]:
    return [
        BatchFailure(
            entry_id=f["Id"],
            code=f.get("Code", ""),
            message=f.get("Message", ""),
            sender_fault=bool(f.get("SenderFault", False)),
        )
        for f in response.get("Failed", [])
    ]
