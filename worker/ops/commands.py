"""The commands behind `spotdrain`: each takes parsed arguments and returns a Report."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from launcher.settings import default_started_by
from worker.ops import dead_letters, moving, status, views
from worker.ops.aws import Clients, describe
from worker.ops.dead_letters import Lease
from worker.ops.output import Progress, isatty

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """The command line (or what it asks for) makes no sense; exit 2."""


class Failure(Exception):
    """The command could not do its job; exit 1 with this line."""


@dataclass(frozen=True)
class Io:
    stdin: TextIO
    stdout: TextIO
    stderr: TextIO


@dataclass
class Report:
    """A command's result: the JSON document, the text for people, and how it ended."""

    doc: dict[str, Any]
    lines: list[str]
    code: int = EXIT_OK
    errors: list[str] = field(default_factory=list)  # one line each, on stderr


def run_status(args: argparse.Namespace, clients: Clients, io: Io) -> Report:
    counts, attributes = status.counts(clients.sqs, args.queue_url)
    errors = []
    try:
        age = status.oldest_age(clients.cloudwatch, args.queue_url)
    except (ClientError, BotoCoreError) as exc:
        age = None
        errors.append(f"warning: oldest message age unknown: {describe(exc)}")
    dlq_url = args.dlq_url or status.dead_letter_url(clients.sqs, attributes)
    dead = None
    if dlq_url:
        dlq, _ = status.counts(clients.sqs, dlq_url)
        dead = {
            "url": dlq_url,
            "count": dlq.visible + dlq.in_flight,
            "visible": dlq.visible,
            "in_flight": dlq.in_flight,
        }
    fleet = None
    if args.cluster:
        started_by = args.started_by or default_started_by(args.queue_url)
        fleet = status.workers_document(status.workers(clients.ecs, args.cluster, started_by))
    doc = {
        "queue": {
            "url": counts.url,
            "visible": counts.visible,
            "in_flight": counts.in_flight,
            "delayed": counts.delayed,
            "oldest_message_age_seconds": age,
        },
        "dead_letters": dead,
        "workers": fleet,
    }
    return Report(doc, views.status(doc), errors=errors)


def _lease_for(args: argparse.Namespace, clients: Clients) -> Lease:
    return Lease(clients.sqs, args.dlq_url, seconds=args.visibility_timeout, most=args.max)


def run_list(args: argparse.Namespace, clients: Clients, io: Io) -> Report:
    with _lease_for(args, clients) as lease:
        letters = dead_letters.read_all(lease)
    doc = {
        "dlq_url": args.dlq_url,
        "total": len(letters),
        "complete": lease.complete,
        "reasons": [
            {"reason": g.reason, "count": g.count, "sample_message_ids": g.samples}
            for g in dead_letters.group(letters)
        ],
    }
    return Report(doc, views.dead_letter_list(doc))


def run_show(args: argparse.Namespace, clients: Clients, io: Io) -> Report:
    with _lease_for(args, clients) as lease:
        letter = dead_letters.find(lease, args.id)
    if letter is None:
        more = "" if lease.complete else f" among the first {args.max} (--max)"
        raise Failure(f"no dead letter with message id {args.id}{more} in {args.dlq_url}")
    sent = letter.system.get("SentTimestamp")
    doc = {
        "message_id": letter.message_id,
        "original_message_id": letter.original_id,
        "reason": letter.reason,
        "receive_count": letter.attempts,
        "sqs_receive_count": letter.sqs_receive_count,
        "source_queue": letter.source_queue,
        "sent": _iso(sent) if sent else None,
        "attributes": dead_letters.attribute_rows(letter),
        "body": letter.body,
    }
    return Report(doc, views.dead_letter(doc))


def _iso(milliseconds: str) -> str:
    moment = datetime.fromtimestamp(int(milliseconds) / 1000, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _progress(io: Io, clients: Clients, url: str, label: str, limit: int | None) -> Progress:
    """A bar sized by the dead-letter queue's visible count, asked only on a terminal."""
    if not isatty(io.stderr):
        return Progress(io.stderr, 0, label)
    total = status.counts(clients.sqs, url)[0].visible
    return Progress(io.stderr, total if limit is None else min(total, limit), label)


def run_redrive(args: argparse.Namespace, clients: Clients, io: Io) -> Report:
    if args.queue_url.rstrip("/") == args.dlq_url.rstrip("/"):
        raise UsageError("--queue-url and --dlq-url name the same queue")
    errors: list[str] = []
    progress = _progress(io, clients, args.dlq_url, "redrive", args.limit)
    try:
        result = None
        if args.reason is None and args.limit is None and not args.dry_run:
            try:
                result = moving.move_task(
                    clients.sqs, args.dlq_url, args.queue_url, progress=progress
                )
            except moving.MoveTaskRefused as exc:
                errors.append(f"SQS will not run a message move task ({exc}): moving in batches")
            except moving.MoveTaskFailed as exc:
                raise Failure(f"the message move task ended {exc}") from None
        if result is None:
            with _lease_for(args, clients) as lease:
                result = moving.redrive(
                    clients.sqs,
                    lease,
                    args.queue_url,
                    reason=args.reason,
                    limit=args.limit,
                    dry_run=args.dry_run,
                    progress=progress,
                )
    finally:
        progress.close()
    code = EXIT_OK
    if result.failed:
        code = EXIT_FAILED
        errors.append(f"error: {result.failed} dead letters could not be sent to the queue")
    if result.duplicated:
        errors.append(f"warning: {result.duplicated} dead letters are now in both queues")
    launcher = None
    if args.launcher and result.moved and not args.dry_run:
        try:
            moving.nudge_launcher(clients.lambda_, args.launcher)
            launcher = args.launcher
        except (ClientError, BotoCoreError) as exc:
            code = EXIT_FAILED
            errors.append(f"error: {describe(exc)}")
    doc = {
        "dlq_url": args.dlq_url,
        "queue_url": args.queue_url,
        "reason": args.reason,
        "limit": args.limit,
        "dry_run": args.dry_run,
        "via": result.via,
        "scanned": result.scanned,
        "matched": result.matched,
        "moved": result.moved,
        "would_move": result.matched if args.dry_run else None,
        "failed": result.failed,
        "duplicated": result.duplicated,
        "complete": result.complete,
        "launcher": launcher,
    }
    return Report(doc, views.redrive(doc), code=code, errors=errors)


def run_purge(args: argparse.Namespace, clients: Clients, io: Io) -> Report:
    if not args.yes and not isatty(io.stdin):
        raise UsageError(
            "refusing to delete without confirmation: stdin is not a terminal (pass --yes)"
        )
    confirmed = False
    with _lease_for(args, clients) as lease:
        letters = dead_letters.read_all(lease)
        chosen = [m for m in letters if m.matches(args.reason)]
        result = moving.Moved(scanned=len(letters), matched=len(chosen))
        if chosen:
            confirmed = args.yes or _confirm(
                io, f"Delete {len(chosen)} dead letters whose reason contains {args.reason!r}?"
            )
        if confirmed:
            result = moving.purge(clients.sqs, lease, chosen)
            result.scanned = len(letters)
    doc = {
        "dlq_url": args.dlq_url,
        "reason": args.reason,
        "scanned": result.scanned,
        "matched": result.matched,
        "confirmed": confirmed,
        "deleted": result.moved,
        "failed": result.failed,
        "complete": lease.complete,
    }
    errors = [f"error: {result.failed} dead letters could not be deleted"] if result.failed else []
    return Report(
        doc, views.purge(doc), code=EXIT_FAILED if result.failed else EXIT_OK, errors=errors
    )


def _confirm(io: Io, question: str) -> bool:
    io.stderr.write(f"{question} [y/N] ")
    io.stderr.flush()
    return io.stdin.readline().strip().lower() in ("y", "yes")
