"""SQS's message move tasks (StartMessageMoveTask, ListMessageMoveTasks), which moto lacks.

Plugged into a FaultyProxy in front of moto (`FaultyProxy(moto.url, answer=tasks.answer)`),
it answers those two calls in SQS's JSON protocol and lets everything else reach moto. The
move is real: the first ListMessageMoveTasks after a start moves every visible message of
the source queue to the destination in moto, as SQS does (body and message attributes
unchanged), and answers RUNNING; later ones answer COMPLETED. Request and answer members are
checked against botocore's service model, so a misspelt member fails here as it would on AWS.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.session

_PREFIX = "AmazonSQS."
_MODEL = botocore.session.get_session().get_service_model("sqs")


def _members(operation: str, side: str) -> frozenset[str]:
    shape = getattr(_MODEL.operation_model(operation), side)
    return frozenset(shape.members)


_START_IN = _members("StartMessageMoveTask", "input_shape")
_START_OUT = _members("StartMessageMoveTask", "output_shape")
_LIST_IN = _members("ListMessageMoveTasks", "input_shape")
_RESULT = frozenset(
    _MODEL.operation_model("ListMessageMoveTasks").output_shape.members["Results"].member.members
)


@dataclass
class MoveTasks:
    """The move tasks of one test; `fail` makes every task end FAILED with that reason,
    `refuse` makes StartMessageMoveTask answer as SQS does for a queue that is no DLQ."""

    moto_url: str
    fail: str | None = None
    refuse: bool = False
    started: list[dict[str, Any]] = field(default_factory=list)  # the requests, in order
    tasks: list[dict[str, Any]] = field(default_factory=list)  # newest first, as SQS lists
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, target: str, body: bytes) -> tuple[int, bytes] | None:
        if not target.startswith(_PREFIX):
            return None
        operation = target[len(_PREFIX) :]
        if operation not in ("StartMessageMoveTask", "ListMessageMoveTasks"):
            return None
        request = json.loads(body or b"{}")
        with self._lock:
            if operation == "StartMessageMoveTask":
                return self._start(request)
            return self._list(request)

    def _start(self, request: dict[str, Any]) -> tuple[int, bytes]:
        unknown = set(request) - _START_IN
        if unknown or "SourceArn" not in request:
            return _error("InvalidParameterValue", f"unknown or missing members: {unknown}")
        self.started.append(request)
        if self.refuse:
            return _error(
                "InvalidParameterValue", "Source queue must be configured as a Dead Letter Queue."
            )
        handle = uuid.uuid4().hex
        self.tasks.insert(
            0,
            {
                "TaskHandle": handle,
                "Status": "RUNNING",
                "SourceArn": request["SourceArn"],
                "DestinationArn": request.get("DestinationArn", ""),
                "ApproximateNumberOfMessagesMoved": 0,
                "ApproximateNumberOfMessagesToMove": 0,
                "StartedTimestamp": 0,
                "_polls": 0,
            },
        )
        answer = {"TaskHandle": handle}
        assert set(answer) <= _START_OUT
        return 200, json.dumps(answer).encode()

    def _list(self, request: dict[str, Any]) -> tuple[int, bytes]:
        unknown = set(request) - _LIST_IN
        if unknown or "SourceArn" not in request:
            return _error("InvalidParameterValue", f"unknown or missing members: {unknown}")
        mine = [t for t in self.tasks if t["SourceArn"] == request["SourceArn"]]
        for task in mine:
            self._advance(task)
        results = [{k: v for k, v in t.items() if not k.startswith("_")} for t in mine]
        results = results[: int(request.get("MaxResults", 1))]
        assert all(set(r) <= _RESULT for r in results)
        return 200, json.dumps({"Results": results}).encode()

    def _advance(self, task: dict[str, Any]) -> None:
        task["_polls"] += 1
        if task["Status"] != "RUNNING":
            return
        if task["_polls"] == 1:
            moved = self._move(task["SourceArn"], task["DestinationArn"])
            task["ApproximateNumberOfMessagesMoved"] = moved
            task["ApproximateNumberOfMessagesToMove"] = moved
            return
        if self.fail is not None:
            task["Status"], task["FailureReason"] = "FAILED", self.fail
        else:
            task["Status"] = "COMPLETED"

    def _move(self, source_arn: str, destination_arn: str) -> int:
        sqs = boto3.client("sqs", endpoint_url=self.moto_url)
        source, destination = self._url(source_arn), self._url(destination_arn)
        moved = 0
        while True:
            batch = sqs.receive_message(
                QueueUrl=source,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                VisibilityTimeout=30,
            ).get("Messages", [])
            if not batch:
                return moved
            entries = []
            for i, message in enumerate(batch):
                entry: dict[str, Any] = {"Id": str(i), "MessageBody": message["Body"]}
                if message.get("MessageAttributes"):
                    entry["MessageAttributes"] = {
                        name: {k: v for k, v in value.items() if k != "BinaryListValues"}
                        for name, value in message["MessageAttributes"].items()
                    }
                entries.append(entry)
            sent = sqs.send_message_batch(QueueUrl=destination, Entries=entries)
            assert not sent.get("Failed"), sent["Failed"]
            sqs.delete_message_batch(
                QueueUrl=source,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
                ],
            )
            moved += len(batch)

    def _url(self, arn: str) -> str:
        _, _, _, _, account, name = arn.split(":")
        return f"{self.moto_url}/{account}/{name}"


def _error(code: str, message: str) -> tuple[int, bytes]:
    return 400, json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": message}).encode()
