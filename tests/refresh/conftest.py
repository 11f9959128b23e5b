"""Fixtures of the refresh tests: a refresh table in moto, the local Storage Gateway endpoint."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from tests.conftest import QueueFactory, TestQueue, unique
from tests.support.moto_server import MotoServer
from tests.support.storage_gateway import Call, StorageGatewayEndpoint
from tests.support.worker_process import WorkerProcess


@pytest.fixture(scope="session")
def dynamodb_url(moto: MotoServer) -> str:
    """The session moto server; its DynamoDB item writes are atomic (tests/support/moto_main.py)."""
    return moto.url


@pytest.fixture
def dynamodb(dynamodb_url: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=dynamodb_url)


@dataclass(frozen=True)
class RefreshTable:
    name: str
    url: str  # the DynamoDB endpoint holding it


@pytest.fixture
def refresh_table(dynamodb: Any, dynamodb_url: str) -> Iterator[RefreshTable]:
    """A table with the string partition key `target`, as the README asks."""
    name = unique("refresh")
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "target", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "target", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield RefreshTable(name, dynamodb_url)
    dynamodb.delete_table(TableName=name)


@pytest.fixture
def gateway() -> Iterator[StorageGatewayEndpoint]:
    with StorageGatewayEndpoint() as endpoint:
        yield endpoint


def refresh_env(
    queue: TestQueue, table: RefreshTable, gateway: StorageGatewayEndpoint, **extra: Any
) -> dict[str, Any]:
    """The environment of a worker that aggregates refreshes (short windows for tests)."""
    return {
        "QUEUE_URL": queue.url,
        "REFRESH_TABLE": table.name,
        "REFRESH_WINDOW_SECONDS": "2",
        "AWS_ENDPOINT_URL_STORAGE_GATEWAY": gateway.url,
        "AWS_ENDPOINT_URL_DYNAMODB": table.url,
        **extra,
    }


@dataclass
class RefreshRig:
    """One refresh test's world: a fresh queue, the table, the gateway, and workers aimed at
    all three (the worker environment of refresh_env, plus what a test adds)."""

    sqs: Any
    queue: TestQueue
    table: RefreshTable
    gateway: StorageGatewayEndpoint
    start_worker: Callable[..., WorkerProcess] = field(repr=False)

    def send(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.queue.url, MessageBody=body)

    def env(self, **extra: Any) -> dict[str, Any]:
        return refresh_env(self.queue, self.table, self.gateway, **extra)

    def start(self, **extra: Any) -> WorkerProcess:
        return self.start_worker(**self.env(**extra))

    def shared_bucket(self) -> str:
        """A new bucket with one NFS share over all of it."""
        bucket = unique("bucket")
        self.gateway.add_share(bucket)
        return bucket


@pytest.fixture
def rig(
    sqs: Any,
    make_queue: QueueFactory,
    refresh_table: RefreshTable,
    gateway: StorageGatewayEndpoint,
    start_worker: Callable[..., WorkerProcess],
) -> RefreshRig:
    return RefreshRig(sqs, make_queue(), refresh_table, gateway, start_worker)


def s3_event(
    bucket: str, key: str, *, removed: bool = False, principal: str = "AWS:AIDAUSER"
) -> str:
    """An S3 event notification body for one object change (key URL-encoded, as S3 sends it)."""
    from urllib.parse import quote_plus

    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "awsRegion": "us-east-1",
                    "eventTime": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "eventName": "ObjectRemoved:Delete" if removed else "ObjectCreated:Put",
                    "userIdentity": {"principalId": principal},
                    "s3": {
                        "s3SchemaVersion": "1.0",
                        "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                        "object": {"key": quote_plus(key, safe="/"), "size": 1, "eTag": "abc"},
                    },
                }
            ]
        }
    )


def send_bodies(sqs: Any, queue_url: str, bodies: list[str]) -> list[tuple[str, float]]:
    """Send bodies in batches; return (message id, time sent) for each."""
    sent: list[tuple[str, float]] = []
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        response = sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)],
        )
        assert not response.get("Failed"), response["Failed"]
        now = time.time()
        ordered = sorted(response["Successful"], key=lambda e: int(e["Id"]))
        sent.extend((entry["MessageId"], now) for entry in ordered)
    return sent


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


def covers(call: Call, folder: str) -> bool:
    """Whether a RefreshCache call covers a share-relative folder ('/' or 'a/b')."""
    folders = call.params.get("FolderList", ["/"])
    if call.params.get("Recursive", True):
        return any(f == "/" or folder == f or folder.startswith(f + "/") for f in folders)
    return folder in folders


def iso_time(event: dict[str, Any]) -> float:
    """A worker log line's timestamp as epoch seconds."""
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
