"""A queue at a glance: its counts, its oldest message's age, its dead letters, its workers."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from launcher.settings import queue_name

if TYPE_CHECKING:  # the stubs are a test dependency only
    from types_boto3_cloudwatch import CloudWatchClient
    from types_boto3_ecs import ECSClient
    from types_boto3_ecs.type_defs import TaskTypeDef
    from types_boto3_sqs import SQSClient

COUNT_NAMES = {
    "visible": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}
AGE_WINDOW = timedelta(minutes=5)
# ECS's task lifecycle: before RUNNING, and on the way out (while desired RUNNING, briefly).
PENDING_STATES = frozenset({"PROVISIONING", "PENDING", "ACTIVATING"})
DESCRIBE_TASKS_MAX = 100


@dataclass(frozen=True, kw_only=True)
class Counts:
    url: str
    visible: int
    in_flight: int
    delayed: int


@dataclass(kw_only=True)
class Workers:
    cluster: str
    started_by: str
    running: Counter[str] = field(default_factory=Counter)  # by capacity provider
    pending: Counter[str] = field(default_factory=Counter)
    stopping: Counter[str] = field(default_factory=Counter)

    def providers(self) -> list[str]:
        return sorted(set(self.running) | set(self.pending) | set(self.stopping))


def counts(sqs: SQSClient, url: str) -> tuple[Counts, dict[str, str]]:
    """The queue's approximate counts, and its attributes (the redrive policy among them)."""
    answer = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    attributes: dict[str, str] = {name: value for name, value in answer["Attributes"].items()}
    numbers = {key: int(attributes.get(name, "0")) for key, name in COUNT_NAMES.items()}
    return Counts(url=url, **numbers), attributes


def dead_letter_url(sqs: SQSClient, attributes: dict[str, str]) -> str | None:
    """The dead-letter queue of the queue's redrive policy, if it has one."""
    raw = attributes.get("RedrivePolicy")
    if not raw:
        return None
    try:
        arn = str(json.loads(raw)["deadLetterTargetArn"])
    except (ValueError, KeyError, TypeError):
        return None
    parts = arn.split(":")
    if len(parts) != 6:
        return None
    response = sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])
    return str(response["QueueUrl"])


def oldest_age(
    cloudwatch: CloudWatchClient, url: str, *, now: datetime | None = None
) -> int | None:
    """ApproximateAgeOfOldestMessage's newest datapoint of the last 5 minutes, in seconds;
    None when CloudWatch has none (a new or idle queue, or no metrics where it runs)."""
    end = (now or datetime.now(UTC)).replace(microsecond=0)
    response = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "age",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/SQS",
                        "MetricName": "ApproximateAgeOfOldestMessage",
                        "Dimensions": [{"Name": "QueueName", "Value": queue_name(url)}],
                    },
                    "Period": 60,
                    "Stat": "Maximum",
                },
                "ReturnData": True,
            }
        ],
        StartTime=end - AGE_WINDOW,
        EndTime=end,
        ScanBy="TimestampDescending",
    )
    points = [
        point
        for result in response.get("MetricDataResults", [])
        for point in zip(result.get("Timestamps", []), result.get("Values", []), strict=False)
    ]
    if not points:
        return None
    return int(max(points)[1])


def workers(ecs: ECSClient, cluster: str, started_by: str) -> Workers:
    """The tasks this queue's launcher started that ECS wants running, by state and provider."""
    arns: list[str] = []
    pages = ecs.get_paginator("list_tasks").paginate(
        cluster=cluster, startedBy=started_by, desiredStatus="RUNNING"
    )
    for page in pages:
        arns.extend(page.get("taskArns", []))
    found = Workers(cluster=cluster, started_by=started_by)
    for start in range(0, len(arns), DESCRIBE_TASKS_MAX):
        tasks = ecs.describe_tasks(cluster=cluster, tasks=arns[start : start + DESCRIBE_TASKS_MAX])
        for task in tasks.get("tasks", []):
            classify(found, task)
    return found


def classify(found: Workers, task: TaskTypeDef) -> None:
    provider = str(task.get("capacityProviderName") or f"({task.get('launchType', 'unknown')})")
    state = str(task.get("lastStatus", ""))
    if state == "RUNNING":
        found.running[provider] += 1
    elif state in PENDING_STATES:
        found.pending[provider] += 1
    else:
        found.stopping[provider] += 1


def workers_document(found: Workers) -> dict[str, Any]:
    return {
        "cluster": found.cluster,
        "started_by": found.started_by,
        "running": sum(found.running.values()),
        "pending": sum(found.pending.values()),
        "stopping": sum(found.stopping.values()),
        "by_capacity_provider": {
            name: {
                "running": found.running[name],
                "pending": found.pending[name],
                "stopping": found.stopping[name],
            }
            for name in found.providers()
        },
    }
