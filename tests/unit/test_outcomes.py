"""Outcome decisions, retry backoff and dead-letter size fitting: pure rules."""

from __future__ import annotations

import random

from worker.engine.backoff import MAX_SECONDS, retry_delay
from worker.engine.outcomes import METRIC, Action, JobResult, JobStatus, Outcome, Settled, decide
from worker.engine.settling import _attributes_size, _fit
from worker.engine.stats import Stats

SUCCEEDED, RETRYABLE, PERMANENT = JobStatus


def test_all_jobs_succeeded_means_ack():
    assert decide([JobResult("csv", SUCCEEDED), JobResult("refresh", SUCCEEDED)]) == Outcome(
        Action.ACK
    )


def test_no_jobs_means_ack():
    assert decide([]) == Outcome(Action.ACK)


def test_a_retryable_job_means_retry_even_beside_a_permanent_one():
    outcome = decide([JobResult("csv", PERMANENT, "gone"), JobResult("refresh", RETRYABLE, "busy")])
    assert outcome == Outcome(Action.RETRY, "refresh: busy")


def test_a_permanent_failure_means_reject_with_every_reason():
    outcome = decide([JobResult("csv", PERMANENT, "no such key"), JobResult("refresh", SUCCEEDED)])
    assert outcome == Outcome(Action.REJECT, "csv: no such key")


def test_backoff_doubles_with_each_receive_within_jitter_and_is_capped():
    rng = random.Random(7)
    for receive_count, ceiling in [
        (1, 2),
        (2, 4),
        (3, 8),
        (5, 32),
        (11, MAX_SECONDS),
        (500, MAX_SECONDS),
    ]:
        delays = {retry_delay(receive_count, rng=rng) for _ in range(200)}
        assert min(delays) >= max(1, round(ceiling / 2))
        assert max(delays) <= ceiling


def test_backoff_is_jittered():
    rng = random.Random(1)
    assert len({retry_delay(8, rng=rng) for _ in range(50)}) > 10


def reason(text: str) -> dict[str, dict[str, str]]:
    return {"spotdrain-reason": {"DataType": "String", "StringValue": text}}


def test_dead_letter_attributes_are_kept_whole_when_they_fit():
    attributes = {"origin": {"DataType": "String", "StringValue": "x"}, **reason("bad")}
    assert _fit("body", attributes, 1000) == attributes


def test_near_the_size_limit_the_original_attributes_go_first_then_ours_but_the_reason():
    attributes = {
        "origin": {"DataType": "String", "StringValue": "o" * 100},
        "spotdrain-source-queue": {"DataType": "String", "StringValue": "q" * 100},
        **reason("r" * 50),
    }
    kept = _fit("b" * 850, attributes, 1000)
    assert list(kept) == ["spotdrain-reason"]
    assert 850 + _attributes_size(kept) <= 1000


def test_a_body_at_the_limit_is_sent_without_attributes():
    assert _fit("b" * 1000, reason("why"), 1000) == {}


def test_the_reason_is_clipped_to_the_room_left():
    kept = _fit("b" * 900, reason("r" * 500), 1000)
    assert kept["spotdrain-reason"]["StringValue"].endswith("...")
    assert 900 + _attributes_size(kept) <= 1000


def test_each_settlement_adds_to_one_summary_counter_and_a_lost_ack_to_none():
    stats = Stats()
    for settled, times in [
        (Settled.ACKED, 3),
        (Settled.ACK_LOST, 1),
        (Settled.RETRIED, 2),
        (Settled.DEAD_LETTERED, 1),
        (Settled.REJECTED, 1),
        (Settled.HANDED_BACK, 4),
    ]:
        stats.settled[settled] += times
    summary = stats.summary("drained")
    assert (summary["succeeded"], summary["retried"]) == (3, 2)
    assert (summary["dead_lettered"], summary["handed_back"]) == (2, 4)
    assert set(METRIC) == set(Settled) - {Settled.ACK_LOST}
    assert METRIC[Settled.HANDED_BACK] == "MessagesHandedBack"  # never a failure's metric
