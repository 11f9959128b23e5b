"""Launcher fixtures: moto's in-process mock (boto3 only), a Fargate-ready ECS cluster, queues.

moto's ECS runs Fargate tasks only when the cluster has the FARGATE and FARGATE_SPOT capacity
providers, the VPC has DNS support and hostnames, the subnets and security group are real
moto resources and the containers carry cpu and memory (docs/testing.md).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from launcher.aws import CLIENT_CONFIG
from launcher.handler import Runtime
from launcher.settings import Settings
from tests.support.fleet import ClusterSpec, make_cluster

REGION = "us-east-1"
CONTAINER = "worker"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto in-process; endpoint variables (set by the worker tests' server) are removed."""
    for name in list(os.environ):
        if name.startswith("AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


# The launcher's tests and the fleet's use the same Fargate-ready cluster.
Cluster = ClusterSpec


@pytest.fixture
def cluster(aws: None) -> Cluster:
    return make_cluster(None, unique("cluster"))


QueueFactory = Callable[..., str]


@pytest.fixture
def make_queue(aws: None) -> QueueFactory:
    sqs = boto3.client("sqs", region_name=REGION)

    def make(**attributes: str) -> str:
        return str(sqs.create_queue(QueueName=unique("jobs"), Attributes=attributes)["QueueUrl"])

    return make


RuntimeFactory = Callable[..., Runtime]


@pytest.fixture
def make_runtime(cluster: Cluster, make_queue: QueueFactory) -> RuntimeFactory:
    """A Runtime on a fresh queue (or `queue_url=`), with settings overridable by keyword."""

    def make(*, queue_url: str | None = None, **overrides: Any) -> Runtime:
        settings = Settings(
            queue_url=queue_url or make_queue(),
            cluster=cluster.name,
            task_definition=cluster.task_definition,
            subnets=cluster.subnets,
            security_groups=cluster.security_groups,
        )
        return Runtime(
            settings=replace(settings, **overrides),
            sqs=boto3.client("sqs", region_name=REGION, config=CLIENT_CONFIG),
            ecs=boto3.client("ecs", region_name=REGION, config=CLIENT_CONFIG),
            sleep=lambda _seconds: None,
        )

    return make


def record_calls(client: Any, operation: str) -> list[dict[str, Any]]:
    """Collect the parameters of every `operation` call the client makes from now on."""
    calls: list[dict[str, Any]] = []
    service = client.meta.service_model.service_id.hyphenize()

    def remember(params: dict[str, Any], **_: Any) -> None:
        calls.append(dict(params))

    client.meta.events.register(f"provide-client-params.{service}.{operation}", remember)
    return calls


def queue_depth(runtime: Runtime) -> int:
    attributes = runtime.sqs.get_queue_attributes(
        QueueUrl=runtime.settings.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def receive_bodies(runtime: Runtime) -> list[str]:
    """Every body on the runtime's queue (received, not deleted: tests end with the mock)."""
    bodies: list[str] = []
    while True:
        messages = runtime.sqs.receive_message(
            QueueUrl=runtime.settings.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=300
        ).get("Messages", [])
        if not messages:
            return bodies
        bodies.extend(message["Body"] for message in messages)


def running_tasks(runtime: Runtime) -> list[dict[str, Any]]:
    settings = runtime.settings
    arns = runtime.ecs.list_tasks(
        cluster=settings.cluster, startedBy=settings.started_by, desiredStatus="RUNNING"
    )["taskArns"]
    if not arns:
        return []
    return list(
        runtime.ecs.describe_tasks(cluster=settings.cluster, tasks=arns, include=["TAGS"])["tasks"]
    )
