"""The lean SQS path (adapters/sqs_wire.py) behaves as aiobotocore does, against moto over HTTP.

Every message the worker handles passes through it, so its answers, its errors and its
retries must be botocore's: the rest of the worker cannot tell the two paths apart.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import pytest

from tests.support.faulty_proxy import FaultyProxy
from tests.support.tls_relay import TlsRelay
from worker.adapters.aws import AwsClients
from worker.adapters.sqs import Queue
from worker.errors import PermanentError, RetryableError

T = TypeVar("T")


def with_queues(url: str, use: Callable[[Queue, Queue], Awaitable[T]]) -> T:
    """Run `use(lean, classic)`: the same queue through the wire and through aiobotocore."""

    async def run() -> T:
        async with AsyncExitStack() as stack:
            clients = AwsClients(stack, region="us-east-1", max_connections=4)
            client = await clients.sqs()
            return await use(Queue(client, url, await clients.sqs_wire()), Queue(client, url))

    return asyncio.run(run())


def send_two(sqs: Any, url: str) -> None:
    for body in ("first", "second"):
        sqs.send_message(
            QueueUrl=url,
            MessageBody=body,
            MessageAttributes={
                "origin": {"DataType": "String", "StringValue": "upstream"},
                "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff" + body.encode()},
            },
        )


def test_received_messages_are_the_same_through_both_paths(sqs, make_queue):
    queue = make_queue(visibility=30)
    send_two(sqs, queue.url)

    async def receive_each(lean: Queue, classic: Queue) -> tuple[Any, Any]:
        first = await lean.receive(max_messages=1, wait_seconds=1, visibility=0)
        second = await classic.receive(max_messages=1, wait_seconds=1, visibility=0)
        return first, second

    [lean], [classic] = with_queues(queue.url, receive_each)

    def comparable(message: Any) -> dict[str, Any]:
        fields = dict(vars(message))
        del fields["receipt_handle"], fields["receive_count"]
        return fields

    assert comparable(lean) == comparable(classic)  # visibility 0: the same message twice
    assert (lean.receive_count, classic.receive_count) == (1, 2)
    assert lean.attributes["blob"]["BinaryValue"].startswith(b"\x00\xff")


def test_batched_deletes_and_visibility_changes_report_the_entries_that_failed(sqs, make_queue):
    queue = make_queue()
    send_two(sqs, queue.url)

    async def settle(lean: Queue, _: Queue) -> tuple[Any, Any, Any]:
        held = await lean.receive(max_messages=10, wait_seconds=1, visibility=30)
        extended = await lean.change_visibility_batch(
            [("0", held[0].receipt_handle, 60), ("1", "not-a-receipt-handle", 60)]
        )
        deleted = await lean.delete_batch(
            [(str(i), m.receipt_handle) for i, m in enumerate(held)] + [("9", "bogus")]
        )
        return held, extended, deleted

    held, extended, deleted = with_queues(queue.url, settle)

    assert len(held) == 2
    assert [f.entry_id for f in extended] == ["1"]
    assert [f.entry_id for f in deleted] == ["9"]
    assert deleted[0].code and deleted[0].sender_fault
    gone = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"])["Attributes"]
    assert (gone["ApproximateNumberOfMessages"], gone["ApproximateNumberOfMessagesNotVisible"]) == (
        "0",
        "0",
    )


def test_a_missing_queue_is_the_same_permanent_error_through_both_paths(moto):
    missing = f"{moto.url}/000000000000/no-such-queue"

    async def receive_both(lean: Queue, classic: Queue) -> list[str]:
        errors = []
        for queue in (lean, classic):
            with pytest.raises(PermanentError) as caught:
                await queue.receive(max_messages=1, wait_seconds=0, visibility=30)
            errors.append(str(caught.value))
        return errors

    lean_error, classic_error = with_queues(missing, receive_both)

    assert "AWS.SimpleQueueService.NonExistentQueue" in lean_error
    assert lean_error == classic_error


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries without the wait between them; how many there are is what is tested."""
    monkeypatch.setattr(random, "random", lambda: 0.0)


def test_throttling_is_retried_four_times_in_all_then_reported_as_retryable(
    moto, make_queue, monkeypatch, no_backoff
):
    queue = make_queue()
    with FaultyProxy(moto.url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        proxy.throttle(1.0)

        async def receive(lean: Queue, _: Queue) -> None:
            with pytest.raises(RetryableError, match="ThrottlingException"):
                await lean.receive(max_messages=1, wait_seconds=0, visibility=30)

        with_queues(queue.url, receive)

    assert proxy.counts["throttled"] == 4


def test_occasional_throttling_is_absorbed_by_the_retries(
    sqs, moto, make_queue, monkeypatch, no_backoff
):
    queue = make_queue(max_receive=100)  # received over and over, never dead-lettered
    sqs.send_message(QueueUrl=queue.url, MessageBody="once")
    with FaultyProxy(moto.url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        proxy.throttle(0.5, seed=3)

        async def receive_many(lean: Queue, _: Queue) -> list[int]:
            counts = []
            for _ in range(12):
                held = await lean.receive(max_messages=1, wait_seconds=2, visibility=0)
                counts.append(len(held))
            return counts

        counts = with_queues(queue.url, receive_many)

    assert counts == [1] * 12
    assert proxy.counts["throttled"] >= 3


def test_an_endpoint_that_drops_every_connection_is_a_retryable_error(
    moto, make_queue, monkeypatch, no_backoff
):
    queue = make_queue()
    with FaultyProxy(moto.url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)

        async def receive(lean: Queue, _: Queue) -> None:
            proxy.outage()  # after start-up, so that the client is created against it
            with pytest.raises(RetryableError, match="ReceiveMessage"):
                await lean.receive(max_messages=1, wait_seconds=0, visibility=30)

        with_queues(queue.url, receive)

    assert proxy.counts["dropped"] == 4


class ContainerCredentials:
    """ECS's task-role endpoint on loopback: temporary credentials, new ones on every fetch,
    each expiring within botocore's mandatory-refresh window (so each call refreshes)."""

    def __init__(self) -> None:
        self.served: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                key = f"ASIATASKROLE{len(owner.served):08d}"
                owner.served.append(key)
                expires = datetime.now(UTC) + timedelta(minutes=5)
                body = json.dumps(
                    {
                        "AccessKeyId": key,
                        "SecretAccessKey": f"secret-{key}",
                        "Token": f"token-{key}",
                        "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v2/credentials/task"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_task_role_credentials_sign_every_call_and_are_refreshed_before_they_expire(
    sqs, moto, make_queue, monkeypatch
):
    queue = make_queue(max_receive=100)
    sqs.send_message(QueueUrl=queue.url, MessageBody="signed")
    endpoint = ContainerCredentials()
    with FaultyProxy(moto.url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", endpoint.url)

        async def receive_twice(lean: Queue, _: Queue) -> None:
            for _ in range(2):
                assert await lean.receive(max_messages=1, wait_seconds=2, visibility=0)

        try:
            with_queues(queue.url, receive_twice)
        finally:
            endpoint.close()

    receives = [s for s in proxy.signatures if s[0] == "AmazonSQS.ReceiveMessage"]
    used = [authorization.split("Credential=")[1].split("/")[0] for _, authorization, _ in receives]
    assert len(used) == 2 and len(set(used)) == 2  # a fresh key for each call
    assert set(used) <= set(endpoint.served)
    assert [token for *_, token in receives] == [f"token-{key}" for key in used]


def test_an_https_endpoint_is_verified_against_aws_ca_bundle(
    sqs, moto, make_queue, monkeypatch, tmp_path, no_backoff
):
    queue = make_queue(max_receive=100)
    sqs.send_message(QueueUrl=queue.url, MessageBody="over TLS")
    with TlsRelay(upstream_port=moto.port, directory=tmp_path) as relay:
        monkeypatch.setenv("AWS_ENDPOINT_URL", relay.url)
        monkeypatch.setenv("AWS_CA_BUNDLE", str(relay.ca_bundle))

        async def receive_both(lean: Queue, classic: Queue) -> list[str]:
            bodies = []
            for path in (lean, classic):
                [message] = await path.receive(max_messages=1, wait_seconds=2, visibility=0)
                bodies.append(message.body)
            return bodies

        assert with_queues(queue.url, receive_both) == ["over TLS", "over TLS"]
        assert relay.handshakes_failed == 0

        monkeypatch.delenv("AWS_CA_BUNDLE")  # now the certificate is a stranger's

        async def receive_untrusted(lean: Queue, _: Queue) -> None:
            with pytest.raises(RetryableError, match="ReceiveMessage"):
                await lean.receive(max_messages=1, wait_seconds=0, visibility=0)

        with_queues(queue.url, receive_untrusted)
        deadline = time.monotonic() + 5  # the relay counts a refusal after the client left
        while relay.handshakes_failed < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert relay.handshakes_failed >= 4  # every attempt refused the certificate


@pytest.mark.parametrize("bypassed", [False, True])
def test_http_proxy_and_no_proxy_from_the_environment_are_honoured(
    sqs, moto, make_queue, monkeypatch, bypassed
):
    queue = make_queue(max_receive=100)
    sqs.send_message(QueueUrl=queue.url, MessageBody="proxied")
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    with FaultyProxy(moto.url) as proxy:  # forwards whatever it is asked, as a proxy would
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        if bypassed:
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")

        async def receive(lean: Queue, _: Queue) -> None:
            assert await lean.receive(max_messages=1, wait_seconds=2, visibility=0)

        with_queues(queue.url, receive)

    proxied = [s for s in proxy.signatures if s[0] == "AmazonSQS.ReceiveMessage"]
    assert len(proxied) == (0 if bypassed else 1)
