"""The drain engine as a user runs it: `python -m worker` against a moto server over HTTP."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import TestQueue, drain_all, first_message_id

pytestmark = pytest.mark.slow


def probe(**fields: Any) -> str:
    return json.dumps({"job": "probe", **fields})


def send(sqs: Any, queue: TestQueue, bodies: list[str], delay: int = 0) -> list[str]:
    ids = []
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        response = sqs.send_message_batch(
            QueueUrl=queue.url,
            Entries=[
                {"Id": str(i), "MessageBody": body, "DelaySeconds": delay}
                for i, body in enumerate(chunk)
            ],
        )
        assert not response.get("Failed"), response.get("Failed")
        ids.extend(entry["MessageId"] for entry in response["Successful"])
    return ids


def outcomes(*workers: Any) -> Counter[str]:
    return Counter(e["outcome"] for w in workers for e in w.events("message.done"))


def acked_ids(*workers: Any) -> list[str]:
    return [
        e["message_id"]
        for w in workers
        for e in w.events("message.done")
        if e["outcome"] == "acked"
    ]


def wait_until_held(sqs: Any, queue: TestQueue, count: int = 1) -> None:
    """Wait until a worker holds `count` messages (they are in flight, not visible)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue.url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        if int(attributes["ApproximateNumberOfMessagesNotVisible"]) >= count:
            return
        time.sleep(0.05)
    raise AssertionError("the worker never took the message")


def assert_queue_empty(sqs: Any, queue: TestQueue) -> None:
    attributes = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "0"


def test_drains_every_message_then_exits_zero(sqs, make_queue, start_worker):
    queue = make_queue()
    ids = send(sqs, queue, [probe() for _ in range(40)])

    worker = start_worker(QUEUE_URL=queue.url, WORKER_PROBE_JOBS="true")

    assert worker.wait() == 0
    assert sorted(acked_ids(worker)) == sorted(ids)
    summary = worker.events("worker.exit")[0]
    assert summary["reason"] == "drained"
    assert summary["received"] == summary["succeeded"] == 40
    assert_queue_empty(sqs, queue)


def test_jobs_overlap_up_to_the_concurrency_bound_and_never_beyond(sqs, make_queue, start_worker):
    """Each message counts from its receive to its job's end, so a message taken with no free
    slot to run it (waiting in memory while its lease runs out) would push the peak up too."""
    queue = make_queue()
    send(sqs, queue, [probe(seconds=1.5) for _ in range(12)])

    worker = start_worker(QUEUE_URL=queue.url, WORKER_PROBE_JOBS="true", WORKER_CONCURRENCY="4")

    assert worker.wait() == 0
    intervals = []
    for event in worker.events("message.done"):
        logged = datetime.fromisoformat(event["timestamp"]).timestamp()
        start = logged - event["duration_ms"] / 1000
        intervals.append((start, start + event["job_ms"] / 1000))
    assert len(intervals) == 12
    peak = max(sum(1 for s, e in intervals if s <= t < e) for t, _ in intervals)
    assert peak == 4


def test_heartbeat_keeps_a_long_job_invisible_past_the_visibility_timeout(
    sqs, make_queue, start_worker
):
    queue = make_queue(visibility=2)
    worker = start_worker(
        QUEUE_URL=queue.url, WORKER_PROBE_JOBS="true", WORKER_VISIBILITY_SECONDS="2"
    )
    worker.wait_for("worker.started")
    send(sqs, queue, [probe(seconds=8)])
    wait_until_held(sqs, queue)
    stolen = []
    deadline = time.monotonic() + 7
    while time.monotonic() < deadline:
        stolen += sqs.receive_message(QueueUrl=queue.url, WaitTimeSeconds=1).get("Messages", [])

    assert worker.wait() == 0
    assert stolen == []
    done = worker.events("message.done")
    assert [(e["outcome"], e["attempt"]) for e in done] == [("acked", 1)]


def test_a_transient_failure_is_retried_with_backoff_then_succeeds(sqs, make_queue, start_worker):
    queue = make_queue()
    [message_id] = send(sqs, queue, [probe(fail="retryable", until_attempt=3)])

    worker = start_worker(QUEUE_URL=queue.url, DLQ_URL=queue.dlq_url, WORKER_PROBE_JOBS="true")

    assert worker.wait() == 0
    done = [(e["outcome"], e["attempt"]) for e in worker.events("message.done")]
    assert done == [("retried", 1), ("retried", 2), ("acked", 3)]
    assert all(e["message_id"] == message_id for e in worker.events("message.done"))
    assert 1 <= worker.events("message.done")[0]["retry_in_s"] <= 2
    assert drain_all(sqs, queue.dlq_url) == []


def test_a_permanent_failure_is_dead_lettered_with_its_reason_and_the_rest_succeed(
    sqs, make_queue, start_worker
):
    queue = make_queue()
    bad = probe(fail="permanent")
    signature = bytes(range(256))  # every byte value: base64 must be undone exactly once
    sqs.send_message(
        QueueUrl=queue.url,
        MessageBody=bad,
        MessageAttributes={
            "origin": {"DataType": "String", "StringValue": "upstream-7"},
            "signature": {"DataType": "Binary", "BinaryValue": signature},
            "priority": {"DataType": "Number", "StringValue": "3"},
        },
    )
    good_ids = send(sqs, queue, [probe() for _ in range(5)])

    worker = start_worker(QUEUE_URL=queue.url, DLQ_URL=queue.dlq_url, WORKER_PROBE_JOBS="true")

    assert worker.wait() == 0
    assert sorted(acked_ids(worker)) == sorted(good_ids)
    [dead] = drain_all(sqs, queue.dlq_url)
    assert dead["Body"] == bad
    carried = dead["MessageAttributes"]
    assert carried["signature"] == {"DataType": "Binary", "BinaryValue": signature}
    assert carried["priority"] == {"DataType": "Number", "StringValue": "3"}
    attributes = {k: v["StringValue"] for k, v in carried.items() if "StringValue" in v}
    assert attributes["origin"] == "upstream-7"
    assert attributes["spotdrain-reason"] == "probe: asked to fail permanently"
    assert attributes["spotdrain-receive-count"] == "1"
    assert attributes["spotdrain-original-message-id"] != dead["MessageId"]
    assert_queue_empty(sqs, queue)


GARBAGE = {
    "not json": "this is { not json",
    "a JSON array": json.dumps([{"job": "probe"}]),
    "binary-looking": "\x01\x02\x03\ufffd\x7f\x00garbage".replace("\x00", ""),
    "unknown shape": json.dumps({"hello": "world"}),
    "unknown job": json.dumps({"job": "teleport"}),
    "deeply nested": "[" * 100_000 + "]" * 100_000,
}


def test_garbage_bodies_are_dead_lettered_and_the_worker_carries_on(sqs, make_queue, start_worker):
    queue = make_queue()
    near_limit = "{" + "x" * (1_048_576 - 16)
    bodies = [*GARBAGE.values(), near_limit]
    for body in bodies:
        sqs.send_message(QueueUrl=queue.url, MessageBody=body)
    good_ids = send(sqs, queue, [probe() for _ in range(3)])

    worker = start_worker(QUEUE_URL=queue.url, DLQ_URL=queue.dlq_url, WORKER_PROBE_JOBS="true")

    assert worker.wait() == 0
    assert sorted(acked_ids(worker)) == sorted(good_ids)
    dead = drain_all(sqs, queue.dlq_url)
    assert sorted(m["Body"] for m in dead) == sorted(bodies)
    reasons = [
        e["reason"] for e in worker.events("message.done") if e["outcome"] == "dead_lettered"
    ]
    assert len(reasons) == len(bodies)
    assert any("not JSON" in r for r in reasons)
    assert any("unknown job 'teleport'" in r for r in reasons)
    assert any("must be a JSON object" in r for r in reasons)
    assert any("nested too deeply" in r for r in reasons)


def test_a_dead_letter_near_the_size_limit_keeps_its_body_unchanged(sqs, make_queue, start_worker):
    queue = make_queue()
    body = json.dumps({"job": "teleport", "pad": "y" * (1_048_576 - 100)})
    sqs.send_message(QueueUrl=queue.url, MessageBody=body)

    worker = start_worker(QUEUE_URL=queue.url, DLQ_URL=queue.dlq_url)

    assert worker.wait() == 0
    [dead] = drain_all(sqs, queue.dlq_url)
    assert dead["Body"] == body
    assert outcomes(worker) == Counter({"dead_lettered": 1})


def test_the_s3_test_event_is_acknowledged_with_no_job(sqs, make_queue, start_worker):
    queue = make_queue()
    event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b", "RequestId": "r"}
    [message_id] = send(sqs, queue, [json.dumps(event)])

    worker = start_worker(QUEUE_URL=queue.url, DLQ_URL=queue.dlq_url)

    assert worker.wait() == 0
    [done] = worker.events("message.done")
    assert (done["message_id"], done["outcome"], done["jobs"]) == (message_id, "acked", [])
    assert worker.events("worker.exit")[0]["jobs"] == 0


def test_a_delayed_message_keeps_the_worker_alive_until_it_is_processed(
    sqs, make_queue, start_worker
):
    queue = make_queue()
    [message_id] = send(sqs, queue, [probe()], delay=5)

    worker = start_worker(QUEUE_URL=queue.url, WORKER_PROBE_JOBS="true")

    assert worker.wait() == 0
    assert acked_ids(worker) == [message_id]


def test_sigterm_lets_a_short_job_finish_within_the_grace(sqs, make_queue, start_worker):
    queue = make_queue()
    [message_id] = send(sqs, queue, [probe(seconds=2)])
    worker = start_worker(
        QUEUE_URL=queue.url, WORKER_PROBE_JOBS="true", WORKER_SHUTDOWN_GRACE_SECONDS="20"
    )
    wait_until_held(sqs, queue)
    time.sleep(0.5)

    worker.signal()

    assert worker.wait() == 0
    assert acked_ids(worker) == [message_id]
    assert worker.events("worker.exit")[0]["reason"] == "stopped (sigterm)"
    assert_queue_empty(sqs, queue)


def test_sigterm_hands_a_long_job_back_so_a_second_worker_takes_it_at_once(
    sqs, make_queue, start_worker
):
    queue = make_queue(visibility=120)
    [message_id] = send(sqs, queue, [probe(seconds=30)])
    first = start_worker(
        QUEUE_URL=queue.url,
        WORKER_PROBE_JOBS="true",
        WORKER_SHUTDOWN_GRACE_SECONDS="1",
        WORKER_VISIBILITY_SECONDS="120",
    )
    wait_until_held(sqs, queue)

    first.signal()

    assert first.wait(timeout=20) == 0
    [handed] = first.events("message.done")
    assert (handed["message_id"], handed["outcome"]) == (message_id, "handed_back")
    assert first.events("worker.exit")[0]["handed_back"] == 1
    received = sqs.receive_message(
        QueueUrl=queue.url, WaitTimeSeconds=3, MessageAttributeNames=["All"]
    ).get("Messages", [])
    assert [first_message_id(m) for m in received] == [message_id]  # a copy: stops don't count


def test_an_imds_spot_notice_stops_the_worker_like_sigterm(sqs, make_queue, start_worker):
    from tests.support.imds import FakeImds

    queue = make_queue(visibility=120)
    [message_id] = send(sqs, queue, [probe(seconds=30)])
    with FakeImds() as imds:
        worker = start_worker(
            QUEUE_URL=queue.url,
            WORKER_PROBE_JOBS="true",
            WORKER_SHUTDOWN_GRACE_SECONDS="1",
            WORKER_VISIBILITY_SECONDS="120",
            SPOT_IMDS="auto",
            IMDS_ENDPOINT=imds.url,
            SPOT_POLL_SECONDS="0.2",
        )
        worker.wait_for("spot.watching")
        wait_until_held(sqs, queue)

        imds.announce()

        assert worker.wait(timeout=20) == 0
    assert worker.events("worker.exit")[0]["reason"] == "stopped (spot notice: terminate)"
    assert [e["outcome"] for e in worker.events("message.done")] == ["handed_back"]
    received = sqs.receive_message(
        QueueUrl=queue.url, WaitTimeSeconds=3, MessageAttributeNames=["All"]
    ).get("Messages", [])
    assert [first_message_id(m) for m in received] == [message_id]  # a copy: stops don't count


def test_with_no_imds_auto_mode_gives_up_within_a_second(sqs, make_queue, start_worker):
    queue = make_queue()
    worker = start_worker(QUEUE_URL=queue.url, SPOT_IMDS="auto", IMDS_ENDPOINT="http://127.0.0.1:9")

    assert worker.wait() == 0
    assert worker.events("spot.imds_unavailable")


def test_two_workers_on_one_queue_complete_every_message_exactly_once(
    sqs, make_queue, start_worker
):
    queue = make_queue()
    ids = send(sqs, queue, [probe(seconds=0.05) for _ in range(60)])
    env = {"QUEUE_URL": queue.url, "WORKER_PROBE_JOBS": "true", "WORKER_CONCURRENCY": "5"}

    workers = [start_worker(**env), start_worker(**env)]

    assert [w.wait() for w in workers] == [0, 0]
    assert sorted(acked_ids(*workers)) == sorted(ids)
    assert_queue_empty(sqs, queue)


def test_a_queue_that_does_not_exist_is_a_configuration_error(moto, start_worker):
    worker = start_worker(QUEUE_URL=f"{moto.url}/123456789012/no-such-queue")

    assert worker.wait() == 2
    assert "QUEUE_URL" in worker.stderr()
