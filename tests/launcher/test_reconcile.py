"""Reconcile events (a schedule, a stopped task, `{"jobs": []}`): size the fleet, enqueue none."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from launcher.errors import InvalidEvent
from launcher.events import parse_event
from launcher.handler import handle
from launcher.settings import KeyFilter
from tests.launcher.conftest import REGION, RuntimeFactory, queue_depth, running_tasks
from tests.launcher.samples import scheduled_event, task_stopped_event

FOREIGN_TASK = {
    "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/other/0123456789abcdef",
    "startedBy": "someone-else",
}


def fill(runtime: Any, count: int) -> None:
    for n in range(count):
        runtime.sqs.send_message(QueueUrl=runtime.settings.queue_url, MessageBody=f'{{"n":{n}}}')


@pytest.mark.parametrize(
    "event",
    [scheduled_event(), task_stopped_event(FOREIGN_TASK), {"jobs": []}],
    ids=["schedule", "task-stopped", "empty-direct"],
)
def test_a_reconcile_event_enqueues_nothing_and_starts_workers_for_the_backlog(
    make_runtime: RuntimeFactory, event: dict[str, Any]
) -> None:
    runtime = make_runtime(messages_per_task=10)
    fill(runtime, 25)

    summary = handle(event, runtime)

    assert (summary["enqueued"], summary["backlog"], summary["started"]) == (0, 25, 3)
    assert queue_depth(runtime) == 25
    assert len(running_tasks(runtime)) == 3


def test_a_reconcile_with_no_backlog_starts_nothing(make_runtime: RuntimeFactory) -> None:
    summary = handle(scheduled_event(), make_runtime())

    assert (summary["backlog"], summary["started"], summary["failures"]) == (0, 0, [])


def test_a_reconcile_tops_up_a_fleet_without_exceeding_max_tasks(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = make_runtime(messages_per_task=1, max_tasks=4)
    fill(runtime, 9)
    handle({"jobs": []}, runtime)

    summary = handle(scheduled_event(), runtime)

    assert (summary["running"], summary["started"]) == (4, 0)
    assert len(running_tasks(runtime)) == 4


def test_a_stopped_workers_leased_messages_count_when_no_worker_runs(
    make_runtime: RuntimeFactory,
) -> None:
    """A crashed worker's messages are in flight until their lease ends, with no one to take
    them then: they are backlog."""
    runtime = make_runtime()
    fill(runtime, 3)
    runtime.sqs.receive_message(
        QueueUrl=runtime.settings.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=300
    )

    summary = handle(scheduled_event(), runtime)

    assert (summary["backlog"], summary["running"], summary["started"]) == (3, 0, 1)


def test_in_flight_messages_do_not_count_while_a_worker_holds_them(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = make_runtime(messages_per_task=1)
    fill(runtime, 1)
    handle({"jobs": []}, runtime)  # one worker
    runtime.sqs.receive_message(QueueUrl=runtime.settings.queue_url, VisibilityTimeout=300)
    fill(runtime, 1)

    summary = handle(scheduled_event(), runtime)

    assert (summary["backlog"], summary["running"], summary["started"]) == (1, 1, 0)


def test_a_stopped_task_of_this_launcher_is_replaced_and_reported(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = make_runtime(messages_per_task=10)
    fill(runtime, 5)
    handle({"jobs": []}, runtime)
    [task] = running_tasks(runtime)
    ecs = boto3.client("ecs", region_name=REGION)
    ecs.stop_task(cluster=runtime.settings.cluster, task=task["taskArn"], reason="Spot")

    summary = handle(task_stopped_event(task), runtime)

    assert (summary["trigger"], summary["running"], summary["started"]) == ("ecs", 0, 1)
    assert summary["stopped_task"]["task"] == task["taskArn"]
    assert summary["stopped_task"]["started_by"] == runtime.settings.started_by
    assert summary["stopped_task"]["stop_code"] == "SpotInterruption"
    assert len(running_tasks(runtime)) == 1


def test_every_tick_of_the_schedule_has_its_own_identity() -> None:
    """Each tick's RunTask calls need new client tokens, or ECS would answer the last tick's."""
    ticks = {parse_event(scheduled_event(), KeyFilter()).identity for _ in range(3)}

    assert len(ticks) == 3


def test_an_eventbridge_retry_of_the_same_tick_keeps_its_identity() -> None:
    tick = scheduled_event()
    again = json.loads(json.dumps(tick))

    assert parse_event(tick, KeyFilter()).identity == parse_event(again, KeyFilter()).identity


def test_an_ecs_event_without_detail_is_rejected_with_a_reason() -> None:
    event = {"source": "aws.ecs", "detail-type": "ECS Task State Change", "id": "x"}

    with pytest.raises(InvalidEvent, match="detail"):
        parse_event(event, KeyFilter())


def test_other_aws_events_are_rejected_naming_what_is_accepted() -> None:
    event = {"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification"}

    with pytest.raises(InvalidEvent, match="scheduled event or an ECS task state change"):
        parse_event(event, KeyFilter())
