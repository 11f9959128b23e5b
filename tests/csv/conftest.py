"""Fixtures of the csv job's tests: buckets in moto S3, jobs run by real worker processes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import QueueFactory, TestQueue, unique
from tests.support.worker_process import WorkerProcess

StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def bucket(s3: Any) -> str:
    name = unique("csv")
    s3.create_bucket(Bucket=name)
    return name


def job(bucket: str, key: str) -> str:
    return json.dumps({"job": "csv", "bucket": bucket, "key": key})


def s3_created(bucket: str, key: str) -> str:
    """An S3 event notification for one created object (keys arrive URL-encoded)."""
    from urllib.parse import quote_plus

    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": "2026-01-01T00:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key), "size": 1}},
    }
    return json.dumps({"Records": [record]})


@dataclass
class Run:
    """A worker that drained a queue of csv jobs, and what it logged."""

    worker: WorkerProcess
    queue: TestQueue

    def done(self) -> list[dict[str, Any]]:
        return self.worker.events("message.done")

    def outcome(self) -> str:
        (event,) = self.done()
        return str(event["outcome"])

    def reason(self) -> str:
        (event,) = self.done()
        return str(event.get("reason", ""))


@pytest.fixture
def run_jobs(sqs: Any, make_queue: QueueFactory, start_worker: StartWorker) -> Callable[..., Run]:
    """Send message bodies to a fresh queue, run one worker until it drains, return the run."""

    def run(*bodies: str, timeout: float = 120, **env: Any) -> Run:
        queue = make_queue(visibility=30)
        for body in bodies:
            sqs.send_message(QueueUrl=queue.url, MessageBody=body)
        env.setdefault("DLQ_URL", queue.dlq_url)
        worker = start_worker(QUEUE_URL=queue.url, **env)
        assert worker.wait(timeout) == 0, worker.stderr()
        return Run(worker, queue)

    return run


def output(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def ndjson(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode("utf-8").split("\n") if line]
