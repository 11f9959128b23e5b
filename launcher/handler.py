"""The Lambda entry point: parse the event, enqueue its jobs, size the fleet, log one summary.

`lambda_handler` builds the settings and the boto3 clients once per container (on the first
invocation, not at import) and hands them to `handle`, which tests call directly.

Failure policy: a malformed event is rejected with InvalidEvent before anything is enqueued.
When the trigger is SQS, each record stands alone and the records that failed (malformed, or
not all of their messages enqueued) come back as `batchItemFailures`. Any other trigger has
no partial response, so any message left unsent raises EnqueueFailed and Lambda retries the
whole event (the worker's jobs are idempotent, duplicates are harmless, losses are not). In
every case, when messages had to be enqueued and none could be, the invocation raises.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from launcher import logs
from launcher.aws import clients, describe, dynamodb_client
from launcher.enqueue import Outgoing, SendResult, read_max_message_size, send_all
from launcher.errors import EnqueueFailed, InvalidEvent
from launcher.events import ParsedEvent, parse_event
from launcher.fleet import Launch, count_running, read_counts, start_tasks, wanted
from launcher.lease import SizingLease, Turn
from launcher.metrics import ContainerMetrics
from launcher.settings import Settings

if TYPE_CHECKING:  # the stubs are a test dependency only
    from types_boto3_ecs import ECSClient
    from types_boto3_sqs import SQSClient

MAX_LOGGED_FAILURES = 20


@dataclass
class Runtime:
    """What lives as long as the Lambda container: settings, clients, the queue's size limit."""

    settings: Settings
    sqs: SQSClient
    ecs: ECSClient
    sleep: Callable[[float], None] = time.sleep
    max_message_size: int | None = None
    metrics: ContainerMetrics | None = None
    lease: SizingLease | None = None  # None: sizings may overlap (tests, FLEET_LOCK_TABLE unset)

    def __post_init__(self) -> None:
        if self.metrics is None:
            self.metrics = ContainerMetrics(
                namespace=self.settings.metrics_namespace,
                queue=self.settings.queue_name,
                interval_seconds=self.settings.metrics_interval_seconds,
                enabled=self.settings.metrics,
            )

    def message_size_limit(self) -> int:
        """The queue's MaximumMessageSize, read once per container."""
        if self.max_message_size is None:
            self.max_message_size = read_max_message_size(self.sqs, self.settings.queue_url)
        return self.max_message_size


@dataclass
class Fleet:
    """The sizing decision and what launching did."""

    backlog: int | None = None
    running: int | None = None
    # unlocked (no lease), counted (nothing to start, no lease needed), or the lease's Turn:
    # held, covered (a later sizing counted this invocation's messages), busy; or failed
    sizing: str = "unlocked"
    wanted: int = 0
    launch: Launch = field(default_factory=Launch)
    failures: list[str] = field(default_factory=list)


_runtime: Runtime | None = None


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """AWS Lambda's entry point (`launcher.handler.lambda_handler`)."""
    global _runtime
    if _runtime is None:
        logs.configure()
        try:
            settings = Settings.from_env(os.environ)
        except Exception as exc:
            logs.log("launcher.config_error", logging.ERROR, error=str(exc))
            raise
        sqs, ecs = clients()
        lease = None
        if settings.fleet_lock_table:
            lease = SizingLease(dynamodb_client(), settings.fleet_lock_table, settings.started_by)
        _runtime = Runtime(settings=settings, sqs=sqs, ecs=ecs, lease=lease)
    return handle(event, _runtime, request_id=getattr(context, "aws_request_id", None))


def handle(event: Any, runtime: Runtime, *, request_id: str | None = None) -> dict[str, Any]:
    """Enqueue what the event carries, start the workers the backlog needs, return a summary."""
    assert runtime.metrics is not None
    try:
        return _handle(event, runtime, request_id)
    finally:
        runtime.metrics.end_of_invocation()


def _handle(event: Any, runtime: Runtime, request_id: str | None) -> dict[str, Any]:
    settings = runtime.settings
    metrics = runtime.metrics
    assert metrics is not None
    try:
        parsed = parse_event(event, settings.key_filter, request_id)
    except InvalidEvent as exc:
        logs.log(
            "launcher.summary",
            logging.ERROR,
            request_id=request_id,
            outcome="rejected",
            enqueued=0,
            skipped=0,
            running=None,
            started=0,
            failures=[str(exc)],
        )
        raise

    pairs = [(index, m) for index, unit in enumerate(parsed.units) for m in unit.messages]
    outgoing = [Outgoing(entry_id=str(n), body=m.body, unit=i) for n, (i, m) in enumerate(pairs)]
    sent = SendResult()
    if outgoing:
        limit = runtime.message_size_limit()
        sent = send_all(runtime.sqs, settings.queue_url, outgoing, limit, runtime.sleep)
    unit_failures = _unit_failures(parsed, sent)
    fleet = size_fleet(runtime, parsed.identity, enqueued=len(sent.sent), sent_at=time.time())
    metrics.count("JobsEnqueued", len(sent.sent))
    metrics.count("TasksStarted", fleet.launch.total)
    metrics.count("RunTaskFailures", max(0, fleet.wanted - fleet.launch.total))

    failures = [*unit_failures.values(), *fleet.failures, *fleet.launch.failures]
    summary: dict[str, Any] = {
        "trigger": parsed.trigger,
        "enqueued": len(sent.sent),
        "skipped": sum(unit.skipped for unit in parsed.units),
        "rejected": sum(1 for unit in parsed.units if unit.error),
        "not_enqueued": len(sent.failed),
        "send_calls": sent.calls,
        "backlog": fleet.backlog,
        "running": fleet.running,
        "sizing": fleet.sizing,
        "wanted": fleet.wanted,
        "started": fleet.launch.total,
        "started_on": fleet.launch.started,
        "run_task_calls": fleet.launch.calls,
        **({"stopped_task": parsed.stopped_task} if parsed.stopped_task else {}),
        "fallbacks": fleet.launch.fallbacks[:MAX_LOGGED_FAILURES],
        "failures": failures[:MAX_LOGGED_FAILURES],
    }
    nothing_enqueued = bool(outgoing) and not sent.sent
    unreported = bool(sent.failed) and not parsed.partial_batch
    outcome = "failed" if nothing_enqueued or unreported else ("partial" if failures else "ok")
    logs.log(
        "launcher.summary",
        logging.ERROR if outcome == "failed" else logging.WARNING if failures else logging.INFO,
        request_id=request_id,
        outcome=outcome,
        **summary,
    )
    if nothing_enqueued or unreported:
        raise EnqueueFailed(
            f"{len(sent.failed)} of {len(outgoing)} message(s) not enqueued: "
            + "; ".join(reason for _, reason in sent.failed[:3])
        )
    if parsed.partial_batch:
        summary["batchItemFailures"] = [
            {"itemIdentifier": parsed.units[index].item_id} for index in sorted(unit_failures)
        ]
    return summary


def _unit_failures(parsed: ParsedEvent, sent: SendResult) -> dict[int, str]:
    """Which units failed (malformed, or a message of theirs not enqueued), and why."""
    failures = {index: unit.error for index, unit in enumerate(parsed.units) if unit.error}
    for message, reason in sent.failed:
        failures.setdefault(message.unit, f"message not enqueued: {reason}")
    return failures


def size_fleet(runtime: Runtime, seed: str, *, enqueued: int, sent_at: float) -> Fleet:
    """Count, and start what is missing: under the sizing lease when there is one (see
    lease.py), counted again under it by this invocation, or by a later sizing that covers
    what it sent at `sent_at`.

    A first count needs no lease: when it finds nothing to start (an idle reconcile, most of
    a burst's invocations) nothing can exceed MAX_TASKS, and no DynamoDB call is made.
    """
    lease = runtime.lease
    first = _count_and_start(runtime, seed, enqueued=enqueued, start=lease is None)
    if lease is None or first.failures or not first.wanted:
        first.sizing = "unlocked" if lease is None else "counted"
        return first
    try:
        turn = lease.take(int(sent_at * 1000))
    except (ClientError, BotoCoreError) as exc:
        return Fleet(sizing="failed", failures=[f"the sizing lease: {describe(exc)}"])
    if turn is not Turn.HELD:
        fleet = Fleet(backlog=first.backlog, running=first.running, sizing=turn.value)
        if turn is Turn.BUSY:
            fleet.failures.append(
                f"sizing the fleet: another invocation held the sizing lease for "
                f"{lease.wait_seconds:g} s; the next reconcile sizes the fleet"
            )
        return fleet
    sized_from = lease.now_ms()
    fleet = _count_and_start(runtime, seed, enqueued=enqueued, start=True)
    fleet.sizing = turn.value
    try:
        lease.give_back(sized_from, workers=(fleet.running or 0) + fleet.launch.total)
    except (ClientError, BotoCoreError) as exc:  # it runs out after LEASE_MS anyway
        fleet.failures.append(f"giving the sizing lease back: {describe(exc)}")
    return fleet


def _count_and_start(runtime: Runtime, seed: str, *, enqueued: int, start: bool) -> Fleet:
    """Read the backlog and the running workers, then (if `start`) start what is missing.

    The backlog is at least what this invocation just enqueued: SQS's approximate counts may
    not show those messages yet, and they must not be left without a worker.
    """
    settings = runtime.settings
    fleet = Fleet()
    try:
        counts = read_counts(runtime.sqs, settings.queue_url)
        fleet.running = count_running(runtime.ecs, settings)
        fleet.backlog = max(counts.backlog(fleet.running), enqueued)
    except (ClientError, BotoCoreError) as exc:
        fleet.failures.append(f"sizing the fleet: {describe(exc)}")
        return fleet
    fleet.wanted = wanted(fleet.backlog, fleet.running, settings)
    if fleet.wanted and start:
        fleet.launch = start_tasks(runtime.ecs, settings, fleet.wanted, seed, runtime.sleep)
    return fleet
