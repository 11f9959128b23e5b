"""Shared fixtures: one moto server per session over HTTP, queue factories, worker processes."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support import ganesha as ganesha_support
from tests.support.ganesha import Ganesha
from tests.support.moto_server import MotoServer
from tests.support.worker_process import WorkerProcess, worker_env


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(log_path=tmp_path_factory.mktemp("moto") / "moto.log")
    server.start()
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())
    yield server
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def sqs(moto: MotoServer) -> Any:
    return boto3.client("sqs", endpoint_url=moto.url)


@pytest.fixture
def s3(moto: MotoServer) -> Any:
    return boto3.client("s3", endpoint_url=moto.url)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class TestQueue:
    __test__ = False  # a queue description, not a test class

    url: str
    dlq_url: str
    name: str


QueueFactory = Callable[..., TestQueue]


@pytest.fixture
def make_queue(sqs: Any) -> Iterator[QueueFactory]:
    """Create a queue with a dead-letter queue and a redrive policy; deleted afterwards."""
    created: list[str] = []

    def make(*, visibility: int = 30, max_receive: int = 5, **attributes: str) -> TestQueue:
        name = unique("q")
        dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)})
        url = sqs.create_queue(
            QueueName=name,
            Attributes={
                "VisibilityTimeout": str(visibility),
                "RedrivePolicy": redrive,
                **attributes,
            },
        )["QueueUrl"]
        created.extend([url, dlq_url])
        return TestQueue(url=url, dlq_url=dlq_url, name=name)

    yield make
    for url in created:
        with contextlib.suppress(Exception):  # already gone: nothing to clean
            sqs.delete_queue(QueueUrl=url)


@pytest.fixture
def start_worker(moto: MotoServer) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `python -m worker` processes against moto; any left running are killed."""
    started: list[WorkerProcess] = []

    def start(*args: str, **env: Any) -> WorkerProcess:
        process = WorkerProcess(worker_env(moto.env(), **env), list(args))
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def drain_all(sqs: Any, url: str, *, wait: int = 0) -> list[dict[str, Any]]:
    """Receive (and delete) everything visible in a queue, with attributes."""
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )


def first_message_id(message: dict[str, Any]) -> str:
    """The id a received message had when first sent: a stop hands back a copy of it."""
    history = message.get("MessageAttributes", {}).get("spotdrain-history")
    if history is None:
        return str(message["MessageId"])
    return str(json.loads(history["StringValue"])["origin"])


def history_of(message: dict[str, Any]) -> dict[str, Any]:
    """The hand-back history a received message carries ({} for an original)."""
    history = message.get("MessageAttributes", {}).get("spotdrain-history")
    return {} if history is None else dict(json.loads(history["StringValue"]))


def serve_ganesha(workdir: Path, export: Path) -> Iterator[Ganesha]:
    """The body of a `ganesha` fixture: a real server exporting `export`, or a skip."""
    reason = ganesha_support.unavailable()
    if reason:
        pytest.skip(reason)
    server = ganesha_support.Ganesha(workdir, export=export)
    server.start()
    yield server
    server.stop()
