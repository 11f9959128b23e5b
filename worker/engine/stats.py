"""Counters of what the worker did, for the summary line at exit."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stats:
    started_at: float = field(default_factory=time.monotonic)
    received: int = 0
    succeeded: int = 0
    retried: int = 0
    dead_lettered: int = 0
    handed_back: int = 0
    jobs: int = 0
    duplicates: int = 0

    def summary(self, reason: str) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started_at, 1e-9)
        return {
            "reason": reason,
            "received": self.received,
            "succeeded": self.succeeded,
            "retried": self.retried,
            "dead_lettered": self.dead_lettered,
            "handed_back": self.handed_back,
            "jobs": self.jobs,
            "duplicates": self.duplicates,
            "elapsed_s": round(elapsed, 3),
            "messages_per_second": round(self.received / elapsed, 2),
        }


def elapsed_ms(since: float) -> float:
    """Milliseconds since the monotonic time `since`, to a tenth, for log lines."""
    return round((time.monotonic() - since) * 1000, 1)
