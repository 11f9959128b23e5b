"""What became of a message: job results, the decision (ack, retry, reject), the settlement.

All pure: decide() turns job results into one action, which settling.py carries out; Settled
names what the queue then did, counted by stats.py and by the METRIC each adds to.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class JobStatus(StrEnum):
    SUCCEEDED = "succeeded"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"


class Action(StrEnum):
    ACK = "ack"
    RETRY = "retry"
    REJECT = "reject"


class Settled(StrEnum):
    """What the queue did with a message; the value is its log line's `outcome`."""

    ACKED = "acked"
    ACK_LOST = "ack_lost"  # SQS refused the delete (the lease had passed): it comes back
    RETRIED = "retried"
    DEAD_LETTERED = "dead_lettered"
    REJECTED = "rejected"  # no dead-letter queue of ours: left to the redrive or to backoff
    HANDED_BACK = "handed_back"  # a stop gave it back; never counted as a failure


@dataclass(frozen=True)
class JobResult:
    kind: str
    status: JobStatus
    error: str | None = None


@dataclass(frozen=True)
class Outcome:
    action: Action
    reason: str | None = None


def decide(results: list[JobResult]) -> Outcome:
    """Retry while any job may still succeed; reject when one never can; else acknowledge."""
    retryable = [r for r in results if r.status is JobStatus.RETRYABLE]
    if retryable:
        return Outcome(Action.RETRY, "; ".join(f"{r.kind}: {r.error}" for r in retryable))
    permanent = [r for r in results if r.status is JobStatus.PERMANENT]
    if permanent:
        return Outcome(Action.REJECT, "; ".join(f"{r.kind}: {r.error}" for r in permanent))
    return Outcome(Action.ACK)


# The CloudWatch metric each settlement adds to; a lost ack adds to none (the message returns).
METRIC: dict[Settled, str] = {
    Settled.ACKED: "MessagesSucceeded",
    Settled.RETRIED: "MessagesRetried",
    Settled.DEAD_LETTERED: "MessagesDeadLettered",
    Settled.REJECTED: "MessagesDeadLettered",
    Settled.HANDED_BACK: "MessagesHandedBack",
}
