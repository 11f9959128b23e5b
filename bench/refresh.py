"""Aggregated refreshes beside the naive design (one RefreshCache per change), in one run.

The same change storm (S3 event notifications, fed steadily into a fresh queue) is drained
twice against a moto server and the local Storage Gateway endpoint:
  ours:  3 `python -m worker` processes with REFRESH_TABLE (DynamoDB windows, delayed
         due messages, RefreshCache of the changed folders);
  naive: 3 consumers that call RefreshCache on the whole share for every change, deleting
         the message when the gateway accepts it and retrying it 2 s later when it does not.
The gateway endpoint lets each refresh run for --refresh-seconds; a share running two
refreshes answers InvalidGatewayRequestException, as Storage Gateway does.

    .venv/bin/python bench/refresh.py                    # 1,500 changes over 60 s (about 4 min)
    .venv/bin/python bench/refresh.py --changes 300 --seconds 15 --window 3
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the test helpers live in the project

from tests.refresh.aws_proxy import UPSTREAM_FAILED, AwsProxy  # noqa: E402
from tests.support.moto_server import CREDENTIALS, MotoServer  # noqa: E402
from tests.support.storage_gateway import Call, StorageGatewayEndpoint  # noqa: E402
from tests.support.worker_process import WorkerProcess, worker_env  # noqa: E402

BUCKET = "storm-bucket"
FOLDERS = 20
HOW = (
    "How: changes are S3 notifications sent in batches of 10 at a steady rate straight to moto; "
    "workers reach SQS and DynamoDB through a counting proxy, so req/change counts every call "
    "the consumers made in the whole run (start-up checks and idle polls included) divided by "
    "the changes. delay = from the moment a change was sent to the queue to the arrival at the "
    "gateway of the first accepted RefreshCache that covers its folder (same host clock). "
    "busy = RefreshCache answered InvalidGatewayRequestException (the share ran two refreshes)."
)


@dataclass
class Result:
    design: str
    changes: int
    accepted: int
    busy: int
    dynamodb: int
    sqs: int
    delays: list[float]
    unrefreshed: int
    seconds: float
    starts: list[float]  # accepted refreshes, seconds after the first change was sent

    def row(self) -> str:
        delays = sorted(self.delays)
        worst = f"{delays[-1]:.1f}" if delays else "-"
        p50 = f"{statistics.median(delays):.1f}" if delays else "-"
        not_done = f"{self.unrefreshed}" if self.unrefreshed else "0"
        return (
            f"{self.design:<6} {self.changes:>7} {self.accepted:>9} {self.busy:>6} "
            f"{self.dynamodb / self.changes:>10.2f} {self.sqs / self.changes:>8.2f} "
            f"{p50:>8} {worst:>9} {not_done:>11} {self.seconds:>7.0f}"
        )


HEADER = (
    "design changes  refreshes   busy  ddb/change sqs/change  p50 s  worst s  unrefreshed  run s"
)


def client(service: str, url: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=CREDENTIALS["AWS_REGION"],
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"mode": "standard"}, max_pool_connections=20),
    )


def s3_event(key: str) -> str:
    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "eventTime": "2025-01-01T00:00:00.000Z",
        "userIdentity": {"principalId": "AWS:AIDAUPLOADER"},
        "s3": {"bucket": {"name": BUCKET}, "object": {"key": key, "size": 1}},
    }
    return json.dumps({"Records": [record]})


def make_queue(sqs: Any, name: str) -> str:
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "50"})
    attributes = {"VisibilityTimeout": "30", "RedrivePolicy": redrive}
    return str(sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])


def feed(sqs: Any, queue_url: str, changes: int, seconds: float) -> list[tuple[float, str]]:
    """Send `changes` events over `seconds`, 10 at a time; return (time sent, folder) each."""
    sent: list[tuple[float, str]] = []
    batches = math.ceil(changes / 10)
    start = time.monotonic()
    for batch in range(batches):
        time.sleep(max(0.0, start + batch * seconds / batches - time.monotonic()))
        keys = [
            f"f{n % FOLDERS}/obj-{n}.dat" for n in range(batch * 10, min(changes, batch * 10 + 10))
        ]
        entries = [{"Id": str(i), "MessageBody": s3_event(k)} for i, k in enumerate(keys)]
        sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        now = time.time()
        sent.extend((now, k.rpartition("/")[0]) for k in keys)
    return sent


def delays(sent: list[tuple[float, str]], refreshes: list[Call]) -> tuple[list[float], int]:
    """Per change, the wait until the first accepted refresh covering its folder started."""
    found: list[float] = []
    missing = 0
    for at, folder in sent:
        covering = [
            r.at
            for r in refreshes
            if r.at > at
            and (
                folder in r.params.get("FolderList", ["/"])
                or (r.params.get("Recursive", True) and "/" in r.params.get("FolderList", ["/"]))
            )
        ]
        if covering:
            found.append(min(covering) - at)
        else:
            missing += 1
    return found, missing


def report_upstream_failures(proxy: AwsProxy, design: str) -> None:
    failed = proxy.counts.get(UPSTREAM_FAILED, 0)
    if failed:
        print(f"{design}: moto dropped {failed} requests (answered 502, retried by the client)")


def run_ours(args: argparse.Namespace, moto_url: str, gateway: StorageGatewayEndpoint) -> Result:
    sqs, dynamodb = client("sqs", moto_url), client("dynamodb", moto_url)
    table = f"refresh-{int(time.time())}"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "target", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "target", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    queue_url = make_queue(sqs, f"ours-{int(time.time())}")
    proxy = AwsProxy(moto_url).start()
    gateway.calls.clear()
    env = worker_env(
        {"AWS_ENDPOINT_URL": proxy.url, **CREDENTIALS},
        QUEUE_URL=queue_url,
        REFRESH_TABLE=table,
        REFRESH_WINDOW_SECONDS=args.window,
        AWS_ENDPOINT_URL_STORAGE_GATEWAY=gateway.url,
        WORKER_IDLE_EXIT_SECONDS=5,
        WORKER_WAIT_SECONDS=5,
        LOG_LEVEL="INFO",
    )
    began = time.monotonic()
    workers = [WorkerProcess(dict(env)) for _ in range(args.workers)]
    for worker in workers:  # start-up (Python, clients, table check) is not part of the delay
        worker.wait_for("worker.started", timeout=60)
    sent = feed(sqs, queue_url, args.changes, args.seconds)
    for worker in workers:
        worker.wait(timeout=args.seconds + 600)
    seconds = time.monotonic() - began
    proxy.stop()
    report_upstream_failures(proxy, "ours")
    found, missing = delays(sent, gateway.refreshes())
    starts = [round(r.at - sent[0][0], 1) for r in gateway.refreshes()]
    return Result(
        "ours",
        args.changes,
        len(gateway.refreshes()),
        len(gateway.recorded("RefreshCache", ok=False)),
        proxy.count("DynamoDB_"),
        proxy.count("AmazonSQS."),
        found,
        missing,
        seconds,
        starts,
    )


def naive_consumer(
    sqs: Any, sgw: Any, queue_url: str, share_arn: str, stop: threading.Event
) -> None:
    while not stop.is_set():
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=30
        ).get("Messages", [])
        for message in messages:
            try:
                sgw.refresh_cache(FileShareARN=share_arn, FolderList=["/"], Recursive=True)
            except ClientError:  # busy or throttled: try this change again in 2 s
                sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=2
                )
                continue
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def run_naive(args: argparse.Namespace, moto_url: str, gateway: StorageGatewayEndpoint) -> Result:
    sqs = client("sqs", moto_url)
    queue_url = make_queue(sqs, f"naive-{int(time.time())}")
    proxy = AwsProxy(moto_url).start()
    gateway.calls.clear()
    consumer_sqs = client("sqs", proxy.url)
    sgw = boto3.client(
        "storagegateway",
        endpoint_url=gateway.url,
        region_name=CREDENTIALS["AWS_REGION"],
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )
    share_arn = sgw.list_file_shares()["FileShareInfoList"][0]["FileShareARN"]
    stop = threading.Event()
    began = time.monotonic()
    threads = [
        threading.Thread(
            target=naive_consumer, args=(consumer_sqs, sgw, queue_url, share_arn, stop)
        )
        for _ in range(args.workers)
    ]
    for thread in threads:
        thread.start()
    sent = feed(sqs, queue_url, args.changes, args.seconds)
    deadline = time.monotonic() + args.naive_grace
    while time.monotonic() < deadline:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])[
            "Attributes"
        ]
        if all(
            attributes[f"ApproximateNumberOf{k}"] == "0" for k in ("Messages", "MessagesNotVisible")
        ):
            break
        time.sleep(1)
    stop.set()
    for thread in threads:
        thread.join()
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    left = int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )
    if left:
        print(f"naive: {left} changes still queued (no refresh of their own) at the cutoff")
    seconds = time.monotonic() - began
    proxy.stop()
    report_upstream_failures(proxy, "naive")
    found, missing = delays(sent, gateway.refreshes())
    starts = [round(r.at - sent[0][0], 1) for r in gateway.refreshes()]
    return Result(
        "naive",
        args.changes,
        len(gateway.refreshes()),
        len(gateway.recorded("RefreshCache", ok=False)),
        0,
        proxy.count("AmazonSQS."),
        found,
        missing,
        seconds,
        starts,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=1500)
    parser.add_argument("--seconds", type=float, default=60.0, help="feed duration")
    parser.add_argument("--window", default="5", help="REFRESH_WINDOW_SECONDS for ours")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument(
        "--refresh-seconds", type=float, default=0.5, help="how long a refresh runs"
    )
    parser.add_argument(
        "--naive-grace",
        type=float,
        default=60.0,
        help="after the feed, how long naive may catch up",
    )
    parser.add_argument("--only", choices=("ours", "naive"))
    args = parser.parse_args()
    moto = MotoServer(log_path=Path(tempfile.mkdtemp(prefix="bench-refresh-")) / "moto.log")
    moto.start()
    moto_url = moto.url
    gateway = StorageGatewayEndpoint(refresh_seconds=args.refresh_seconds).start()
    gateway.add_share(BUCKET)
    try:
        print(
            f"{args.changes} changes over {args.seconds:.0f} s into {FOLDERS} folders, "
            f"{args.workers} consumers, window {args.window} s, each refresh runs "
            f"{args.refresh_seconds} s (two at a time per share)",
            flush=True,
        )
        results = []
        if args.only != "naive":
            results.append(run_ours(args, moto_url, gateway))
        if args.only != "ours":
            results.append(run_naive(args, moto_url, gateway))
        print(HEADER)
        for result in results:
            print(result.row())
        for result in results:
            if len(result.starts) <= 40:
                print(
                    f"{result.design}: refreshes began (s after the first change) {result.starts}"
                )
        print(HOW)
        print(
            f"unrefreshed = changes with no covering refresh by the end (naive stops "
            f"{args.naive_grace:.0f} s after the feed)."
        )
    finally:
        gateway.stop()
        moto.stop()


if __name__ == "__main__":
    main()
