"""A minimal in-memory SQS endpoint (JSON protocol) for benchmarks, run as its own process.

It answers exactly the calls the worker and the bench make, so that a benchmark measures the
client, not the server (moto slows down as a queue deepens): CreateQueue, GetQueueUrl,
GetQueueAttributes, SendMessage(Batch), ReceiveMessage (long poll, VisibilityTimeout, system
and message attributes), DeleteMessage(Batch), ChangeMessageVisibility(Batch). Visibility
timeouts and DelaySeconds are honoured; a receipt handle is valid for its latest receive only.
Signatures are not checked. With `--forward URL` it serves no queues itself but passes every
request on to URL (a moto server) and only counts them. `--latency-ms` delays every answer
(without using CPU), as a network round trip to SQS would.

Requests are counted per operation when answered (a long poll still waiting is not counted
yet), empty receives apart; `GET /_bench/stats` returns the counts and the process's CPU time.

    python bench/fake_sqs.py [--port 0] [--latency-ms 0] [--forward http://127.0.0.1:5000]
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
import urllib.parse
import urllib.request
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "000000000000"
EMPTY_RECEIVE = "ReceiveMessage (empty)"
_SEQUENCE = itertools.count()


class SqsError(Exception):
    """An error answer: its shape name (JSON `__type`) and its query-compatible code."""

    def __init__(self, shape: str, code: str, message: str) -> None:
        super().__init__(message)
        self.shape, self.code, self.message = shape, code, message


def _no_queue() -> SqsError:
    return SqsError(
        "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", "The queue does not exist."
    )


@dataclass(eq=False)
class Message:
    message_id: str
    body: str
    md5: str
    attributes: dict[str, Any]
    sent_ms: int
    receive_count: int = 0
    receipt: str | None = None  # set while in flight
    visible_at: float = 0.0  # monotonic time it becomes visible; 0 while visible
    deleted: bool = False


@dataclass(eq=False)
class Queue:
    name: str
    url: str
    attributes: dict[str, str]
    visible: deque[Message] = field(default_factory=deque)
    # (visible_at, seq, message) of in-flight and delayed messages. A visibility change pushes
    # a new entry; stale ones are skipped by comparing visible_at, so each change is O(log n).
    timed: list[tuple[float, int, Message]] = field(default_factory=list)
    in_flight: int = 0
    delayed: int = 0
    receipts: dict[str, Message] = field(default_factory=dict)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def promote(self, now: float) -> None:
        """Make visible every in-flight or delayed message whose time has come."""
        woke = False
        while self.timed and self.timed[0][0] <= now:
            when, _, message = heapq.heappop(self.timed)
            if not message.deleted and message.visible_at == when:
                self._make_visible(message)
                woke = True
        if woke:
            self.wake()

    def _make_visible(self, message: Message) -> None:
        if message.receipt is None:
            self.delayed -= 1
        else:
            self.in_flight -= 1
            del self.receipts[message.receipt]
            message.receipt = None
        message.visible_at = 0.0
        self.visible.append(message)

    def _schedule(self, message: Message, when: float) -> None:
        message.visible_at = when
        heapq.heappush(self.timed, (when, next(_SEQUENCE), message))

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            _resolve(waiter)

    def add(self, body: str, attributes: dict[str, Any], delay: int) -> Message:
        md5 = hashlib.md5(body.encode()).hexdigest()
        message = Message(str(uuid.uuid4()), body, md5, attributes, int(time.time() * 1000))
        if delay > 0:
            self.delayed += 1
            self._schedule(message, time.monotonic() + delay)
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
            self._schedule(message, now + visibility)
            taken.append(message)
        return taken

    def held(self, receipt: str) -> Message:
        message = self.receipts.get(receipt)
        if message is None:
            code = "ReceiptHandleIsInvalid"
            raise SqsError(code, code, f"not held: {receipt}")
        return message

    def delete(self, receipt: str) -> None:
        message = self.held(receipt)
        message.deleted = True
        del self.receipts[receipt]
        self.in_flight -= 1

    def change_visibility(self, receipt: str, seconds: int, now: float) -> None:
        message = self.held(receipt)
        if seconds > 0:
            self._schedule(message, now + seconds)
        else:
            self._make_visible(message)
            self.wake()


class FakeSqs:
    """The queues and the operations on them, one method per SQS operation."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.queues: dict[str, Queue] = {}

    async def handle(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        method = getattr(self, "op_" + operation, None)
        if method is None:
            code = "AWS.SimpleQueueService.UnsupportedOperation"
            raise SqsError("UnsupportedOperation", code, operation)
        result = method(request)
        return dict(await result if asyncio.iscoroutine(result) else result)

    def _queue(self, request: dict[str, Any]) -> Queue:
        queue = self.queues.get(str(request.get("QueueUrl", "")).rstrip("/").rsplit("/", 1)[-1])
        if queue is None:
            raise _no_queue()
        return queue

    def op_CreateQueue(self, request: dict[str, Any]) -> dict[str, Any]:
        name = str(request["QueueName"])
        if name not in self.queues:
            attributes = {"VisibilityTimeout": "30", **(request.get("Attributes") or {})}
            self.queues[name] = Queue(name, f"{self.base_url}/{ACCOUNT}/{name}", attributes)
        return {"QueueUrl": self.queues[name].url}

    def op_GetQueueUrl(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"QueueUrl": self._queue({"QueueUrl": request.get("QueueName", "")}).url}

    def op_GetQueueAttributes(self, request: dict[str, Any]) -> dict[str, Any]:
        queue = self._queue(request)
        queue.promote(time.monotonic())
        every = {
            **queue.attributes,
            "QueueArn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:{queue.name}",
            "ApproximateNumberOfMessages": str(len(queue.visible)),
            "ApproximateNumberOfMessagesNotVisible": str(queue.in_flight),
            "ApproximateNumberOfMessagesDelayed": str(queue.delayed),
        }
        names = request.get("AttributeNames") or []
        return {"Attributes": {k: v for k, v in every.items() if "All" in names or k in names}}

    def op_SendMessage(self, request: dict[str, Any]) -> dict[str, Any]:
        message = _add(self._queue(request), request)
        return {"MessageId": message.message_id, "MD5OfMessageBody": message.md5}

    def op_SendMessageBatch(self, request: dict[str, Any]) -> dict[str, Any]:
        queue = self._queue(request)
        done = []
        for entry in request.get("Entries", []):
            message = _add(queue, entry)
            sent = {"MessageId": message.message_id, "MD5OfMessageBody": message.md5}
            done.append({"Id": entry["Id"], **sent})
        return {"Successful": done, "Failed": []}

    async def op_ReceiveMessage(self, request: dict[str, Any]) -> dict[str, Any]:
        queue = self._queue(request)
        most = int(request.get("MaxNumberOfMessages") or 1)
        visibility = int(request.get("VisibilityTimeout", queue.attributes["VisibilityTimeout"]))
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
            if queue.timed:
                remaining = min(remaining, max(0.0, queue.timed[0][0] - now) + 0.001)
            waiter = loop.create_future()
            queue.waiters.append(waiter)
            timer = loop.call_later(remaining, _resolve, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
        system = set(request.get("MessageSystemAttributeNames") or [])
        system |= set(request.get("AttributeNames") or [])  # the older name of the same
        wanted = set(request.get("MessageAttributeNames") or [])
        return {"Messages": [_render(m, system, wanted) for m in taken]}

    def op_DeleteMessage(self, request: dict[str, Any]) -> dict[str, Any]:
        self._queue(request).delete(str(request["ReceiptHandle"]))
        return {}

    def op_DeleteMessageBatch(self, request: dict[str, Any]) -> dict[str, Any]:
        queue = self._queue(request)
        return _batch(request, lambda entry: queue.delete(str(entry["ReceiptHandle"])))

    def op_ChangeMessageVisibility(self, request: dict[str, Any]) -> dict[str, Any]:
        seconds = int(request["VisibilityTimeout"])
        receipt, now = str(request["ReceiptHandle"]), time.monotonic()
        self._queue(request).change_visibility(receipt, seconds, now)
        return {}

    def op_ChangeMessageVisibilityBatch(self, request: dict[str, Any]) -> dict[str, Any]:
        queue, now = self._queue(request), time.monotonic()
        return _batch(
            request,
            lambda e: queue.change_visibility(
                str(e["ReceiptHandle"]), int(e["VisibilityTimeout"]), now
            ),
        )


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _add(queue: Queue, entry: dict[str, Any]) -> Message:
    attributes = dict(entry.get("MessageAttributes") or {})
    return queue.add(str(entry["MessageBody"]), attributes, int(entry.get("DelaySeconds") or 0))


def _batch(request: dict[str, Any], apply: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    successful, failed = [], []
    for entry in request.get("Entries", []):
        try:
            apply(entry)
        except SqsError as exc:
            failed.append(
                {"Id": entry["Id"], "SenderFault": True, "Code": exc.code, "Message": exc.message}
            )
        else:
            successful.append({"Id": entry["Id"]})
    return {"Successful": successful, "Failed": failed}


def _render(message: Message, system: set[str], wanted: set[str]) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "MessageId": message.message_id,
        "ReceiptHandle": message.receipt,
        "MD5OfBody": message.md5,
        "Body": message.body,
    }
    every = "All" in system
    attributes = {}
    if every or "ApproximateReceiveCount" in system:
        attributes["ApproximateReceiveCount"] = str(message.receive_count)
    if every or "SentTimestamp" in system:
        attributes["SentTimestamp"] = str(message.sent_ms)
    if attributes:
        rendered["Attributes"] = attributes
    everything = bool(wanted & {"All", ".*"})
    chosen = {k: v for k, v in message.attributes.items() if everything or k in wanted}
    if chosen:
        rendered["MessageAttributes"] = chosen
    return rendered


async def _read_message(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    """One HTTP/1.1 request or response: raw head, lower-cased headers, body."""
    head = await reader.readuntil(b"\r\n\r\n")
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            chunks.append((await reader.readexactly(size + 2))[:-2])
        await reader.readuntil(b"\r\n")
        headers.pop("transfer-encoding")
        return head, headers, b"".join(chunks)
    length = int(headers.get("content-length", "0"))
    return head, headers, (await reader.readexactly(length) if length else b"")


class Server:
    """The HTTP shell: keep-alive connections, one request at a time, counted when answered."""

    def __init__(self, sqs: FakeSqs | None, forward: str | None, latency: float = 0.0) -> None:
        self.sqs, self.forward = sqs, urllib.parse.urlsplit(forward) if forward else None
        self.latency = latency
        self.requests: Counter[str] = Counter()

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                head, headers, body = await _read_message(reader)
                operation = headers.get("x-amz-target", "").removeprefix("AmazonSQS.")
                if head.startswith(b"GET /_bench/stats "):
                    status, answer, extra = 200, json.dumps(self.stats()).encode(), {}
                elif self.forward is not None:
                    if upstream is None:
                        upstream = await asyncio.open_connection(
                            self.forward.hostname, self.forward.port, limit=2**24
                        )
                    upstream[1].write(head + body)
                    up_head, up_headers, answer = await _read_message(upstream[0])
                    status = int(up_head.split(b" ", 2)[1])
                    if up_headers.get("connection", "").lower() == "close":  # as moto answers
                        upstream[1].close()
                        upstream = None
                    extra = {k: v for k, v in up_headers.items() if k.startswith("x-amz")}
                else:
                    status, answer, extra = await self._answer(operation, body)
                if self.latency and operation:
                    await asyncio.sleep(self.latency)
                if reader.at_eof():  # the client left (a worker exiting during a long poll)
                    return
                self._count(operation, status, body, answer)
                _write(writer, status, answer, extra)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()
            if upstream is not None:
                upstream[1].close()

    async def _answer(self, operation: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        assert self.sqs is not None
        try:
            result = await self.sqs.handle(operation, json.loads(body or b"{}"))
        except SqsError as exc:
            error = {"__type": "com.amazonaws.sqs#" + exc.shape, "message": exc.message}
            return 400, json.dumps(error).encode(), {"x-amzn-query-error": f"{exc.code};Sender"}
        return 200, json.dumps(result).encode(), {}

    def _count(self, operation: str, status: int, body: bytes, answer: bytes) -> None:
        """Count a request; partial batches also as 'Operation (detail)', a subset of it."""
        if not operation:
            return
        self.requests[operation] += 1
        if status != 200:
            return
        if operation == "ReceiveMessage":
            size = len(json.loads(answer).get("Messages", []))
            if size == 0:
                self.requests[EMPTY_RECEIVE] += 1
            elif size < 10:
                self.requests[f"{operation} ({size} messages)"] += 1
        elif operation.endswith("Batch"):
            size = len(json.loads(body).get("Entries", []))
            if size < 10:
                self.requests[f"{operation} ({size} entries)"] += 1

    def stats(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {"requests": dict(self.requests), "cpu_s": usage.ru_utime + usage.ru_stime}


def _write(
    writer: asyncio.StreamWriter, status: int, payload: bytes, extra: dict[str, str]
) -> None:
    lines = [
        f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}",
        "Content-Type: application/x-amz-json-1.0",
        f"Content-Length: {len(payload)}",
        f"x-amzn-RequestId: {uuid.uuid4()}",
        *(f"{k}: {v}" for k, v in extra.items() if k != "x-amzn-requestid"),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)


async def serve(host: str, port: int, forward: str | None, latency: float) -> None:
    server = Server(None, forward, latency)
    listener = await asyncio.start_server(server.connection, host, port, limit=2**24)
    url = f"http://{host}:{listener.sockets[0].getsockname()[1]}"
    server.sqs = None if forward else FakeSqs(url)
    print(f"listening {url}", flush=True)
    async with listener:
        await listener.serve_forever()


class FakeSqsProcess:
    """This module run as a child process: its address, its request counts, its pid."""

    def __init__(self, forward: str | None = None, latency_ms: float = 0.0) -> None:
        command = [sys.executable, __file__, "--latency-ms", str(latency_ms)]
        command += ["--forward", forward] if forward else []
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"bench/fake_sqs.py did not start: {line!r}")
        self.url = line.split()[1]
        self.pid = self.process.pid

    def requests(self) -> Counter[str]:
        """SQS requests answered so far, per operation (empty receives also apart)."""
        with urllib.request.urlopen(self.url + "/_bench/stats", timeout=10) as answer:
            return Counter(json.loads(answer.read())["requests"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--forward", help="count requests and pass them on to this endpoint")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay of every answer")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.forward, args.latency_ms / 1000))


if __name__ == "__main__":
    main()
