"""Fleet sizing and RunTask: how many workers start, where, and that none start twice."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from launcher.aws import CLIENT_CONFIG
from launcher.fleet import Launch, client_token, start_tasks, wanted
from launcher.handler import handle
from launcher.settings import KeyFilter, Settings
from tests.launcher.conftest import (
    CONTAINER,
    REGION,
    RuntimeFactory,
    record_calls,
    running_tasks,
)
from tests.launcher.samples import s3_event

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs"
SETTINGS = Settings(
    queue_url=QUEUE,
    cluster="workers",
    task_definition="spotdrain-worker:3",
    subnets=("subnet-1",),
    security_groups=("sg-1",),
)
SEED = "f" * 64
NO_CAPACITY = (
    "Capacity is unavailable at this time. Please try again later or in a different "
    "availability zone"
)


def no_sleep(_seconds: float) -> None:
    return None


def tasks(count: int, provider: str) -> list[dict[str, Any]]:
    return [
        {
            "taskArn": f"arn:aws:ecs:us-east-1:123456789012:task/workers/{provider.lower()}{n}",
            "capacityProviderName": provider,
        }
        for n in range(count)
    ]


def run_task_params(provider: str, count: int, token: Any = ANY) -> dict[str, Any]:
    return {
        "cluster": "workers",
        "taskDefinition": "spotdrain-worker:3",
        "count": count,
        "capacityProviderStrategy": [{"capacityProvider": provider, "weight": 1, "base": 0}],
        "startedBy": SETTINGS.started_by,
        "clientToken": token,
        "overrides": ANY,
        "tags": ANY,
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": ["subnet-1"],
                "securityGroups": ["sg-1"],
                "assignPublicIp": "DISABLED",
            }
        },
    }


def launch_with(stub_calls: list[tuple[str, Any]], count: int, **settings: Any) -> Launch:
    """Run start_tasks against a stubbed ECS client that answers `stub_calls` in order."""
    ecs = boto3.client("ecs", region_name=REGION, config=CLIENT_CONFIG)
    with Stubber(ecs) as stub:
        for kind, answer in stub_calls:
            if kind == "error":
                code, params = answer
                stub.add_client_error(
                    "run_task",
                    service_error_code=code,
                    http_status_code=400,
                    expected_params=params,
                )
            else:
                response, params = answer
                stub.add_response("run_task", response, params)
        launch = start_tasks(ecs, replace(SETTINGS, **settings), count, SEED, no_sleep)
        stub.assert_no_pending_responses()
    # A request the stub did not expect surfaces as a BotoCoreError, which start_tasks
    # would report like a network failure: make it fail the test instead.
    assert not any("Stub" in note for note in launch.failures + launch.fallbacks)
    return launch


@pytest.mark.parametrize(
    ("backlog", "running", "max_tasks", "per_task", "expected"),
    [
        (0, 0, 10, 100, 0),  # nothing to do
        (1, 0, 10, 100, 1),  # at least one when there is a backlog and none runs
        (100, 0, 10, 100, 1),
        (101, 0, 10, 100, 2),  # ceil
        (250, 1, 10, 100, 2),  # minus the running ones
        (250, 3, 10, 100, 0),  # never negative
        (5000, 0, 10, 100, 10),  # MAX_TASKS caps
        (5000, 4, 10, 100, 6),
        (5000, 12, 10, 100, 0),  # above the cap already
        (1, 1, 10, 100, 0),  # one runs: enough for a small backlog
        (0, 3, 10, 100, 0),
    ],
)
def test_wanted_is_the_keda_formula(
    backlog: int, running: int, max_tasks: int, per_task: int, expected: int
) -> None:
    settings = replace(SETTINGS, max_tasks=max_tasks, messages_per_task=per_task)

    assert wanted(backlog, running, settings) == expected


def test_tasks_start_in_run_task_calls_of_at_most_ten(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(max_tasks=25, messages_per_task=1)
    calls = record_calls(runtime.ecs, "RunTask")

    summary = handle(s3_event(*(f"{n}.csv" for n in range(25))), runtime)

    assert [call["count"] for call in calls] == [10, 10, 5]
    assert summary["started"] == 25
    assert len(running_tasks(runtime)) == 25


def test_a_second_invocation_starts_only_what_the_backlog_still_needs(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = make_runtime(messages_per_task=10, max_tasks=10)

    first = handle(s3_event(*(f"a{n}.csv" for n in range(25))), runtime)
    second = handle(s3_event(*(f"b{n}.csv" for n in range(5))), runtime)
    third = handle(s3_event(*(f"c{n}.csv" for n in range(20))), runtime)

    assert (first["backlog"], first["running"], first["started"]) == (25, 0, 3)
    assert (second["backlog"], second["running"], second["started"]) == (30, 3, 0)
    assert (third["backlog"], third["running"], third["started"]) == (50, 3, 2)
    assert len(running_tasks(runtime)) == 5


def test_max_tasks_is_never_exceeded(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(max_tasks=3, messages_per_task=1)

    started = []
    for batch in range(4):
        summary = handle(s3_event(*(f"{batch}/{n}.csv" for n in range(10))), runtime)
        started.append(summary["started"])
        assert len(running_tasks(runtime)) <= 3

    assert started == [3, 0, 0, 0]


def test_one_worker_starts_for_a_small_backlog_and_no_second_one(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = make_runtime()

    assert handle(s3_event("a.csv"), runtime)["started"] == 1
    assert handle(s3_event("b.csv"), runtime)["started"] == 0


def test_no_worker_starts_without_a_backlog(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(key_filter=KeyFilter(suffixes=(".csv",)))

    summary = handle(s3_event("a.txt"), runtime)

    assert (summary["enqueued"], summary["skipped"], summary["started"]) == (0, 1, 0)
    assert running_tasks(runtime) == []


def test_stopped_workers_no_longer_count(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime()
    handle(s3_event("a.csv"), runtime)
    for task in running_tasks(runtime):
        runtime.ecs.stop_task(cluster=runtime.settings.cluster, task=task["taskArn"])

    summary = handle(s3_event("b.csv"), runtime)

    assert (summary["running"], summary["started"]) == (0, 1)


def test_workers_of_another_queue_do_not_count(make_runtime: RuntimeFactory) -> None:
    other = make_runtime()
    handle(s3_event("a.csv"), other)
    runtime = make_runtime()

    summary = handle(s3_event("b.csv"), runtime)

    assert (summary["running"], summary["started"]) == (0, 1)


def test_the_same_event_delivered_twice_does_not_double_start(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = make_runtime()
    event = s3_event("a.csv", "b.csv")

    first = handle(event, runtime)
    again = handle(event, runtime)

    assert (first["started"], again["started"], again["running"]) == (1, 0, 1)
    assert len(running_tasks(runtime)) == 1


def test_the_same_event_delivered_twice_sends_the_same_client_token(
    make_runtime: RuntimeFactory,
) -> None:
    """Even when ListTasks does not show the first delivery's tasks yet, ECS gets the same
    clientToken twice and so starts nothing new (RunTask is idempotent on it)."""
    runtime = make_runtime()
    ecs = boto3.client("ecs", region_name=REGION, config=CLIENT_CONFIG)
    runtime = replace(runtime, ecs=ecs)
    calls = record_calls(ecs, "RunTask")
    event = s3_event("a.csv")
    other = s3_event("a.csv")  # same key, another upload: another event
    with Stubber(ecs) as stub:
        for _ in range(3):
            stub.add_response("list_tasks", {"taskArns": []})
            stub.add_response("run_task", {"tasks": tasks(1, "FARGATE_SPOT"), "failures": []})

        handle(event, runtime)
        handle(event, runtime)
        handle(other, runtime)
        stub.assert_no_pending_responses()

    tokens = [call["clientToken"] for call in calls]
    assert tokens[0] == tokens[1] != tokens[2]


def test_client_tokens_fit_ecs_rules_and_differ_per_call_and_provider() -> None:
    tokens = {client_token(SEED, p, c) for p in range(3) for c in range(100)}

    assert len(tokens) == 300
    assert all(len(t) <= 64 and all(33 <= ord(ch) <= 126 for ch in t) for t in tokens)


def test_a_capacity_failure_on_fargate_spot_falls_back_to_fargate() -> None:
    failures = [{"arn": "arn:aws:ecs:us-east-1:123456789012:task/workers/x", "reason": NO_CAPACITY}]

    launch = launch_with(
        [
            (
                "ok",
                (
                    {"tasks": tasks(1, "FARGATE_SPOT"), "failures": failures * 2},
                    run_task_params("FARGATE_SPOT", 3, client_token(SEED, 0, 0)),
                ),
            ),
            (
                "ok",
                (
                    {"tasks": tasks(2, "FARGATE"), "failures": []},
                    run_task_params("FARGATE", 2, client_token(SEED, 1, 0)),
                ),
            ),
        ],
        count=3,
    )

    assert launch.started == {"FARGATE_SPOT": 1, "FARGATE": 2}
    assert launch.failures == []
    assert launch.fallbacks and "Capacity is unavailable" in launch.fallbacks[0]


def test_after_a_capacity_failure_the_rest_goes_to_the_next_provider_in_tens() -> None:
    launch = launch_with(
        [
            (
                "ok",
                (
                    {"tasks": tasks(10, "FARGATE_SPOT"), "failures": []},
                    run_task_params("FARGATE_SPOT", 10),
                ),
            ),
            (
                "ok",
                (
                    {"tasks": [], "failures": [{"reason": NO_CAPACITY}]},
                    run_task_params("FARGATE_SPOT", 10),
                ),
            ),
            (
                "ok",
                ({"tasks": tasks(10, "FARGATE"), "failures": []}, run_task_params("FARGATE", 10)),
            ),
            ("ok", ({"tasks": tasks(5, "FARGATE"), "failures": []}, run_task_params("FARGATE", 5))),
        ],
        count=25,
        max_tasks=25,
    )

    assert launch.started == {"FARGATE_SPOT": 10, "FARGATE": 15}
    assert launch.failures == []


def test_providers_are_tried_in_the_configured_order() -> None:
    launch = launch_with(
        [
            (
                "ok",
                (
                    {"tasks": [], "failures": [{"reason": "RESOURCE:MEMORY"}]},
                    run_task_params("FARGATE", 1),
                ),
            ),
            (
                "ok",
                (
                    {"tasks": tasks(1, "FARGATE_SPOT"), "failures": []},
                    run_task_params("FARGATE_SPOT", 1),
                ),
            ),
        ],
        count=1,
        capacity_providers=("FARGATE", "FARGATE_SPOT"),
    )

    assert launch.started == {"FARGATE_SPOT": 1}


def test_when_no_provider_has_capacity_the_missing_count_is_reported() -> None:
    launch = launch_with(
        [
            (
                "ok",
                (
                    {"tasks": [], "failures": [{"reason": NO_CAPACITY}]},
                    run_task_params("FARGATE_SPOT", 2),
                ),
            ),
            (
                "ok",
                (
                    {"tasks": [], "failures": [{"reason": NO_CAPACITY}]},
                    run_task_params("FARGATE", 2),
                ),
            ),
        ],
        count=2,
    )

    assert launch.total == 0
    assert launch.failures[-1].startswith("2 of 2 task(s) not started")


def test_a_throttled_run_task_is_retried_on_the_same_provider() -> None:
    token = client_token(SEED, 0, 0)

    launch = launch_with(
        [
            ("error", ("ThrottlingException", run_task_params("FARGATE_SPOT", 2, token))),
            (
                "ok",
                (
                    {"tasks": tasks(2, "FARGATE_SPOT"), "failures": []},
                    run_task_params("FARGATE_SPOT", 2, token),
                ),
            ),
        ],
        count=2,
    )

    assert launch.started == {"FARGATE_SPOT": 2}
    assert launch.calls == 2
    assert launch.failures == launch.fallbacks == []


def test_run_task_throttled_on_every_attempt_falls_back_to_the_next_provider() -> None:
    launch = launch_with(
        [
            *[("error", ("ThrottlingException", run_task_params("FARGATE_SPOT", 2)))] * 3,
            ("ok", ({"tasks": tasks(2, "FARGATE"), "failures": []}, run_task_params("FARGATE", 2))),
        ],
        count=2,
    )

    assert launch.started == {"FARGATE": 2}
    assert "ThrottlingException" in launch.fallbacks[0]


def test_a_failure_that_is_not_about_capacity_does_not_fall_back() -> None:
    launch = launch_with(
        [
            (
                "ok",
                (
                    {"tasks": [], "failures": [{"reason": "MISSING", "detail": "no such"}]},
                    run_task_params("FARGATE_SPOT", 1),
                ),
            ),
        ],
        count=1,
    )

    assert launch.total == 0
    assert "MISSING" in launch.failures[0]


def test_a_refused_run_task_stops_launching() -> None:
    launch = launch_with(
        [("error", ("ClusterNotFoundException", run_task_params("FARGATE_SPOT", 3)))],
        count=3,
    )

    assert launch.total == 0
    assert "ClusterNotFoundException" in launch.failures[0]


def test_a_client_token_already_used_with_other_parameters_stops_launching() -> None:
    """A redelivery whose sizing changed: ECS names the earlier tasks, we start no more."""
    launch = launch_with(
        [("error", ("ConflictException", run_task_params("FARGATE_SPOT", 10)))],
        count=12,
    )

    assert launch.total == 0
    assert launch.calls == 1
    assert "earlier delivery" in launch.failures[0]


def test_started_tasks_carry_started_by_tags_overrides_and_networking(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = make_runtime(
        worker_environment=(("CSV_SUFFIXES", ".csv,.tsv"), ("DLQ_URL", "https://sqs/dlq"))
    )
    calls = record_calls(runtime.ecs, "RunTask")

    handle(s3_event("a.csv"), runtime)

    (task,) = running_tasks(runtime)
    settings = runtime.settings
    assert task["startedBy"] == settings.started_by
    assert task["capacityProviderName"] == "FARGATE_SPOT"
    assert {t["key"]: t["value"] for t in task["tags"]} == {
        "spotdrain:queue": settings.queue_name,
        "spotdrain:started-by": settings.started_by,
    }
    (override,) = task["overrides"]["containerOverrides"]
    assert {e["name"]: e["value"] for e in override["environment"]} == {
        "QUEUE_URL": settings.queue_url,
        "CSV_SUFFIXES": ".csv,.tsv",
        "DLQ_URL": "https://sqs/dlq",
    }
    assert calls[0]["networkConfiguration"]["awsvpcConfiguration"] == {
        "subnets": list(settings.subnets),
        "securityGroups": list(settings.security_groups),
        "assignPublicIp": "DISABLED",
    }


@pytest.mark.parametrize("container", [CONTAINER, "app"])
def test_overrides_name_the_task_definitions_container(
    make_runtime: RuntimeFactory, container: str
) -> None:
    runtime = make_runtime(container_name=container)
    if container != CONTAINER:
        definition = runtime.ecs.describe_task_definition(
            taskDefinition=runtime.settings.task_definition
        )["taskDefinition"]
        definition["containerDefinitions"][0]["name"] = container
        arn = runtime.ecs.register_task_definition(
            family=definition["family"],
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="256",
            memory="512",
            containerDefinitions=definition["containerDefinitions"],
        )["taskDefinition"]["taskDefinitionArn"]
        runtime = replace(runtime, settings=replace(runtime.settings, task_definition=arn))

    handle(s3_event("a.csv"), runtime)

    (task,) = running_tasks(runtime)
    definition = runtime.ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])
    names = {c["name"] for c in definition["taskDefinition"]["containerDefinitions"]}
    assert [o["name"] for o in task["overrides"]["containerOverrides"]] == [container]
    assert container in names
