"""A mixed workload for the chaos scenarios, and the feeder that sends it steadily.

The mix: CSV objects put in S3 and the messages that convert them (job envelopes, S3, SNS
and EventBridge events; the events are refresh changes of the bucket too), refresh changes
of other objects, sidecar requests for files on the export, and planted poison messages.
`tests/chaos/end_state.py` checks what a run of it must leave behind.
"""

from __future__ import annotations

import csv
import io
import json
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote_plus

from tests.conftest import TestQueue
from tests.refresh.conftest import RefreshTable
from tests.support.storage_gateway import StorageGatewayEndpoint

# Few enough that a window's folders stay under RefreshCache's 50 (no recursive fallback),
# so coverage is checked folder by folder.
FOLDERS = ("", "in", "in/a", "in/b b", "logs/2026", "deep/x/y")
EXPORT_DIRS = ("mix", "mix/a", "mix/b c")
MAX_RECEIVES = 25  # crashes and freezes re-deliver often; giving up is not what is tested
WORDS = ("plain", "Zürich", "東京", "007", "-0.25", "a, b", 'say "hi"', "two\r\nlines", "")
Kind = Literal["csv", "change", "sidecar", "poison"]


@dataclass(frozen=True)
class World:
    """Where a mixed run happens: one bucket (CSV sources, outputs, refreshed by a share on
    it), an export on ganesha, a refresh table, the Storage Gateway endpoint and a queue."""

    bucket: str
    export: Path
    queue: TestQueue
    table: RefreshTable
    gateway: StorageGatewayEndpoint
    share_arn: str
    sidecar_env: dict[str, str]

    def env(self, **extra: Any) -> dict[str, Any]:
        """A worker's environment for this world (AWS_ENDPOINT_URL reaches DynamoDB too)."""
        return {
            "QUEUE_URL": self.queue.url,
            "DLQ_URL": self.queue.dlq_url,
            "REFRESH_TABLE": self.table.name,
            "REFRESH_WINDOW_SECONDS": "2",
            "AWS_ENDPOINT_URL_STORAGE_GATEWAY": self.gateway.url,
            "CSV_PROCESSES": "1",
            "CSV_PART_SIZE_MB": "5",
            "WORKER_MAX_RECEIVES": str(MAX_RECEIVES),
            **self.sidecar_env,
            **{k: str(v) for k, v in extra.items()},
        }


@dataclass(frozen=True)
class Item:
    """One message body of the mix and what it asks for."""

    kind: Kind
    body: str
    csv_key: str | None = None  # the CSV source it converts
    folder: str | None = None  # the bucket folder it changes ('' for the top): a refresh
    sidecar: str | None = None  # the filename it asks a sidecar for
    results: Any = None


@dataclass
class Workload:
    items: list[Item]
    sources: dict[str, bytes]  # CSV key -> content, as put in S3

    def count(self, kind: Kind) -> int:
        return sum(1 for item in self.items if item.kind == kind)


def small_csv(rng: random.Random) -> bytes:
    columns = [f"c{i}" for i in range(rng.randint(1, 5))]
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator=rng.choice(["\r\n", "\n"]))
    writer.writerow(columns)
    for _ in range(rng.choice([0, 1, 3, 12, 40])):
        writer.writerow([rng.choice(WORDS) for _ in columns])
    return out.getvalue().encode("utf-8")


def large_csv(rows: int) -> bytes:
    """About 70 bytes a row in, 110 out: 60,000 rows make a 6.6 MB output (two 5 MiB parts)."""
    line = b'%d,"a quoted, longer text field",%d.5,plain words here,true\n'
    return b"id,text,amount,words,flag\n" + b"".join(line % (i, i) for i in range(rows))


def make_workload(
    world: World,
    s3: Any,
    rng: random.Random,
    *,
    jobs: int,
    large: int = 0,
    poison_every: int = 25,
) -> Workload:
    """`jobs` messages (csv 40%, refresh 25%, sidecar 35%, one in `poison_every` poisoned),
    plus `large` CSVs whose outputs go up as multipart uploads; objects and files made now."""
    builder = _Builder(world, s3, rng)
    items = [builder.large(i) for i in range(large)]
    for i in range(jobs):
        draw = rng.random()
        if i % poison_every == poison_every - 1:
            items.append(builder.poison(i))
        elif draw < 0.40:
            items.append(builder.csv(i))
        elif draw < 0.65:
            items.append(builder.change(i))
        else:
            items.append(builder.sidecar(i))
    rng.shuffle(items)
    return Workload(items, builder.sources)


class _Builder:
    def __init__(self, world: World, s3: Any, rng: random.Random) -> None:
        self.world = world
        self.s3 = s3
        self.rng = rng
        self.sources: dict[str, bytes] = {}

    def _key(self, i: int, name: str) -> tuple[str, str]:
        folder = self.rng.choice(FOLDERS)
        return folder, f"{folder}/{name}".lstrip("/")

    def _put(self, key: str, data: bytes) -> str:
        self.sources[key] = data
        return str(self.s3.put_object(Bucket=self.world.bucket, Key=key, Body=data)["ETag"])

    def csv(self, i: int) -> Item:
        folder, key = self._key(i, f"t{i:04} é.csv")
        etag = self._put(key, small_csv(self.rng))
        shape = self.rng.choice(["job", "s3", "sns", "eventbridge"])
        if shape == "job":
            body = json.dumps({"job": "csv", "bucket": self.world.bucket, "key": key})
            return Item("csv", body, csv_key=key)
        body = event_body(shape, self.world.bucket, key, etag)
        return Item("csv", body, csv_key=key, folder=folder)

    def large(self, i: int) -> Item:
        key = f"large/big{i}.csv"
        self._put(key, large_csv(60_000))
        body = json.dumps({"job": "csv", "bucket": self.world.bucket, "key": key})
        return Item("csv", body, csv_key=key)

    def change(self, i: int) -> Item:
        folder, key = self._key(i, f"o{i:04}.txt")
        if self.rng.random() < 0.3:
            now = datetime.now(UTC).isoformat(timespec="milliseconds")
            fields = {"job": "refresh", "bucket": self.world.bucket, "key": key, "event_time": now}
            return Item("change", json.dumps(fields), folder=folder)
        shape = self.rng.choice(["s3", "s3-removed", "sns", "eventbridge"])
        return Item("change", event_body(shape, self.world.bucket, key, "abc"), folder=folder)

    def sidecar(self, i: int) -> Item:
        directory = self.rng.choice(EXPORT_DIRS)
        (self.world.export / directory).mkdir(parents=True, exist_ok=True)
        name = f"{directory}/s{i:04}.raw"
        (self.world.export / name).write_bytes(b"r" * self.rng.randint(0, 5000))
        results: Any = self.rng.choice(["QC passed", "ünïcode ✓", {"score": i, "ok": True}])
        filename = self.rng.choice([name, "/" + name])
        fields: dict[str, Any] = {"filename": filename, "results": results}
        if self.rng.random() < 0.5:
            fields = {"job": "sidecar", **fields}
        return Item("sidecar", json.dumps(fields), sidecar=filename, results=results)

    def poison(self, i: int) -> Item:
        bodies = [
            f"not json {i}",
            json.dumps({"job": "csv", "bucket": self.world.bucket, "key": f"gone/never{i}.csv"}),
            json.dumps({"filename": f"../escape{i}.raw", "results": "x"}),
            json.dumps({"filename": f"mix/missing{i}.raw", "results": "x"}),
            json.dumps({"job": f"nonesuch{i}"}),
        ]
        return Item("poison", self.rng.choice(bodies))


def event_body(shape: str, bucket: str, key: str, etag: str) -> str:
    """An object event as S3 (direct or through SNS) or EventBridge sends it: key URL-encoded."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    if shape == "eventbridge":
        detail = {"bucket": {"name": bucket}, "object": {"key": quote_plus(key), "etag": etag}}
        event = {"source": "aws.s3", "detail-type": "Object Created", "time": now}
        return json.dumps({**event, "detail": detail})
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": now,
        "eventName": "ObjectRemoved:Delete" if shape == "s3-removed" else "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AIDAUPLOADER"},
        "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key), "eTag": etag}},
    }
    body = json.dumps({"Records": [record]})
    if shape == "sns":
        return json.dumps({"Type": "Notification", "MessageId": "sns-1", "Message": body})
    return body


@dataclass(frozen=True)
class Sent:
    item: int  # index in Workload.items
    message_id: str
    at: float  # time.time() once SendMessageBatch returned


@dataclass
class Feeder:
    """Sends the mix in batches of ten at `rate` messages a second, waiting while the queue
    holds more than `max_depth` visible messages (moto's SQS slows as it deepens).
    `copies=2` sends every body twice in one batch: two workers take them at once."""

    sqs: Any
    queue_url: str
    items: list[Item]
    rate: float
    copies: int = 1
    max_depth: int = 100
    sent: list[Sent] = field(default_factory=list)
    error: BaseException | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Feeder:
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float = 300) -> list[Sent]:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the feeder did not finish within {timeout}s"
        if self.error is not None:
            raise self.error
        return self.sent

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def _run(self) -> None:
        try:
            per_batch = 10 // self.copies
            pause = 10 / self.rate
            for start in range(0, len(self.items), per_batch):
                began = time.monotonic()
                self._wait_shallow()
                indexes = [i for i in range(start, min(start + per_batch, len(self.items)))]
                self._send([i for i in indexes for _ in range(self.copies)])
                time.sleep(max(0.0, pause - (time.monotonic() - began)))
        except BaseException as exc:  # handed to join(): a thread cannot fail the test
            self.error = exc

    def _wait_shallow(self) -> None:
        while True:
            attributes = self.sqs.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
            if int(attributes["ApproximateNumberOfMessages"]) <= self.max_depth:
                return
            time.sleep(0.2)

    def _send(self, indexes: list[int]) -> None:
        entries = [{"Id": str(n), "MessageBody": self.items[i].body} for n, i in enumerate(indexes)]
        response = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        assert not response.get("Failed"), response["Failed"]
        now = time.time()
        for entry in response["Successful"]:
            self.sent.append(Sent(indexes[int(entry["Id"])], entry["MessageId"], now))
