"""What metrics cost on the log stream: bytes and EMF records per 10,000 messages, on and off.

One run, two workers, the same work: N probe jobs (20 ms of simulated I/O each) drained from
bench/fake_sqs.py (an in-memory SQS endpoint), once with METRICS=emf and once with
METRICS=off. For each: the worker's whole stdout (what awslogs would ship to CloudWatch
Logs), the number of EMF records in it, and both per 10,000 messages. A per-message design
(one EMF record per message, as a per-invocation library emits) is shown beside them,
computed from the same run: the log as measured with metrics off plus one record the size
of ours per message.

    python bench/metrics.py [--messages 10000] [--interval 60]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
# `python bench/metrics.py` puts bench/ first on sys.path, where bench/csv.py would shadow the
# standard csv module: move it last.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from fake_sqs import FakeSqsProcess  # noqa: E402

ROOT = HERE.parent


@dataclass
class Run:
    name: str
    seconds: float
    log_bytes: int
    log_lines: int
    records: int
    record_bytes: int
    succeeded: int


def fill(url: str, messages: int) -> str:
    client = boto3.client(
        "sqs",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 4}),
    )
    queue = str(client.create_queue(QueueName=f"metrics-{time.time_ns()}")["QueueUrl"])
    body = json.dumps({"job": "probe", "seconds": 0.02})
    for start in range(0, messages, 10):
        entries = [{"Id": str(i), "MessageBody": body} for i in range(min(10, messages - start))]
        client.send_message_batch(QueueUrl=queue, Entries=entries)
    return queue


def drain(endpoint: str, queue: str, metrics: str, interval: float, timeout: float) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WORKER_"))}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        QUEUE_URL=queue,
        WORKER_PROBE_JOBS="true",
        WORKER_CONCURRENCY="32",
        WORKER_WAIT_SECONDS="1",
        WORKER_IDLE_EXIT_SECONDS="2",
        SPOT_IMDS="off",
        METRICS=metrics,
        METRICS_INTERVAL_SECONDS=str(interval),
        PYTHONPATH=str(ROOT),
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"worker exited {result.returncode}: {result.stderr[-2000:]!r}")
    lines = result.stdout.splitlines()
    records = [line for line in lines if line.startswith(b'{"_aws"')]
    [exit_line] = [json.loads(x) for x in lines if b'"worker.exit"' in x]
    return Run(
        name=f"METRICS={metrics}",
        seconds=seconds,
        log_bytes=len(result.stdout),
        log_lines=len(lines),
        records=len(records),
        record_bytes=sum(len(r) + 1 for r in records),
        succeeded=int(exit_line["succeeded"]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=60.0, help="METRICS_INTERVAL_SECONDS")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    endpoint = FakeSqsProcess()
    try:
        runs = []
        for mode in ("emf", "off"):
            queue = fill(endpoint.url, args.messages)
            runs.append(drain(endpoint.url, queue, mode, args.interval, args.timeout))
    finally:
        endpoint.stop()
    on, off = runs
    per = 10_000 / args.messages
    mean_record = on.record_bytes / max(on.records, 1)
    print(f"{args.messages} probe jobs of 20 ms, METRICS_INTERVAL_SECONDS={args.interval:g}")
    print(f"{'':24} {'seconds':>8} {'log bytes/10k':>14} {'lines/10k':>10} {'EMF records/10k':>16}")
    for run in runs:
        if run.succeeded != args.messages:
            print(f"  {run.name}: only {run.succeeded} of {args.messages} succeeded")
        print(
            f"{run.name:24} {run.seconds:8.1f} {run.log_bytes * per:14,.0f} "
            f"{run.log_lines * per:10,.0f} {run.records * per:16,.1f}"
        )
    per_message_bytes = off.log_bytes + args.messages * mean_record
    print(
        f"{'one record per message':24} {'':>8} {per_message_bytes * per:14,.0f} "
        f"{(off.log_lines + args.messages) * per:10,.0f} {10_000:16,.1f}"
    )
    extra = (on.log_bytes - off.log_bytes) / max(off.log_bytes, 1)
    print(
        f"metrics add {on.log_bytes - off.log_bytes:,} bytes ({extra:.2%} of the log) in "
        f"{on.records} records of {mean_record:.0f} bytes on average"
    )


if __name__ == "__main__":
    main()
