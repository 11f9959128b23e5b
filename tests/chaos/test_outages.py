"""Dependencies failing during a mixed run: the NFS server restarted, the AWS endpoint gone and
back, throttling answers from S3, DynamoDB and Storage Gateway. The workers retry, recover
and the end state is exactly the expected one.

An AWS outage is made with tests/support/faulty_proxy.py (`outage()` drops every connection
until `recover()`), not by restarting moto: moto keeps everything in memory, so a restarted
moto has lost every queue, bucket and table, which no real AWS outage does.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import pytest

from tests.chaos.conftest import Run, StartWorker, wait_all
from tests.support.faulty_proxy import FaultyProxy
from tests.support.ganesha import Ganesha
from tests.support.moto_server import MotoServer

pytestmark = [pytest.mark.slow, pytest.mark.nfs]

JOBS = 60


def test_ganesha_crashing_and_restarting_mid_run_loses_no_sidecar(
    mixed_run: Callable[..., Run], start_worker: StartWorker, ganesha: Ganesha, seed: int
) -> None:
    rng = random.Random(seed)
    run = mixed_run(jobs=JOBS, rate=15)
    env = run.world.env(WORKER_IDLE_EXIT_SECONDS=4)
    workers = [start_worker(**env) for _ in range(2)]
    run.feeder.start()
    for stop in (ganesha.kill, ganesha.stop):  # a crash, then an orderly restart
        time.sleep(rng.uniform(0.5, 2.0))
        stop()
        time.sleep(rng.uniform(1.0, 3.0))  # past SIDECAR_NFS_TIMEOUT_MS: calls fail meanwhile
        ganesha.start()
    assert wait_all(workers) == "", f"seed {seed}"
    assert run.problems() == [], f"seed {seed}"


def test_the_aws_endpoint_gone_and_back_mid_run_loses_nothing(
    mixed_run: Callable[..., Run], start_worker: StartWorker, moto: MotoServer, seed: int
) -> None:
    rng = random.Random(seed)
    run = mixed_run(jobs=JOBS, rate=15)
    with FaultyProxy(moto.url) as proxy:
        env = run.world.env(WORKER_IDLE_EXIT_SECONDS=4, AWS_ENDPOINT_URL=proxy.url)
        workers = [start_worker(**env) for _ in range(2)]
        for worker in workers:  # mid-run: a worker that cannot reach AWS at start exits 1
            worker.wait_for("worker.started", timeout=60)
        run.feeder.start()
        time.sleep(rng.uniform(0.5, 3.0))
        proxy.outage()
        threading.Timer(rng.uniform(3.0, 5.0), proxy.recover).start()
        assert wait_all(workers) == "", f"seed {seed}"
    assert proxy.counts["dropped"] > 0
    assert run.problems() == [], f"seed {seed}"


def test_throttled_s3_dynamodb_and_storage_gateway_are_retried_and_lose_nothing(
    mixed_run: Callable[..., Run], start_worker: StartWorker, moto: MotoServer, seed: int
) -> None:
    run = mixed_run(jobs=JOBS, rate=15)
    run.world.gateway.throttle(3)
    run.world.gateway.busy(2)
    with FaultyProxy(moto.url) as proxy:
        proxy.throttle(0.25, seed=seed)
        env = run.world.env(
            WORKER_IDLE_EXIT_SECONDS=4,
            AWS_ENDPOINT_URL_S3=proxy.url,
            AWS_ENDPOINT_URL_DYNAMODB=proxy.url,
        )
        workers = [start_worker(**env) for _ in range(2)]
        run.feeder.start()
        assert wait_all(workers) == "", f"seed {seed}"
    assert proxy.counts["throttled"] > 0
    refused = {c.error for c in run.world.gateway.recorded("RefreshCache", ok=False)}
    assert refused == {"ThrottlingException", "InvalidGatewayRequestException"}
    assert run.problems() == [], f"seed {seed}"
