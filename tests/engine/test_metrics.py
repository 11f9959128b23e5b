"""The worker's EMF records, read from a real worker's log stream: what it did, per interval."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.conftest import QueueFactory, unique
from tests.engine.test_drain import probe, send, wait_until_held
from tests.support.emf import emf_records, samples, totals

pytestmark = pytest.mark.slow


def test_the_records_count_exactly_what_was_processed_with_its_units_and_dimensions(
    s3: Any, sqs: Any, make_queue: QueueFactory, start_worker: Any
) -> None:
    queue = make_queue()
    bucket = unique("metrics")
    s3.create_bucket(Bucket=bucket)
    source = b"a,b\n" + b"".join(b"%d,x\n" % i for i in range(500))
    s3.put_object(Bucket=bucket, Key="in.csv", Body=source)
    bodies = [probe(seconds=0.05) for _ in range(30)] + [probe(fail="permanent")] * 2
    bodies.append(json.dumps({"job": "csv", "bucket": bucket, "key": "in.csv"}))
    send(sqs, queue, bodies)
    worker = start_worker(
        QUEUE_URL=queue.url,
        DLQ_URL=queue.dlq_url,
        WORKER_PROBE_JOBS="true",
        METRICS_INTERVAL_SECONDS="1",
        METRICS_NAMESPACE="spotdrain-test",
    )
    began = time.monotonic()
    assert worker.wait() == 0
    elapsed = time.monotonic() - began

    records = emf_records(worker.lines)
    assert totals(records, Queue=queue.name) == {
        "MessagesReceived": 33,
        "MessagesSucceeded": 31,
        "MessagesDeadLettered": 2,
        "CsvBytesIn": len(source),
        "CsvBytesOut": s3.head_object(Bucket=bucket, Key="converted/in.json")["ContentLength"],
        "QueueDwell": pytest.approx(sum(samples(records, "QueueDwell", Queue=queue.name))),
    }
    assert len(samples(records, "QueueDwell", Queue=queue.name)) == 31
    assert len(samples(records, "JobDuration", Queue=queue.name, Job="probe")) == 32
    assert min(samples(records, "JobDuration", Queue=queue.name, Job="probe")) >= 0
    assert len(samples(records, "JobDuration", Queue=queue.name, Job="csv")) == 1
    namespaces = {d["Namespace"] for r in records for d in r["_aws"]["CloudWatchMetrics"]}
    assert namespaces == {"spotdrain-test"}
    # One queue record per interval at most, plus the one at exit; never one per message.
    queue_records = [r for r in records if "Job" not in r]
    assert len(queue_records) <= elapsed / 1.0 + 2
    assert worker.events("worker.exit")[0]["metrics_records"] == len(records)


def test_a_stopped_worker_counts_what_it_handed_back_in_its_last_record(
    sqs: Any, make_queue: QueueFactory, start_worker: Any
) -> None:
    queue = make_queue(visibility=120)
    send(sqs, queue, [probe(seconds=30)])
    worker = start_worker(
        QUEUE_URL=queue.url,
        WORKER_PROBE_JOBS="true",
        WORKER_SHUTDOWN_GRACE_SECONDS="0",
        METRICS_INTERVAL_SECONDS="3600",
    )
    wait_until_held(sqs, queue)
    worker.signal()
    assert worker.wait(timeout=20) == 0

    [record] = emf_records(worker.lines)  # the interval never came: the exit wrote it
    assert record["MessagesReceived"] == 1
    # Once: a receive the stop cut short that takes the copy sends it back unchanged.
    handed_back = worker.events("worker.exit")[0]["handed_back"]
    assert record["MessagesHandedBack"] == handed_back == 1


def test_metrics_off_writes_no_record(
    sqs: Any, make_queue: QueueFactory, start_worker: Any
) -> None:
    queue = make_queue()
    send(sqs, queue, [probe()] * 3)
    worker = start_worker(QUEUE_URL=queue.url, WORKER_PROBE_JOBS="true", METRICS="off")
    assert worker.wait() == 0

    assert emf_records(worker.lines) == []
    assert worker.events("worker.exit")[0]["succeeded"] == 3


def test_a_bad_metrics_option_exits_2_naming_it(
    make_queue: QueueFactory, start_worker: Any
) -> None:
    worker = start_worker(QUEUE_URL=make_queue().url, METRICS="prometheus")

    assert worker.wait() == 2
    assert "METRICS" in worker.stderr()
