"""Drain speed of `python -m worker` beside a plain boto3 loop, on moto and on an in-memory SQS.

Scenarios (issue 2), each run for the loop and for the worker on a fresh, pre-filled queue:
  (a) moto server, 200 no-op probe jobs: moto is the bottleneck; shows we are not slower
      and use no more requests per message;
  (b) bench/fake_sqs.py, 20,000 no-op probe jobs: the client is the bottleneck;
  (c) bench/fake_sqs.py, 2,000 probe jobs that each await 20 ms of simulated I/O.

    .venv/bin/python bench/drain.py                      # the issue's sizes (about 2 minutes)
    .venv/bin/python bench/drain.py --quick              # 100 / 2,000 / 300 messages
    .venv/bin/python bench/drain.py --only b --noop 5000 --worker-env WORKER_CONCURRENCY=32
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import boto3
from botocore.config import Config
from fake_sqs import FakeSqsProcess

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
SYSTEM_ATTRIBUTES = ["ApproximateReceiveCount", "SentTimestamp"]  # what the worker asks for
HOW = (
    "How: window = loop: first ReceiveMessage sent .. last DeleteMessageBatch answered; worker: "
    "its 'worker.started' log line (written just before its receivers start) .. the log line of "
    "its last deleted message; so Python start-up, client creation and the idle-exit wait are "
    "left out. CPU = user+sys of the client process in the window (loop: thread_time of its "
    "thread; worker: /proc/PID/stat, 10 ms ticks). req/msg = SQS calls the endpoint counted in "
    "the window (fake: its own counters; moto: its request recorder); 'whole run' adds the "
    "start-up check and the end-of-queue detection (loop: one empty receive; worker: idle-exit "
    "polls). server = the endpoint's CPU use in the window (100% = one core: then it, not the "
    "client, is the bottleneck)."
)


class Endpoint(Protocol):
    url: str
    pid: int

    def requests(self) -> Counter[str]: ...
    def stop(self) -> None: ...


class MotoProcess:
    """`moto.server` as a child process with its request recorder on, for counting calls."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._recording = Path(tempfile.mkdtemp(prefix="bench-moto-")) / "requests.jsonl"
        env = {**os.environ, "MOTO_RECORDER_FILEPATH": str(self._recording)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.pid = self.process.pid
        deadline = time.monotonic() + 30
        while True:
            try:
                start = urllib.request.Request(
                    self.url + "/moto-api/recorder/start-recording", method="POST"
                )
                urllib.request.urlopen(start, timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)

    def requests(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        with self._recording.open() as recording:
            for line in recording:
                headers = {k.lower(): v for k, v in json.loads(line)["headers"].items()}
                counts[headers.get("x-amz-target", "?").removeprefix("AmazonSQS.")] += 1
        return counts

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@dataclass
class Run:
    who: str
    messages: int
    window_s: float = 0.0
    cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)
    requests_total: dict[str, int] = field(default_factory=dict)
    cpu_total_s: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.messages / self.window_s if self.window_s else 0.0

    @property
    def cpu_ms_per_message(self) -> float:
        return self.cpu_s * 1000 / self.messages

    @property
    def requests_per_message(self) -> float:
        return sum(self.requests.values()) / self.messages

    @property
    def server_busy(self) -> float:
        return self.server_cpu_s / self.window_s if self.window_s else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "messages_per_s": round(self.rate, 1),
            "cpu_ms_per_message": round(self.cpu_ms_per_message, 4),
            "requests_per_message": round(self.requests_per_message, 4),
            "server_busy": round(self.server_busy, 3),
        }


def process_cpu(pid: int) -> float:
    """user+sys seconds of a live process, all its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def sqs_client(url: str) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 4}),
    )


def fill(client: Any, name: str, messages: int, seconds: float) -> str:
    url = str(
        client.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    )
    body = json.dumps({"job": "probe", "seconds": seconds or 0})
    for start in range(0, messages, 10):
        entries = [{"Id": str(i), "MessageBody": body} for i in range(min(10, messages - start))]
        failed = client.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")
        if failed:
            raise RuntimeError(f"filling {name} failed: {failed}")
    return url


def run_loop(client: Any, url: str, endpoint: Endpoint, messages: int, seconds: float) -> Run:
    """The baseline: receive ten, handle them one by one, delete them in one batch."""
    run = Run("loop", messages)
    before, server_before = endpoint.requests(), process_cpu(endpoint.pid)
    started, cpu_started = time.perf_counter(), time.thread_time()
    ended, cpu_ended, server_ended, handled = started, cpu_started, server_before, 0
    while True:
        batch = client.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=60,
            MessageSystemAttributeNames=SYSTEM_ATTRIBUTES,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            break
        for message in batch:
            job = json.loads(message["Body"])
            if job.get("job") != "probe":
                raise RuntimeError(f"unexpected body {message['Body']!r}")
            if job.get("seconds"):
                time.sleep(job["seconds"])
        client.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
        handled += len(batch)
        ended, cpu_ended = time.perf_counter(), time.thread_time()
        if handled >= messages:
            server_ended = process_cpu(endpoint.pid)
    total = endpoint.requests() - before
    run.requests_total = dict(total)
    total["ReceiveMessage"] -= 1  # the final, empty receive lies after the window
    run.requests = dict(+total)
    run.window_s, run.cpu_s = ended - started, cpu_ended - cpu_started
    run.server_cpu_s = server_ended - server_before
    if handled != messages:
        run.problems.append(f"handled {handled} of {messages}")
    return run


def worker_env(url: str, endpoint: Endpoint, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WORKER_"))}
    env.update(
        AWS_ENDPOINT_URL=endpoint.url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        QUEUE_URL=url,
        WORKER_PROBE_JOBS="true",
        SPOT_IMDS="off",
        WORKER_WAIT_SECONDS="1",
        WORKER_IDLE_EXIT_SECONDS="1",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def run_worker(
    url: str, endpoint: Endpoint, messages: int, extra: dict[str, str], timeout: float
) -> Run:
    """`python -m worker` until it exits by itself; marks taken as its log lines arrive."""
    run = Run("worker", messages)
    before, server_before = endpoint.requests(), process_cpu(endpoint.pid)
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 (read after the process exits)
    process = subprocess.Popen(
        [sys.executable, "-m", "worker"],
        cwd=ROOT,
        env=worker_env(url, endpoint, extra),
        stdout=subprocess.PIPE,
        stderr=stderr,
    )
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    marks: dict[str, tuple[float, Counter[str], float]] = {}
    started_at, done_at, outcomes = None, None, Counter[str]()
    assert process.stdout is not None
    for raw in process.stdout:
        if b'"message.done"' in raw:
            event = json.loads(raw)
            outcomes[event["outcome"]] += 1
            done_at = event["timestamp"]
            if sum(outcomes.values()) == messages:
                marks["end"] = (
                    process_cpu(process.pid),
                    endpoint.requests(),
                    process_cpu(endpoint.pid),
                )
        elif b'"worker.started"' in raw:
            started_at = json.loads(raw)["timestamp"]
            marks["start"] = (
                process_cpu(process.pid),
                endpoint.requests(),
                process_cpu(endpoint.pid),
            )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    watchdog.cancel()
    run.cpu_total_s = usage.ru_utime + usage.ru_stime
    run.requests_total = dict(endpoint.requests() - before)
    if process.returncode != 0:
        stderr.seek(0)
        run.problems.append(f"exit {process.returncode}: {stderr.read().decode()[-2000:]}")
    if outcomes != Counter({"acked": messages}):
        run.problems.append(f"outcomes {dict(outcomes)}")
    if started_at is None or done_at is None or "start" not in marks or "end" not in marks:
        run.problems.append("no complete window in the worker's log")
        return run
    run.window_s = (
        datetime.fromisoformat(done_at) - datetime.fromisoformat(started_at)
    ).total_seconds()
    run.cpu_s = marks["end"][0] - marks["start"][0]
    run.requests = dict(marks["end"][1] - marks["start"][1])
    run.server_cpu_s = marks["end"][2] - marks["start"][2]
    del server_before
    return run


def backlog(client: Any, url: str) -> dict[str, str]:
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return {k: v for k, v in attributes.items() if v != "0"}


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    endpoint: str  # "moto" or "fake"
    messages: int
    seconds: float  # each job's simulated I/O
    rate_target: float  # worker's messages/s over the loop's, at least
    cpu_target: float | None  # worker's CPU per message over the loop's, at most


def run_scenario(scenario: Scenario, args: argparse.Namespace) -> dict[str, Run]:
    endpoint: Endpoint = MotoProcess() if scenario.endpoint == "moto" else FakeSqsProcess()
    try:
        client = sqs_client(endpoint.url)
        runs: dict[str, Run] = {}
        for who in ("loop", "worker"):
            name = f"bench-{scenario.key}-{who}-{int(time.time())}"
            print(f"  filling {name} with {scenario.messages} messages", flush=True)
            url = fill(client, name, scenario.messages, scenario.seconds)
            time.sleep(0.5)  # let the filler's own work settle first
            if who == "loop":
                run = run_loop(client, url, endpoint, scenario.messages, scenario.seconds)
            else:
                extra = dict(item.split("=", 1) for item in args.worker_env)
                run = run_worker(url, endpoint, scenario.messages, extra, args.timeout)
            left = backlog(client, url)
            if left:
                run.problems.append(f"queue not empty afterwards: {left}")
            print(f"  {who}: {run.rate:.0f} msgs/s in {run.window_s:.2f} s", flush=True)
            runs[who] = run
        return runs
    finally:
        endpoint.stop()


def ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs else float("inf")


def report(scenario: Scenario, loop: Run, worker: Run) -> dict[str, Any]:
    rate = ratio(worker.rate, loop.rate)
    cpu = ratio(worker.cpu_ms_per_message, loop.cpu_ms_per_message)
    req = ratio(worker.requests_per_message, loop.requests_per_message)
    checks = [("msgs/s", rate, f">= {scenario.rate_target:g}x", rate >= scenario.rate_target)]
    if scenario.cpu_target is not None:
        checks.append(
            ("CPU ms/msg", cpu, f"<= {scenario.cpu_target:g}x", cpu <= scenario.cpu_target)
        )
    checks.append(("req/msg", req, "<= 1x", req <= 1.0))
    print(f"\n({scenario.key}) {scenario.title}")
    print(f"  {'':18}{'msgs/s':>9}{'CPU ms/msg':>12}{'req/msg':>9}{'window s':>10}{'server':>8}")
    for label, run in (("plain boto3 loop", loop), ("worker", worker)):
        print(
            f"  {label:18}{run.rate:>9.0f}{run.cpu_ms_per_message:>12.3f}"
            f"{run.requests_per_message:>9.3f}{run.window_s:>10.2f}{run.server_busy:>8.0%}"
        )
    print(f"  {'worker / loop':18}{rate:>8.2f}x{cpu:>11.2f}x{req:>8.2f}x")
    for label, run in (("loop", loop), ("worker", worker)):
        whole = (
            f", whole process {run.cpu_total_s:.2f} s CPU" if run.cpu_total_s is not None else ""
        )
        print(f"  {label} requests in window {run.requests}; whole run {run.requests_total}{whole}")
        for problem in run.problems:
            print(f"  {label} PROBLEM: {problem}")
    for name, value, target, met in checks:
        print(f"  target {name:11}{value:7.2f}x  {target:8} {'met' if met else 'MISSED'}")
    return {
        "scenario": asdict(scenario),
        "loop": loop.summary(),
        "worker": worker.summary(),
        "checks": [
            {"check": n, "ratio": round(v, 3), "target": t, "met": m} for n, v, t, m in checks
        ],
        "ok": all(m for *_, m in checks) and not loop.problems and not worker.problems,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moto", type=int, default=200, help="messages in (a), on moto (200)")
    parser.add_argument("--noop", type=int, default=20_000, help="no-op messages in (b) (20,000)")
    parser.add_argument("--io", type=int, default=2_000, help="messages in (c) (2,000)")
    parser.add_argument(
        "--io-seconds", type=float, default=0.02, help="simulated I/O per job in (c)"
    )
    parser.add_argument("--quick", action="store_true", help="smaller runs: 100 / 2,000 / 300")
    parser.add_argument("--only", default="abc", help="scenarios to run, for example 'bc'")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="extra environment for the worker (repeatable), e.g. WORKER_CONCURRENCY=32",
    )
    parser.add_argument(
        "--timeout", type=float, default=600, help="seconds before a worker is killed"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.moto, args.noop, args.io = 100, 2_000, 300
    scenarios = [
        Scenario(
            "a",
            f"moto server, {args.moto} no-op jobs (moto-bound: not slower)",
            "moto",
            args.moto,
            0.0,
            1.0,
            None,
        ),
        Scenario("b", f"in-memory SQS, {args.noop} no-op jobs", "fake", args.noop, 0.0, 1.5, 1.2),
        Scenario(
            "c",
            f"in-memory SQS, {args.io} jobs awaiting {args.io_seconds * 1000:g} ms",
            "fake",
            args.io,
            args.io_seconds,
            10.0,
            None,
        ),
    ]
    print(
        f"bench/drain.py: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
        f"worker env: {' '.join(args.worker_env) or 'defaults'}"
    )
    print(HOW)
    records = []
    for scenario in scenarios:
        if scenario.key in args.only:
            print(f"\n== ({scenario.key}) {scenario.title}", flush=True)
            runs = run_scenario(scenario, args)
            records.append(report(scenario, runs["loop"], runs["worker"]))
    print(
        f"\nload average at the end {os.getloadavg()[0]:.2f} (the CPUs are shared with other work)"
    )
    if args.json:
        args.json.write_text(json.dumps(records, indent=2))
    return 0 if all(record["ok"] for record in records) else 1


if __name__ == "__main__":
    sys.exit(main())
