"""The sizing lease: invocations that run at once never start more than MAX_TASKS between them.

Each invocation is its own Lambda container here (its own Runtime and clients), all on one
queue and cluster of the session's moto server over HTTP, with the lease's table in moto's
DynamoDB. ListTasks is slowed down so that unlocked sizings would overlap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from launcher.aws import CLIENT_CONFIG
from launcher.handler import Runtime, handle
from launcher.lease import SizingLease
from launcher.settings import Settings
from tests.launcher.samples import s3_event, scheduled_event
from tests.support.fleet import make_cluster
from tests.support.moto_server import MotoServer

from .conftest import unique

MAX_TASKS = 3
Invoke = Callable[..., dict[str, Any]]


@pytest.fixture
def world(moto: MotoServer) -> dict[str, Any]:
    """A queue, a cluster and the lease table, made once per test."""
    sqs = boto3.client("sqs", endpoint_url=moto.url)
    dynamodb = boto3.client("dynamodb", endpoint_url=moto.url)
    table = unique("fleet-lock")
    dynamodb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "fleet", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "fleet", "KeyType": "HASH"}],
    )
    cluster = make_cluster(moto.url, unique("lease"))
    settings = Settings(
        queue_url=sqs.create_queue(QueueName=unique("jobs"))["QueueUrl"],
        cluster=cluster.name,
        task_definition=cluster.task_definition,
        subnets=cluster.subnets,
        security_groups=cluster.security_groups,
        max_tasks=MAX_TASKS,
        messages_per_task=1,
        metrics=False,
        fleet_lock_table=table,
    )
    return {"moto": moto, "settings": settings, "dynamodb": dynamodb, "table": table}


def container(world: dict[str, Any], *, slow_list_tasks: float = 0.0, **lease: Any) -> Runtime:
    """One Lambda container: its own clients and lease, as `lambda_handler` builds them."""
    url, settings = world["moto"].url, world["settings"]
    ecs = boto3.client("ecs", endpoint_url=url, config=CLIENT_CONFIG)
    if slow_list_tasks:

        def slow(**_: Any) -> None:
            time.sleep(slow_list_tasks)

        ecs.meta.events.register("before-call.ecs.ListTasks", slow)
    dynamodb = boto3.client("dynamodb", endpoint_url=url, config=CLIENT_CONFIG)
    return Runtime(
        settings=settings,
        sqs=boto3.client("sqs", endpoint_url=url, config=CLIENT_CONFIG),
        ecs=ecs,
        sleep=lambda _seconds: None,
        lease=SizingLease(dynamodb, world["table"], settings.started_by, **lease),
    )


def workers(world: dict[str, Any]) -> int:
    settings = world["settings"]
    ecs = boto3.client("ecs", endpoint_url=world["moto"].url)
    pages = ecs.get_paginator("list_tasks").paginate(
        cluster=settings.cluster, startedBy=settings.started_by, desiredStatus="RUNNING"
    )
    return sum(len(page["taskArns"]) for page in pages)


def set_lease(world: dict[str, Any], **fields: str | int) -> None:
    """Write the fleet's lease item as another invocation would have left it."""
    item: dict[str, Any] = {"fleet": {"S": world["settings"].started_by}}
    for name, value in fields.items():
        item[name] = {"S": value} if isinstance(value, str) else {"N": str(value)}
    world["dynamodb"].put_item(TableName=world["table"], Item=item)


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def in_thread() -> Iterator[Callable[[Callable[[], Any]], dict[str, Any]]]:
    threads: list[threading.Thread] = []

    def start(call: Callable[[], Any]) -> dict[str, Any]:
        box: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: box.update(result=call()), daemon=True)
        thread.start()
        threads.append(thread)
        box["thread"] = thread
        return box

    yield start
    for thread in threads:
        thread.join(timeout=30)


def test_invocations_at_once_never_start_more_than_max_tasks(world: dict[str, Any]) -> None:
    containers = [container(world, slow_list_tasks=0.2) for _ in range(10)]
    barrier = threading.Barrier(len(containers))
    summaries: list[dict[str, Any]] = []

    def invoke(n: int) -> None:
        barrier.wait()
        event = s3_event(*(f"in/{n}-{k}.csv" for k in range(5)))
        summaries.append(handle(event, containers[n]))

    threads = [threading.Thread(target=invoke, args=(n,)) for n in range(len(containers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(summaries) == len(containers)
    assert sum(s["enqueued"] for s in summaries) == 50
    assert sum(s["started"] for s in summaries) == MAX_TASKS
    assert workers(world) == MAX_TASKS
    assert {s["sizing"] for s in summaries} <= {"held", "covered"}


def test_a_waiter_whose_messages_a_later_sizing_counted_starts_nothing(
    world: dict[str, Any], in_thread: Callable[[Callable[[], Any]], dict[str, Any]]
) -> None:
    set_lease(world, holder="another", expires_ms=now_ms() + 60_000)
    runtime = container(world)
    box = in_thread(lambda: handle(s3_event("in/a.csv"), runtime))
    time.sleep(0.5)  # the invocation has sent its message and waits for the lease
    assert "result" not in box
    set_lease(world, sized_from_ms=now_ms(), workers=1)  # the holder counted it, and let go
    box["thread"].join(timeout=10)
    summary = box["result"]
    assert (summary["sizing"], summary["enqueued"], summary["run_task_calls"]) == ("covered", 1, 0)
    assert summary["failures"] == []


def test_a_sizing_that_left_no_worker_covers_nobody(
    world: dict[str, Any], in_thread: Callable[[Callable[[], Any]], dict[str, Any]]
) -> None:
    """A holder that counted before the messages showed may have started nothing: a waiter
    then sizes for itself."""
    set_lease(world, holder="another", expires_ms=now_ms() + 60_000)
    runtime = container(world)
    box = in_thread(lambda: handle(s3_event("in/a.csv"), runtime))
    time.sleep(0.5)
    set_lease(world, sized_from_ms=now_ms(), workers=0)
    box["thread"].join(timeout=10)
    assert (box["result"]["sizing"], box["result"]["started"]) == ("held", 1)


def test_a_lease_left_by_an_invocation_that_died_is_taken_once_it_ran_out(
    world: dict[str, Any],
) -> None:
    set_lease(world, holder="died", expires_ms=now_ms() - 1)
    summary = handle(s3_event("in/a.csv"), container(world))
    assert (summary["sizing"], summary["started"]) == ("held", 1)


def test_the_holder_gives_the_lease_back_with_what_it_counted(world: dict[str, Any]) -> None:
    before = now_ms()
    handle(s3_event("in/a.csv", "in/b.csv"), container(world))
    item = world["dynamodb"].get_item(
        TableName=world["table"], Key={"fleet": {"S": world["settings"].started_by}}
    )["Item"]
    assert "holder" not in item and "expires_ms" not in item
    assert int(item["sized_from_ms"]["N"]) >= before
    assert item["workers"] == {"N": "2"}


def test_an_invocation_that_never_gets_a_turn_still_enqueues_and_says_why_it_did_not_size(
    world: dict[str, Any],
) -> None:
    set_lease(world, holder="another", expires_ms=now_ms() + 60_000)
    summary = handle(s3_event("in/a.csv", "in/b.csv"), container(world, wait_seconds=0.3))
    assert (summary["sizing"], summary["enqueued"], summary["started"]) == ("busy", 2, 0)
    assert any("sizing lease" in failure for failure in summary["failures"])
    assert workers(world) == 0


def test_a_sizing_with_nothing_to_start_never_touches_the_lease(world: dict[str, Any]) -> None:
    """An idle reconcile (and any invocation that finds enough workers) costs no DynamoDB
    call: the lease guards RunTask, and nothing would be started."""
    summary = handle(scheduled_event(), container(world))
    assert (summary["sizing"], summary["started"]) == ("counted", 0)
    item = world["dynamodb"].get_item(
        TableName=world["table"], Key={"fleet": {"S": world["settings"].started_by}}
    )
    assert "Item" not in item
