"""Receive messages into free slots, run them (execution.py), settle outcomes; stop in 2 phases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import structlog

from worker import routing
from worker.adapters.sqs import MAX_BATCH, Queue, ReceivedMessage
from worker.engine import lineage
from worker.engine.execution import MessageRunner
from worker.engine.handback import HandBack
from worker.engine.idle import IdleWatch
from worker.engine.leases import Leases
from worker.engine.outcomes import METRIC, Action, JobResult, Outcome, Settled, decide
from worker.engine.settling import Settler
from worker.engine.slots import Slots
from worker.engine.stats import Stats, elapsed_ms
from worker.engine.stopping import StopRequest
from worker.errors import JobError
from worker.jobs import Job
from worker.metrics import Metrics
from worker.settings import Settings

log = structlog.get_logger("worker.engine.consumer")

_RECEIVE_BACKOFF_MAX = 30.0
# How long a receiver waits for running jobs to free a whole batch of slots before it receives
# fewer (slots held by a receive in flight or by jobs not yet started are always waited for).
# Quick jobs finish within it, so their receives and deletes come in full batches; slower
# jobs' slots sit idle no longer than this, so the configured concurrency stays in use.
_FILL_SECONDS = 0.005


class Consumer:
    def __init__(
        self,
        *,
        settings: Settings,
        queue: Queue,
        handlers: Mapping[str, routing.Handler],
        settler: Settler,
        leases: Leases,
        hand_back: HandBack,
        stats: Stats,
        stop: StopRequest,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._metrics = metrics
        self._runner = MessageRunner(
            settings=settings, handlers=handlers, stats=stats, metrics=metrics
        )
        self._settler = settler
        self._leases = leases
        self._hand_back = hand_back
        self._stats = stats
        self._stop = stop
        self._slots = Slots(settings.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._working: set[asyncio.Task[None]] = set()
        self._gathering = asyncio.Lock()  # one receiver gathers slots at a time
        self._receiving = 0  # receives in flight
        # Receives the stop cut short: SQS may have handed them messages already.
        self._late: set[asyncio.Future[list[ReceivedMessage]]] = set()
        self._unstarted: set[asyncio.Task[None]] = set()  # tasks not yet run once
        self._filling: asyncio.Timeout | None = None  # the gathering receiver's patience
        self._last_received = float("-inf")
        self._idle = IdleWatch(
            queue.counts, idle_seconds=settings.idle_exit_seconds, busy=self._busy
        )

    def _busy(self) -> bool:
        """Jobs run here, or messages came in so recently that counting the queue is moot."""
        return bool(self._tasks) or time.monotonic() - self._last_received < self._idle.interval

    async def run(self) -> str:
        """Consume until the queue is drained or a stop is requested; return why it ended."""
        receivers = [
            asyncio.create_task(self._receive_loop(), name=f"receiver-{i}")
            for i in range(self._settings.receivers)
        ]
        heartbeat = asyncio.create_task(self._leases.heartbeat(), name="heartbeat")
        drained = asyncio.create_task(self._idle.wait_drained(), name="idle-watch")
        stopped = asyncio.create_task(self._stop.wait(), name="stop-wait")
        background = [*receivers, heartbeat, drained, stopped]
        try:
            done, _ = await asyncio.wait(background, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            for task in receivers:
                task.cancel()
            await asyncio.gather(*receivers, return_exceptions=True)
            reason = "drained" if drained in done else f"stopped ({self._stop.reason})"
            await asyncio.gather(self._finish_running(), self._hand_back_late())
            return reason
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)

    async def _finish_running(self) -> None:
        """Let running jobs finish within the grace, then cancel them and hand messages back."""
        if self._working and self._stop.requested:
            grace = self._settings.shutdown_grace_seconds
            log.info("stop.waiting_for_jobs", jobs=len(self._working), grace_s=grace)
            all_done = asyncio.create_task(asyncio.wait(list(self._working)))
            hurry = asyncio.create_task(self._stop.wait_hurry())
            await asyncio.wait(
                [all_done, hurry], timeout=grace, return_when=asyncio.FIRST_COMPLETED
            )
            all_done.cancel()
            hurry.cancel()
        for task in list(self._working):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self._settings.cancel_seconds)

    async def _hand_back_late(self) -> None:
        """Hand back at once the messages of receives the stop cut short (none has started)."""
        if not self._late:
            return
        done, pending = await asyncio.wait(self._late, timeout=self._settings.cancel_seconds)
        for receive in pending:  # what it took comes back after its lease
            receive.cancel()
        late = [m for r in done if not r.cancelled() and r.exception() is None for m in r.result()]
        now = time.monotonic()
        given, own = [], []
        for message in late:
            if message.message_id in self._leases:  # running here: its job settles it
                self._leases.renew(message.message_id, message.receipt_handle, received_at=now)
            elif self._hand_back.sent_here(message):  # this stop's own hand-back copy
                own.append(message)
            else:
                self._leases.hold(message, received_at=now)
                given.append(message.message_id)
        results, returned = await asyncio.gather(
            asyncio.gather(*(self._leases.hand_back(i) for i in given)),
            asyncio.gather(*(self._hand_back.return_unchanged(m) for m in own)),
        )
        self._measure(Settled.HANDED_BACK, times=sum(results))
        log.info(
            "stop.late_receives",
            handed_back=sum(results),
            own_copies_returned=sum(returned),
            abandoned=len(pending),
        )

    async def _receive_loop(self) -> None:
        failures = 0
        while True:
            wanted = await self._take_slots()
            try:
                messages = await self._receive(wanted)
            except JobError as exc:
                self._slots.give(wanted)
                failures += 1
                pause = min(_RECEIVE_BACKOFF_MAX, 0.5 * 2**failures)
                log.warning("receive.failed", error=str(exc), retry_in_s=pause)
                await asyncio.sleep(pause)
                continue
            except BaseException:
                self._slots.give(wanted)
                raise
            failures = 0
            self._slots.give(wanted - len(messages))
            received_at = time.monotonic()
            if messages:
                self._last_received = received_at
            for message in messages:
                self._start(message, received_at)

    async def _receive(self, wanted: int) -> list[ReceivedMessage]:
        receive = asyncio.ensure_future(
            self._queue.receive(
                max_messages=wanted,
                wait_seconds=self._settings.wait_seconds,
                visibility=self._settings.visibility_seconds,
            )
        )
        self._receiving += 1
        try:
            # Shielded: cancelling the request would not undo it. SQS hides the messages it
            # answers with for a whole lease, even from us if the answer is never read.
            return await asyncio.shield(receive)
        except asyncio.CancelledError:
            self._late.add(receive)
            raise
        finally:
            self._receiving -= 1
            filling = self._filling
            if filling is not None and not self._receiving and not filling.expired():
                # The slots it held are back or taken by jobs: wait for quick jobs only.
                filling.reschedule(asyncio.get_running_loop().time() + _FILL_SECONDS)

    async def _take_slots(self) -> int:
        """Free slots for one receive: a whole batch when it can be had soon.

        Slots that a receive in flight holds come back when it returns, and those of jobs not
        yet started (a starved process) at once, so they are waited for; slots that running
        jobs hold, for _FILL_SECONDS (after the last receive in flight returned).
        """
        async with self._gathering:  # two receivers gathering at once would split a batch
            taken = await self._slots.take(MAX_BATCH)
            batch = min(MAX_BATCH, self._slots.total)
            loop = asyncio.get_running_loop()
            try:
                while taken < batch:
                    deadline = None if self._receiving else loop.time() + _FILL_SECONDS
                    try:
                        async with asyncio.timeout_at(deadline) as self._filling:
                            taken += await self._slots.take(batch - taken)
                    except TimeoutError:
                        if self._unstarted:
                            continue
                        # A starved process fires the timer in the same turn as the jobs it
                        # waits for: let those that are ready run, then take their slots.
                        await asyncio.sleep(0)
                        if self._slots.busy == self._slots.total:
                            break
                    finally:
                        self._filling = None
            except BaseException:
                self._slots.give(taken)
                raise
            return taken

    def _start(self, message: ReceivedMessage, received_at: float) -> None:
        self._idle.activity()
        if message.message_id in self._leases:
            # At-least-once delivery handed us a message we are already working on.
            self._leases.renew(message.message_id, message.receipt_handle, received_at=received_at)
            self._slots.give(1)
            self._stats.duplicates += 1
            log.info("message.duplicate_delivery", message_id=message.message_id)
            return
        self._stats.received += 1
        self._metrics.count("MessagesReceived")
        self._leases.hold(message, received_at=received_at)
        task = asyncio.create_task(self._process(message, received_at))
        self._tasks.add(task)
        self._working.add(task)
        self._unstarted.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._working.discard)
        task.add_done_callback(self._unstarted.discard)  # cancelled before it ever ran

    async def _process(self, message: ReceivedMessage, received_at: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        facts = lineage.facts(message)  # read once: the hot path needs it three times
        fields: dict[str, Any] = {"message_id": message.message_id, "attempt": facts.real_attempt}
        if facts.message_id != message.message_id:  # a copy handed back by a stop
            fields["first_message_id"] = facts.message_id
        self._unstarted.discard(task)
        slot_given = False
        held = True
        # This task runs in its own copy of the context: the binding ends with it.
        structlog.contextvars.bind_contextvars(message_id=message.message_id)
        try:
            jobs, results = await self._runner.run(message, facts)
            fields["job_ms"] = elapsed_ms(received_at)
            outcome = decide(results)
            self._working.discard(task)
            self._slots.give(1)
            slot_given = True
            handle = self._leases.receipt_handle(message.message_id, message.receipt_handle)
            if outcome.action is Action.ACK:  # the common case, without a task for the shield
                extra: dict[str, Any] = {}
                acked = await asyncio.shield(self._settler.ack(handle))
                settled = Settled.ACKED if acked else Settled.ACK_LOST
            else:

                def let_go() -> None:  # made visible again: a new receive is a new delivery
                    nonlocal held
                    self._leases.release(message.message_id)
                    held = False

                settled, extra = await asyncio.shield(
                    self._settler.settle(message, outcome, handle, let_go=let_go)
                )
            fields.update(extra)
            self._log_done(settled, jobs, results, outcome, received_at, fields)
            self._measure(settled)
            sent_ms = facts.sent_timestamp_ms
            if settled is Settled.ACKED and sent_ms is not None:
                self._metrics.time("QueueDwell", max(0.0, time.time() * 1000 - sent_ms))
        except asyncio.CancelledError:
            if not slot_given:  # cancelled while its jobs ran: give the message back now
                await asyncio.shield(self._leases.hand_back(message.message_id))
                self._measure(Settled.HANDED_BACK)
                log.info(
                    "message.done",
                    outcome=Settled.HANDED_BACK.value,
                    duration_ms=elapsed_ms(received_at),
                    **fields,
                )
            raise
        finally:
            if held:
                self._leases.release(message.message_id)
            if not slot_given:
                self._slots.give(1)

    def _measure(self, settled: Settled, *, times: int = 1) -> None:
        self._stats.settled[settled] += times
        metric = METRIC.get(settled)
        if metric is not None and times:
            self._metrics.count(metric, times)

    def _log_done(
        self,
        settled: Settled,
        jobs: list[Job],
        results: list[JobResult],
        outcome: Outcome,
        received_at: float,
        fields: dict[str, Any],
    ) -> None:
        if len(jobs) == 1:
            fields["job"] = jobs[0].kind
            fields["target"] = jobs[0].describe()
        else:
            fields["jobs"] = [job.kind for job in jobs]
        if outcome.reason and "reason" not in fields:
            fields["reason"] = outcome.reason
        level = "info" if settled in (Settled.ACKED, Settled.RETRIED) else "warning"
        getattr(log, level)(
            "message.done", outcome=settled.value, duration_ms=elapsed_ms(received_at), **fields
        )
