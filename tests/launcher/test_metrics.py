"""The launcher's EMF records: its counts, aggregated in the container, at most one per interval."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from launcher.aws import CLIENT_CONFIG
from launcher.handler import handle
from launcher.metrics import ContainerMetrics
from tests.launcher.conftest import REGION, RuntimeFactory
from tests.launcher.samples import csv_job, scheduled_event
from tests.launcher.test_fleet import NO_CAPACITY
from tests.support.emf import emf_records, totals


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def metered(make_runtime: RuntimeFactory) -> tuple[Any, list[str], Clock]:
    lines: list[str] = []
    clock = Clock()
    runtime = make_runtime(messages_per_task=2)
    runtime.metrics = ContainerMetrics(
        namespace="spotdrain",
        queue=runtime.settings.queue_name,
        interval_seconds=60,
        write=lines.append,
        clock=clock,
    )
    return runtime, lines, clock


def test_a_new_containers_first_invocation_writes_its_counts_at_once(
    metered: tuple[Any, list[str], Clock],
) -> None:
    runtime, lines, _ = metered

    handle({"jobs": [csv_job("a.csv"), csv_job("b.csv"), csv_job("c.csv")]}, runtime)

    records = emf_records(lines)  # each checked against the specification
    assert totals(records, Queue=runtime.settings.queue_name) == {
        "JobsEnqueued": 3,
        "TasksStarted": 2,
    }
    assert records[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "spotdrain"


def test_invocations_within_an_interval_add_up_into_the_next_record(
    metered: tuple[Any, list[str], Clock],
) -> None:
    runtime, lines, clock = metered
    handle({"jobs": [csv_job("a.csv")]}, runtime)
    for key in ("b.csv", "c.csv"):
        clock.now += 10
        handle({"jobs": [csv_job(key)]}, runtime)
    assert len(lines) == 1

    clock.now += 60
    handle({"jobs": [csv_job("d.csv")]}, runtime)

    records = emf_records(lines)
    assert len(records) == 2
    assert totals(records, Queue=runtime.settings.queue_name)["JobsEnqueued"] == 4


def test_an_idle_reconcile_writes_nothing(metered: tuple[Any, list[str], Clock]) -> None:
    runtime, lines, clock = metered
    for _ in range(3):
        clock.now += 120
        handle(scheduled_event(), runtime)

    assert lines == []


def test_tasks_that_could_not_be_started_are_counted_as_run_task_failures(
    metered: tuple[Any, list[str], Clock],
) -> None:
    runtime, lines, _ = metered
    runtime.ecs = boto3.client("ecs", region_name=REGION, config=CLIENT_CONFIG)
    no_room = {"tasks": [], "failures": [{"arn": "", "reason": NO_CAPACITY}]}
    with Stubber(runtime.ecs) as ecs:
        ecs.add_response("list_tasks", {"taskArns": []})
        for _provider in runtime.settings.capacity_providers:
            ecs.add_response("run_task", no_room)

        handle({"jobs": [csv_job("a.csv")]}, runtime)

    counts = totals(emf_records(lines), Queue=runtime.settings.queue_name)
    assert (counts["JobsEnqueued"], counts["RunTaskFailures"]) == (1, 1)
    assert "TasksStarted" not in counts


def test_metrics_off_writes_no_record(make_runtime: RuntimeFactory) -> None:
    lines: list[str] = []
    runtime = make_runtime()
    runtime.metrics = ContainerMetrics(
        namespace="spotdrain", queue="q", interval_seconds=60, write=lines.append, enabled=False
    )

    handle({"jobs": [csv_job("a.csv")]}, runtime)

    assert lines == []
