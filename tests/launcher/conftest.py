"""Launcher fixtures: moto's in-process mock (boto3 only), a Fargate-ready ECS cluster, queues.

moto's ECS runs Fargate tasks only when the cluster has the FARGATE and FARGATE_SPOT capacity
providers, the VPC has DNS support and hostnames, the subnets and security group are real
moto resources and the containers carry cpu and memory (ENVIRONMENT.md).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from launcher.aws import CLIENT_CONFIG
from launcher.handler import Runtime
from launcher.settings import Settings

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


@dataclass(frozen=True)
class Cluster:
    name: str
    task_definition: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]


@pytest.fixture
def cluster(aws: None) -> Cluster:
    ec2 = boto3.client("ec2", region_name=REGION)
    ecs = boto3.client("ecs", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsSupport={"Value": True})
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(
        GroupName=unique("workers"), Description="spotdrain workers", VpcId=vpc
    )["GroupId"]
    name = unique("cluster")
    ecs.create_cluster(clusterName=name, capacityProviders=["FARGATE", "FARGATE_SPOT"])
    task_definition = ecs.register_task_definition(
        family=unique("spotdrain"),
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": CONTAINER,
                "image": "spotdrain:latest",
                "cpu": 256,
                "memory": 512,
                "essential": True,
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    return Cluster(name, task_definition, (subnet,), (group,))


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
