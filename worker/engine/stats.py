"""Counters of what the worker did, for the summary line at exit."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from worker.engine.outcomes import Settled


@dataclass
class Stats:
    started_at: float = field(default_factory=time.monotonic)
    received: int = 0
    settled: Counter[Settled] = field(default_factory=Counter)
    jobs: int = 0
    duplicates: int = 0

    def summary(self, reason: str) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started_at, 1e-9)
        return {
            "reason": reason,
            "received": self.received,
            "succeeded": self.settled[Settled.ACKED],
            "retried": self.settled[Settled.RETRIED],
            "dead_lettered": self.settled[Settled.DEAD_LETTERED] + self.settled[Settled.REJECTED],
            "handed_back": self.settled[Settled.HANDED_BACK],
            "jobs": self.jobs,
            "duplicates": self.duplicates,
            "elapsed_s": round(elapsed, 3),
            "messages_per_second": round(self.received / elapsed, 2),
        }


def elapsed_ms(since: float) -> float:
    """Milliseconds since the monotonic time `since`, to a tenth, for log lines."""
    return round((time.monotonic() - since) * 1000, 1)
