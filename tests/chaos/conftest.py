"""Fixtures of the chaos scenarios: a world for a mixed run, made of the other suites' fixtures
(ganesha from tests/sidecar, the refresh table and gateway endpoint from tests/refresh)."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.chaos.end_state import verify
from tests.chaos.mix import MAX_RECEIVES, Feeder, Workload, World, make_workload
from tests.conftest import QueueFactory, unique
from tests.refresh.conftest import (  # noqa: F401 - fixtures, used by name
    RefreshTable,
    dynamodb,
    dynamodb_url,
    gateway,
    refresh_table,
)
from tests.sidecar.conftest import ganesha, nfs_destination, world  # noqa: F401 - fixtures
from tests.support.ganesha import Ganesha
from tests.support.storage_gateway import StorageGatewayEndpoint
from tests.support.worker_process import WorkerProcess

StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def seed() -> int:
    """CHAOS_SEED, or a fresh one; printed (shown with the output of a failed test)."""
    value = int(os.environ.get("CHAOS_SEED") or random.randrange(2**32))
    print(f"chaos seed: {value} (rerun with CHAOS_SEED={value})")
    return value


@pytest.fixture
def mixed_world(
    s3: Any,
    make_queue: QueueFactory,
    refresh_table: RefreshTable,  # noqa: F811 - the fixture imported above
    gateway: StorageGatewayEndpoint,  # noqa: F811
    ganesha: Ganesha,  # noqa: F811
) -> World:
    return new_world(s3, make_queue, refresh_table, gateway, ganesha, max_receive=MAX_RECEIVES)


def new_world(
    s3: Any,
    make_queue: QueueFactory,
    table: RefreshTable,
    endpoint: StorageGatewayEndpoint,
    server: Ganesha,
    *,
    max_receive: int,
) -> World:
    """A fresh bucket (with a file share on it) and queue, beside the table and the export."""
    bucket = unique("mix")
    s3.create_bucket(Bucket=bucket)
    return World(
        bucket=bucket,
        export=server.export_dir,
        queue=make_queue(visibility=30, max_receive=max_receive),
        table=table,
        gateway=endpoint,
        share_arn=endpoint.add_share(bucket),
        sidecar_env=nfs_destination(server).env,
    )


@dataclass
class Run:
    """One mixed run: its world, workload and feeder, and the end-state check."""

    world: World
    workload: Workload
    feeder: Feeder
    clients: dict[str, Any]

    def problems(self, *, dead_letter_repeats: bool = False) -> list[str]:
        return verify(
            self.world,
            self.workload,
            self.feeder.join(),
            dead_letter_repeats=dead_letter_repeats,
            **self.clients,
        )


@pytest.fixture
def mixed_run(
    mixed_world: World,
    s3: Any,
    sqs: Any,
    dynamodb: Any,  # noqa: F811
    seed: int,
) -> Callable[..., Run]:
    """make(jobs=, large=, rate=, copies=) -> a Run whose feeder is not started yet."""

    def make(*, jobs: int, rate: float, large: int = 0, copies: int = 1) -> Run:
        workload = make_workload(mixed_world, s3, random.Random(seed), jobs=jobs, large=large)
        feeder = Feeder(sqs, mixed_world.queue.url, workload.items, rate=rate, copies=copies)
        return Run(mixed_world, workload, feeder, {"s3": s3, "sqs": sqs, "dynamodb": dynamodb})

    return make


def wait_all(workers: list[WorkerProcess], *, timeout: float = 180) -> str:
    """Wait for every worker; describe those that did not exit 0 ('' when all did)."""
    codes = [w.wait(timeout=timeout) for w in workers]
    failed = [(w, code) for w, code in zip(workers, codes, strict=True) if code != 0]
    return "; ".join(
        f"worker {w.pid} exited {code}: {w.stderr()[-3000:]} {w.lines[-5:]}" for w, code in failed
    )


def wait_for_a_receive(sqs: Any, queue_url: str, *, timeout: float) -> None:
    """Until the count of messages in flight rises (someone received), or `timeout` seconds."""

    def in_flight() -> int:
        name = "ApproximateNumberOfMessagesNotVisible"
        return int(
            sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[name])["Attributes"][name]
        )

    before = in_flight()
    deadline = time.monotonic() + timeout
    while in_flight() <= before and time.monotonic() < deadline:
        time.sleep(0.05)


def redelivered(workers: list[WorkerProcess]) -> int:
    """Messages settled on a second or later delivery: work a kill interrupted (or a lease
    it left behind) was taken up again."""
    return sum(1 for w in workers for e in w.events("message.done") if e.get("attempt", 1) > 1)
