"""Drain speed of `python -m worker` beside a plain boto3 loop, on moto and on an in-memory SQS.

Scenarios (issue 2), each run for the loop and then the worker on a fresh, pre-filled queue:
  (a) moto server, 200 no-op probe jobs: moto is the bottleneck, so this shows only that
      we are not slower and use no more requests per message;
  (b) bench/fake_sqs.py, 20,000 no-op probe jobs: the client is the bottleneck;
  (c) bench/fake_sqs.py, 2,000 probe jobs that each await 20 ms of simulated I/O.

    .venv/bin/python bench/drain.py                  # the issue's sizes (about two minutes)
    .venv/bin/python bench/drain.py --quick          # 100 / 2,000 / 300 messages
    .venv/bin/python bench/drain.py --only b --noop 5000 --repeat 3 \
        --worker-env WORKER_CONCURRENCY=32 --worker-root /tmp/old-checkout
Exit status 0 when every target is met.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# `python bench/drain.py` puts bench/ first on sys.path, where bench/csv.py would shadow the
# standard library's csv (importlib.metadata imports it): look in bench/ last.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from datetime import datetime  # noqa: E402
from typing import Any, Protocol  # noqa: E402

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from fake_sqs import FakeSqsProcess  # noqa: E402

ROOT = HERE.parent
TICK = os.sysconf("SC_CLK_TCK")
SYSTEM_ATTRIBUTES = ["ApproximateReceiveCount", "SentTimestamp"]  # as the worker asks
HOW = """\
How it is measured, for the loop and the worker alike:
- window: loop, from its first ReceiveMessage to its last DeleteMessageBatch answered; worker,
  from its 'worker.started' log line (its receivers start right after) to the line of its last
  deleted message. Python start-up, client creation and the end-of-queue wait (the loop's
  final empty receive, the worker's idle-exit checks) are outside it. msgs/s = N / window.
- CPU ms/msg: user+sys CPU of the client in the window / N (loop: its thread's thread_time;
  worker: its process's /proc/PID/stat, 10 ms ticks).
- req/msg: SQS requests answered in the window / N, counted by bench/fake_sqs.py (in front of
  moto it runs as a counting proxy); 'whole run' adds start-up and end-of-queue calls. The
  'Operation (detail)' entries below are subsets: empty receives and partial batches.
- server: the endpoint's CPU use over the window (100% = a whole core: server-bound)."""


class Endpoint(Protocol):
    url: str
    pid: int  # the process that serves SQS, for its CPU use

    def requests(self) -> Counter[str]: ...
    def stop(self) -> None: ...


class MotoProcess:
    """`moto.server` as a child process, behind bench/fake_sqs.py as a counting proxy."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.pid = self.process.pid
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        self.proxy = FakeSqsProcess(forward=f"http://127.0.0.1:{port}")
        self.url = self.proxy.url

    def requests(self) -> Counter[str]:
        return self.proxy.requests()

    def stop(self) -> None:
        if hasattr(self, "proxy"):
            self.proxy.stop()
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
    def cpu_ms(self) -> float:
        return self.cpu_s * 1000 / self.messages

    @property
    def req(self) -> float:
        calls = (n for op, n in self.requests.items() if " (" not in op)  # not the subsets
        return sum(calls) / self.messages

    @property
    def server_busy(self) -> float:
        return self.server_cpu_s / self.window_s if self.window_s else 0.0

    def summary(self) -> dict[str, Any]:
        figures = {"msgs_per_s": self.rate, "cpu_ms_per_msg": self.cpu_ms, "req_per_msg": self.req}
        return {**asdict(self), **{k: round(v, 4) for k, v in figures.items()}}


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
    attributes = {"VisibilityTimeout": "60"}
    url = str(client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])
    body = json.dumps({"job": "probe", "seconds": seconds or 0})
    for start in range(0, messages, 10):
        entries = [{"Id": str(i), "MessageBody": body} for i in range(min(10, messages - start))]
        failed = client.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")
        if failed:
            raise RuntimeError(f"filling {name} failed: {failed}")
    return url


def run_loop(client: Any, url: str, endpoint: Endpoint, messages: int) -> Run:
    """The baseline: receive ten, handle them one by one, delete them in one batch."""
    run = Run("loop", messages)
    before, server_before = endpoint.requests(), process_cpu(endpoint.pid)
    started, cpu_started = time.perf_counter(), time.thread_time()
    handled, end = 0, (started, cpu_started, before, server_before)
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
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)]
        client.delete_message_batch(QueueUrl=url, Entries=entries)
        handled += len(batch)
        if handled == messages:  # the window ends; the final, empty receive lies after it
            now, cpu = time.perf_counter(), time.thread_time()
            end = (now, cpu, endpoint.requests(), process_cpu(endpoint.pid))
    run.window_s, run.cpu_s = end[0] - started, end[1] - cpu_started
    run.requests, run.server_cpu_s = dict(end[2] - before), end[3] - server_before
    run.requests_total = dict(endpoint.requests() - before)
    if handled != messages:
        run.problems.append(f"handled {handled} of {messages}")
    return run


def run_worker(url: str, endpoint: Endpoint, messages: int, args: argparse.Namespace) -> Run:
    """`python -m worker` until it exits by itself; marks are taken as its log lines arrive."""
    run = Run("worker", messages)
    root = args.worker_root or ROOT
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WORKER_"))}
    env.update(
        AWS_ENDPOINT_URL=endpoint.url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        QUEUE_URL=url,
        WORKER_PROBE_JOBS="true",
        SPOT_IMDS="off",
        WORKER_WAIT_SECONDS="1",
        WORKER_IDLE_EXIT_SECONDS="3",  # its queue checks come every 0.75 s (30 s: 5 s)
        PYTHONPATH=str(root),
    )
    env.update(item.split("=", 1) for item in args.worker_env)
    before = endpoint.requests()
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 (read after the process exits)
    process = subprocess.Popen(
        [sys.executable, "-m", "worker"], cwd=root, env=env, stdout=subprocess.PIPE, stderr=stderr
    )
    watchdog = threading.Timer(args.timeout, process.kill)
    watchdog.start()
    marks: dict[str, tuple[str, float, Counter[str], float]] = {}
    outcomes: Counter[str] = Counter()
    assert process.stdout is not None
    for raw in process.stdout:
        if b'"message.done"' in raw or b'"worker.started"' in raw:
            event = json.loads(raw)
            if event["event"] == "message.done":
                outcomes[event["outcome"]] += 1
            if event["event"] == "worker.started" or sum(outcomes.values()) == messages:
                mark = "start" if event["event"] == "worker.started" else "end"
                cpu, server = process_cpu(process.pid), process_cpu(endpoint.pid)
                marks[mark] = (event["timestamp"], cpu, endpoint.requests(), server)
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
    if "start" not in marks or "end" not in marks:
        run.problems.append("no complete window in the worker's log")
        return run
    (t0, cpu0, req0, srv0), (t1, cpu1, req1, srv1) = marks["start"], marks["end"]
    run.window_s = (datetime.fromisoformat(t1) - datetime.fromisoformat(t0)).total_seconds()
    # Requests from the start, less the start-up checks: a receive answered before the mark
    # was read still counts.
    startup = Counter({op: n for op, n in (req0 - before).items() if op == "GetQueueAttributes"})
    run.cpu_s, run.server_cpu_s = cpu1 - cpu0, srv1 - srv0
    run.requests = dict(req1 - before - startup)
    return run


def backlog(client: Any, url: str) -> dict[str, str]:
    kinds = ("Messages", "MessagesNotVisible", "MessagesDelayed")
    names = ["ApproximateNumberOf" + kind for kind in kinds]
    attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return {k: v for k, v in attributes.items() if v != "0"}


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    endpoint: str  # "moto" or "fake"
    messages: int
    seconds: float  # each job's simulated I/O
    rate_target: float  # the worker's messages/s over the loop's, at least
    cpu_target: float | None  # the worker's CPU per message over the loop's, at most


def run_scenario(scenario: Scenario, args: argparse.Namespace) -> dict[str, list[Run]]:
    if scenario.endpoint == "moto":
        endpoint: Endpoint = MotoProcess()
    else:
        endpoint = FakeSqsProcess(latency_ms=args.latency_ms)
    runs: dict[str, list[Run]] = {"loop": [], "worker": []}
    try:
        client = sqs_client(endpoint.url)
        for attempt in range(args.repeat):
            for who, into in runs.items():
                name = f"bench-{scenario.key}-{who}-{attempt}-{int(time.time())}"
                url = fill(client, name, scenario.messages, scenario.seconds)
                time.sleep(0.5)  # let the filling settle first
                if who == "loop":
                    run = run_loop(client, url, endpoint, scenario.messages)
                else:
                    run = run_worker(url, endpoint, scenario.messages, args)
                left = backlog(client, url)
                if left:
                    run.problems.append(f"queue not empty afterwards: {left}")
                print(f"  {who:6} {run.rate:7.0f} msgs/s {run.cpu_ms:7.3f} CPU ms/msg", flush=True)
                into.append(run)
    finally:
        endpoint.stop()
    return runs


def report(scenario: Scenario, loops: list[Run], workers: list[Run]) -> dict[str, Any]:
    """Print medians over the repeats, the ratios and the targets; return them as a record."""

    def median(runs: list[Run], figure: str) -> float:
        return float(statistics.median(getattr(run, figure) for run in runs))

    figures = ("rate", "cpu_ms", "req", "window_s", "server_busy")
    loop = {f: median(loops, f) for f in figures}
    ours = {f: median(workers, f) for f in figures}
    ratios = {f: ours[f] / loop[f] if loop[f] else float("inf") for f in ("rate", "cpu_ms", "req")}
    checks = [("msgs/s", ratios["rate"], ">=", scenario.rate_target)]
    if scenario.cpu_target is not None:
        checks.append(("CPU ms/msg", ratios["cpu_ms"], "<=", scenario.cpu_target))
    checks.append(("req/msg", ratios["req"], "<=", 1.0))
    repeats = f", median of {len(loops)}" if len(loops) > 1 else ""
    print(f"\n({scenario.key}) {scenario.title}{repeats}")
    print(f"  {'':18}{'msgs/s':>9}{'CPU ms/msg':>12}{'req/msg':>9}{'window s':>10}{'server':>8}")
    for label, row in (("plain boto3 loop", loop), ("worker", ours)):
        print(
            f"  {label:18}{row['rate']:>9.0f}{row['cpu_ms']:>12.3f}{row['req']:>9.3f}"
            f"{row['window_s']:>10.2f}{row['server_busy']:>8.0%}"
        )
    r = ratios
    print(f"  {'worker / loop':18}{r['rate']:>8.2f}x{r['cpu_ms']:>11.2f}x{r['req']:>8.2f}x")
    for label, runs in (("loop", loops), ("worker", workers)):
        last = runs[-1]
        print(f"  {label} requests in window {last.requests}; whole run {last.requests_total}")
        for problem in (p for run in runs for p in run.problems):
            print(f"  {label} PROBLEM: {problem}")
    met = []
    for name, value, sense, target in checks:
        ok = value >= target if sense == ">=" else value <= target
        met.append(ok)
        print(f"  target {name:11}{value:7.2f}x  {sense} {target:g}x  {'met' if ok else 'MISSED'}")
    problems = any(run.problems for run in (*loops, *workers))
    return {
        "scenario": asdict(scenario),
        "loop": [run.summary() for run in loops],
        "worker": [run.summary() for run in workers],
        "ratios": ratios,
        "targets_met": all(met) and not problems,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--moto", type=int, default=200, help="messages in (a), on moto (200)")
    add("--noop", type=int, default=20_000, help="no-op messages in (b) (20,000)")
    add("--io", type=int, default=2_000, help="messages in (c) (2,000)")
    add("--io-seconds", type=float, default=0.02, help="simulated I/O of each job in (c)")
    add("--quick", action="store_true", help="smaller runs: 100 / 2,000 / 300 messages")
    add("--only", default="abc", help="the scenarios to run, for example 'bc'")
    add("--repeat", type=int, default=1, help="run each pair this often; report the medians")
    add("--latency-ms", type=float, default=0.0, help="the in-memory SQS answers this much later")
    add("--worker-env", action="append", default=[], metavar="VAR=VALUE",
        help="extra environment for the worker (repeatable), e.g. WORKER_CONCURRENCY=32")
    add("--worker-root", type=Path, help="run the worker from this checkout (before/after)")
    add("--timeout", type=float, default=600, help="seconds before a worker is killed")
    add("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.moto, args.noop, args.io = 100, 2_000, 300
    io_title = f"{args.io} jobs awaiting {args.io_seconds * 1000:g} ms"
    scenarios = [
        Scenario("a", f"moto, {args.moto} no-op jobs (moto-bound)", "moto", args.moto, 0, 1, None),
        Scenario("b", f"in-memory SQS, {args.noop} no-op jobs", "fake", args.noop, 0, 1.5, 1.2),
        Scenario("c", f"in-memory SQS, {io_title}", "fake", args.io, args.io_seconds, 10.0, None),
    ]
    settings = " ".join(args.worker_env) or "its defaults"
    print(f"bench/drain.py: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"worker from {args.worker_root or ROOT} with {settings}; "
          f"in-memory SQS latency {args.latency_ms:g} ms")
    print(HOW)
    records = []
    for scenario in scenarios:
        if scenario.key in args.only:
            print(f"\n== ({scenario.key}) {scenario.title}", flush=True)
            runs = run_scenario(scenario, args)
            records.append(report(scenario, runs["loop"], runs["worker"]))
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end (the CPUs are shared with others)")
    if args.json:
        args.json.write_text(json.dumps(records, indent=2))
    return 0 if all(record["targets_met"] for record in records) else 1


if __name__ == "__main__":
    sys.exit(main())
