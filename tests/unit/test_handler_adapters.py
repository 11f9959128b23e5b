"""Handlers take their adapters from one typed context, so a small fake stands in for NFS,
S3 or DynamoDB in a unit test (the process-level tests run the real ones)."""

from __future__ import annotations

import asyncio
import json

import pytest

from worker import routing
from worker.adapters.files import FileFacts, Placement, Render
from worker.errors import PermanentError
from worker.jobs import Job, MessageFacts
from worker.metrics import Metrics
from worker.ports import Adapters
from worker.settings import Settings


class RecordingStore:
    """A sidecar store that keeps what it would write, for a source it pretends exists."""

    def __init__(self) -> None:
        self.written: dict[str, bytes] = {}

    async def write_beside(self, place: Placement, render: Render) -> FileFacts:
        facts = FileFacts(size=42, mtime_ns=0, ctime_ns=0, is_directory=False)
        self.written[place.target] = render(facts)
        return facts


def adapters(**parts: object) -> Adapters:
    defaults: dict[str, object] = dict(
        metrics=Metrics.off(),
        objects=None,
        work_queue=None,
        csv_results=None,
        frames=None,
        refresh_table=None,
        gateway=None,
        sidecar_store=None,
    )
    return Adapters(**{**defaults, **parts})  # type: ignore[arg-type]


def run(kind: str, context: Adapters, payload: dict[str, object]) -> str | None:
    """Build only `kind`'s handler from the registry, as the worker does at start, and run it."""
    handler = routing.HANDLERS[kind](Settings(queue_url="q"), context)
    facts = MessageFacts(message_id="m-1", receive_count=1)
    return asyncio.run(handler(Job(kind=kind, payload=payload), facts))


def test_the_sidecar_handler_writes_through_whatever_store_the_context_holds():
    store = RecordingStore()
    target = run("sidecar", adapters(sidecar_store=store), {"filename": "in/a.dat", "results": 7})
    assert target == "in/a-sidecar.json"
    document = json.loads(store.written["in/a-sidecar.json"])
    assert (document["path"], document["size"], document["results"]) == ("/in/a.dat", 42, 7)


def test_without_a_sidecar_store_the_job_fails_permanently_naming_the_settings():
    with pytest.raises(PermanentError, match="SIDECAR_NFS_URL or SIDECAR_ROOT"):
        run("sidecar", adapters(), {"filename": "in/a.dat", "results": 7})


@pytest.mark.parametrize("kind", ["refresh", "refresh_due"])
def test_without_a_refresh_table_refresh_jobs_fail_permanently(kind: str):
    with pytest.raises(PermanentError, match="REFRESH_TABLE is not set"):
        run(kind, adapters(), {"bucket": "b", "key": "k", "event_time": "2026-01-01T00:00:00Z"})
