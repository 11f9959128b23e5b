"""The end-state check can fail: it reports what an undrained mix leaves undone, and what
wrong, partial or stray results look like after a drained one."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.chaos.conftest import Run, StartWorker, wait_all
from tests.chaos.end_state import output_key

pytestmark = [pytest.mark.slow, pytest.mark.nfs]


def kinds(problems: list[str]) -> set[str]:
    return {problem.split(":")[0] for problem in problems}


def test_a_mix_nobody_drained_fails_every_part_of_the_check(
    mixed_run: Callable[..., Run],
) -> None:
    run = mixed_run(jobs=40, rate=1000)
    run.feeder.start()
    problems = run.problems()
    assert kinds(problems) == {"csv", "sidecar", "refresh", "dlq", "queue"}, problems


def test_wrong_partial_and_stray_results_are_reported(
    mixed_run: Callable[..., Run], start_worker: StartWorker, s3: Any, sqs: Any
) -> None:
    run = mixed_run(jobs=40, rate=1000)
    run.feeder.start()
    assert wait_all([start_worker(**run.world.env())]) == ""
    assert run.problems() == []
    world = run.world
    converted = output_key(next(item.csv_key for item in run.workload.items if item.csv_key))
    s3.put_object(Bucket=world.bucket, Key=converted, Body=b'{"c0": "not the source"}\n')
    s3.put_object(Bucket=world.bucket, Key="converted/stray.json", Body=b"")
    s3.create_multipart_upload(Bucket=world.bucket, Key="converted/half.json")
    sidecar = next(world.export.rglob("*-sidecar.json"))
    sidecar.write_bytes(sidecar.read_bytes()[:40])
    (world.export / "mix" / ".x-sidecar.json.0123.spotdrain-tmp").write_bytes(b"{")
    (world.export / "mix" / "nobody-sidecar.json").write_bytes(b"{}")
    sqs.send_message(QueueUrl=world.queue.dlq_url, MessageBody=json.dumps({"job": "csv"}))
    sqs.send_message(QueueUrl=world.queue.url, MessageBody="left behind")

    problems = run.problems()
    expected = [
        "csv: unexpected object converted/stray.json",
        f"csv: wrong content in {converted}",
        "csv: multipart upload left open: converted/half.json",
        f"sidecar: wrong content in {sidecar.relative_to(world.export)}",
        "sidecar: unexpected mix/nobody-sidecar.json",
        "sidecar: temporary file left",
        "dlq: not poison",
        "dlq: poison not dead-lettered",  # drained above, so the poison is gone now
        "queue: ApproximateNumberOfMessages = 1",
    ]
    missing = [e for e in expected if not any(p.startswith(e) for p in problems)]
    assert missing == [], problems
