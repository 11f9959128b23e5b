"""Size the fleet from the backlog, the way KEDA sizes jobs, and start the missing workers.

wanted = min(MAX_TASKS, ceil(backlog / MESSAGES_PER_TASK)) - running, at least one when there
is a backlog and nothing runs. Tasks start in RunTask calls of at most 10, on the capacity
providers of CAPACITY_PROVIDERS in order: when a call reports capacity trouble in its
`failures`, or stays throttled, the missing count moves to the next provider.

Each call carries a clientToken derived from the event's identity, the provider and the
call's position, so the same event delivered again repeats the same calls and ECS starts
nothing new (same parameters) or answers ConflictException (the count changed since): either
way no second set of workers. Concurrent invocations for different events would each see
the others' tasks only once ListTasks does, and could start more than MAX_TASKS between them:
the handler sizes under a lease (lease.py, FLEET_LOCK_TABLE) so that one counts at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from launcher.aws import backoff, describe, error_code, is_transient
from launcher.settings import RUN_TASK_MAX_COUNT, Settings

if TYPE_CHECKING:  # the stubs are a test dependency only
    from types_boto3_ecs import ECSClient
    from types_boto3_ecs.type_defs import RunTaskResponseTypeDef
    from types_boto3_sqs import SQSClient

RUN_TASK_ATTEMPTS = 3  # per call and provider, while throttled or the service fails


def wanted(backlog: int, running: int, settings: Settings) -> int:
    """How many tasks to start now for this backlog, given the workers already running."""
    if backlog <= 0:
        return 0
    desired = min(settings.max_tasks, math.ceil(backlog / settings.messages_per_task))
    missing = desired - running
    if running == 0:
        missing = max(missing, 1)
    return max(0, missing)


@dataclass(frozen=True)
class QueueCounts:
    visible: int
    delayed: int
    in_flight: int

    def backlog(self, running: int) -> int:
        """Messages that need a worker: visible and delayed ones; in-flight ones too when no
        worker runs, since a crashed worker's leased messages come back with nobody to take
        them."""
        return self.visible + self.delayed + (self.in_flight if running == 0 else 0)


def read_counts(sqs: SQSClient, queue_url: str) -> QueueCounts:
    """The queue's approximate visible, delayed and in-flight counts, in one call."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesDelayed",
            "ApproximateNumberOfMessagesNotVisible",
        ],
    )["Attributes"]
    return QueueCounts(
        visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
        delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
        in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
    )


def count_running(ecs: ECSClient, settings: Settings) -> int:
    """This queue's workers whose task is PENDING or RUNNING (desired status RUNNING).

    Stops counting at MAX_TASKS: beyond it nothing is started whatever the exact number.
    """
    running = 0
    paginator = ecs.get_paginator("list_tasks")
    pages = paginator.paginate(
        cluster=settings.cluster, startedBy=settings.started_by, desiredStatus="RUNNING"
    )
    for page in pages:
        running += len(page.get("taskArns", []))
        if running >= settings.max_tasks:
            break
    return running


def client_token(seed: str, provider_index: int, call_index: int) -> str:
    """A RunTask clientToken (at most 64 printable ASCII characters) for one planned call."""
    return f"{seed[:48]}-{provider_index}-{call_index}"


def is_capacity_failure(reason: str) -> bool:
    """RunTask failure reasons that another capacity provider may not share.

    Fargate (Spot) answers "Capacity is unavailable at this time..."; EC2 placement answers
    `RESOURCE:CPU`, `RESOURCE:MEMORY`, `RESOURCE:ENI` and the like.
    """
    return "capacity" in reason.lower() or reason.upper().startswith("RESOURCE:")


@dataclass
class Launch:
    """What the RunTask calls did: tasks started per provider, calls made, what went wrong.

    `fallbacks` explains each move to the next provider; `failures` what stayed undone.
    """

    started: dict[str, int] = field(default_factory=dict)
    task_arns: list[str] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    calls: int = 0

    @property
    def total(self) -> int:
        return sum(self.started.values())


class _Stop(Exception):
    """No further RunTask call can help in this invocation."""


def start_tasks(
    ecs: ECSClient, settings: Settings, count: int, seed: str, sleep: Callable[[float], None]
) -> Launch:
    """Start `count` tasks, Spot first; returns what was started and what failed, never raises."""
    launch = Launch()
    missing = count
    try:
        for provider_index, provider in enumerate(settings.capacity_providers):
            call_index = 0
            while missing > 0:
                size = min(RUN_TASK_MAX_COUNT, missing)
                token = client_token(seed, provider_index, call_index)
                call_index += 1
                started, fall_back = _run(ecs, settings, provider, size, token, sleep, launch)
                missing -= started
                if fall_back:
                    break
            if missing == 0:
                break
    except _Stop:
        pass
    if missing > 0:
        reasons = launch.failures or launch.fallbacks
        launch.failures.append(
            f"{missing} of {count} task(s) not started"
            + (f" (last: {reasons[-1]})" if reasons else "")
        )
    return launch


def _run(
    ecs: ECSClient,
    settings: Settings,
    provider: str,
    size: int,
    token: str,
    sleep: Callable[[float], None],
    launch: Launch,
) -> tuple[int, bool]:
    """One RunTask call (retried while throttled): tasks started, and whether to fall back."""
    last = "no attempt made"
    for attempt in range(RUN_TASK_ATTEMPTS):
        if attempt:
            sleep(backoff(attempt))
        launch.calls += 1
        try:
            response = ecs.run_task(**run_task_request(settings, provider, size, token))
        except (ClientError, BotoCoreError) as exc:
            if error_code(exc) == "ConflictException":
                launch.failures.append(
                    f"{provider}: clientToken {token} was used by an earlier delivery of this "
                    f"event ({describe(exc)}); not starting more"
                )
                raise _Stop from None
            if is_transient(exc):
                last = describe(exc)
                continue
            launch.failures.append(f"{provider}: {describe(exc)}")
            raise _Stop from None
        return _record(response, provider, size, launch)
    launch.fallbacks.append(f"{provider}: {last} after {RUN_TASK_ATTEMPTS} attempts")
    return 0, True


def _record(
    response: RunTaskResponseTypeDef, provider: str, size: int, launch: Launch
) -> tuple[int, bool]:
    tasks = response.get("tasks", [])
    launch.task_arns.extend(task["taskArn"] for task in tasks)
    if tasks:
        launch.started[provider] = launch.started.get(provider, 0) + len(tasks)
    reasons = sorted({str(f.get("reason", "unknown")) for f in response.get("failures", [])})
    if len(tasks) >= size:
        return len(tasks), False
    why = "; ".join(reasons) or "no reason given"
    note = f"{provider}: {size - len(tasks)} of {size} not started ({why})"
    if any(is_capacity_failure(reason) for reason in reasons):
        launch.fallbacks.append(note)
        return len(tasks), True
    launch.failures.append(note)
    raise _Stop


def run_task_request(settings: Settings, provider: str, count: int, token: str) -> dict[str, Any]:
    """The RunTask parameters for `count` workers of this queue on one capacity provider."""
    request: dict[str, Any] = {
        "cluster": settings.cluster,
        "taskDefinition": settings.task_definition,
        "count": count,
        "capacityProviderStrategy": [{"capacityProvider": provider, "weight": 1, "base": 0}],
        "startedBy": settings.started_by,
        "clientToken": token,
        "overrides": settings.overrides(),
        "tags": [
            {"key": "spotdrain:queue", "value": settings.queue_name},
            {"key": "spotdrain:started-by", "value": settings.started_by},
        ],
    }
    if settings.subnets:
        vpc: dict[str, Any] = {
            "subnets": list(settings.subnets),
            "assignPublicIp": settings.assign_public_ip,
        }
        if settings.security_groups:
            vpc["securityGroups"] = list(settings.security_groups)
        request["networkConfiguration"] = {"awsvpcConfiguration": vpc}
    if settings.platform_version:
        request["platformVersion"] = settings.platform_version
    return request
