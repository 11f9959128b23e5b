"""The converter processes and the S3 error boundary of the csv job."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from worker.adapters.aws_errors import mapped
from worker.adapters.s3 import _meaning
from worker.csvconv.blocks import Frame
from worker.csvconv.exact import BadCsv
from worker.csvconv.options import Layout
from worker.csvconv.pool import FramePool
from worker.errors import PermanentError, RetryableError

LAYOUT = Layout(keys=("a", "b"), delimiter=",", typed=False, ragged="error", row_separator=b"\n")


@pytest.fixture
def pool() -> Iterator[FramePool]:
    frames = FramePool(1)
    yield frames
    frames.close()


def test_frames_convert_in_a_worker_process(pool: FramePool) -> None:
    converted = pool.submit(LAYOUT, Frame(b'1,"x, y"\n2,z\n', first_line=2)).result(30)
    assert (converted.output, converted.rows) == (b'{"a":"1","b":"x, y"}\n{"a":"2","b":"z"}', 2)


def test_a_frame_larger_than_the_shared_slots_still_converts(pool: FramePool) -> None:
    data = b"1,2\n" * 3_000_000  # 12 MB in, about 54 MB out: both go over the pipe
    assert pool.submit(LAYOUT, Frame(data, first_line=2)).result(120).rows == 3_000_000


def test_a_bad_frame_fails_with_its_line_and_the_process_lives_on(pool: FramePool) -> None:
    with pytest.raises(BadCsv, match="line 11: 1 fields"):
        pool.submit(LAYOUT, Frame(b"1,2\n3\n", first_line=10)).result(30)
    assert pool.submit(LAYOUT, Frame(b"1,2\n", first_line=2)).result(30).rows == 1


def test_a_killed_converter_process_fails_its_frame_as_retryable_and_is_replaced(
    pool: FramePool,
) -> None:
    assert pool.submit(LAYOUT, Frame(b"1,2\n", first_line=2)).result(30).rows == 1
    (process,) = [p for p in multiprocessing.active_children() if p.name == "spotdrain-csv"]
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    process.join(10)
    with pytest.raises(RetryableError, match="csv worker process died"):
        pool.submit(LAYOUT, Frame(b"1,2\n", first_line=2)).result(30)
    assert pool.submit(LAYOUT, Frame(b"1,2\n", first_line=2)).result(30).rows == 1


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("NoSuchKey", 404, PermanentError),
        ("AccessDenied", 403, PermanentError),
        ("NoSuchBucket", 404, PermanentError),
        ("SlowDown", 503, RetryableError),
        ("InternalError", 500, RetryableError),
        ("ServiceUnavailable", 503, RetryableError),
        ("PreconditionFailed", 412, RetryableError),
        ("NoSuchUpload", 404, RetryableError),
    ],
)
def test_s3_errors_are_permanent_or_retried_by_their_nature(
    code: str, status: int, kind: type[Exception]
) -> None:
    with pytest.raises(kind) as caught, mapped("GetObject s3://b/k", _meaning):
        raise client_error(code, status)
    assert type(caught.value) is kind
    assert "s3://b/k" in str(caught.value)
