"""Decide which jobs a message's requests become, and which handler runs each job kind."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from worker.errors import InvalidMessage
from worker.handlers import csv_job, probe, refresh_job, sidecar_job
from worker.jobs import Job, JobRequest, MessageFacts, ObjectChange, Request
from worker.ports import Adapters
from worker.settings import CsvSettings, Settings


class Handler(Protocol):
    """Runs one job; returns an optional detail for the log, or raises a JobError."""

    def __call__(self, job: Job, facts: MessageFacts) -> Awaitable[str | None]: ...


HandlerFactory = Callable[[Settings, Adapters], Handler]

# The explicit registry: job kind -> the factory that builds its handler once at start.
HANDLERS: dict[str, HandlerFactory] = {
    "csv": csv_job.create,
    "refresh": refresh_job.create,
    "refresh_due": refresh_job.create_due,  # the delayed message that fires an aggregated refresh
    "sidecar": sidecar_job.create,
}
DIAGNOSTIC_HANDLERS: dict[str, HandlerFactory] = {"probe": probe.create}


def build_handlers(
    settings: Settings, adapters: Adapters, *, diagnostics: bool
) -> dict[str, Handler]:
    """Create every handler once from the adapters the composition root built."""
    factories = dict(HANDLERS)
    if diagnostics:
        factories.update(DIAGNOSTIC_HANDLERS)
    return {kind: factory(settings, adapters) for kind, factory in factories.items()}


def plan(requests: list[Request], settings: Settings, known: frozenset[str]) -> list[Job]:
    """Turn parsed requests into jobs; an unknown job kind makes the message invalid."""
    jobs: list[Job] = []
    for request in requests:
        if isinstance(request, JobRequest):
            if request.job not in known:
                raise InvalidMessage(
                    f"unknown job {request.job!r} (known: {', '.join(sorted(known))})"
                )
            jobs.append(Job(kind=request.job, payload=request.fields))
        else:
            jobs.extend(_jobs_for_change(request, settings))
    return jobs


def _jobs_for_change(change: ObjectChange, settings: Settings) -> list[Job]:
    jobs: list[Job] = []
    if change.change == "created" and is_convertible(change.bucket, change.key, settings.csv):
        source: dict[str, Any] = {"bucket": change.bucket, "key": change.key}
        if change.etag:
            source["etag"] = change.etag
        if change.version_id:
            source["version_id"] = change.version_id
        jobs.append(Job(kind="csv", payload=source, change=change))
    if settings.refresh.table:
        payload: dict[str, Any] = {
            "bucket": change.bucket,
            "key": change.key,
            "event_time": change.event_time,
        }
        if change.principal:
            payload["principal"] = change.principal
        jobs.append(Job(kind="refresh", payload=payload, change=change))
    return jobs


def is_convertible(bucket: str, key: str, csv: CsvSettings) -> bool:
    """A key with a CSV suffix that is not our own output (README, "CSV to JSON")."""
    if not key.lower().endswith(csv.suffixes):
        return False
    output_bucket = csv.output_bucket or bucket
    return not (output_bucket == bucket and csv.output_prefix and key.startswith(csv.output_prefix))
