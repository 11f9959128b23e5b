"""Scale out: 1, 2 and 4 worker processes drain 1,000 mixed jobs, beside moto's own ceiling.

    .venv/bin/python bench/scale.py                       # 1,000 jobs per run (several minutes)
    .venv/bin/python bench/scale.py --jobs 300 --workers 1 4 --seed 7

Each run gets a fresh bucket, queue, refresh table and ganesha export, and the mix of
tests/chaos/mix.py: CSV conversions 40% (job envelopes, S3, SNS and EventBridge events, which
are refresh changes too), refresh changes 25%, sidecars on the export 35%, one message in 25
poisoned, plus --large CSVs whose outputs are multipart uploads. The mix is fed in batches
of ten whenever the queue holds fewer than --depth visible messages (moto's SQS slows as it
deepens), to N `python -m worker` processes started beforehand. After each run the end state
is checked (tests/chaos/end_state.py): every output once and right, the DLQ holds exactly
the poison, nothing left anywhere.

  ours  msg/s = messages fed / (last of them settled by any worker - first sent); the
        refresh_due messages the workers send themselves are extra work, not counted, and
        the last window's delayed refresh (REFRESH_WINDOW_SECONDS=2) is not waited for;
  bare  as many messages (plain text of about the mix's size) fed the same way to N threads
        that only receive and delete them (boto3, batches of ten, no job at all): what
        moto's SQS alone allows on this machine. No worker can beat it.
Both share the machine's CPUs with moto, ganesha and each other (2 cores here). The CPU
columns say where the time goes: CPU time over the drain (first sent to last settled) as a
share of one core; moto is one Python process (about 100% is all it can do), "workers" adds
up every worker process (200% would be both cores).
Exit status 0 when every run left exactly the expected end state.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, sys.path starts with bench/, whose csv.py would shadow the standard csv
# module (boto3 imports it): the project root takes its place, before any other import.
sys.path[0] = str(ROOT)

import argparse  # noqa: E402 - after the path fix
import contextlib  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import boto3  # noqa: E402

from bench.drain import process_cpu  # noqa: E402 - after the path fix
from bench.refresh import make_queue  # noqa: E402
from tests.chaos.end_state import verify  # noqa: E402
from tests.chaos.mix import Feeder, Item, Workload, World, make_workload  # noqa: E402
from tests.conftest import TestQueue  # noqa: E402
from tests.refresh.conftest import RefreshTable, iso_time  # noqa: E402
from tests.sidecar.conftest import nfs_destination  # noqa: E402
from tests.support.ganesha import Ganesha, unavailable  # noqa: E402
from tests.support.moto_server import MotoServer  # noqa: E402
from tests.support.storage_gateway import StorageGatewayEndpoint  # noqa: E402
from tests.support.worker_process import WorkerProcess, worker_env  # noqa: E402

KEY = {"AttributeName": "target"}


class Bench:
    """The servers every run shares: moto, the Storage Gateway endpoint, a work directory."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.moto = MotoServer(log_path=workdir / "moto.log")
        self.moto.start()
        self.clients = {name: self.client(name) for name in ("s3", "sqs", "dynamodb")}
        self.gateway = StorageGatewayEndpoint().start()
        self.runs = 0

    def client(self, service: str) -> Any:
        env = self.moto.env()
        return boto3.client(
            service,
            endpoint_url=self.moto.url,
            region_name=env["AWS_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )

    def close(self) -> None:
        self.gateway.stop()
        self.moto.stop()

    def world(self, ganesha: Ganesha) -> World:
        self.runs += 1
        name = f"scale{self.runs}-{int(time.time())}"
        s3, sqs, dynamodb = self.clients["s3"], self.clients["sqs"], self.clients["dynamodb"]
        s3.create_bucket(Bucket=name)
        dynamodb.create_table(
            TableName=name,
            KeySchema=[{**KEY, "KeyType": "HASH"}],
            AttributeDefinitions=[{**KEY, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        url = make_queue(sqs, name)
        dlq_url = sqs.get_queue_url(QueueName=f"{name}-dlq")["QueueUrl"]
        return World(
            bucket=name,
            export=ganesha.export_dir,
            queue=TestQueue(url=url, dlq_url=dlq_url, name=name),
            table=RefreshTable(name, self.moto.url),
            gateway=self.gateway,
            share_arn=self.gateway.add_share(name),
            sidecar_env=nfs_destination(ganesha).env,
        )


class CpuWatch:
    """CPU time of some processes, sampled every 0.2 s while they live; `cores(a, b)` is their
    CPU between two moments (time.time()) over the wall time: 1.0 = one core kept busy."""

    def __init__(self, pids: list[int]) -> None:
        self._last = dict.fromkeys(pids, 0.0)
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        for pid in self._last:
            with contextlib.suppress(OSError, IndexError):  # gone: its last reading stands
                self._last[pid] = process_cpu(pid)
        self.samples.append((time.time(), sum(self._last.values())))

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def cores(self, began: float, ended: float) -> float:
        first = min(self.samples, key=lambda sample: abs(sample[0] - began))
        last = min(self.samples, key=lambda sample: abs(sample[0] - ended))
        return (last[1] - first[1]) / max(last[0] - first[0], 1e-9)


@dataclass(frozen=True)
class Cpu:
    moto: float
    workers: float


def run_ours(bench: Bench, workers: int, args: argparse.Namespace) -> tuple[float, Cpu, list[str]]:
    ganesha = Ganesha(bench.workdir / f"ganesha{bench.runs + 1}")
    ganesha.start()
    try:
        world = bench.world(ganesha)
        workload = make_workload(
            world, bench.clients["s3"], random.Random(args.seed), jobs=args.jobs, large=args.large
        )
        env = worker_env(bench.moto.env(), **world.env(WORKER_IDLE_EXIT_SECONDS=3))
        processes = [WorkerProcess(dict(env)) for _ in range(workers)]
        for process in processes:  # start-up is not part of the drain
            process.wait_for("worker.started", timeout=120)
        assert bench.moto.process is not None
        moto_cpu = CpuWatch([bench.moto.process.pid])
        worker_cpu = CpuWatch([p.pid for p in processes])
        feeder = feed(bench, world.queue.url, workload, args.depth)
        codes = [p.wait(timeout=3600) for p in processes]
        moto_cpu.stop()
        worker_cpu.stop()
        sent = feeder.join()
        fed = {copy.message_id for copy in sent}  # not the refresh_due messages
        settled = [
            iso_time(e)
            for p in processes
            for e in p.events("message.done")
            if e["message_id"] in fed
        ]
        seconds = max(settled) - sent[0].at
        cpu = Cpu(
            moto_cpu.cores(sent[0].at, max(settled)), worker_cpu.cores(sent[0].at, max(settled))
        )
        problems = verify(world, workload, sent, **bench.clients)
        problems += [f"a worker exited {code}" for code in codes if code != 0]
        return len(sent) / seconds, cpu, problems
    finally:
        ganesha.stop()


def feed(bench: Bench, queue_url: str, workload: Workload, depth: int) -> Feeder:
    feeder = Feeder(bench.clients["sqs"], queue_url, workload.items, rate=1e6, max_depth=depth)
    return feeder.start()


def run_bare(bench: Bench, consumers: int, args: argparse.Namespace) -> tuple[float, float]:
    """The same number of bodies through N receive-and-delete threads, fed the same way."""
    sqs = bench.clients["sqs"]
    name = f"bare{consumers}-{int(time.time())}"
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    bodies = make_bodies(args.jobs)
    done: list[float] = []
    lock = threading.Lock()

    def consume() -> None:
        client = bench.client("sqs")
        while True:
            with lock:
                if len(done) >= len(bodies.items):
                    return
            batch = client.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            if batch:
                entries = [
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
                ]
                client.delete_message_batch(QueueUrl=url, Entries=entries)
                with lock:
                    done.extend([time.time()] * len(batch))

    threads = [threading.Thread(target=consume) for _ in range(consumers)]
    assert bench.moto.process is not None
    moto_cpu = CpuWatch([bench.moto.process.pid])
    for thread in threads:
        thread.start()
    sent = feed(bench, url, bodies, args.depth).join()
    for thread in threads:
        thread.join()
    moto_cpu.stop()
    return len(sent) / (max(done) - sent[0].at), moto_cpu.cores(sent[0].at, max(done))


def make_bodies(count: int) -> Workload:
    """Bodies for the bare consumers: plain text of the mix's size (nothing parses them)."""
    return Workload([Item("poison", f"bare {i:05} " + "x" * 300) for i in range(count)], {})


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--large", type=int, default=2, help="CSVs with multipart outputs")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--depth", type=int, default=100, help="visible messages at most")
    parser.add_argument("--seed", type=int, default=20261122)
    args = parser.parse_args()
    reason = unavailable()
    if reason:
        print(f"cannot run: {reason}")
        return 1
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as workdir:
        bench = Bench(Path(workdir))
        try:
            rows = []
            for workers in args.workers:
                ours, ours_cpu, problems = run_ours(bench, workers, args)
                bare, bare_cpu = run_bare(bench, workers, args)
                rows.append((workers, ours, ours_cpu, bare, bare_cpu, problems))
                print(f"{workers} workers: {ours:.1f} msg/s, bare {bare:.1f}", flush=True)
        finally:
            bench.close()
    first = rows[0][1]
    print(f"\n{args.jobs} mixed jobs + {args.large} large CSVs, depth <= {args.depth}, ", end="")
    print(f"seed {args.seed}")
    print(
        "workers  ours msg/s  moto CPU  workers CPU  bare msg/s  moto CPU  ours/bare  vs first"
        "  end state"
    )
    for workers, ours, ours_cpu, bare, bare_cpu, problems in rows:
        state = "exact" if not problems else f"{len(problems)} problems: {problems[:3]}"
        figures = (
            f"{ours:10.1f}  {ours_cpu.moto:8.0%}  {ours_cpu.workers:11.0%}  {bare:10.1f}  "
            f"{bare_cpu:8.0%}  {ours / bare:9.0%}  {ours / first:7.2f}x"
        )
        print(f"{workers:7}  {figures}  {state}")
    return 0 if all(not problems for *_, problems in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
