"""Run one message: parse and route its body, run each job under its deadline, collect results.

Nothing a handler does escapes as an exception (but a cancellation): every failure becomes a
JobResult that outcomes.decide turns into an ack, a retry or a dead letter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import structlog

from worker import envelope, routing
from worker.adapters.sqs import ReceivedMessage
from worker.engine.outcomes import JobResult, JobStatus
from worker.engine.stats import Stats, elapsed_ms
from worker.errors import InvalidMessage, PermanentError, RetryableError
from worker.jobs import Job, MessageFacts
from worker.metrics import Metrics
from worker.settings import Settings

log = structlog.get_logger("worker.engine.execution")


class MessageRunner:
    def __init__(
        self,
        *,
        settings: Settings,
        handlers: Mapping[str, routing.Handler],
        stats: Stats,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._handlers = handlers
        self._known = frozenset(handlers)
        self._stats = stats

    async def run(
        self, message: ReceivedMessage, facts: MessageFacts
    ) -> tuple[list[Job], list[JobResult]]:
        """The message's jobs and what became of each; invalid input is a permanent result."""
        try:
            jobs = routing.plan(envelope.parse(message.body), self._settings, self._known)
        except InvalidMessage as exc:
            return [], [JobResult("message", JobStatus.PERMANENT, str(exc))]
        if len(jobs) == 1:
            return jobs, [await self._run_job(jobs[0], facts, log_each=False)]
        results = await asyncio.gather(*(self._run_job(job, facts, log_each=True) for job in jobs))
        return jobs, list(results)

    async def _run_job(self, job: Job, facts: MessageFacts, *, log_each: bool) -> JobResult:
        """Run one job and turn whatever happens into a result (never raises but on cancel)."""
        started = time.monotonic()
        self._stats.jobs += 1
        timeout = self._settings.job_timeout_seconds or None
        handler = self._handlers[job.kind]
        try:
            if timeout is None:  # no deadline: no timer to set up and cancel per job
                await handler(job, facts)
            else:
                async with asyncio.timeout(timeout):
                    await handler(job, facts)
            result = JobResult(job.kind, JobStatus.SUCCEEDED)
        except RetryableError as exc:
            result = JobResult(job.kind, JobStatus.RETRYABLE, str(exc))
        except PermanentError as exc:
            result = JobResult(job.kind, JobStatus.PERMANENT, str(exc))
        except TimeoutError:
            result = JobResult(job.kind, JobStatus.RETRYABLE, f"timed out after {timeout} s")
        except Exception as exc:  # a bug or an untranslated library error: retry, loudly
            log.exception("job.crashed", job=job.kind, target=job.describe())
            result = JobResult(
                job.kind, JobStatus.RETRYABLE, f"unexpected {type(exc).__name__}: {exc}"
            )
        self._metrics.time("JobDuration", (time.monotonic() - started) * 1000, job=job.kind)
        if log_each:
            log.info(
                "job.finished",
                job=job.kind,
                target=job.describe(),
                outcome=result.status.value,
                attempt=facts.real_attempt,
                duration_ms=elapsed_ms(started),
                error=result.error,
            )
        return result
