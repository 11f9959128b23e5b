"""Drain speed of `python -m worker` beside a plain boto3 loop, on moto and on an in-memory SQS.

Scenarios (issue 2), each run for the loop and then the worker on a fresh, pre-filled queue:
  (a) moto server, 200 no-op probe jobs: moto is the bottleneck, so this shows only that
      we are not slower and use no more requests per message;
  (b) bench/fake_sqs.py, 20,000 no-op probe jobs: the client is the bottleneck;
  (c) bench/fake_sqs.py, 2,000 probe jobs that each await 20 ms of simulated I/O;
  (d) a realistic mix through moto (behind the counting proxy): 1/3 csv jobs on CSV objects of
      20-200 KB in moto S3, 1/3 sidecar jobs (SIDECAR_ROOT on a temporary directory, files made
      beforehand), 1/3 S3 object-change notifications aggregated into refreshes (REFRESH_TABLE
      in moto DynamoDB, tests/support/storage_gateway.py as Storage Gateway). Always the
      worker with its lean SQS path against the same worker on plain aiobotocore.

--paths compares, instead of the loop and the worker, the worker with its lean SQS path
(adapters/sqs_wire.py) and the same worker whose per-message SQS calls go through aiobotocore
(AwsClients.sqs_wire patched to return None, bench only), in ABBA order, each run on a fresh
queue with the same contents; (d) always does. --sqs-path plain runs the worker of (a)-(c)
without the lean path.

    .venv/bin/python bench/drain.py                  # the issue's sizes (about two minutes)
    .venv/bin/python bench/drain.py --quick          # 100 / 2,000 / 300 messages
    .venv/bin/python bench/drain.py --only b --noop 5000 --repeat 3 \
        --worker-env WORKER_CONCURRENCY=32 --worker-root /tmp/old-checkout
    .venv/bin/python bench/drain.py --only bd --paths --repeat 3   # lean vs plain aiobotocore
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
- server: the endpoint's CPU use over the window (100% = a whole core: server-bound).
- lean vs plain (--paths, and (d)): both workers start through the same `python -c` launcher
  that counts every aiobotocore API call; 'plain' also makes AwsClients.sqs_wire return None.
  Each run checks the counts: lean sends no ReceiveMessage, DeleteMessageBatch or
  ChangeMessageVisibilityBatch through botocore, plain sends every one the endpoint answered.
  CPU saved per message = 1 - lean / plain, pair by pair (runs in ABBA order). In (d) the
  window also takes in the refresh_due messages the refresh jobs send themselves (follow-ups);
  CPU ms/msg divides by the messages sent only. The worker's own process is measured: CSV
  objects under 256 KB are converted in it, not in its converter processes."""


class Endpoint(Protocol):
    url: str
    pid: int  # the process that serves SQS, for its CPU use

    def requests(self) -> Counter[str]: ...
    def stop(self) -> None: ...


class MotoProcess:
    """`moto.server` as a child process, behind bench/fake_sqs.py as a counting proxy.

    `module` may be tests.support.moto_main: moto with the races of SQS receives and DynamoDB
    item writes closed, as the refresh jobs of (d) need. `moto_url` is moto itself (for S3 and
    DynamoDB), `url` the counting proxy (for SQS)."""

    def __init__(self, module: str = "moto.server") -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        command = [sys.executable, "-m", module, "-H", "127.0.0.1", "-p", str(port)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
        )
        self.moto_url = f"http://127.0.0.1:{port}"
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
    followups: int = 0  # refresh_due messages the jobs sent themselves, handled in the window
    botocore_calls: dict[str, int] = field(default_factory=dict)  # counted in the worker

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
    body = json.dumps({"job": "probe", "seconds": seconds or 0})
    return fill_bodies(client, name, [body] * messages)


def fill_bodies(client: Any, name: str, bodies: list[str]) -> str:
    attributes = {"VisibilityTimeout": "60"}
    url = str(client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])
    messages = len(bodies)
    for start in range(0, messages, 10):
        chunk = bodies[start : start + 10]
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
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


# The worker as `python -m worker` would run it, with every aiobotocore API call counted (to
# show which calls went through botocore) and, for BENCH_SQS_PATH=plain, without the lean SQS
# path: AwsClients.sqs_wire returns None, so Queue(client, url, None) sends every call through
# the aiobotocore client. A bench-only patch, not a setting of the product.
LAUNCHER = """\
import atexit, json, os, runpy, sys
from collections import Counter
import aiobotocore.client
calls = Counter()
make_api_call = aiobotocore.client.AioBaseClient._make_api_call
async def counted(self, operation_name, api_params):
    calls[self.meta.service_model.service_name + "." + operation_name] += 1
    return await make_api_call(self, operation_name, api_params)
aiobotocore.client.AioBaseClient._make_api_call = counted
if os.environ.pop("BENCH_SQS_PATH") == "plain":
    import worker.adapters.aws
    async def no_wire(self):
        return None
    worker.adapters.aws.AwsClients.sqs_wire = no_wire
def report():
    print(json.dumps({"event": "bench.botocore_calls", "calls": calls}), flush=True)
atexit.register(report)
sys.argv[0] = "worker"
runpy.run_module("worker", run_name="__main__", alter_sys=True)
"""
FOLLOWUP_JOBS = {"refresh_due"}  # messages the jobs send to their own queue


def run_worker(
    url: str,
    endpoint: Endpoint,
    messages: int,
    args: argparse.Namespace,
    *,
    who: str = "worker",
    sqs_path: str | None = None,
    env_extra: dict[str, str] | None = None,
) -> Run:
    """`python -m worker` until it exits by itself; marks are taken as its log lines arrive.

    sqs_path 'lean' or 'plain' starts it through LAUNCHER (None: `python -m worker`). The
    window ends when the `messages` sent are done and, after them, every follow-up message
    (refresh_due) done in the meantime: their CPU belongs to the jobs that sent them."""
    run = Run(who, messages)
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
    env.update(env_extra or {})
    env.update(item.split("=", 1) for item in args.worker_env)
    command = [sys.executable, "-m", "worker"]
    if sqs_path is not None:
        env["BENCH_SQS_PATH"] = sqs_path
        command = [sys.executable, "-c", LAUNCHER]
    before = endpoint.requests()
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 (read after the process exits)
    process = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=stderr)
    watchdog = threading.Timer(args.timeout, process.kill)
    watchdog.start()
    marks: dict[str, tuple[str, float, Counter[str], float]] = {}
    outcomes: Counter[str] = Counter()
    followups: Counter[str] = Counter()
    assert process.stdout is not None
    for raw in process.stdout:
        if b'"bench.botocore_calls"' in raw:
            run.botocore_calls = json.loads(raw)["calls"]
        elif b'"message.done"' in raw or b'"worker.started"' in raw:
            event = json.loads(raw)
            if event["event"] == "message.done":
                into = followups if event.get("job") in FOLLOWUP_JOBS else outcomes
                into[event["outcome"]] += 1
            if event["event"] == "worker.started" or sum(outcomes.values()) == messages:
                mark = "start" if event["event"] == "worker.started" else "end"
                cpu, server = process_cpu(process.pid), process_cpu(endpoint.pid)
                marks[mark] = (event["timestamp"], cpu, endpoint.requests(), server)
                if mark == "end":
                    run.followups = sum(followups.values())
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
    if set(followups) - {"acked"}:
        run.problems.append(f"follow-up outcomes {dict(followups)}")
    if followups and run.followups != sum(followups.values()):
        late = sum(followups.values()) - run.followups
        run.problems.append(f"{late} follow-ups after the window")
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
    if sqs_path is not None:
        check_path(run, sqs_path)
    return run


HOT_CALLS = ("ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibilityBatch")


def check_path(run: Run, sqs_path: str) -> None:
    """The lean worker sends no hot SQS call through botocore; the plain one sends them all."""
    for op in HOT_CALLS:
        through_botocore = run.botocore_calls.get("sqs." + op, 0)
        answered = run.requests_total.get(op, 0)  # by the endpoint; a last long poll may not be
        if sqs_path == "lean" and through_botocore:
            run.problems.append(f"lean path, yet {through_botocore} {op} through botocore")
        if sqs_path == "plain" and not answered <= through_botocore <= answered + 4:
            run.problems.append(f"plain: {through_botocore} {op} via botocore, {answered} answered")
    if not run.botocore_calls:
        run.problems.append("no botocore call count from the worker")


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
                    path = "plain" if args.sqs_path == "plain" else None
                    run = run_worker(url, endpoint, scenario.messages, args, sqs_path=path)
                left = backlog(client, url)
                if left:
                    run.problems.append(f"queue not empty afterwards: {left}")
                print(f"  {who:6} {run.rate:7.0f} msgs/s {run.cpu_ms:7.3f} CPU ms/msg", flush=True)
                into.append(run)
    finally:
        endpoint.stop()
    return runs


class GatewayProcess:
    """tests/support/storage_gateway.py as a child process, one NFS share on each location;
    it prints every call it answers, which a thread counts."""

    def __init__(self, shares: list[str]) -> None:
        command = [sys.executable, "-m", "tests.support.storage_gateway", "--port", "0"]
        for location in shares:
            command += ["--share", location]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        try:
            self.url = json.loads(first)["listening"]
        except (ValueError, KeyError):
            self.stop()
            raise RuntimeError(f"the Storage Gateway stand-in did not start: {first!r}") from None
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        threading.Thread(target=self._count, daemon=True).start()

    def _count(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            call = json.loads(line)
            with self._lock:
                self.calls[call["operation"] + (" (error)" if call.get("error") else "")] += 1

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self.calls)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def s3_event(bucket: str, key: str) -> str:
    """An S3 event notification of one object created, as S3 sends it to SQS."""
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2025-01-01T00:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AIDABENCHUSER"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": key, "size": 1024, "eTag": "0123456789abcdef"},
        },
    }
    return json.dumps({"Records": [record]})


def csv_text(size: int, seed: int) -> bytes:
    """A CSV file of about `size` bytes: a header and rows of ids, text, numbers, flags, dates."""
    rows = ["id,name,amount,flag,day,comment\n"]
    total, i = len(rows[0]), 0
    while total < size:
        row = (
            f"{seed * 100_000 + i},customer-{(i * 7919) % 10_007},{(i * 37) % 10_000 / 4:.2f},"
            f"{'true' if i % 3 else 'false'},2025-{i % 12 + 1:02}-{i % 28 + 1:02},"
            f'"note {i}, with a comma"\n'
        )
        rows.append(row)
        total, i = total + len(row), i + 1
    return "".join(rows).encode()


class Mix:
    """The queue contents of (d) and what its jobs need, made once; a fresh table and CSV
    output prefix for every run, so that every run does the same work."""

    CSV_BUCKET, SHARE_BUCKET = "bench-mix-csv", "bench-mix-share"

    def __init__(self, moto: MotoProcess, messages: int, root: Path, seed: int = 7) -> None:
        import random

        self.moto, self.root = moto, root
        rng = random.Random(seed)
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        self.s3 = session.client("s3", endpoint_url=moto.moto_url)
        self.dynamodb = session.client("dynamodb", endpoint_url=moto.moto_url)
        self.s3.create_bucket(Bucket=self.CSV_BUCKET)
        self.bodies: list[str] = []
        self.kinds: Counter[str] = Counter()
        self.csv_bytes = 0
        for i in range(messages):
            kind = ("csv", "sidecar", "refresh")[i % 3]
            self.kinds[kind] += 1
            if kind == "csv":
                key = f"incoming/batch-{i % 5}/orders-{i:05}.csv"
                data = csv_text(rng.randint(20_000, 200_000), i)
                self.csv_bytes += len(data)
                self.s3.put_object(Bucket=self.CSV_BUCKET, Key=key, Body=data)
                body = {"job": "csv", "bucket": self.CSV_BUCKET, "key": key}
                self.bodies.append(json.dumps(body))
            elif kind == "sidecar":
                name = f"scans/d{i % 10}/scan-{i:05}.tif"
                path = root / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(bytes(rng.randint(1_000, 20_000)))
                body = {"job": "sidecar", "filename": name, "results": f"classified {i}: ok"}
                self.bodies.append(json.dumps(body))
            else:
                key = f"share/folder-{i % 20}/file-{i:05}.dat"
                self.bodies.append(s3_event(self.SHARE_BUCKET, key))
        self.gateway = GatewayProcess([self.SHARE_BUCKET])

    def prepare(self, run: str) -> dict[str, str]:
        """A fresh refresh table for `run`; the worker's environment for it."""
        table = run[:200]
        self.dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "target", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "target", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        self.refreshes_before = self.gateway.counts()["RefreshCache"]
        return {
            "AWS_ENDPOINT_URL": self.moto.moto_url,  # S3 and DynamoDB straight to moto
            "AWS_ENDPOINT_URL_SQS": self.moto.url,  # SQS through the counting proxy
            "AWS_ENDPOINT_URL_STORAGE_GATEWAY": self.gateway.url,
            "REFRESH_TABLE": table,
            "REFRESH_WINDOW_SECONDS": "1",
            "CSV_OUTPUT_PREFIX": f"converted/{run}/",
            "CSV_PROCESSES": "1",  # objects under 256 KB are converted in the worker's process
            "SIDECAR_ROOT": str(self.root),
        }

    def check(self, run: str, result: Run) -> None:
        """Every CSV converted, every sidecar written, refreshes made; remove the sidecars."""
        listing = self.s3.list_objects_v2(Bucket=self.CSV_BUCKET, Prefix=f"converted/{run}/")
        converted = listing.get("KeyCount", 0)
        if converted != self.kinds["csv"]:
            result.problems.append(f"{converted} of {self.kinds['csv']} CSV objects converted")
        sidecars = list(self.root.rglob("*-sidecar.json"))
        if len(sidecars) != self.kinds["sidecar"]:
            result.problems.append(f"{len(sidecars)} of {self.kinds['sidecar']} sidecars written")
        for sidecar in sidecars:
            sidecar.unlink()
        if self.kinds["refresh"] and self.gateway.counts()["RefreshCache"] == self.refreshes_before:
            result.problems.append("no RefreshCache reached the gateway")
        self.dynamodb.delete_table(TableName=run[:200])

    def stop(self) -> None:
        self.gateway.stop()


def run_paths(scenario: Scenario, args: argparse.Namespace) -> dict[str, list[Run]]:
    """The worker with the lean SQS path and without it, ABBA, on fresh queues alike."""
    mix: Mix | None = None
    scratch = tempfile.TemporaryDirectory(prefix="drain-mix-")
    if scenario.endpoint == "mix":
        moto = MotoProcess("tests.support.moto_main")
        endpoint: Endpoint = moto
    elif scenario.endpoint == "moto":
        endpoint = MotoProcess()
    else:
        endpoint = FakeSqsProcess(latency_ms=args.latency_ms)
    runs: dict[str, list[Run]] = {"lean": [], "plain": []}
    try:
        if scenario.endpoint == "mix":
            made = time.perf_counter()
            mix = Mix(moto, scenario.messages, Path(scratch.name))
            print(
                f"  made {dict(mix.kinds)} ({mix.csv_bytes / 1e6:.1f} MB of CSV) in "
                f"{time.perf_counter() - made:.0f} s",
                flush=True,
            )
            bodies = mix.bodies
        else:
            bodies = [json.dumps({"job": "probe", "seconds": scenario.seconds or 0})]
            bodies *= scenario.messages
        client = sqs_client(endpoint.url)
        for attempt in range(args.repeat):
            order = ("lean", "plain") if attempt % 2 == 0 else ("plain", "lean")  # ABBA
            for who in order:
                name = f"bench-{scenario.key}-{who}-{attempt}-{int(time.time())}"
                extra = mix.prepare(name) if mix is not None else {}
                url = fill_bodies(client, name, bodies)
                time.sleep(0.5)  # let the filling settle first
                run = run_worker(
                    url, endpoint, len(bodies), args, who=who, sqs_path=who, env_extra=extra
                )
                if mix is not None:
                    mix.check(name, run)
                left = backlog(client, url)
                if left:
                    run.problems.append(f"queue not empty afterwards: {left}")
                print(
                    f"  {who:6} {run.rate:7.0f} msgs/s {run.cpu_ms:7.3f} CPU ms/msg "
                    f"{run.req:6.3f} req/msg  follow-ups {run.followups}"
                    + (f"  PROBLEMS {run.problems}" if run.problems else ""),
                    flush=True,
                )
                runs[who].append(run)
    finally:
        if mix is not None:
            mix.stop()
        endpoint.stop()
        scratch.cleanup()
    return runs


PATH_TARGET = 0.15  # the issue: the lean path must save at least this share of CPU per message


def report_paths(scenario: Scenario, leans: list[Run], plains: list[Run]) -> dict[str, Any]:
    """Medians of lean and plain, the CPU saved per message pair by pair, and the target."""

    def median(runs: list[Run], figure: str) -> float:
        return float(statistics.median(getattr(run, figure) for run in runs))

    figures = ("rate", "cpu_ms", "req", "window_s", "server_busy", "followups")
    both = (("lean", leans), ("plain", plains))
    rows = {who: {f: median(runs, f) for f in figures} for who, runs in both}
    pairs = [1 - lean.cpu_ms / plain.cpu_ms for lean, plain in zip(leans, plains, strict=True)]
    saved = float(statistics.median(pairs))
    of_medians = 1 - rows["lean"]["cpu_ms"] / rows["plain"]["cpu_ms"]
    speed = [lean.rate / plain.rate - 1 for lean, plain in zip(leans, plains, strict=True)]
    repeats = f", median of {len(leans)} (ABBA)" if len(leans) > 1 else ""
    print(f"\n({scenario.key}) {scenario.title}: lean SQS path vs plain aiobotocore{repeats}")
    print(
        f"  {'':20}{'msgs/s':>9}{'CPU ms/msg':>12}{'req/msg':>9}{'window s':>10}{'server':>8}"
        f"{'follow-ups':>11}"
    )
    for label, who in (("lean path", "lean"), ("plain aiobotocore", "plain")):
        row = rows[who]
        print(
            f"  {label:20}{row['rate']:>9.0f}{row['cpu_ms']:>12.3f}{row['req']:>9.3f}"
            f"{row['window_s']:>10.2f}{row['server_busy']:>8.0%}{row['followups']:>11.0f}"
        )
    print(
        f"  CPU saved per message, pair by pair: {', '.join(f'{p:.1%}' for p in pairs)}; "
        f"median {saved:.1%} (of the medians: {of_medians:.1%})"
    )
    print(f"  msgs/s gained, pair by pair: {', '.join(f'{g:+.1%}' for g in speed)}")
    for label, runs in (("lean", leans), ("plain", plains)):
        last = runs[-1]
        sqs = {k: v for k, v in last.botocore_calls.items() if k.startswith("sqs.")}
        print(f"  {label} SQS requests in window {last.requests}")
        print(f"  {label} SQS calls through botocore (whole run) {sqs}")
        for problem in (p for run in runs for p in run.problems):
            print(f"  {label} PROBLEM: {problem}")
    met = saved >= PATH_TARGET
    verdict = "met" if met else "MISSED"
    print(f"  target CPU saved per message {saved:.1%} >= {PATH_TARGET:.0%}  {verdict}")
    problems = any(run.problems for run in (*leans, *plains))
    return {
        "scenario": asdict(scenario),
        "lean": [run.summary() for run in leans],
        "plain": [run.summary() for run in plains],
        "cpu_saved_pairs": pairs,
        "cpu_saved_median": saved,
        "targets_met": met and not problems,
    }


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
    add("--mix", type=int, default=300, help="messages in (d), a third of each kind (300)")
    add("--quick", action="store_true", help="smaller runs: 100 / 2,000 / 300 / 150 messages")
    add("--only", default="abc", help="the scenarios to run, for example 'bd'")
    add(
        "--paths",
        action="store_true",
        help="(a)-(c): the worker with its lean SQS path vs without it, not the loop vs the worker",
    )
    add(
        "--sqs-path",
        choices=("lean", "plain"),
        default="lean",
        help="(a)-(c) without --paths: the worker's per-message SQS calls (plain: aiobotocore)",
    )
    add("--repeat", type=int, default=1, help="run each pair this often; report the medians")
    add("--latency-ms", type=float, default=0.0, help="the in-memory SQS answers this much later")
    add(
        "--worker-env",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="extra environment for the worker (repeatable), e.g. WORKER_CONCURRENCY=32",
    )
    add("--worker-root", type=Path, help="run the worker from this checkout (before/after)")
    add("--timeout", type=float, default=600, help="seconds before a worker is killed")
    add("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.moto, args.noop, args.io, args.mix = 100, 2_000, 300, 150
    io_title = f"{args.io} jobs awaiting {args.io_seconds * 1000:g} ms"
    scenarios = [
        Scenario("a", f"moto, {args.moto} no-op jobs (moto-bound)", "moto", args.moto, 0, 1, None),
        Scenario("b", f"in-memory SQS, {args.noop} no-op jobs", "fake", args.noop, 0, 1.5, 1.2),
        Scenario("c", f"in-memory SQS, {io_title}", "fake", args.io, args.io_seconds, 10.0, None),
        Scenario(
            "d",
            f"moto, a mix of {args.mix} csv, sidecar and refresh jobs",
            "mix",
            args.mix,
            0,
            0,
            None,
        ),
    ]
    settings = " ".join(args.worker_env) or "its defaults"
    print(
        f"bench/drain.py: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
        f"worker from {args.worker_root or ROOT} with {settings}; "
        f"in-memory SQS latency {args.latency_ms:g} ms; "
        f"{'lean vs plain SQS path' if args.paths else 'SQS path ' + args.sqs_path} for (a)-(c)"
    )
    print(HOW)
    records = []
    for scenario in scenarios:
        if scenario.key in args.only:
            print(f"\n== ({scenario.key}) {scenario.title}", flush=True)
            if scenario.key == "d" or args.paths:
                runs = run_paths(scenario, args)
                records.append(report_paths(scenario, runs["lean"], runs["plain"]))
                continue
            runs = run_scenario(scenario, args)
            records.append(report(scenario, runs["loop"], runs["worker"]))
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end (the CPUs are shared with others)")
    if args.json:
        args.json.write_text(json.dumps(records, indent=2))
    return 0 if all(record["targets_met"] for record in records) else 1


if __name__ == "__main__":
    sys.exit(main())
