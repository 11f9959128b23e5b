"""`spotdrain status`: a queue's counts, its oldest message's age, its dead letters, its workers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from launcher.settings import default_started_by
from tests.conftest import QueueFactory, unique
from tests.ops.conftest import Put, Run, dead_letter
from tests.support.fleet import ClusterSpec, make_cluster
from tests.support.moto_server import MotoServer
from worker.ops.status import Workers, classify, oldest_age

Spotdrain = Any


def fill(sqs: Any, url: str, *, visible: int, in_flight: int = 0, delayed: int = 0) -> None:
    for i in range(visible + in_flight):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    for _ in range(in_flight):
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=300)
    for i in range(delayed):
        sqs.send_message(QueueUrl=url, MessageBody=f"d{i}", DelaySeconds=600)


def test_status_prints_counts_dead_letters_and_an_unknown_age(
    spotdrain: Spotdrain, sqs: Any, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    fill(sqs, queue.url, visible=4, in_flight=2, delayed=1)
    put_dead_letters(queue.dlq_url, [dead_letter(body="x", reason="boom")])
    run: Run = spotdrain("status", "--queue-url", queue.url, "--dlq-url", queue.dlq_url)
    assert run.code == 0, run.err
    print(run.out)
    assert run.out.splitlines() == [
        f"Queue {queue.url}",
        "  visible               4",
        "  in flight             2",
        "  delayed               1",
        "  oldest message  unknown",
        "  dead letters          1",
        f"Dead-letter queue {queue.dlq_url}",
    ]


def test_status_json_has_the_counts_and_a_null_age_when_cloudwatch_has_no_datapoint(
    spotdrain: Spotdrain, sqs: Any, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    fill(sqs, queue.url, visible=3, in_flight=1)
    put_dead_letters(queue.dlq_url, [dead_letter(body=str(i), reason="boom") for i in range(2)])
    run = spotdrain("status", "--json", "--queue-url", queue.url, "--dlq-url", queue.dlq_url)
    assert run.code == 0, run.err
    assert run.json() == {
        "queue": {
            "url": queue.url,
            "visible": 3,
            "in_flight": 1,
            "delayed": 0,
            "oldest_message_age_seconds": None,
        },
        "dead_letters": {"url": queue.dlq_url, "count": 2, "visible": 2, "in_flight": 0},
        "workers": None,
    }


def test_status_counts_dead_letters_in_flight_too(
    spotdrain: Spotdrain, sqs: Any, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    put_dead_letters(queue.dlq_url, [dead_letter(body=str(i), reason="r") for i in range(3)])
    sqs.receive_message(QueueUrl=queue.dlq_url, MaxNumberOfMessages=1, VisibilityTimeout=300)
    run = spotdrain("--json", "status", "--queue-url", queue.url, "--dlq-url", queue.dlq_url)
    assert run.json()["dead_letters"] == {
        "url": queue.dlq_url,
        "count": 3,
        "visible": 2,
        "in_flight": 1,
    }


def test_status_finds_the_dead_letter_queue_in_the_redrive_policy(
    spotdrain: Spotdrain, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    put_dead_letters(queue.dlq_url, [dead_letter(body="x", reason="boom")])
    run = spotdrain("status", "--json", "--queue-url", queue.url)
    assert run.json()["dead_letters"]["url"] == queue.dlq_url
    assert run.json()["dead_letters"]["count"] == 1


def run_tasks(moto: MotoServer, spec: ClusterSpec, started_by: str, provider: str, n: int) -> None:
    ecs = boto3.client("ecs", endpoint_url=moto.url)
    response = ecs.run_task(
        cluster=spec.name,
        taskDefinition=spec.task_definition,
        count=n,
        startedBy=started_by,
        capacityProviderStrategy=[{"capacityProvider": provider, "weight": 1}],
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": list(spec.subnets),
                "securityGroups": list(spec.security_groups),
            }
        },
    )
    assert len(response["tasks"]) == n, response["failures"]


@pytest.fixture
def cluster(moto: MotoServer, tasks_stay_running: None) -> ClusterSpec:
    return make_cluster(moto.url, unique("ops"))


def test_status_counts_this_queues_workers_by_capacity_provider(
    spotdrain: Spotdrain, moto: MotoServer, make_queue: QueueFactory, cluster: ClusterSpec
) -> None:
    queue = make_queue()
    run_tasks(moto, cluster, default_started_by(queue.url), "FARGATE_SPOT", 2)
    run_tasks(moto, cluster, default_started_by(queue.url), "FARGATE", 1)
    run = spotdrain("status", "--queue-url", queue.url, "--cluster", cluster.name)
    assert run.code == 0, run.err
    print(run.out)
    assert run.out.splitlines()[-5:] == [
        f"Workers in cluster {cluster.name} (startedBy {default_started_by(queue.url)})",
        "  CAPACITY PROVIDER  RUNNING  PENDING",
        "  FARGATE                  1        0",
        "  FARGATE_SPOT             2        0",
        "  total                    3        0",
    ]


def test_status_json_leaves_out_tasks_started_for_another_queue(
    spotdrain: Spotdrain, moto: MotoServer, make_queue: QueueFactory, cluster: ClusterSpec
) -> None:
    queue, other = make_queue(), make_queue()
    run_tasks(moto, cluster, default_started_by(queue.url), "FARGATE_SPOT", 2)
    run_tasks(moto, cluster, default_started_by(other.url), "FARGATE_SPOT", 3)
    run = spotdrain("status", "--json", "--queue-url", queue.url, "--cluster", cluster.name)
    assert run.json()["workers"] == {
        "cluster": cluster.name,
        "started_by": default_started_by(queue.url),
        "running": 2,
        "pending": 0,
        "stopping": 0,
        "by_capacity_provider": {"FARGATE_SPOT": {"running": 2, "pending": 0, "stopping": 0}},
    }


def test_status_started_by_overrides_the_value_derived_from_the_queue(
    spotdrain: Spotdrain, moto: MotoServer, make_queue: QueueFactory, cluster: ClusterSpec
) -> None:
    queue = make_queue()
    run_tasks(moto, cluster, "custom-fleet", "FARGATE", 1)
    run = spotdrain(
        "status",
        "--json",
        "--queue-url",
        queue.url,
        "--cluster",
        cluster.name,
        "--started-by",
        "custom-fleet",
    )
    assert run.json()["workers"]["running"] == 1
    assert run.json()["workers"]["started_by"] == "custom-fleet"


def test_tasks_before_running_count_as_pending_and_after_as_stopping() -> None:
    found = Workers(cluster="c", started_by="s")
    for state in ("PROVISIONING", "PENDING", "ACTIVATING", "RUNNING", "DEACTIVATING"):
        classify(found, {"lastStatus": state, "capacityProviderName": "FARGATE_SPOT"})
    classify(found, {"lastStatus": "RUNNING", "launchType": "EC2"})
    assert (found.pending, found.running, found.stopping) == (
        {"FARGATE_SPOT": 3},
        {"FARGATE_SPOT": 1, "(EC2)": 1},
        {"FARGATE_SPOT": 1},
    )


class Datapoints:
    """A CloudWatch client that has datapoints (moto's never has any for AWS/SQS)."""

    def __init__(self, points: list[tuple[datetime, float]]) -> None:
        self.points = points
        self.requests: list[dict[str, Any]] = []

    def get_metric_data(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        return {
            "MetricDataResults": [
                {
                    "Id": "age",
                    "Timestamps": [p[0] for p in self.points],
                    "Values": [p[1] for p in self.points],
                }
            ]
        }


def test_oldest_age_is_the_newest_datapoint_of_the_queues_metric() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    cloudwatch = Datapoints([(now - timedelta(minutes=1), 95.0), (now - timedelta(minutes=3), 40)])
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs"
    assert oldest_age(cloudwatch, url, now=now) == 95
    [request] = cloudwatch.requests
    metric = request["MetricDataQueries"][0]["MetricStat"]["Metric"]
    assert metric == {
        "Namespace": "AWS/SQS",
        "MetricName": "ApproximateAgeOfOldestMessage",
        "Dimensions": [{"Name": "QueueName", "Value": "jobs"}],
    }
    assert request["EndTime"] - request["StartTime"] == timedelta(minutes=5)
