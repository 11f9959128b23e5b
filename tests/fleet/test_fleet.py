"""The fleet heals itself: every backlog gets a worker, interruptions never count as failures.

Each scenario runs a whole deployment on this machine (tests/support/fleet.py): the launcher's
own code, invoked by a scaled-down reconcile schedule and by ECS task-stop events; moto's ECS,
whose tasks run as real `python -m worker` processes; moto's SQS and S3. No upload event
reaches the launcher after the first: recovery is the fleet's own doing. Every check reads
the end state (outputs, dead letters, the queue, the tasks ECS ran), never a log line.
"""

from __future__ import annotations

import csv
import io
import json
import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.chaos.conftest import Run
from tests.chaos.mix import MAX_RECEIVES, large_csv
from tests.conftest import QueueFactory, drain_all, unique
from tests.csv.conftest import ndjson
from tests.fleet.conftest import MakeFleet, split_world_env
from tests.support.fleet import Fleet

pytestmark = pytest.mark.slow

RECONCILE = 2.0  # seconds: the scheduled minute, scaled down
FAST = {"WORKER_CANCEL_SECONDS": 2, "WORKER_IDLE_EXIT_SECONDS": 2, "WORKER_WAIT_SECONDS": 1}
FleetRun = Callable[..., Run]


def send(sqs: Any, queue_url: str, bodies: list[str]) -> list[str]:
    ids = []
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start:][:10])]
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        assert not response.get("Failed"), response["Failed"]
        ids += [entry["MessageId"] for entry in response["Successful"]]
    return ids


def mixed_fleet(make_fleet: MakeFleet, run: Run, **worker: Any) -> Fleet:
    options, task_environment = split_world_env(run.world, **FAST, **worker)
    return make_fleet(
        queue_url=run.world.queue.url,
        worker_options=options,
        task_environment=task_environment,
        reconcile_seconds=RECONCILE,
        messages_per_task=40,
    )


@pytest.mark.nfs
def test_a_reclaim_of_the_whole_fleet_mid_drain_still_drains_and_dead_letters_nothing(
    fleet_run: FleetRun, make_fleet: MakeFleet
) -> None:
    """300 mixed jobs on a queue whose redrive allows 3 receives; every worker is reclaimed at
    once half-way. Only the planted poison reaches the dead-letter queue."""
    run = fleet_run(jobs=300, large=4, rate=40, max_receive=3)
    fleet = mixed_fleet(make_fleet, run, WORKER_SHUTDOWN_GRACE_SECONDS=1)
    with fleet:
        run.feeder.start()
        fleet.size_now()  # what the uploads' events did; no further one reaches the launcher
        fleet.wait_until(
            lambda: len(run.feeder.sent) >= 150 and len(fleet.live()) >= 2,
            timeout=120,
            what="half the jobs sent, two workers busy",
        )
        reclaimed_at = time.monotonic()
        taken = fleet.reclaim()
        fleet.wait_idle(timeout=240)

    reclaimed = [fleet.tasks[arn] for arn in taken]
    assert [task.process.process.returncode for task in reclaimed] == [0] * len(taken)
    replacements = [t for t in fleet.tasks.values() if t.started_at > reclaimed_at]
    assert replacements, "nothing replaced the reclaimed workers"
    assert run.problems() == []


@pytest.mark.nfs
def test_random_sigkills_during_a_drain_lose_nothing_and_never_exceed_max_tasks(
    fleet_run: FleetRun, make_fleet: MakeFleet
) -> None:
    rng = random.Random(11)
    run = fleet_run(jobs=100, rate=40, max_receive=MAX_RECEIVES)
    fleet = mixed_fleet(make_fleet, run, WORKER_VISIBILITY_SECONDS=4)
    kills = 0
    with fleet:
        run.feeder.start()
        fleet.size_now()
        while kills < 5:
            fleet.wait_until(lambda: bool(fleet.live()), timeout=60, what="a worker runs")
            time.sleep(rng.uniform(0.3, 1.5))
            if live := fleet.live():
                fleet.kill(rng.choice(live).arn)
                kills += 1
        fleet.wait_idle(timeout=240)

    assert fleet.most_running <= fleet.runtime.settings.max_tasks, fleet.most_running
    # A kill between a dead letter's send and its original's delete moves it twice.
    assert run.problems(dead_letter_repeats=True) == []


def test_a_job_interrupted_ten_times_completes_and_one_that_fails_three_times_is_dead_lettered(
    s3: Any, sqs: Any, make_queue: QueueFactory, make_fleet: MakeFleet
) -> None:
    """On a queue whose redrive policy allows 3 receives: stops are not attempts, failures are."""
    bucket = unique("fleet-csv")
    s3.create_bucket(Bucket=bucket)
    source = large_csv(400_000)  # about 28 MB in, 44 MB out: seconds of multipart upload
    s3.put_object(Bucket=bucket, Key="big.csv", Body=source)
    queue = make_queue(visibility=30, max_receive=3)
    send(
        sqs,
        queue.url,
        [
            json.dumps({"job": "csv", "bucket": bucket, "key": "big.csv"}),
            json.dumps({"job": "probe", "fail": "retryable"}),
        ],
    )
    fleet = make_fleet(
        queue_url=queue.url,
        worker_options={
            "DLQ_URL": queue.dlq_url,
            "WORKER_PROBE_JOBS": "true",
            "WORKER_SHUTDOWN_GRACE_SECONDS": 0,
            "CSV_PART_SIZE_MB": 5,
            "CSV_PROCESSES": 1,
            **FAST,
        },
        reconcile_seconds=RECONCILE,
    )
    with fleet:
        fleet.size_now()
        for _ in range(10):
            fleet.wait_until(
                lambda: bool(fleet.live() and uploads(s3, bucket)),
                timeout=60,
                what="a worker is converting",
            )
            [arn] = fleet.reclaim()
            fleet.wait_until(
                lambda arn=arn: fleet.tasks[arn].ended_at is not None,  # type: ignore[misc]
                timeout=30,
                what="the reclaimed worker ended",
            )
        fleet.wait_idle(timeout=120)

    output = s3.get_object(Bucket=bucket, Key="converted/big.json")["Body"].read()
    assert ndjson(output) == list(csv.DictReader(io.StringIO(source.decode(), newline="")))
    assert uploads(s3, bucket) == []
    [dead] = drain_all(sqs, queue.dlq_url)
    assert json.loads(dead["Body"])["job"] == "probe"
    assert dead["MessageAttributes"]["spotdrain-receive-count"]["StringValue"] == "3"
    assert len(fleet.tasks) >= 11


def uploads(s3: Any, bucket: str) -> list[str]:
    return [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def test_without_spot_capacity_workers_start_on_fargate_and_on_spot_again_once_it_returns(
    sqs: Any, make_queue: QueueFactory, make_fleet: MakeFleet
) -> None:
    queue = make_queue(visibility=30, max_receive=5)
    send(sqs, queue.url, [json.dumps({"job": "probe", "seconds": 1.0}) for _ in range(16)])
    fleet = make_fleet(
        queue_url=queue.url,
        worker_options={"WORKER_PROBE_JOBS": "true", "WORKER_CONCURRENCY": 1, **FAST},
        reconcile_seconds=RECONCILE,
        messages_per_task=100,
    )
    fleet.capacity.out = {"FARGATE_SPOT", "FARGATE"}
    with fleet:
        fleet.size_now()
        fleet.wait_until(
            lambda: fleet.count("schedule") >= 2, timeout=30, what="two reconciles without room"
        )
        assert fleet.tasks == {}, "a task started where no provider had room"
        fleet.capacity.out = {"FARGATE_SPOT"}  # on-demand Fargate has room again
        fleet.wait_until(lambda: bool(fleet.live()), timeout=30, what="a worker on FARGATE")
        [first] = fleet.live()
        fleet.capacity.out = set()  # and Spot too
        fleet.reclaim()
        fleet.wait_until(
            lambda: any(t.provider == "FARGATE_SPOT" for t in fleet.live()),
            timeout=30,
            what="a replacement on FARGATE_SPOT",
        )
        fleet.wait_idle(timeout=90)

    assert first.provider == "FARGATE"
    assert fleet.capacity.refused[:2] == ["FARGATE_SPOT", "FARGATE"]
    assert drain_all(sqs, queue.dlq_url) == []


def test_a_dead_letter_redrive_into_an_idle_fleet_gets_a_worker_at_the_next_reconcile(
    s3: Any, sqs: Any, make_queue: QueueFactory, make_fleet: MakeFleet
) -> None:
    bucket = unique("fleet-redrive")
    s3.create_bucket(Bucket=bucket)
    queue = make_queue(visibility=30, max_receive=5)
    keys = [f"late/{n}.csv" for n in range(5)]
    send(sqs, queue.dlq_url, [json.dumps({"job": "csv", "bucket": bucket, "key": k}) for k in keys])
    for key in keys:  # what was missing when they were dead-lettered is there now
        s3.put_object(Bucket=bucket, Key=key, Body=b"a,b\n1,2\n")
    fleet = make_fleet(
        queue_url=queue.url,
        worker_options={"DLQ_URL": queue.dlq_url, **FAST},
        reconcile_seconds=RECONCILE,
    )
    with fleet:
        fleet.wait_until(lambda: fleet.count("schedule") >= 1, timeout=30, what="an idle tick")
        with fleet.between_invocations():  # no tick may straddle the redrive
            ticks_before = fleet.count("schedule")
            redrive(sqs, queue.dlq_url, queue.url)
        fleet.wait_until(lambda: bool(fleet.tasks), timeout=30, what="a worker for the redrive")
        fleet.wait_idle(timeout=60)

    ticks = [summary for trigger, summary in fleet.invocations if trigger == "schedule"]
    assert [tick["started"] for tick in ticks[:ticks_before]] == [0] * ticks_before
    assert ticks[ticks_before]["started"] == 1  # the first reconcile after the redrive
    for key in keys:
        out = s3.get_object(Bucket=bucket, Key=f"converted/{key[:-4]}.json")["Body"].read()
        assert ndjson(out) == [{"a": "1", "b": "2"}]


def redrive(sqs: Any, dlq_url: str, queue_url: str) -> None:
    """Move every dead letter back, send first, delete after (as an operator's script does)."""
    while messages := sqs.receive_message(
        QueueUrl=dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=60
    ).get("Messages", []):
        for message in messages:
            sqs.send_message(QueueUrl=queue_url, MessageBody=message["Body"])
            sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
