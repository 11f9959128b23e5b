"""A fleet on one machine: moto's ECS tasks run as real worker processes, the launcher is
invoked as the deployed stack invokes it.

- The agent plays ECS's: for every task that RunTask created in moto (desired status
  RUNNING), it starts `python -m worker` with the task definition's environment and the
  task's container overrides. When a process ends, it stops the task in moto and delivers
  the ECS Task State Change (STOPPED) to the launcher, as the stack's EventBridge rule does.
- The clock plays the reconcile schedule: a scheduled event every `reconcile_seconds` (a
  scaled-down minute).
- `reclaim()` plays Fargate Spot taking tasks back: the task's desired status becomes
  STOPPED, its process gets SIGTERM, and SIGKILL after `stop_timeout` (the task
  definition's stopTimeout).
- `capacity` plays the capacity providers: a provider marked out answers RunTask with
  Fargate's capacity failure, through a proxy in front of moto's ECS that speaks ECS's
  JSON protocol; everything else reaches moto.

Launcher invocations are serialised, so no sizing lease is needed (tests/launcher/test_lease.py
runs them at once against one). The launcher's own code runs unchanged
(`launcher.handler.handle`) with boto3 clients on moto.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3

from launcher.aws import CLIENT_CONFIG
from launcher.handler import Runtime, handle
from launcher.settings import Settings, forwarded_environment
from tests.launcher.samples import scheduled_event, task_stopped_event
from tests.support.faulty_proxy import FaultyProxy
from tests.support.moto_server import MotoServer
from tests.support.worker_process import WorkerProcess, worker_env

CONTAINER = "worker"
NO_CAPACITY = (
    "Capacity is unavailable at this time. Please try again later or in a different "
    "availability zone"
)
_RUN_TASK = "AmazonEC2ContainerServiceV20141113.RunTask"


@dataclass(frozen=True)
class ClusterSpec:
    """A moto cluster that runs Fargate tasks (docs/testing.md), and its subnets."""

    name: str
    task_definition: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]


def make_cluster(endpoint_url: str | None, name: str) -> ClusterSpec:
    """`endpoint_url` None: the AWS the environment names (moto in-process, under mock_aws)."""
    ec2 = boto3.client("ec2", endpoint_url=endpoint_url)
    ecs = boto3.client("ecs", endpoint_url=endpoint_url)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsSupport={"Value": True})
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=name, Description="workers", VpcId=vpc)["GroupId"]
    ecs.create_cluster(clusterName=name, capacityProviders=["FARGATE", "FARGATE_SPOT"])
    task_definition = ecs.register_task_definition(
        family=name,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="1024",
        memory="2048",
        containerDefinitions=[
            {"name": CONTAINER, "image": "spotdrain", "cpu": 1024, "memory": 2048}
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    return ClusterSpec(name, task_definition, (subnet,), (group,))


class Capacity:
    """Which capacity providers have room; RunTask on one without answers as Fargate does."""

    def __init__(self) -> None:
        self.out: set[str] = set()
        self.refused: list[str] = []  # providers whose RunTask was refused, in order

    def answer(self, target: str, body: bytes) -> tuple[int, bytes] | None:
        if target != _RUN_TASK:
            return None
        request = json.loads(body)
        providers = [s["capacityProvider"] for s in request.get("capacityProviderStrategy", [])]
        if not set(providers) & self.out:
            return None
        self.refused.extend(providers)
        failures = [{"arn": "", "reason": NO_CAPACITY} for _ in range(int(request["count"]))]
        return 200, json.dumps({"tasks": [], "failures": failures}).encode()


@dataclass
class Task:
    arn: str
    provider: str
    process: WorkerProcess
    started_at: float
    ended_at: float | None = None
    stop_code: str = "EssentialContainerExited"
    stopped_reason: str = "Essential container in task exited"

    def seconds(self, now: float) -> float:
        return (self.ended_at or now) - self.started_at


@dataclass
class Fleet:
    """The launcher, the agent and the clock of one simulated deployment."""

    moto: MotoServer
    cluster: ClusterSpec
    queue_url: str
    worker_options: dict[str, str]  # what the launcher forwards: CSV_, WORKER_, DLQ_URL...
    task_environment: dict[str, str] = field(default_factory=dict)  # the task definition's
    reconcile_seconds: float | None = 2.0  # None: no schedule
    stop_events: bool = True  # deliver ECS task-stop events to the launcher
    max_tasks: int = 4
    messages_per_task: int = 50
    stop_timeout: float = 10.0
    start_delay: float = 0.0  # how long ECS takes from RunTask to the process starting
    poll_seconds: float = 0.1
    capacity: Capacity = field(default_factory=Capacity)
    tasks: dict[str, Task] = field(default_factory=dict)
    invocations: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    most_running: int = 0  # the largest number of RUNNING tasks the agent saw at once
    errors: list[BaseException] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _pending: dict[str, float] = field(default_factory=dict)  # task ARN -> when to start it

    def __post_init__(self) -> None:
        self._proxy = FaultyProxy(self.moto.url, answer=self.capacity.answer)
        self._ecs = boto3.client("ecs", endpoint_url=self.moto.url, config=CLIENT_CONFIG)
        settings = Settings(
            queue_url=self.queue_url,
            cluster=self.cluster.name,
            task_definition=self.cluster.task_definition,
            subnets=self.cluster.subnets,
            security_groups=self.cluster.security_groups,
            max_tasks=self.max_tasks,
            messages_per_task=self.messages_per_task,
            container_name=CONTAINER,
            worker_environment=forwarded_environment(self.worker_options),
        )
        self.runtime = Runtime(
            settings=settings,
            sqs=boto3.client("sqs", endpoint_url=self.moto.url, config=CLIENT_CONFIG),
            ecs=None,
        )

    # ---- running it

    def __enter__(self) -> Fleet:
        self._proxy.__enter__()
        self.runtime.ecs = boto3.client("ecs", endpoint_url=self._proxy.url, config=CLIENT_CONFIG)
        self._spawn(self._agent, "fleet-agent")
        if self.reconcile_seconds:
            self._spawn(self._clock, "fleet-clock")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(30)
        for task in self.tasks.values():
            task.process.kill()
        self._proxy.__exit__()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        def guarded() -> None:
            try:
                target()
            except BaseException as exc:  # reported by check(), never swallowed
                self.errors.append(exc)

        thread = threading.Thread(target=guarded, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """One launcher invocation, never two at once (a reserved concurrency of 1)."""
        with self._lock:
            summary = handle(event, self.runtime)
        self.invocations.append((str(summary["trigger"]), summary))
        return summary

    @contextmanager
    def between_invocations(self) -> Iterator[None]:
        """Hold every launcher invocation back while the block runs."""
        with self._lock:
            yield

    def size_now(self) -> dict[str, Any]:
        """What an upload's event does for the fleet: `{"jobs": []}` (the queue is fed apart)."""
        return self.invoke({"jobs": []})

    def _clock(self) -> None:
        assert self.reconcile_seconds
        while not self._stopping.wait(self.reconcile_seconds):
            self.invoke(scheduled_event())

    def _agent(self) -> None:
        while not self._stopping.wait(self.poll_seconds):
            running = self._running_arns()
            self.most_running = max(self.most_running, len(running))
            now = time.monotonic()
            for arn in running - set(self.tasks) - set(self._pending):
                self._pending[arn] = now + self.start_delay
            for arn, due in list(self._pending.items()):
                if due <= now:
                    del self._pending[arn]
                    if arn in running:  # not stopped before it got going
                        self._start(arn)
            for task in list(self.tasks.values()):
                if task.ended_at is None and task.process.process.poll() is not None:
                    self._stopped(task)

    def _running_arns(self) -> set[str]:
        arns: set[str] = set()
        pages = self._ecs.get_paginator("list_tasks").paginate(
            cluster=self.cluster.name, desiredStatus="RUNNING"
        )
        for page in pages:
            arns.update(page["taskArns"])
        return arns

    def _describe(self, arn: str) -> dict[str, Any]:
        [task] = self._ecs.describe_tasks(cluster=self.cluster.name, tasks=[arn])["tasks"]
        return dict(task)

    def _start(self, arn: str) -> None:
        described = self._describe(arn)
        overrides = {
            item["name"]: item["value"]
            for container in described.get("overrides", {}).get("containerOverrides", [])
            if container.get("name") == CONTAINER
            for item in container.get("environment", [])
        }
        env = worker_env(self.moto.env(), **{**self.task_environment, **overrides})
        process = WorkerProcess(env)
        provider = str(described.get("capacityProviderName", ""))
        self.tasks[arn] = Task(arn, provider, process, started_at=time.monotonic())

    def _stopped(self, task: Task) -> None:
        task.ended_at = time.monotonic()
        task.process.wait(5)
        described = self._describe(task.arn)
        if described["desiredStatus"] != "STOPPED":
            self._ecs.stop_task(cluster=self.cluster.name, task=task.arn, reason="exited")
            described = self._describe(task.arn)
        if not self.stop_events:
            return
        self.invoke(
            task_stopped_event(described, stop_code=task.stop_code, reason=task.stopped_reason)
        )

    # ---- what happens to it

    def reclaim(self, arns: list[str] | None = None) -> list[str]:
        """Fargate Spot takes these tasks (default: every live one) back at once."""
        victims = [t for t in self.live() if arns is None or t.arn in arns]
        for task in victims:
            task.stop_code = "SpotInterruption"
            task.stopped_reason = "Your Spot Task was interrupted."
            self._ecs.stop_task(cluster=self.cluster.name, task=task.arn, reason="Spot")
            task.process.signal(signal.SIGTERM)
            timer = threading.Timer(self.stop_timeout, _kill_if_alive, args=(task.process,))
            timer.daemon = True
            timer.start()
        return [task.arn for task in victims]

    def kill(self, arn: str) -> None:
        """The task's process dies at once (out of memory, a host failure)."""
        self.tasks[arn].process.process.send_signal(signal.SIGKILL)

    def live(self) -> list[Task]:
        return [t for t in self.tasks.values() if t.ended_at is None]

    def wait_until(self, condition: Callable[[], bool], *, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            self.check()
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {what}; {self.describe()}")
            time.sleep(0.05)

    def wait_idle(self, *, timeout: float) -> None:
        """Until no task runs, none waits to start and the queue is empty."""
        self.wait_until(
            lambda: not self.live() and not self._pending and self.queue_empty(),
            timeout=timeout,
            what="the fleet drained the queue and stopped",
        )

    def queue_empty(self) -> bool:
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        attributes = self.runtime.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=names
        )["Attributes"]
        return all(int(attributes[name]) == 0 for name in names)

    def check(self) -> None:
        if self.errors:
            raise AssertionError(f"the fleet's agent or clock failed: {self.errors[0]!r}")

    # ---- what it did

    def task_seconds(self) -> float:
        now = time.monotonic()
        return sum(task.seconds(now) for task in self.tasks.values())

    def run_task_calls(self) -> int:
        return sum(int(summary["run_task_calls"]) for _, summary in self.invocations)

    def count(self, trigger: str) -> int:
        return sum(1 for kind, _ in self.invocations if kind == trigger)

    def exit_codes(self) -> list[int | None]:
        return [task.process.process.returncode for task in self.tasks.values()]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for task in self.tasks.values() for e in task.process.events(name)]

    def describe(self) -> str:
        live = [(t.arn.rsplit("/", 1)[-1][:8], t.provider) for t in self.live()]
        return (
            f"{len(self.tasks)} task(s) started, live {live}, {len(self._pending)} pending, "
            f"{len(self.invocations)} invocation(s), last: {self.invocations[-1:]}"
        )


def _kill_if_alive(process: WorkerProcess) -> None:
    if process.process.poll() is None:
        process.process.send_signal(signal.SIGKILL)
