"""Composition root: open clients once, wire the consumer, handle signals, report at exit."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from contextlib import AsyncExitStack

import structlog

from worker import routing, wiring
from worker.adapters.aws import AwsClients
from worker.adapters.sqs import Queue
from worker.engine import spot
from worker.engine.assembly import DEFAULT_MAX_MESSAGE_BYTES, assemble
from worker.engine.stats import Stats
from worker.engine.stopping import StopRequest
from worker.errors import RetryableError
from worker.metrics import Metrics
from worker.settings import Settings

log = structlog.get_logger("worker.lifecycle")

# The longest stopTimeout ECS allows on Fargate: a stop must end within it or be killed.
FARGATE_STOP_TIMEOUT_MAX = 120.0


async def run(settings: Settings) -> str:
    """Run the worker until the queue is drained or it is told to stop; return why it ended."""
    stats = Stats()
    metrics = Metrics(
        namespace=settings.metrics_namespace,
        queue=settings.queue_url.rstrip("/").rsplit("/", 1)[-1],
        interval_seconds=settings.metrics_interval_seconds,
        write=_write_line,
        enabled=settings.metrics == "emf",
    )
    stop = StopRequest()
    stop.install_signal_handlers()
    reason = "crashed"
    async with AsyncExitStack() as stack:
        clients = AwsClients(
            stack,
            region=settings.region,
            max_connections=settings.concurrency + settings.receivers + 8,
        )
        sqs = await clients.sqs()
        queue = Queue(sqs, settings.queue_url, await clients.sqs_wire())
        attributes = await _check_patiently(queue, "QUEUE_URL", stop)
        dead_letter = Queue(sqs, settings.dlq_url) if settings.dlq_url else None
        dead_letter_max_bytes = DEFAULT_MAX_MESSAGE_BYTES
        if dead_letter is not None:
            dlq_attributes = await _check_patiently(dead_letter, "DLQ_URL", stop)
            dead_letter_max_bytes = int(
                dlq_attributes.get("MaximumMessageSize", dead_letter_max_bytes)
            )
        if dead_letter is None and "RedrivePolicy" not in attributes:
            log.warning(
                "config.no_dead_letter", hint="set DLQ_URL or a redrive policy on the queue"
            )
        adapters = await wiring.build(settings, clients, stack, metrics, work_queue=queue)
        handlers = routing.build_handlers(settings, adapters, diagnostics=settings.probe_jobs)
        engine = assemble(
            settings,
            queue=queue,
            dead_letter=dead_letter,
            attributes=attributes,
            handlers=handlers,
            stats=stats,
            stop=stop,
            metrics=metrics,
            dead_letter_max_bytes=dead_letter_max_bytes,
        )
        watcher = asyncio.create_task(spot.watch(settings, stop), name="spot-watch")
        flusher = asyncio.create_task(metrics.run(), name="metrics")
        log.info(
            "worker.started",
            queue_url=settings.queue_url,
            concurrency=settings.concurrency,
            receivers=settings.receivers,
            jobs=sorted(handlers),
            stop_budget_s=settings.stop_budget_seconds,
        )
        if settings.stop_budget_seconds > FARGATE_STOP_TIMEOUT_MAX:
            log.warning(
                "config.stop_budget_too_long",
                stop_budget_s=settings.stop_budget_seconds,
                fargate_max_s=FARGATE_STOP_TIMEOUT_MAX,
                hint="a stop past stopTimeout is a SIGKILL: lower WORKER_SHUTDOWN_GRACE_SECONDS",
            )
        try:
            reason = await engine.consumer.run()
        finally:
            for task in (watcher, flusher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            try:
                await engine.flush(settings.cancel_seconds)
            except TimeoutError:
                # What is not deleted comes back after its lease; handlers are idempotent.
                log.error("worker.flush_timed_out", seconds=settings.cancel_seconds)
            metrics.flush()
            log.info("worker.exit", **stats.summary(reason), metrics_records=metrics.records)
    return reason


START_PATIENCE_SECONDS = 60.0


def _write_line(line: str) -> None:
    """One metrics record on stdout, the log stream (the JSON log lines go there too)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _check_patiently(queue: Queue, option: str, stop: StopRequest) -> dict[str, str]:
    """Check a queue at start, riding out a passing outage (a task may start during one)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_PATIENCE_SECONDS
    pause = 1.0
    while True:
        try:
            return await queue.check(option)
        except RetryableError as exc:
            if stop.requested or loop.time() + pause > deadline:
                raise
            log.warning("worker.start_retry", option=option, error=str(exc), retry_in_s=pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 10.0)
