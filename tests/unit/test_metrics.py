"""metrics: counts and timings per interval become EMF records CloudWatch can read."""

from __future__ import annotations

from typing import Any

from tests.support.emf import emf_records, samples, totals
from worker.metrics import MAX_VALUES, Metrics


def collector(**options: Any) -> tuple[Metrics, list[str]]:
    lines: list[str] = []
    metrics = Metrics(
        namespace="spotdrain",
        queue="jobs",
        interval_seconds=60,
        write=lines.append,
        clock=lambda: 1_700_000_000.5,
        **options,
    )
    return metrics, lines


def test_an_interval_becomes_one_record_for_the_queue_and_one_per_job_kind() -> None:
    metrics, lines = collector()
    for _ in range(3):
        metrics.count("MessagesReceived")
        metrics.time("JobDuration", 12.5, job="csv")
    metrics.count("CsvBytesIn", 1024)
    metrics.time("JobDuration", 3.0, job="sidecar")

    metrics.flush()

    records = emf_records(lines)  # each checked against the specification
    assert len(records) == 3
    assert totals(records, Queue="jobs") == {"MessagesReceived": 3, "CsvBytesIn": 1024}
    assert samples(records, "JobDuration", Queue="jobs", Job="csv") == [12.5] * 3
    assert samples(records, "JobDuration", Queue="jobs", Job="sidecar") == [3.0]
    assert {r["_aws"]["Timestamp"] for r in records} == {1_700_000_000_500}


def test_units_and_namespace_are_declared_for_every_metric() -> None:
    metrics, lines = collector()
    metrics.count("MessagesSucceeded")
    metrics.time("QueueDwell", 1500.0)
    metrics.flush()

    [record] = emf_records(lines)
    [directive] = record["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "spotdrain"
    assert directive["Dimensions"] == [["Queue"]]
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == {
        "MessagesSucceeded": "Count",
        "QueueDwell": "Milliseconds",
    }


def test_nothing_happened_nothing_is_written() -> None:
    metrics, lines = collector()
    metrics.flush()
    metrics.count("MessagesReceived")
    metrics.flush()
    metrics.flush()

    assert len(lines) == 1 and metrics.records == 1


def test_a_busy_interval_keeps_at_most_100_values_spread_over_the_whole_range() -> None:
    metrics, lines = collector()
    for value in range(1, 1001):
        metrics.time("JobDuration", float(value), job="csv")
    metrics.flush()

    values = samples(emf_records(lines), "JobDuration", Queue="jobs", Job="csv")
    assert len(values) == MAX_VALUES
    assert (values[0], values[-1]) == (1.0, 1000.0)
    assert abs(values[len(values) // 2] - 500) < 15  # the median survives


def test_metrics_off_collects_nothing() -> None:
    metrics, lines = collector(enabled=False)
    metrics.count("MessagesReceived")
    metrics.time("JobDuration", 1.0, job="csv")
    metrics.flush()

    assert lines == []
