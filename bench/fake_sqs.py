"""A minimal in-memory SQS endpoint (JSON protocol) for benchmarks, run as its own process.

It answers exactly the calls the worker and the bench make, so that the client, not the
server, is what a benchmark measures (moto slows down as a queue deepens):
CreateQueue, GetQueueUrl, GetQueueAttributes, SendMessage(Batch), ReceiveMessage (long poll,
VisibilityTimeout, system and message attributes), DeleteMessageBatch,
ChangeMessageVisibility(Batch). Visibility timeouts and DelaySeconds are honoured; a receipt
handle is valid for the latest receive only. Signatures are not checked.

`GET /_bench/stats` returns the requests counted per operation and the server's own CPU time.

    python bench/fake_sqs.py [--port 0]     # prints "listening http://127.0.0.1:PORT"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import heapq
import itertools
import json
import resource
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "000000000000"
_TYPE_PREFIX = "com.amazonaws.sqs#"
_STATUS_TEXT = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}


class SqsError(Exception):
    """An error answer: shape name (JSON `__type`) and the query-compatible code."""

    def __init__(self, shape: str, query_code: str, message: str, *, sender: bool = True) -> None:
        super().__init__(message)
        self.shape, self.query_code, self.message, self.sender = shape, query_code, message, sender


def _no_queue() -> SqsError:
    return SqsError(
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
        "The specified queue does not exist.",
    )


@dataclass(eq=False)
class Message:
    message_id: str
    body: str
    md5: str
    attributes: dict[str, Any]
    sent_ms: int
    receive_count: int = 0
    receipt: str | None = None
    visible_at: float = 0.0  # monotonic time; 0 while visible
    deleted: bool = False


@dataclass(eq=False)
class Queue:
    name: str
    url: str
    attributes: dict[str, str]
    created: int = field(default_factory=lambda: int(time.time()))
    visible: deque[Message] = field(default_factory=deque)
    # (visible_at, seq, message) for in-flight and delayed messages; stale entries are
    # skipped by comparing visible_at, so a visibility change is O(log n).
    timed: list[tuple[float, int, Message]] = field(default_factory=list)
    in_flight: int = 0
    delayed: int = 0
    receipts: dict[str, Message] = field(default_factory=dict)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    @property
    def default_visibility(self) -> int:
        return int(self.attributes.get("VisibilityTimeout", "30"))

    def promote(self, now: float) -> None:
        """Make visible every in-flight or delayed message whose time has come."""
        woke = False
        while self.timed and self.timed[0][0] <= now:
            when, _, message = heapq.heappop(self.timed)
            if message.deleted or message.visible_at != when:
                continue  # a stale entry: deleted or re-timed since
            self._make_visible(message)
            woke = True
        if woke:
            self.wake()

    def _make_visible(self, message: Message) -> None:
        if message.receipt is None:
            self.delayed -= 1
        else:
            self.in_flight -= 1
            self.receipts.pop(message.receipt, None)
            message.receipt = None
        message.visible_at = 0.0
        self.visible.append(message)

    def schedule(self, message: Message, when: float) -> None:
        message.visible_at = when
        heapq.heappush(self.timed, (when, next(_SEQUENCE), message))

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def next_due(self) -> float | None:
        return self.timed[0][0] if self.timed else None

    def add(self, body: str, attributes: dict[str, Any], delay: int) -> Message:
        message = Message(
            message_id=str(uuid.uuid4()),
            body=body,
            md5=hashlib.md5(body.encode()).hexdigest(),
            attributes=attributes,
            sent_ms=int(time.time() * 1000),
        )
        if delay > 0:
            self.delayed += 1
            self.schedule(message, time.monotonic() + delay)
        else:
            self.visible.append(message)
            self.wake()
        return message

    def take(self, most: int, visibility: int, now: float) -> list[Message]:
        taken: list[Message] = []
        while self.visible and len(taken) < most:
            message = self.visible.popleft()
            message.receive_count += 1
            message.receipt = f"{message.message_id}#{message.receive_count}"
            self.receipts[message.receipt] = message
            self.in_flight += 1
            if visibility > 0:
                self.schedule(message, now + visibility)
            else:  # visibility 0: received and visible again at once
                self._make_visible(message)
            taken.append(message)
        return taken

    def held(self, receipt: str) -> Message:
        message = self.receipts.get(receipt)
        if message is None or message.deleted:
            raise SqsError(
                "ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid", f"unknown receipt {receipt}"
            )
        return message

    def delete(self, receipt: str) -> None:
        message = self.held(receipt)
        message.deleted = True
        self.receipts.pop(receipt, None)
        self.in_flight -= 1

    def change_visibility(self, receipt: str, seconds: int, now: float) -> None:
        message = self.held(receipt)
        if seconds <= 0:
            self._make_visible(message)
            self.wake()
        else:
            self.schedule(message, now + seconds)


_SEQUENCE = itertools.count()


class FakeSqs:
    """The queues and the operations on them; `handle` maps one JSON request to its answer."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.queues: dict[str, Queue] = {}
        self.requests: Counter[str] = Counter()
        self._ops: dict[str, Callable[[dict[str, Any]], Any]] = {
            "CreateQueue": self.create_queue,
            "GetQueueUrl": self.get_queue_url,
            "GetQueueAttributes": self.get_queue_attributes,
            "SendMessage": self.send_message,
            "SendMessageBatch": self.send_message_batch,
            "ReceiveMessage": self.receive_message,
            "DeleteMessageBatch": self.delete_message_batch,
            "DeleteMessage": self.delete_message,
            "ChangeMessageVisibility": self.change_message_visibility,
            "ChangeMessageVisibilityBatch": self.change_message_visibility_batch,
        }

    async def handle(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        self.requests[operation] += 1
        op = self._ops.get(operation)
        if op is None:
            raise SqsError(
                "UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation", operation
            )
        result = op(request)
        if asyncio.iscoroutine(result):
            result = await result
        return dict(result)

    def _queue(self, request: dict[str, Any]) -> Queue:
        url = str(request.get("QueueUrl", ""))
        queue = self.queues.get(url.rstrip("/").rsplit("/", 1)[-1])
        if queue is None:
            raise _no_queue()
        return queue

    def create_queue(self, request: dict[str, Any]) -> dict[str, Any]:
        name = str(request["QueueName"])
        if name not in self.queues:
            url = f"{self.base_url}/{ACCOUNT}/{name}"
            self.queues[name] = Queue(name, url, dict(request.get("Attributes") or {}))
        return {"QueueUrl": self.queues[name].url}

    def get_queue_url(self, request: dict[str, Any]) -> dict[str, Any]:
        queue = self.queues.get(str(request.get("QueueName")))
        if queue is None:
            raise _no_queue()
        return {"QueueUrl": queue.url}

    def get_queue_attributes(self, request: dict[str, Any]) -> dict[str, Any]:
        queue = self._queue(request)
        queue.promote(time.monotonic())
        every = {
            **queue.attributes,
            "QueueArn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:{queue.name}",
            "ApproximateNumberOfMessages": str(len(queue.visible)),
            "ApproximateNumberOfMessagesNotVisible": str(queue.in_flight),
            "ApproximateNumberOfMessagesDelayed": str(queue.delayed),
            "VisibilityTimeout": str(queue.default_visibility),
            "CreatedTimestamp": str(queue.created),
        }
        names = request.get("AttributeNames") or []
        if "All" not in names:
            every = {k: v for k, v in every.items() if k in names}
        return {"Attributes": every}

    def send_message(self, request: dict[str, Any]) -> dict[str, Any]:
        queue = self._queue(request)
        message = queue.add(
            str(request["MessageBody"]),
            dict(request.get("MessageAttributes") or {}),
            int(request.get("DelaySeconds") or 0),
        )
        return {"MessageId": message.message_id, "MD5OfMessageBody": message.md5}

    def send_message_batch(self, request: dict[str, Any]) -> dict[str, Any]:
        queue = self._queue(request)
        done = []
        for entry in request.get("Entries", []):
            message = queue.add(
                str(entry["MessageBody"]),
                dict(entry.get("MessageAttributes") or {}),
                int(entry.get("DelaySeconds") or 0),
            )
            done.append(
                {
                    "Id": entry["Id"],
                    "MessageId": message.message_id,
                    "MD5OfMessageBody": message.md5,
                }
            )
        return {"Successful": done, "Failed": []}

    async def receive_message(self, request: dict[str, Any]) -> dict[str, Any]:
        queue = self._queue(request)
        most = int(request.get("MaxNumberOfMessages") or 1)
        visibility = int(request.get("VisibilityTimeout", queue.default_visibility))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + int(request.get("WaitTimeSeconds") or 0)
        while True:
            now = time.monotonic()
            queue.promote(now)
            taken = queue.take(most, visibility, now)
            remaining = deadline - loop.time()
            if taken or remaining <= 0:
                break
            # Sleep until a message arrives, the next lease runs out, or the poll ends.
            due = queue.next_due()
            if due is not None:
                remaining = min(remaining, max(0.0, due - now) + 0.001)
            waiter = loop.create_future()
            queue.waiters.append(waiter)
            timer = loop.call_later(remaining, _resolve, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
        system = set(
            request.get("MessageSystemAttributeNames") or request.get("AttributeNames") or []
        )
        wanted = set(request.get("MessageAttributeNames") or [])
        return {"Messages": [_render(m, system, wanted) for m in taken]}

    def delete_message(self, request: dict[str, Any]) -> dict[str, Any]:
        self._queue(request).delete(str(request["ReceiptHandle"]))
        return {}

    def delete_message_batch(self, request: dict[str, Any]) -> dict[str, Any]:
        queue = self._queue(request)
        return _batch(request, lambda entry: queue.delete(str(entry["ReceiptHandle"])))

    def change_message_visibility(self, request: dict[str, Any]) -> dict[str, Any]:
        queue = self._queue(request)
        queue.change_visibility(
            str(request["ReceiptHandle"]), int(request["VisibilityTimeout"]), time.monotonic()
        )
        return {}

    def change_message_visibility_batch(self, request: dict[str, Any]) -> dict[str, Any]:
        queue = self._queue(request)
        now = time.monotonic()
        return _batch(
            request,
            lambda e: queue.change_visibility(
                str(e["ReceiptHandle"]), int(e["VisibilityTimeout"]), now
            ),
        )

    def stats(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "requests": dict(self.requests),
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "queues": {
                name: {"visible": len(q.visible), "in_flight": q.in_flight, "delayed": q.delayed}
                for name, q in self.queues.items()
            },
        }


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _batch(request: dict[str, Any], apply: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    successful, failed = [], []
    for entry in request.get("Entries", []):
        try:
            apply(entry)
        except SqsError as exc:
            failed.append(
                {
                    "Id": entry["Id"],
                    "SenderFault": exc.sender,
                    "Code": exc.query_code,
                    "Message": exc.message,
                }
            )
        else:
            successful.append({"Id": entry["Id"]})
    return {"Successful": successful, "Failed": failed}


def _render(message: Message, system: set[str], wanted: set[str]) -> dict[str, Any]:
    every = "All" in system
    attributes = {}
    if every or "ApproximateReceiveCount" in system:
        attributes["ApproximateReceiveCount"] = str(message.receive_count)
    if every or "SentTimestamp" in system:
        attributes["SentTimestamp"] = str(message.sent_ms)
    rendered: dict[str, Any] = {
        "MessageId": message.message_id,
        "ReceiptHandle": message.receipt,
        "MD5OfBody": message.md5,
        "Body": message.body,
    }
    if attributes:
        rendered["Attributes"] = attributes
    if message.attributes and wanted:
        everything = bool(wanted & {"All", ".*"})
        chosen = {k: v for k, v in message.attributes.items() if everything or k in wanted}
        if chosen:
            rendered["MessageAttributes"] = chosen
    return rendered


class Connection:
    """One keep-alive HTTP/1.1 connection: read a request, answer it, repeat."""

    def __init__(
        self, sqs: FakeSqs, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._sqs, self._reader, self._writer = sqs, reader, writer

    async def serve(self) -> None:
        try:
            while True:
                try:
                    head = await self._reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                request_line, _, header_block = head.decode("latin-1").partition("\r\n")
                headers = {}
                for line in header_block.split("\r\n"):
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                body = await self._reader.readexactly(length) if length else b""
                status, payload, extra = await self._answer(request_line, headers, body)
                self._write(status, payload, extra)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self._writer.close()

    async def _answer(
        self, request_line: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        method, path = request_line.split(" ")[:2]
        if method == "GET" and path == "/_bench/stats":
            return 200, json.dumps(self._sqs.stats()).encode(), {}
        target = headers.get("x-amz-target", "")
        if not target.startswith("AmazonSQS."):
            return 404, b'{"message": "only the SQS JSON protocol is spoken here"}', {}
        try:
            result = await self._sqs.handle(target[len("AmazonSQS.") :], json.loads(body or b"{}"))
        except SqsError as exc:
            error = {"__type": _TYPE_PREFIX + exc.shape, "message": exc.message}
            fault = "Sender" if exc.sender else "Receiver"
            return (
                400,
                json.dumps(error).encode(),
                {"x-amzn-query-error": f"{exc.query_code};{fault}"},
            )
        return 200, json.dumps(result).encode(), {}

    def _write(self, status: int, payload: bytes, extra: dict[str, str]) -> None:
        lines = [
            f"HTTP/1.1 {status} {_STATUS_TEXT.get(status, 'Error')}",
            "Content-Type: application/x-amz-json-1.0",
            f"Content-Length: {len(payload)}",
            f"x-amzn-RequestId: {uuid.uuid4()}",
            *(f"{k}: {v}" for k, v in extra.items()),
        ]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)


async def serve(host: str, port: int) -> None:
    holder: list[FakeSqs] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await Connection(holder[0], reader, writer).serve()

    server = await asyncio.start_server(on_connect, host, port, limit=2**22)
    bound = server.sockets[0].getsockname()[1]
    holder.append(FakeSqs(f"http://{host}:{bound}"))
    print(f"listening http://{host}:{bound}", flush=True)
    async with server:
        await server.serve_forever()


class FakeSqsProcess:
    """This module run as a child process: its address, request counters and pid."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"fake SQS did not start: {line!r}")
        self.url = line.split()[1]
        self.pid = self.process.pid

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/_bench/stats", timeout=10) as answer:
            return dict(json.loads(answer.read()))

    def requests(self) -> Counter[str]:
        """SQS requests answered so far, per operation."""
        return Counter(self.stats()["requests"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
