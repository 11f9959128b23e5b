"""Adversarial CSVs against the real worker (moto over HTTP): each one is dead-lettered with a
reason that names the line and the option to raise, and the worker's whole process tree
(converter processes included) stays under 512 MB of RSS; nothing is written.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig

from tests.conftest import QueueFactory
from tests.csv.conftest import job
from tests.csv.test_memory import RssWatch
from tests.support.worker_process import WorkerProcess

pytestmark = pytest.mark.slow

MB = 1 << 20
LIMIT = 512 * MB


def upload(s3: Any, bucket: str, key: str, pieces: Iterator[bytes]) -> None:
    s3.upload_fileobj(
        io.BytesIO(b"".join(pieces)), bucket, key,
        Config=TransferConfig(multipart_chunksize=64 * MB),
    )  # fmt: skip


def run_watched(
    sqs: Any, bucket: str, key: str, make_queue: QueueFactory,
    start_worker: Callable[..., WorkerProcess], **env: str,
) -> tuple[WorkerProcess, int]:  # fmt: skip
    """Run a worker on one csv job until it drains: the worker, and its tree's summed peak RSS."""
    queue = make_queue(visibility=30)
    sqs.send_message(QueueUrl=queue.url, MessageBody=job(bucket, key))
    worker = start_worker(QUEUE_URL=queue.url, DLQ_URL=queue.dlq_url, **env)
    watch = RssWatch(worker.pid)
    try:
        assert worker.wait(120) == 0, worker.stderr()
    finally:
        watch.stop()
    peak = sum(watch.peaks.values())
    print(f"peak RSS of the tree: {peak / MB:.0f} MB")
    return worker, peak


def refused(
    s3: Any, sqs: Any, bucket: str, key: str, make_queue: QueueFactory,
    start_worker: Callable[..., WorkerProcess], **env: str,
) -> tuple[str, int]:  # fmt: skip
    """The reason a worker dead-lettered one csv job with, and its tree's peak RSS; nothing
    was written."""
    worker, peak = run_watched(sqs, bucket, key, make_queue, start_worker, **env)
    (done,) = worker.events("message.done")
    assert done["outcome"] == "dead_lettered"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="converted/")
    assert listed["KeyCount"] == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    return str(done["reason"]), peak


def quoted_field(size: int) -> Iterator[bytes]:
    yield b'id,blob\n1,"'
    for i in range(size // MB):  # line breaks inside the quotes, as in embedded documents
        yield b"x" * (MB - 1) + (b"\n" if i % 3 == 0 else b"y")
    yield b'"\n2,after\n'


def test_a_200_mb_quoted_field_is_dead_lettered_at_the_record_limit(
    s3: Any, sqs: Any, bucket: str, make_queue: QueueFactory,
    start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    upload(s3, bucket, "field.csv", quoted_field(200 * MB))
    reason, peak = refused(s3, sqs, bucket, "field.csv", make_queue, start_worker)
    assert reason == (
        "csv: line 2: a record longer than 16 MB (CSV_MAX_RECORD_MB; an unbalanced quote,"
        " or no line breaks?)"
    )
    assert peak < LIMIT, f"{peak / MB:.0f} MB"


def test_a_header_of_a_million_columns_is_dead_lettered_naming_csv_max_columns(
    s3: Any, sqs: Any, bucket: str, make_queue: QueueFactory,
    start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    header = ",".join(f"c{i}" for i in range(1_000_000)).encode() + b"\n"
    row = b",".join(b"1" for _ in range(1_000_000)) + b"\n"
    upload(s3, bucket, "wide.csv", iter([header, row]))
    reason, peak = refused(s3, sqs, bucket, "wide.csv", make_queue, start_worker)
    assert reason == (
        "csv: line 1: the header has 1000000 columns, more than CSV_MAX_COLUMNS (100000)"
    )
    assert peak < LIMIT, f"{peak / MB:.0f} MB"


def test_a_row_of_a_million_fields_under_a_narrow_header_is_refused_before_it_is_parsed(
    s3: Any, sqs: Any, bucket: str, make_queue: QueueFactory,
    start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    row = ",".join(str(100_000 + i) for i in range(1_000_000)).encode() + b"\n"
    upload(s3, bucket, "row.csv", iter([b"a,b\n1,2\n", row, b"3,4\n"]))
    reason, peak = refused(
        s3, sqs, bucket, "row.csv", make_queue, start_worker, CSV_RAGGED="truncate"
    )
    assert reason == "csv: line 3: a record with more than 100000 fields (CSV_MAX_COLUMNS)"
    assert peak < LIMIT, f"{peak / MB:.0f} MB"


def test_a_165_mb_file_with_no_line_break_is_dead_lettered_at_the_record_limit(
    s3: Any, sqs: Any, bucket: str, make_queue: QueueFactory,
    start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    upload(s3, bucket, "flat.csv", iter([b"id,text,", b"z" * (165 * MB)]))
    reason, peak = refused(s3, sqs, bucket, "flat.csv", make_queue, start_worker)
    assert reason == "csv: line 1: the header is longer than 16 MB (CSV_MAX_RECORD_MB)"
    assert peak < LIMIT, f"{peak / MB:.0f} MB"


def test_a_raised_record_limit_converts_a_48_mb_field_within_the_memory_bound(
    s3: Any, sqs: Any, bucket: str, make_queue: QueueFactory,
    start_worker: Callable[..., WorkerProcess],
) -> None:  # fmt: skip
    upload(s3, bucket, "big.csv", quoted_field(48 * MB))
    worker, peak = run_watched(
        sqs, bucket, "big.csv", make_queue, start_worker, CSV_MAX_RECORD_MB="64"
    )
    (converted,) = worker.events("csv.converted")
    assert converted["rows"] == 2
    assert peak < LIMIT, f"{peak / MB:.0f} MB"
