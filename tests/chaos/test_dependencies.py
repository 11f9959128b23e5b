"""Dependencies failing under a live worker: throttling answers and an endpoint outage.

The worker talks to moto through tests/support/faulty_proxy.py; the test itself talks to
moto directly, so it sees the true end state.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest

from tests.conftest import drain_all
from tests.support.faulty_proxy import FaultyProxy

pytestmark = pytest.mark.slow


def send_probes(sqs, url: str, count: int, seconds: float = 0.0) -> list[str]:
    ids = []
    for start in range(0, count, 10):
        response = sqs.send_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "MessageBody": json.dumps({"job": "probe", "seconds": seconds})}
                for i in range(min(10, count - start))
            ],
        )
        ids += [entry["MessageId"] for entry in response["Successful"]]
    return ids


def assert_empty(sqs, url: str) -> None:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    held = [
        attributes[f"ApproximateNumberOf{n}"]
        for n in ("Messages", "MessagesNotVisible", "MessagesDelayed")
    ]
    assert held == ["0", "0", "0"]


def test_throttling_answers_are_retried_and_every_message_completes_once(
    moto, sqs, make_queue, start_worker
):
    queue = make_queue()
    ids = send_probes(sqs, queue.url, 60)
    with FaultyProxy(moto.url) as proxy:
        proxy.throttle(0.3, seed=11)
        worker = start_worker(
            QUEUE_URL=queue.url,
            DLQ_URL=queue.dlq_url,
            WORKER_PROBE_JOBS="true",
            AWS_ENDPOINT_URL=proxy.url,
        )
        assert worker.wait(timeout=120) == 0
    assert proxy.counts["throttled"] >= 3  # about 30 requests in all, a third throttled
    acked = [e["message_id"] for e in worker.events("message.done") if e["outcome"] == "acked"]
    assert sorted(acked) == sorted(ids)
    assert drain_all(sqs, queue.dlq_url) == []
    assert_empty(sqs, queue.url)


def test_an_endpoint_outage_mid_run_loses_nothing(moto, sqs, make_queue, start_worker):
    queue = make_queue(visibility=20)
    ids = send_probes(sqs, queue.url, 40, seconds=0.2)
    with FaultyProxy(moto.url) as proxy:
        worker = start_worker(
            QUEUE_URL=queue.url,
            DLQ_URL=queue.dlq_url,
            WORKER_PROBE_JOBS="true",
            WORKER_CONCURRENCY="4",
            WORKER_VISIBILITY_SECONDS="20",
            AWS_ENDPOINT_URL=proxy.url,
        )
        worker.wait_for("message.done", timeout=30)
        proxy.outage()
        threading.Timer(4.0, proxy.recover).start()
        time.sleep(4.5)
        assert worker.wait(timeout=150) == 0
    assert proxy.counts["dropped"] > 0
    done = Counter(
        e["message_id"] for e in worker.events("message.done") if e["outcome"] == "acked"
    )
    assert set(done) == set(ids)
    assert drain_all(sqs, queue.dlq_url) == []
    assert_empty(sqs, queue.url)


def test_a_worker_started_during_an_outage_waits_it_out_then_drains(
    moto, sqs, make_queue, start_worker
):
    queue = make_queue()
    ids = send_probes(sqs, queue.url, 10)
    with FaultyProxy(moto.url) as proxy:
        proxy.outage()
        worker = start_worker(
            QUEUE_URL=queue.url,
            DLQ_URL=queue.dlq_url,
            WORKER_PROBE_JOBS="true",
            AWS_ENDPOINT_URL=proxy.url,
        )
        worker.wait_for("worker.start_retry", timeout=30)
        proxy.recover()
        assert worker.wait(timeout=120) == 0
    acked = [e["message_id"] for e in worker.events("message.done") if e["outcome"] == "acked"]
    assert sorted(acked) == sorted(ids)
    assert_empty(sqs, queue.url)
