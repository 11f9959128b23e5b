"""The drain engine against an in-memory SQS queue, on a virtual clock, with no server.

The pieces are built as worker/lifecycle.py builds them (Batchers, HandBack, Leases, Settler,
Consumer), with tests/support/memory_queue.py's MemoryQueue where lifecycle puts the SQS
adapter. The loop is a VirtualTimeLoop: leases of 10 s, backoffs and idle windows pass at
once and in a fixed order, so what is asserted about time is exact, not a race with the load.

Jobs are `{"job": "work", "n": N}` messages run by `Work`, which holds job N at a gate until
the test opens it, and fails it with the errors the test queued for it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest

from tests.support.memory_queue import MemoryQueue, StoredMessage, VirtualTimeLoop
from worker.engine import assembly, lineage
from worker.engine import consumer as consumer_module
from worker.engine import stats as stats_module
from worker.engine.idle import IdleWatch
from worker.engine.outcomes import Settled
from worker.engine.stats import Stats
from worker.engine.stopping import StopRequest
from worker.errors import PermanentError, RetryableError
from worker.jobs import Job, MessageFacts
from worker.metrics import Metrics
from worker.settings import Settings

T = TypeVar("T")

# -- the harness -------------------------------------------------------------------------


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


@pytest.fixture(autouse=True)
def virtual_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the consumer's own clock reads at the loop's (virtual) clock.

    Leases takes a `clock`; the Consumer has no such seam: it reads time.monotonic() for
    receive times and builds its IdleWatch with the default clock, so both are patched here
    (and stats.elapsed_ms, so that logged durations are virtual too).
    """
    monkeypatch.setattr(
        consumer_module, "time", SimpleNamespace(monotonic=_loop_time, time=time.time)
    )
    monkeypatch.setattr(stats_module, "time", SimpleNamespace(monotonic=_loop_time))  # logs
    monkeypatch.setattr(
        consumer_module, "IdleWatch", functools.partial(IdleWatch, clock=_loop_time)
    )


def simulate(scenario: Callable[[], Awaitable[T]], *, limit: float = 3600.0) -> T:
    """Run a scenario on a fresh virtual-time loop; a hang fails after `limit` virtual s."""

    async def bounded() -> T:
        async with asyncio.timeout(limit):
            return await scenario()

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(bounded())


async def until(predicate: Callable[[], bool], *, within: float = 120.0) -> None:
    """Wait (in virtual time) until `predicate` holds; fail if it does not within `within`."""
    async with asyncio.timeout(within):
        # Polling, not an Event: predicates read any state (handlers', the queue's, stats);
        # on the virtual clock a poll costs a loop turn, not 10 ms.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def body(n: int) -> str:
    return json.dumps({"job": "work", "n": n})


def number(message: StoredMessage) -> int:
    return int(json.loads(message.body)["n"])


class Work:
    """The `work` handler: records each run, waits at job N's gate, raises what is queued."""

    def __init__(self, *, gated: bool = True) -> None:
        self.gated = gated
        self.gates: dict[int, asyncio.Event] = defaultdict(asyncio.Event)
        self.errors: dict[int, list[Exception]] = defaultdict(list)
        self.durations: dict[int, float] = {}
        self.started: list[int] = []
        self.finished: list[int] = []  # returned or raised: its slot is free
        self.succeeded: list[int] = []
        self.cancelled: list[int] = []
        self.facts: list[MessageFacts] = []
        self.running = 0
        self.peak = 0

    def open(self, *numbers: int) -> None:
        for n in numbers:
            self.gates[n].set()

    def has_succeeded(self, count: int) -> Callable[[], bool]:
        return lambda: len(self.succeeded) == count

    def fail(self, n: int, *errors: Exception) -> None:
        self.errors[n].extend(errors)

    async def __call__(self, job: Job, facts: MessageFacts) -> str | None:
        n = int(job.payload["n"])
        self.started.append(n)
        self.facts.append(facts)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            if n in self.durations:
                await asyncio.sleep(self.durations[n])
            elif self.gated:
                await self.gates[n].wait()
            if self.errors[n]:
                raise self.errors[n].pop(0)
            self.succeeded.append(n)
            return None
        except asyncio.CancelledError:
            self.cancelled.append(n)
            raise
        finally:
            self.running -= 1
            self.finished.append(n)


@dataclass
class Engine:
    settings: Settings
    queue: MemoryQueue
    dead_letter: MemoryQueue | None
    work: Work
    stop: StopRequest
    stats: Stats
    parts: assembly.Engine

    async def run(self) -> str:
        """consumer.run(), then the final flush, as lifecycle.run does."""
        try:
            return await self.parts.consumer.run()
        finally:
            await self.parts.flush(self.settings.cancel_seconds)

    def start(self) -> asyncio.Task[str]:
        return asyncio.create_task(self.run(), name="engine")

    def settled(self, what: Settled) -> int:
        return self.stats.settled[what]


DEFAULTS: dict[str, Any] = {
    "concurrency": 4,
    "receivers": 2,
    "idle_exit_seconds": 0.0,  # service mode unless a test wants the idle exit
    "wait_seconds": 20,
    "visibility_seconds": 30,
    "shutdown_grace_seconds": 5.0,
    "cancel_seconds": 2.0,
    "max_receives": 3,
    "metrics": "off",
    "spot_imds": "off",
}


async def build(
    queue: MemoryQueue,
    work: Work,
    *,
    dead_letter: MemoryQueue | None = None,
    **options: Any,
) -> Engine:
    """The engine as lifecycle.run wires it, on `queue` instead of the SQS adapter."""
    dlq_url = dead_letter.url if dead_letter is not None else None
    settings = Settings(queue_url=queue.url, dlq_url=dlq_url, **{**DEFAULTS, **options})
    attributes = await queue.check("QUEUE_URL")
    metrics = Metrics(
        namespace="test", queue=queue.name, interval_seconds=60, write=print, enabled=False
    )
    stats = Stats()
    stop = StopRequest()
    parts = assembly.assemble(
        settings,
        queue=queue,  # type: ignore[arg-type]
        dead_letter=dead_letter,  # type: ignore[arg-type]
        attributes=attributes,
        handlers={"work": work},
        stats=stats,
        stop=stop,
        metrics=metrics,
        clock=_loop_time,
    )
    return Engine(settings, queue, dead_letter, work, stop, stats, parts)


async def send(queue: MemoryQueue, *numbers: int, delay_seconds: int = 0) -> list[str]:
    return [await queue.send(body(n), delay_seconds=delay_seconds) for n in numbers]


def history(message: StoredMessage) -> dict[str, Any]:
    raw = message.attributes.get(lineage.ATTRIBUTE)
    return {} if raw is None else dict(json.loads(raw["StringValue"]))


def retry_bounds(attempt: int) -> tuple[int, int]:
    """backoff.retry_delay's range after failed attempt `attempt`: 2^attempt s, equal jitter."""
    ceiling = 2.0**attempt
    return max(1, round(ceiling * 0.5)), max(1, round(ceiling))


# -- receiving into free slots -----------------------------------------------------------


def test_with_concurrency_n_it_holds_n_jobs_and_leaves_the_rest_visible() -> None:
    async def scenario() -> None:
        queue, work = MemoryQueue(), Work()
        await send(queue, *range(10))
        engine = await build(queue, work, concurrency=3)
        task = engine.start()
        await until(lambda: len(work.started) == 3)
        await asyncio.sleep(60)  # receivers long-poll meanwhile: they must not take more

        assert sorted(work.started) == [0, 1, 2]
        assert len(queue.in_state("in_flight")) == 3
        assert len(queue.in_state("visible")) == 7
        assert all(call.max_messages <= 3 for call in queue.receives)

        for n in range(10):  # each finished job frees one slot: one more message comes in
            work.open(n)
            await until(work.has_succeeded(n + 1))
            await asyncio.sleep(1)
            assert work.running == min(3, 10 - n - 1)
            assert len(queue.in_state("in_flight")) <= 3
        await until(lambda: not queue.messages)
        engine.stop.request("test")
        assert await task == "stopped (test)"

        assert work.peak == 3
        assert sorted(work.succeeded) == list(range(10))
        assert engine.settled(Settled.ACKED) == 10
        assert queue.violations == []

    simulate(scenario)


def test_a_receive_asks_for_at_most_the_free_slots_and_never_more_than_ten() -> None:
    """Slots held by running jobs and by the other receiver's receive in flight are not free."""
    concurrency = 25

    async def scenario() -> None:
        queue, work = MemoryQueue(), Work(gated=False)
        work.durations = {n: 0.5 * (n % 7) for n in range(80)}
        await send(queue, *range(80))
        engine = await build(queue, work, concurrency=concurrency, receivers=2)
        asked_in_flight = 0
        delivered = 0
        real_receive = queue.receive
        asks: list[int] = []

        async def watched(*, max_messages: int, wait_seconds: int, visibility: int) -> Any:
            nonlocal asked_in_flight, delivered
            held = delivered - len(work.finished)
            assert max_messages + held + asked_in_flight <= concurrency
            asks.append(max_messages)
            asked_in_flight += max_messages
            try:
                got = await real_receive(
                    max_messages=max_messages, wait_seconds=wait_seconds, visibility=visibility
                )
            finally:
                asked_in_flight -= max_messages
            delivered += len(got)
            return got

        queue.receive = watched  # type: ignore[method-assign]
        task = engine.start()
        await until(lambda: len(work.succeeded) == 80)
        engine.stop.request("test")
        await task

        assert max(asks) == 10
        assert work.peak <= concurrency
        assert work.peak > 10  # both receivers kept the slots busy
        assert not queue.messages
        assert queue.violations == []

    simulate(scenario)


def test_a_failing_receive_is_retried_after_a_pause_and_nothing_is_lost() -> None:
    async def scenario() -> None:
        queue, work = MemoryQueue(), Work(gated=False)
        await send(queue, *range(5))
        queue.fail_calls("ReceiveMessage", RetryableError("ReceiveMessage: throttled"), times=3)
        engine = await build(queue, work, receivers=1)
        started = queue.now()
        task = engine.start()
        await until(lambda: len(work.succeeded) == 5)
        waited = queue.now() - started
        engine.stop.request("test")
        await task

        assert waited >= 1 + 2 + 4  # 0.5 * 2**failures: no hot loop against a failing queue
        assert sorted(work.succeeded) == list(range(5))
        assert not queue.messages

    simulate(scenario)


# -- leases and the heartbeat ------------------------------------------------------------


def test_a_job_longer_than_its_lease_is_kept_invisible_by_batched_extensions() -> None:
    async def scenario() -> None:
        queue, work = MemoryQueue(), Work()
        await send(queue, *range(5))
        engine = await build(queue, work, concurrency=5, visibility_seconds=10)
        task = engine.start()
        await until(lambda: len(work.started) == 5)
        await asyncio.sleep(35)  # three and a half leases
        work.open(*range(5))
        await until(lambda: not queue.messages)
        engine.stop.request("test")
        await task

        extensions = queue.operations("ChangeMessageVisibilityBatch")
        assert len(extensions) >= 3
        for call in extensions:  # the five leases are extended together, by 10 s each
            assert len(call.entries) == 5
            assert {seconds for _, _, seconds in call.entries} == {10}
            assert call.failed == ()
        for message in queue.deleted.values():
            assert len(message.deliveries) == 1  # never received twice
            expiry = message.deliveries[0].at + 10
            for at, seconds in message.visibility_changes:
                assert at < expiry, "the lease ran out before it was extended"
                expiry = at + seconds
        assert sorted(work.started) == list(range(5))
        assert engine.settled(Settled.ACKED) == 5
        assert engine.stats.duplicates == 0

    simulate(scenario)


def test_a_lease_lost_while_running_comes_back_as_a_duplicate_settled_by_its_new_handle() -> None:
    """SQS refuses an extension; the message shows again and comes back to this worker while
    its job runs: the job is not run twice, and the ack uses the newest receipt handle."""

    async def scenario() -> None:
        queue, work = MemoryQueue(), Work()
        await send(queue, 0)
        queue.refuse_entries(
            "ChangeMessageVisibilityBatch", "InvalidParameterValue", sender_fault=True
        )
        engine = await build(queue, work, concurrency=2, visibility_seconds=10)
        task = engine.start()
        await until(lambda: engine.stats.duplicates == 1)
        work.open(0)
        await until(lambda: not queue.messages)
        engine.stop.request("test")
        await task

        (message,) = queue.deleted.values()
        assert [d.receive_count for d in message.deliveries] == [1, 2]
        assert work.started == [0]
        last_delete = queue.operations("DeleteMessageBatch")[-1]
        assert [h for _, h in last_delete.entries] == [message.deliveries[-1].receipt_handle]
        assert engine.settled(Settled.ACKED) == 1

    simulate(scenario)


# -- batched deletes ---------------------------------------------------------------------


def test_finished_messages_are_deleted_in_batches_of_up_to_ten() -> None:
    async def scenario() -> None:
        queue, work = MemoryQueue(), Work(gated=False)
        await send(queue, *range(25))
        engine = await build(queue, work, concurrency=25)
        task = engine.start()
        await until(lambda: not queue.messages)
        engine.stop.request("test")
        await task

        sizes = [len(call.entries) for call in queue.operations("DeleteMessageBatch")]
        assert sum(sizes) == 25
        assert max(sizes) == 10
        assert len(sizes) <= 4
        assert engine.settled(Settled.ACKED) == 25
        assert queue.violations == []

    simulate(scenario)


def test_a_delete_entry_failing_for_a_transient_reason_is_retried_alone() -> None:
    async def scenario() -> None:
        queue, work = MemoryQueue(), Work(gated=False)
        await send(queue, *range(3))
        queue.refuse_entries("DeleteMessageBatch", "InternalError", sender_fault=False)
        engine = await build(queue, work, concurrency=3, receivers=1)
        task = engine.start()
        await until(lambda: not queue.messages)
        engine.stop.request("test")
        await task

        first, *rest = queue.operations("DeleteMessageBatch")
        assert len(first.entries) == 3 and len(first.failed) == 1
        refused = next(h for i, h in first.entries if i == first.failed[0].entry_id)
        assert [[h for _, h in call.entries] for call in rest] == [[refused]]
        assert engine.settled(Settled.ACKED) == 3
        assert engine.settled(Settled.ACK_LOST) == 0

    simulate(scenario)


def test_a_delete_refused_for_a_stale_handle_is_an_ack_lost_and_the_message_stays() -> None:
    """The lease ran out and another worker received the message: SQS refuses our delete
    (ReceiptHandleIsInvalid) and the message is left to its newest holder, not retried."""

    async def scenario() -> None:
        queue, work = MemoryQueue(), Work()
        await send(queue, 0)
        queue.refuse_entries(
            "ChangeMessageVisibilityBatch", "InvalidParameterValue", sender_fault=True
        )
        engine = await build(queue, work, concurrency=1, visibility_seconds=10)
        task = engine.start()
        await until(lambda: work.started == [0])
        await asyncio.sleep(11)
        (taken,) = await queue.receive(max_messages=1, wait_seconds=0, visibility=300)
        work.open(0)
        await until(lambda: engine.settled(Settled.ACK_LOST) == 1)
        engine.stop.request("test")
        await task

        deletes = queue.operations("DeleteMessageBatch")
        assert len(deletes) == 1  # a final refusal is not retried
        assert deletes[0].failed[0].code == "ReceiptHandleIsInvalid"
        assert queue.messages[taken.message_id].receipt_handle == taken.receipt_handle
        assert engine.settled(Settled.ACKED) == 0

    simulate(scenario)


# -- hand-back on stop -------------------------------------------------------------------


def test_on_stop_it_receives_no_more_lets_the_grace_run_and_hands_back_the_rest() -> None:
    async def scenario() -> None:
        queue, work = MemoryQueue(), Work()
        originals = await send(queue, *range(10))
        engine = await build(queue, work, concurrency=4, shutdown_grace_seconds=5.0)
        task = engine.start()
        await until(lambda: len(work.started) == 4)
        work.open(0, 1)
        await until(lambda: len(work.started) == 6)
        stopped_at = queue.now()
        engine.stop.request("test")
        await asyncio.sleep(1)
        work.open(2)  # finishes within the grace: acked
        assert await task == "stopped (test)"

        assert all(call.at < stopped_at for call in queue.receives)
        assert sorted(work.succeeded) == [0, 1, 2]
        assert sorted(work.cancelled) == [3, 4, 5]
        assert engine.settled(Settled.HANDED_BACK) == 3
        # Nothing is lost: each original is deleted after its job succeeded, or handed back
        # as a copy carrying its history (then deleted), or was never touched.
        copies = {history(m)["origin"]: m for m in queue.messages.values() if history(m)}
        for message_id in originals:
            if message_id in queue.deleted:
                n = number(queue.deleted[message_id])
                assert (n in work.succeeded) != (message_id in copies)
            else:
                assert queue.messages[message_id].receive_count == 0
        assert {number(m) for m in copies.values()} == {3, 4, 5}
        for origin, copy in copies.items():
            assert history(copy) == {
                "origin": origin,
                "failures": 0,
                "handbacks": 1,
                "first_sent_ms": queue.deleted[origin].sent_timestamp_ms,
            }
            assert copy.state(queue.now()) == "visible" and copy.receive_count == 0
        assert len(queue.messages) == 4 + 3
        assert queue.violations == []

    simulate(scenario)


def test_on_a_fifo_queue_a_stop_hands_back_by_making_the_message_visible_again() -> None:
    async def scenario() -> None:
        queue, work = MemoryQueue("work.fifo"), Work()
        await send(queue, 0, 1)
        engine = await build(queue, work, concurrency=2, shutdown_grace_seconds=1.0)
        task = engine.start()
        await until(lambda: len(work.started) == 2)
        engine.stop.request("test")
        await task

        assert queue.operations("SendMessageBatch") == []
        (change,) = queue.operations("ChangeMessageVisibilityBatch")
        assert sorted(seconds for _, _, seconds in change.entries) == [0, 0]
        assert len(queue.in_state("visible")) == 2
        assert [m.receive_count for m in queue.messages.values()] == [1, 1]
        assert engine.settled(Settled.HANDED_BACK) == 2

    simulate(scenario)


def test_a_second_stop_signal_cuts_the_grace_short() -> None:
    async def scenario() -> None:
        queue, work = MemoryQueue(), Work()
        await send(queue, 0)
        engine = await build(queue, work, concurrency=1, shutdown_grace_seconds=90.0)
        task = engine.start()
        await until(lambda: work.started == [0])
        engine.stop.request("SIGTERM")
        await asyncio.sleep(1)
        hurried_at = queue.now()
        engine.stop.request("SIGTERM")
        await task

        assert queue.now() - hurried_at < 1
        assert work.cancelled == [0]
        assert engine.settled(Settled.HANDED_BACK) == 1
        (copy,) = queue.messages.values()
        assert history(copy)["handbacks"] == 1

    simulate(scenario)


def test_a_stop_does_not_take_back_its_own_hand_back_copy() -> None:
    """A Spot notice then SIGTERM (a hurried stop) cancels a job while the other slots' receive
    waits: the copy of the cancelled job's message must reach another worker as handed back
    once, not twice (its history's `handbacks` feeds the deliveries handlers are told of)."""

    async def scenario() -> None:
        queue, work = MemoryQueue(), Work()
        (original,) = await send(queue, 0)
        engine = await build(queue, work, concurrency=4, shutdown_grace_seconds=90.0)
        task = engine.start()
        await until(lambda: work.started == [0] and queue.receives_in_flight == 1)
        engine.stop.request("spot interruption")
        engine.stop.request("SIGTERM")
        await task

        (copy,) = queue.messages.values()
        assert history(copy) | {"first_sent_ms": None} == {
            "origin": original,
            "failures": 0,
            "handbacks": 1,
            "first_sent_ms": None,
        }
        assert engine.settled(Settled.HANDED_BACK) == 1

    simulate(scenario)


def test_a_message_that_arrives_in_a_receive_the_stop_cut_short_is_handed_back() -> None:
    async def scenario() -> None:
        queue, work = MemoryQueue(), Work()
        engine = await build(queue, work, receivers=2)
        task = engine.start()
        await until(lambda: queue.receives_in_flight == 1)  # one receive holds all 4 slots
        engine.stop.request("test")
        (original,) = await send(queue, 0)  # SQS answers a long poll the stop cut short
        await task

        assert queue.deleted[original].receive_count == 1
        (copy,) = queue.messages.values()
        assert history(copy)["origin"] == original
        assert engine.settled(Settled.HANDED_BACK) == 1
        assert work.succeeded == []

    simulate(scenario)


def test_real_attempts_survive_a_hand_back() -> None:
    """A message that failed once, then was handed back, is on its second real attempt when
    its copy is received: the copy's failure dead-letters it at max_receives=2."""

    async def scenario() -> None:
        queue, dead, work = MemoryQueue(), MemoryQueue("dead"), Work()
        (original,) = await send(queue, 0)
        work.fail(0, RetryableError("flaky"))
        work.open(0)
        engine = await build(queue, work, dead_letter=dead, max_receives=2)
        task = engine.start()
        await until(lambda: len(work.finished) == 1)
        work.gates[0].clear()
        await until(lambda: len(work.started) == 2)  # the retry is running
        engine.stop.request("test")
        await task

        (copy,) = queue.messages.values()
        assert history(copy) | {"first_sent_ms": None} == {
            "origin": original,
            "failures": 1,
            "handbacks": 1,
            "first_sent_ms": None,
        }
        work.fail(0, RetryableError("flaky again"))
        work.open(0)
        engine = await build(queue, work, dead_letter=dead, max_receives=2)
        task = engine.start()
        await until(lambda: bool(dead.messages))
        engine.stop.request("test")
        await task

        (letter,) = dead.messages.values()
        assert letter.attributes["spotdrain-receive-count"]["StringValue"] == "2"
        assert letter.attributes["spotdrain-original-message-id"]["StringValue"] == original
        assert work.facts[-1].attempt == 2 and work.facts[-1].receive_count == 3

    simulate(scenario)


# -- failures: backoff, dead letters -----------------------------------------------------


def test_a_failing_job_is_retried_with_backoff_then_dead_lettered_with_its_reason() -> None:
    async def scenario() -> None:
        queue, dead, work = MemoryQueue(), MemoryQueue("dead"), Work(gated=False)
        (original,) = await send(queue, 0)
        work.fail(0, *(RetryableError(f"flaky {i}") for i in range(1, 4)))
        engine = await build(queue, work, dead_letter=dead, max_receives=3)
        task = engine.start()
        await until(lambda: bool(dead.messages))
        await until(lambda: not queue.messages)
        engine.stop.request("test")
        await task

        message = queue.deleted[original]
        assert [d.receive_count for d in message.deliveries] == [1, 2, 3]
        assert len(message.visibility_changes) == 2  # one backoff per failed attempt but the last
        for attempt, (at, seconds) in enumerate(message.visibility_changes, start=1):
            low, high = retry_bounds(attempt)
            assert low <= seconds <= high
            comes_back = message.deliveries[attempt].at
            assert at + seconds - 1e-6 <= comes_back < at + seconds + 0.1  # not before, not late
        (letter,) = dead.messages.values()
        assert letter.body == body(0)
        attributes = {name: value["StringValue"] for name, value in letter.attributes.items()}
        assert attributes == {
            "spotdrain-reason": "gave up after 3 attempts: work: flaky 3",
            "spotdrain-original-message-id": original,
            "spotdrain-receive-count": "3",
            "spotdrain-source-queue": queue.url,
        }
        assert engine.settled(Settled.RETRIED) == 2
        assert engine.settled(Settled.DEAD_LETTERED) == 1
        assert message.deleted_at is not None and message.deleted_at >= letter.sent_at

    simulate(scenario)


def test_a_permanent_failure_is_dead_lettered_at_once_and_the_others_succeed() -> None:
    async def scenario() -> None:
        queue, dead, work = MemoryQueue(), MemoryQueue("dead"), Work(gated=False)
        await send(queue, *range(4))
        await queue.send("not json")
        work.fail(2, PermanentError("no such object"))
        engine = await build(queue, work, dead_letter=dead)
        task = engine.start()
        await until(lambda: not queue.messages)
        engine.stop.request("test")
        await task

        reasons = sorted(
            m.attributes["spotdrain-reason"]["StringValue"] for m in dead.messages.values()
        )
        assert reasons[1] == "work: no such object"
        assert reasons[0].startswith("message: message body is not JSON")
        assert all(len(m.deliveries) == 1 for m in queue.deleted.values())
        assert sorted(work.succeeded) == [0, 1, 3]

    simulate(scenario)


def test_without_a_dead_letter_queue_a_rejected_message_is_left_to_the_redrive_policy() -> None:
    """Each rejection makes the message visible at once, for the redrive to count; the receive
    that follows at once runs it again (it is no longer held, so not taken for a duplicate)."""

    async def scenario() -> None:
        redrive = MemoryQueue("redrive-dlq")
        queue = MemoryQueue(dead_letter=redrive, max_receive_count=2)
        work = Work(gated=False)
        await send(queue, 0)
        work.fail(0, PermanentError("bad"), PermanentError("bad"))
        engine = await build(queue, work)
        task = engine.start()
        await until(lambda: bool(redrive.messages))
        engine.stop.request("test")
        await task

        (moved,) = redrive.messages.values()
        assert [seconds for _, seconds in moved.visibility_changes] == [0, 0]
        assert work.started == [0, 0]  # each of the two receives ran the job
        assert engine.settled(Settled.REJECTED) == 2
        assert engine.settled(Settled.DEAD_LETTERED) == 0
        assert engine.stats.duplicates == 0
        assert not queue.messages

    simulate(scenario)


# -- the idle exit -----------------------------------------------------------------------


def test_it_ends_drained_once_the_queue_stays_empty_for_the_idle_window() -> None:
    async def scenario() -> None:
        queue, work = MemoryQueue(), Work(gated=False)
        await send(queue, *range(3))
        engine = await build(queue, work, idle_exit_seconds=10.0)
        assert await engine.run() == "drained"

        last_delete = max(m.deleted_at or 0.0 for m in queue.deleted.values())
        idle_for = queue.now() - last_delete
        assert 10.0 <= idle_for <= 10.0 + 2 * 2.5  # the window, and at most two checks more
        assert sorted(work.succeeded) == [0, 1, 2]

    simulate(scenario)


def test_a_delayed_message_keeps_it_from_ending_until_the_message_is_done() -> None:
    async def scenario() -> None:
        queue, work = MemoryQueue(), Work(gated=False)
        await send(queue, 0, delay_seconds=60)
        engine = await build(queue, work, idle_exit_seconds=5.0)
        started = queue.now()
        assert await engine.run() == "drained"

        assert work.succeeded == [0]
        assert queue.now() - started >= 60 + 5

    simulate(scenario)


def test_a_message_in_flight_elsewhere_keeps_it_from_ending_until_it_is_settled() -> None:
    async def scenario() -> None:
        queue, work = MemoryQueue(), Work(gated=False)
        await send(queue, 0)
        (elsewhere,) = await queue.receive(max_messages=1, wait_seconds=0, visibility=300)
        engine = await build(queue, work, idle_exit_seconds=5.0)
        started = queue.now()
        task = engine.start()
        await asyncio.sleep(100)
        assert not task.done()
        await queue.delete_batch([("0", elsewhere.receipt_handle)])
        assert await task == "drained"
        assert 100 <= queue.now() - started <= 100 + 5 + 2 * 1.25
        assert work.started == []

    simulate(scenario)
