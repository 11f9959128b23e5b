"""A conversion stopped part-way leaves nothing behind: no partial object, no orphaned upload."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import QueueFactory
from tests.csv.conftest import job, ndjson, output
from tests.support.worker_process import WorkerProcess

pytestmark = pytest.mark.slow

StartWorker = Callable[..., WorkerProcess]


def wide_csv(rows: int) -> bytes:
    line = b'%d,"a quoted, longer text field",%d.5,plain words here,true\n'
    return b"id,text,amount,words,flag\n" + b"".join(line % (i, i) for i in range(rows))


def wait_for_upload(s3: Any, bucket: str, worker: WorkerProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if s3.list_multipart_uploads(Bucket=bucket).get("Uploads"):
            return
        assert worker.process.poll() is None, "the worker ended before it started an upload"
        time.sleep(0.02)
    raise AssertionError("no multipart upload started")


@pytest.fixture
def big_source(s3: Any, bucket: str) -> bytes:
    data = wide_csv(1_200_000)  # about 70 MB in, 170 MB out: parts are on their way for seconds
    s3.put_object(Bucket=bucket, Key="big.csv", Body=data)
    return data


def test_a_stopped_conversion_aborts_its_upload_and_hands_the_message_back(
    s3: Any, sqs: Any, bucket: str, big_source: bytes, make_queue: QueueFactory,
    start_worker: StartWorker,
) -> None:
    queue = make_queue()
    sqs.send_message(QueueUrl=queue.url, MessageBody=job(bucket, "big.csv"))
    worker = start_worker(
        QUEUE_URL=queue.url, CSV_PART_SIZE_MB="5", WORKER_SHUTDOWN_GRACE_SECONDS="0"
    )
    wait_for_upload(s3, bucket, worker)
    worker.signal(signal.SIGTERM)
    assert worker.wait(60) == 0
    assert [e["outcome"] for e in worker.events("message.done")] == ["handed_back"]
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="converted/")


def test_the_retry_of_a_killed_conversion_removes_its_upload_and_converts(
    s3: Any, sqs: Any, bucket: str, big_source: bytes, make_queue: QueueFactory,
    start_worker: StartWorker,
) -> None:
    queue = make_queue()
    sqs.send_message(QueueUrl=queue.url, MessageBody=job(bucket, "big.csv"))
    env = {"QUEUE_URL": queue.url, "CSV_PART_SIZE_MB": "5", "WORKER_VISIBILITY_SECONDS": "3"}
    first = start_worker(**env)
    wait_for_upload(s3, bucket, first)
    first.kill()  # SIGKILL: no chance to abort anything
    (left,) = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    second = start_worker(**env, WORKER_IDLE_EXIT_SECONDS="5")
    assert second.wait(180) == 0
    (aborted,) = second.events("csv.stale_uploads_aborted")
    assert aborted["count"] == 1 and left["Key"] == "converted/big.json"
    assert [e["outcome"] for e in second.events("message.done")] == ["acked"]
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    rows = ndjson(output(s3, bucket, "converted/big.json"))
    assert len(rows) == 1_200_000 and rows[-1]["id"] == "1199999"
