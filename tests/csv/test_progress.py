"""A long conversion says how far it is: bytes, rows, speed, percent of the object and ETA."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.chaos.mix import large_csv
from tests.csv.conftest import Run, job

pytestmark = pytest.mark.slow


def test_a_conversion_logs_its_progress_every_csv_progress_seconds(
    s3: Any, bucket: str, run_jobs: Callable[..., Run]
) -> None:
    source = large_csv(300_000)  # about 21 MB: a few seconds through moto
    s3.put_object(Bucket=bucket, Key="long.csv", Body=source)

    run = run_jobs(job(bucket, "long.csv"), CSV_PROGRESS_SECONDS="0.2", CSV_PART_SIZE_MB="5")

    assert run.outcome() == "acked"
    lines = run.worker.events("csv.progress")
    assert lines, "no progress line during a conversion of several seconds"
    for line in lines:
        assert line["source"] == f"s3://{bucket}/long.csv"
        assert 0 < line["bytes"] <= len(source)
        assert line["percent"] == pytest.approx(100 * line["bytes"] / len(source), abs=0.1)
        assert line["mb_per_s"] > 0 and line["eta_s"] >= 0 and line["rows"] >= 0
    assert [x["bytes"] for x in lines] == sorted(x["bytes"] for x in lines)


def test_a_short_conversion_logs_no_progress(
    s3: Any, bucket: str, run_jobs: Callable[..., Run]
) -> None:
    s3.put_object(Bucket=bucket, Key="short.csv", Body=b"a,b\n1,2\n")

    run = run_jobs(job(bucket, "short.csv"))

    assert run.outcome() == "acked" and run.worker.events("csv.progress") == []
