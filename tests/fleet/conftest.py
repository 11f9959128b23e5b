"""Fixtures of the fleet scenarios: a Fargate-ready moto cluster, and fleets on it whose
workers drain the chaos suite's mixed world (CSV, refresh and sidecar jobs)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.chaos.conftest import Run, new_world, seed  # noqa: F401 - seed: a fixture
from tests.chaos.mix import Feeder, World, make_workload
from tests.conftest import QueueFactory, unique
from tests.refresh.conftest import (  # noqa: F401 - fixtures, used by name
    RefreshTable,
    dynamodb,
    dynamodb_url,
    gateway,
    refresh_table,
)
from tests.sidecar.conftest import ganesha, nfs_destination, world  # noqa: F401 - fixtures
from tests.support.fleet import ClusterSpec, Fleet, make_cluster
from tests.support.ganesha import Ganesha
from tests.support.moto_server import MotoServer
from tests.support.storage_gateway import StorageGatewayEndpoint

MakeFleet = Callable[..., Fleet]


@pytest.fixture
def cluster(moto: MotoServer) -> ClusterSpec:
    return make_cluster(moto.url, unique("fleet"))


@pytest.fixture
def make_fleet(moto: MotoServer, cluster: ClusterSpec) -> Iterator[MakeFleet]:
    """make(queue_url=..., **options) -> a Fleet, not yet started; stopped afterwards."""
    made: list[Fleet] = []

    def make(*, queue_url: str, worker_options: dict[str, Any], **options: Any) -> Fleet:
        fleet = Fleet(
            moto=moto,
            cluster=cluster,
            queue_url=queue_url,
            worker_options={k: str(v) for k, v in worker_options.items()},
            **options,
        )
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        fleet.__exit__(None, None, None)


def split_world_env(mixed: World, **extra: Any) -> tuple[dict[str, str], dict[str, str]]:
    """A world's worker environment as a deployment splits it: the options the launcher
    forwards to each task (CSV_, REFRESH_, SIDECAR_, WORKER_, DLQ_URL), and the rest, which
    the task definition holds (the queue itself comes from the launcher)."""
    env = {k: str(v) for k, v in mixed.env(**extra).items()}
    env.pop("QUEUE_URL")
    forwarded = ("CSV_", "REFRESH_", "SIDECAR_", "WORKER_")
    options = {k: v for k, v in env.items() if k.startswith(forwarded) or k == "DLQ_URL"}
    task = {k: v for k, v in env.items() if k not in options}
    return options, task


@pytest.fixture
def fleet_run(
    s3: Any,
    sqs: Any,
    dynamodb: Any,  # noqa: F811 - the fixture imported above
    make_queue: QueueFactory,
    refresh_table: RefreshTable,  # noqa: F811
    gateway: StorageGatewayEndpoint,  # noqa: F811
    ganesha: Ganesha,  # noqa: F811
    seed: int,  # noqa: F811
) -> Callable[..., Run]:
    """make(jobs=, rate=, large=, max_receive=) -> a Run of the chaos suite's mix (CSV,
    refresh and sidecar jobs, planted poison) on a queue whose redrive policy allows
    `max_receive` receives; its feeder is not started yet."""

    def make(*, jobs: int, rate: float, large: int = 0, max_receive: int) -> Run:
        mixed = new_world(
            s3, make_queue, refresh_table, gateway, ganesha, max_receive=max_receive
        )
        workload = make_workload(mixed, s3, random.Random(seed), jobs=jobs, large=large)
        feeder = Feeder(sqs, mixed.queue.url, workload.items, rate=rate)
        return Run(mixed, workload, feeder, {"s3": s3, "sqs": sqs, "dynamodb": dynamodb})

    return make
