"""The sidecar job: stat a file on the export and write `<base>-sidecar.json` beside it, atomically.

Payload: `{"filename": "dir/file.ext", "results": <any JSON value, usually a string>}`.
The filename is a path inside the export (or SIDECAR_ROOT); a leading `/` is that root. A
name that leaves the root after normalising, contains a NUL byte or names nothing is refused
before any I/O: the job fails permanently and nothing is written.

The sidecar (UTF-8 JSON, keys in this order, newline at the end):
    filename    the name exactly as the message gave it
    path        the normalised path inside the root, with a leading `/`
    size        the file's size in bytes
    created     the file's ctime, ISO-8601 with a UTC offset. NFSv3 has no birth time, so
                this is the last status change, as the reference design records it
    modified    the file's mtime, same format
    results     the message's `results`, unchanged
    message_id  the SQS message that asked for the sidecar
Nothing in it depends on when it was written, so a redelivered job rewrites the same bytes.

The temporary name is `.<sidecar>.<token>-<n>.spotdrain-tmp`: the token derived from the
message id, `n` the attempt (SQS's receive count). Each attempt writes and renames only its own
name, so an attempt that was thought dead but still runs (a frozen worker whose lease lapsed)
can never publish another attempt's half-written file; and attempt `n` first removes the names
of attempts 1..n-1, which is what an interrupted attempt leaves behind, without listing the
directory (exports hold millions of files).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from worker.adapters.files import FileFacts, Placement, SidecarStore
from worker.errors import PermanentError
from worker.jobs import Job, MessageFacts
from worker.metrics import Metrics
from worker.ports import Adapters
from worker.settings import Settings

SIDECAR_SUFFIX = "-sidecar.json"
TEMPORARY_SUFFIX = ".spotdrain-tmp"
NAME_MAX = 255  # bytes in one path component, on NFS and on Linux file systems


@dataclass(frozen=True)
class SidecarRequest:
    """A validated sidecar job: the name as given, its safe normalised parts, the results."""

    filename: str
    parts: tuple[str, ...]
    results: Any

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> SidecarRequest:
        filename = payload.get("filename")
        if not isinstance(filename, str):
            raise PermanentError("'filename' must be a string")
        if "results" not in payload:
            raise PermanentError("'results' is missing")
        results = payload["results"]
        try:
            json.dumps(results, ensure_ascii=False).encode("utf-8")
        except (UnicodeEncodeError, ValueError, TypeError):
            raise PermanentError("'results' cannot be written as UTF-8 JSON") from None
        return cls(filename=filename, parts=safe_parts(filename), results=results)

    @property
    def path(self) -> str:
        return "/".join(self.parts)


def safe_parts(filename: str) -> tuple[str, ...]:
    """The path components of `filename` inside the root, or PermanentError if it leaves it."""
    if filename == "":
        raise PermanentError("'filename' is empty")
    if "\x00" in filename:
        raise PermanentError("'filename' contains a NUL byte")
    try:
        filename.encode("utf-8")
    except UnicodeEncodeError:
        raise PermanentError("'filename' is not valid Unicode") from None
    parts: list[str] = []
    for part in filename.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise PermanentError(f"'filename' {filename!r} leaves the export root")
            parts.pop()
        else:
            parts.append(part)
    if not parts:
        raise PermanentError(f"'filename' {filename!r} names the root, not a file")
    return tuple(parts)


def sidecar_name(name: str) -> str:
    """`<base>-sidecar.json`, base being the name without its extension (`a.tar.gz` -> `a.tar`)."""
    return posixpath.splitext(name)[0] + SIDECAR_SUFFIX


# Earlier attempts whose leftovers an attempt removes: the receive counts before its own, at
# most this many (a queue's maxReceiveCount is rarely above it; the oldest go first anyway).
EARLIER_ATTEMPTS_CLEANED = 16


def temporary_name(sidecar: str, message_id: str, attempt: int) -> str:
    """A hidden, recognisable name of one attempt (receive count) of one message."""
    token = hashlib.sha256(message_id.encode()).hexdigest()[:12]
    name = f".{sidecar}.{token}-{attempt}{TEMPORARY_SUFFIX}"
    if len(name.encode()) > NAME_MAX:  # a long sidecar name: keep the temporary one legal
        short = hashlib.sha256(sidecar.encode()).hexdigest()[:16]
        name = f".{short}.{token}-{attempt}{TEMPORARY_SUFFIX}"
    return name


def placement(request: SidecarRequest, message: MessageFacts) -> Placement:
    directory = request.parts[:-1]
    sidecar = sidecar_name(request.parts[-1])
    attempt = max(1, message.receive_count)

    def beside(name: str) -> str:
        return "/".join((*directory, name))

    earlier = range(max(1, attempt - EARLIER_ATTEMPTS_CLEANED), attempt)
    return Placement(
        source=request.path,
        target=beside(sidecar),
        temporary=beside(temporary_name(sidecar, message.message_id, attempt)),
        leftovers=tuple(beside(temporary_name(sidecar, message.message_id, n)) for n in earlier),
    )


def iso_time(ns: int) -> str:
    """Nanoseconds since the epoch as ISO-8601 in UTC, to the microsecond (`...+00:00`)."""
    seconds, rest = divmod(ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=rest // 1000)
    return moment.isoformat(timespec="microseconds")


def render_sidecar(request: SidecarRequest, file: FileFacts, *, message_id: str) -> bytes:
    """The sidecar's exact bytes: stable key order, UTF-8, a newline at the end."""
    document = {
        "filename": request.filename,
        "path": "/" + request.path,
        "size": file.size,
        "created": iso_time(file.ctime_ns),
        "modified": iso_time(file.mtime_ns),
        "results": request.results,
        "message_id": message_id,
    }
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


class SidecarJob:
    """The handler: validate, then one call into the store (stat, render, write, rename)."""

    def __init__(self, store: SidecarStore, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics

    async def __call__(self, job: Job, facts: MessageFacts) -> str | None:
        request = SidecarRequest.parse(job.payload)
        place = placement(request, facts)
        render = partial(render_sidecar, request, message_id=facts.message_id)
        await self._store.write_beside(place, render)
        self._metrics.count("SidecarsWritten")
        return place.target


class Unconfigured:
    async def __call__(self, job: Job, facts: MessageFacts) -> str | None:
        raise PermanentError("no sidecar destination: set SIDECAR_NFS_URL or SIDECAR_ROOT")


def create(settings: Settings, adapters: Adapters) -> SidecarJob | Unconfigured:
    if adapters.sidecar_store is None:
        return Unconfigured()
    return SidecarJob(adapters.sidecar_store, adapters.metrics)
