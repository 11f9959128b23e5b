"""The contract between the two artefacts: what the launcher enqueues, the worker accepts.

Every kind of message the launcher produces (a single S3 record, an EventBridge event, a job
envelope), from every trigger it accepts, is parsed by the worker's own `envelope.parse` and
`routing.plan` into exactly the jobs the original event meant. Keys are checked where a
double decode or a missing decode would show: spaces, `+`, `%` and non-ASCII characters.
"""

from __future__ import annotations

from typing import Any

import pytest

from launcher.events import MESSAGE_KINDS, parse_event
from launcher.settings import KeyFilter
from tests.launcher.samples import (
    csv_job,
    eventbridge_event,
    refresh_job,
    s3_event,
    sidecar_job,
    sns_event,
    sns_notification,
    sqs_event,
)
from worker import envelope, routing
from worker.jobs import Job
from worker.settings import RefreshSettings, Settings

WORKER_SETTINGS = Settings(queue_url="x", refresh=RefreshSettings(table="refreshes"))
KNOWN = frozenset({"csv", "refresh", "sidecar"})
KEY = "in/Q1 2026+draft/100% été.csv"  # encoded: in/Q1+2026%2Bdraft/100%25+%C3%A9t%C3%A9.csv
S3_TIME = "2026-11-22T10:00:00.000Z"
S3_PRINCIPAL = "AWS:AIDAEXAMPLE"


def csv(key: str, bucket: str = "in") -> Job:
    return Job(kind="csv", payload={"bucket": bucket, "key": key, "etag": "abc123"})


def refresh(key: str, time: str = S3_TIME, principal: str = S3_PRINCIPAL) -> Job:
    payload = {"bucket": "in", "key": key, "event_time": time, "principal": principal}
    return Job(kind="refresh", payload=payload)


def envelope_job(doc: dict[str, Any]) -> Job:
    return Job(kind=doc["job"], payload={k: v for k, v in doc.items() if k != "job"})


EB_TIME, EB_PRINCIPAL = "2026-11-22T10:00:00Z", "123456789012"
DIRECT = [csv_job("out/a+b c.csv"), refresh_job("a b"), sidecar_job("/exp/run 1/x.dat", "")]

CASES: list[tuple[str, dict[str, Any], list[list[Job]]]] = [
    (
        "s3 multi-record",
        s3_event(KEY, "in/b.csv"),
        [[csv(KEY), refresh(KEY)], [csv("in/b.csv"), refresh("in/b.csv")]],
    ),
    (
        "s3 removed",
        s3_event(KEY, event="ObjectRemoved:Delete"),
        [[refresh(KEY)]],
    ),
    (
        "s3 not a csv",
        s3_event("in/notes 1+1.txt"),
        [[refresh("in/notes 1+1.txt")]],
    ),
    (
        "sns-wrapped s3",
        sns_event(s3_event(KEY)),
        [[csv(KEY), refresh(KEY)]],
    ),
    (
        "eventbridge created",
        eventbridge_event(KEY),
        [[csv(KEY), refresh(KEY, EB_TIME, EB_PRINCIPAL)]],
    ),
    (
        "eventbridge deleted",
        eventbridge_event(KEY, detail_type="Object Deleted"),
        [[refresh(KEY, EB_TIME, EB_PRINCIPAL)]],
    ),
    (
        "sns sidecar request",
        sns_event({"filename": "exports/a b.dat", "results": '{"ok": true}'}),
        [[Job(kind="sidecar", payload={"filename": "exports/a b.dat", "results": '{"ok": true}'})]],
    ),
    (
        "sns job envelope",
        sns_event(csv_job("a+b.csv")),
        [[envelope_job(csv_job("a+b.csv"))]],
    ),
    (
        "direct jobs",
        {"jobs": DIRECT},
        [[envelope_job(job)] for job in DIRECT],
    ),
    (
        "sqs batch of every shape",
        sqs_event(
            s3_event(KEY),
            sns_notification(s3_event("in/c.csv")),
            eventbridge_event(KEY),
            {"filename": "f.dat", "results": "r"},
            {"jobs": [sidecar_job("g.dat")]},
        ),
        [
            [csv(KEY), refresh(KEY)],
            [csv("in/c.csv"), refresh("in/c.csv")],
            [csv(KEY), refresh(KEY, EB_TIME, EB_PRINCIPAL)],
            [Job(kind="sidecar", payload={"filename": "f.dat", "results": "r"})],
            [envelope_job(sidecar_job("g.dat"))],
        ],
    ),
]


def worker_jobs(body: str) -> list[Job]:
    return routing.plan(envelope.parse(body), WORKER_SETTINGS, KNOWN)


@pytest.mark.parametrize(("event", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_message_the_launcher_enqueues_becomes_the_intended_jobs(
    event: dict[str, Any], expected: list[list[Job]]
) -> None:
    parsed = parse_event(event, KeyFilter())
    bodies = [message.body for unit in parsed.units for message in unit.messages]

    assert [worker_jobs(body) for body in bodies] == expected


def test_the_cases_cover_every_kind_of_message_the_launcher_produces() -> None:
    kinds = {
        message.kind
        for _, event, _ in CASES
        for unit in parse_event(event, KeyFilter()).units
        for message in unit.messages
    }

    assert kinds == set(MESSAGE_KINDS)


def test_a_key_is_decoded_exactly_once_between_the_two() -> None:
    """`%25` is a literal `%` once decoded; decoding twice would fail or change the key."""
    (unit,) = parse_event(s3_event("100%41 done.csv"), KeyFilter()).units

    (job, _) = worker_jobs(unit.messages[0].body)

    assert job.payload["key"] == "100%41 done.csv"
