"""The embedded demo: a local AWS endpoint, every accepted message shape, one worker run.

`make demo` (or `.venv/bin/python -m scripts.demo`) starts, on loopback only: a moto server
(SQS, S3, DynamoDB), the local Storage Gateway endpoint of the tests, and a real nfs-ganesha
NFSv3 export (falling back to a plain directory when ganesha cannot run). It creates a queue
with a dead-letter queue, a bucket whose notifications go to the queue, a refresh table, and
sends a realistic mix (S3 notifications from real uploads, a job envelope, SNS and EventBridge
forms, a sidecar request, a poison message). Then it runs `python -m worker` until the queue
is drained and prints what happened: each message's outcome, the JSON written, the sidecars,
the RefreshCache calls, and what was dead-lettered with its reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import boto3

from tests.support.ganesha import Ganesha
from tests.support.ganesha import unavailable as ganesha_unavailable
from tests.support.ports import free_port
from tests.support.storage_gateway import StorageGatewayEndpoint

ROOT = Path(__file__).resolve().parents[1]
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "demo",
    "AWS_SECRET_ACCESS_KEY": "demo",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
BUCKET = "spotdrain-demo"
TABLE = "spotdrain-demo-refresh"

SALES_CSV = (
    "\ufeffid,region,amount,note\r\n"
    '007,north,12.50,"plain"\r\n'
    '008,south,-3,"has, a comma"\r\n'
    '009,east,,"two\r\nlines"\r\n'
    '010,west,1e5,"Zürich ☕"\r\n'
)


def start_moto(stack: ExitStack, workdir: Path) -> str:
    port = free_port()
    log = (workdir / "moto.log").open("wb")
    stack.callback(log.close)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.moto_main", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    stack.callback(_stop, process)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(url + "/moto-api/", timeout=1):
                return url
        except OSError:
            time.sleep(0.1)
    raise SystemExit("demo: the local AWS endpoint (moto) did not start")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def create_resources(endpoint: str) -> dict[str, str]:
    sqs = boto3.client("sqs", endpoint_url=endpoint)
    s3 = boto3.client("s3", endpoint_url=endpoint)
    dlq = sqs.create_queue(QueueName="spotdrain-demo-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
    queue = sqs.create_queue(
        QueueName="spotdrain-demo", Attributes={"VisibilityTimeout": "60", "RedrivePolicy": redrive}
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    boto3.client("dynamodb", endpoint_url=endpoint).create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "target", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "target", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    return {"queue": queue, "dlq": dlq}


def send_samples(endpoint: str, queue: str, sidecar_dir: Path) -> None:
    """Every accepted shape: S3 notifications (from real uploads), envelope, SNS, EventBridge."""
    sqs = boto3.client("sqs", endpoint_url=endpoint)
    s3 = boto3.client("s3", endpoint_url=endpoint)
    # S3 notifications: moto delivers them to the queue as S3 would, key URL-encoded.
    s3.put_object(Bucket=BUCKET, Key="incoming/sales 2026.csv", Body=SALES_CSV.encode())
    s3.put_object(Bucket=BUCKET, Key="incoming/readme.txt", Body=b"not a csv: no job")
    # A job envelope, as a person or the launcher sends it.
    s3.put_object(Bucket=BUCKET, Key="manual/one-column.csv", Body=b"name\nada\ngrace\n")
    sqs.send_message(
        QueueUrl=queue,
        MessageBody=json.dumps({"job": "csv", "bucket": BUCKET, "key": "manual/one-column.csv"}),
    )
    # An SNS notification around a job envelope, and an EventBridge S3 event.
    s3.put_object(Bucket="spotdrain-demo", Key="bridge/ids.csv", Body=b"id\n001\n002\n")
    envelope = {"job": "csv", "bucket": BUCKET, "key": "bridge/ids.csv"}
    sqs.send_message(
        QueueUrl=queue,
        MessageBody=json.dumps(
            {"Type": "Notification", "MessageId": "sns-1", "Message": json.dumps(envelope)}
        ),
    )
    eventbridge = {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "time": "2026-11-22T12:00:00Z",
        "detail": {"bucket": {"name": BUCKET}, "object": {"key": "incoming/sales+2026.csv"}},
    }
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(eventbridge))
    # A sidecar request in the bare shape upstream systems publish.
    (sidecar_dir / "run-42").mkdir(parents=True, exist_ok=True)
    (sidecar_dir / "run-42" / "scan.raw").write_bytes(b"\x00" * 4096)
    sqs.send_message(
        QueueUrl=queue,
        MessageBody=json.dumps({"filename": "run-42/scan.raw", "results": "ok: 3 peaks"}),
    )
    # Poison: never succeeds, goes to the dead-letter queue with its reason.
    sqs.send_message(QueueUrl=queue, MessageBody="{not json")


def start_nfs(stack: ExitStack, workdir: Path) -> tuple[dict[str, str], Path]:
    """A real NFS export when ganesha can run here, else a plain directory (SIDECAR_ROOT)."""
    reason = ganesha_unavailable()
    if reason is None:
        server = Ganesha(workdir / "nfs")
        try:
            server.start()
        except Exception as exc:  # the demo still runs, on a directory
            reason = f"ganesha did not start: {exc}"
        else:
            stack.callback(server.stop)
            print(f"demo: NFSv3 export on loopback: {server.url()}")
            return {"SIDECAR_NFS_URL": server.url()}, server.export_dir
    directory = workdir / "export"
    directory.mkdir()
    print(f"demo: no NFS server ({reason}); sidecars go to SIDECAR_ROOT={directory}")
    return {"SIDECAR_ROOT": str(directory)}, directory


def run_worker(
    endpoint: str, queues: dict[str, str], sidecar_env: dict[str, str], gateway: str
) -> list[dict[str, Any]]:
    env = {
        **os.environ,
        **CREDENTIALS,
        **sidecar_env,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_STORAGE_GATEWAY": gateway,
        "QUEUE_URL": queues["queue"],
        "DLQ_URL": queues["dlq"],
        "REFRESH_TABLE": TABLE,
        "REFRESH_WINDOW_SECONDS": "3",
        "WORKER_IDLE_EXIT_SECONDS": "2",
        "WORKER_WAIT_SECONDS": "1",
        "SPOT_IMDS": "off",
    }
    result = subprocess.run(
        [sys.executable, "-m", "worker"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.stderr.write(result.stderr + result.stdout[-3000:])
        raise SystemExit(f"demo: the worker exited {result.returncode}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def report(
    endpoint: str,
    queues: dict[str, str],
    events: list[dict[str, Any]],
    sidecar_dir: Path,
    gateway: StorageGatewayEndpoint,
) -> None:
    s3 = boto3.client("s3", endpoint_url=endpoint)
    sqs = boto3.client("sqs", endpoint_url=endpoint)
    print("\n== messages the worker handled ==")
    for event in events:
        if event.get("event") == "message.done":
            what = event.get("target") or ",".join(event.get("jobs", [])) or "(no job)"
            reason = f"  <- {event['reason']}" if event.get("reason") else ""
            print(f"  {event['outcome']:<14} {what}{reason}")
    summary = next(e for e in events if e.get("event") == "worker.exit")
    print("\n== summary ==")
    print("  " + json.dumps({k: v for k, v in summary.items() if k not in ("level", "timestamp")}))
    print(f"\n== outputs in s3://{BUCKET}/converted/ ==")
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix="converted/").get("Contents", [])
    for item in listing:
        body = s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read().decode()
        print(f"  {item['Key']} ({item['Size']} bytes)")
        for line in body.splitlines()[:4]:
            print(f"    {line}")
    print(f"\n== sidecars under {sidecar_dir} ==")
    for path in sorted(sidecar_dir.rglob("*-sidecar.json")):
        print(f"  {path.relative_to(sidecar_dir)}: {path.read_text().strip()}")
    print("\n== RefreshCache calls the local Storage Gateway received ==")
    changes = sum(
        1
        for e in events
        if e.get("event") == "message.done"
        and "refresh" in ([e.get("job"), *list(e.get("jobs", []))])
    )
    for call in gateway.refreshes():
        folders = call.params.get("FolderList", ["/"])
        share = call.params["FileShareARN"].rsplit("/", 1)[-1]
        print(f"  {share}: FolderList={folders} Recursive={call.params.get('Recursive')}")
    print(f"  ({changes} messages carried object changes; {len(gateway.refreshes())} refreshes)")
    dead = sqs.receive_message(
        QueueUrl=queues["dlq"], MaxNumberOfMessages=10, MessageAttributeNames=["All"]
    ).get("Messages", [])
    print("\n== dead-letter queue ==")
    for message in dead:
        reason = message.get("MessageAttributes", {}).get("spotdrain-reason", {}).get("StringValue")
        print(f"  body {message['Body'][:40]!r}: {reason}")
    counts = Counter(e["outcome"] for e in events if e.get("event") == "message.done")
    print(f"\nDone: {dict(counts)}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="spotdrain-demo-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        print("demo: starting a local AWS endpoint (moto server) ...")
        endpoint = start_moto(stack, workdir)
        os.environ.update(CREDENTIALS)
        gateway = stack.enter_context(StorageGatewayEndpoint())
        gateway.add_share(BUCKET)
        gateway.add_share(f"{BUCKET}/incoming/")
        print(f"demo: local Storage Gateway endpoint at {gateway.url}, two shares on {BUCKET}")
        sidecar_env, sidecar_dir = start_nfs(stack, workdir)
        queues = create_resources(endpoint)
        send_samples(endpoint, queues["queue"], sidecar_dir)
        print(f"demo: running `python -m worker` against {queues['queue']} ...")
        events = run_worker(endpoint, queues, sidecar_env, gateway.url)
        report(endpoint, queues, events, sidecar_dir, gateway)


if __name__ == "__main__":
    main()
