"""What a mixed run must leave behind, read from the world itself, never from worker logs.

- every CSV has exactly one output, equal to what Python's csv module reads from the source
  and made from that very source (its ETag), nothing else under the output prefix, and no
  multipart upload left open in the bucket;
- every sidecar is there with the bytes the job renders for its file (for one of the
  messages that asked for it), no other sidecar, no temporary file;
- every refresh change is covered by a RefreshCache that the gateway accepted after the
  change was sent, and the refresh table holds no open window, pending folder or claim;
- the dead-letter queue holds the planted poison and nothing else; the queue is empty.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from typing import Any

from tests.chaos.mix import Sent, Workload, World
from tests.conftest import drain_all
from tests.csv.conftest import ndjson
from tests.refresh.conftest import covers
from tests.sidecar.conftest import temporaries
from tests.sidecar.test_worker import expected_sidecar
from worker.handlers.sidecar_job import safe_parts, sidecar_name

OUTPUT_PREFIX = "converted/"


def verify(
    world: World,
    workload: Workload,
    sent: list[Sent],
    *,
    s3: Any,
    sqs: Any,
    dynamodb: Any,
    dead_letter_repeats: bool = False,
) -> list[str]:
    """Every way the end state differs from the one the mix asks for (empty: all is well).

    `dead_letter_repeats`: a message held by two workers at once may be dead-lettered by
    both (moving is a send then a delete, at least once): copies of a poison body are
    tolerated, any other body is not."""
    return [
        *csv_problems(world, workload, s3),
        *sidecar_problems(world, workload, sent),
        *refresh_problems(world, workload, sent, dynamodb),
        *dead_letter_problems(world, workload, sent, sqs, repeats=dead_letter_repeats),
        *queue_problems(world, sqs),
    ]


def output_key(source_key: str) -> str:
    return OUTPUT_PREFIX + source_key[: -len(".csv")] + ".json"


def csv_problems(world: World, workload: Workload, s3: Any) -> list[str]:
    problems = []
    wanted = {item.csv_key for item in workload.items if item.csv_key}
    expected_keys = {output_key(key) for key in wanted}
    found = set(_list_keys(s3, world.bucket, OUTPUT_PREFIX))
    problems += [f"csv: missing output {key}" for key in sorted(expected_keys - found)]
    problems += [f"csv: unexpected object {key}" for key in sorted(found - expected_keys)]
    for key in sorted(wanted):
        if output_key(key) not in found:
            continue
        source = workload.sources[key]
        reader = csv.DictReader(io.StringIO(source.decode("utf-8"), newline=""))
        response = s3.get_object(Bucket=world.bucket, Key=output_key(key))
        if ndjson(response["Body"].read()) != list(reader):
            problems.append(f"csv: wrong content in {output_key(key)}")
        etag = s3.head_object(Bucket=world.bucket, Key=key)["ETag"]
        if response["Metadata"].get("source-etag") != etag:
            problems.append(f"csv: {output_key(key)} was not made from the current source")
    uploads = s3.list_multipart_uploads(Bucket=world.bucket).get("Uploads", [])
    problems += [f"csv: multipart upload left open: {u['Key']} {u['UploadId']}" for u in uploads]
    return problems


def _list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def sidecar_problems(world: World, workload: Workload, sent: list[Sent]) -> list[str]:
    problems = []
    asked: dict[str, list[str]] = defaultdict(list)  # sidecar path -> ids of messages asking
    requests = {}
    for copy in sent:
        item = workload.items[copy.item]
        if item.sidecar is not None:
            parts = safe_parts(item.sidecar)
            path = "/".join((*parts[:-1], sidecar_name(parts[-1])))
            asked[path].append(copy.message_id)
            requests[path] = item
    for path, ids in sorted(asked.items()):
        target = world.export / path
        if not target.exists():
            problems.append(f"sidecar: missing {path}")
            continue
        item = requests[path]
        assert item.sidecar is not None
        data = target.read_bytes()
        if all(
            data != expected_sidecar(world.export, item.sidecar, item.results, message_id)
            for message_id in ids
        ):
            problems.append(f"sidecar: wrong content in {path}: {data[:120]!r}")
    found = {str(p.relative_to(world.export)) for p in world.export.rglob("*-sidecar.json")}
    problems += [f"sidecar: unexpected {path}" for path in sorted(found - set(asked))]
    problems += [f"sidecar: temporary file left: {p}" for p in temporaries(world.export)]
    return problems


def refresh_problems(
    world: World, workload: Workload, sent: list[Sent], dynamodb: Any
) -> list[str]:
    problems = []
    calls = [c for c in world.gateway.refreshes() if c.params["FileShareARN"] == world.share_arn]
    changes = [(copy, workload.items[copy.item].folder) for copy in sent]
    changes = [(copy, folder) for copy, folder in changes if folder is not None]
    for copy, folder in changes:
        relative = folder or "/"
        if not any(call.at > copy.at and covers(call, relative) for call in calls):
            problems.append(
                f"refresh: no refresh of {relative!r} after the change in message "
                f"{copy.message_id} (sent at {copy.at:.3f})"
            )
    if changes and (not calls or calls[-1].at <= max(copy.at for copy, _ in changes)):
        problems.append("refresh: the last refresh does not start after the last change")
    item = dynamodb.get_item(
        TableName=world.table.name, Key={"target": {"S": world.bucket}}, ConsistentRead=True
    ).get("Item", {})
    left = sorted(a for a in item if a in ("token", "due", "folders") or a.startswith("claim_"))
    if left:
        problems.append(f"refresh: the table still holds {left} for {world.bucket}")
    return problems


def dead_letter_problems(
    world: World, workload: Workload, sent: list[Sent], sqs: Any, *, repeats: bool
) -> list[str]:
    expected = Counter(
        workload.items[copy.item].body
        for copy in sent
        if workload.items[copy.item].kind == "poison"
    )
    dead = drain_all(sqs, world.queue.dlq_url)
    found = Counter(m["Body"] for m in dead)
    problems = [f"dlq: not poison: {body[:200]!r}" for body in sorted(set(found) - set(expected))]
    missing = expected - found
    problems += [f"dlq: poison not dead-lettered: {body[:200]!r}" for body in sorted(missing)]
    extra = found - expected
    if extra and not repeats:
        problems += [f"dlq: dead-lettered {n} more times: {b[:200]!r}" for b, n in extra.items()]
    unexplained = [m for m in dead if "spotdrain-reason" not in m.get("MessageAttributes", {})]
    problems += [f"dlq: no reason on {m['Body'][:200]!r}" for m in unexplained]
    return problems


def queue_problems(world: World, sqs: Any) -> list[str]:
    kinds = ("Messages", "MessagesNotVisible", "MessagesDelayed")
    names = ["ApproximateNumberOf" + kind for kind in kinds]
    attributes = sqs.get_queue_attributes(QueueUrl=world.queue.url, AttributeNames=names)
    held = {n: int(attributes["Attributes"][n]) for n in names}
    return [f"queue: {name} = {count}" for name, count in held.items() if count]
