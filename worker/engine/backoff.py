"""How long a failed message waits before its next attempt: exponential, with jitter."""

from __future__ import annotations

import random

BASE_SECONDS = 2.0
MAX_SECONDS = 900.0


def retry_delay(receive_count: int, *, rng: random.Random | None = None) -> int:
    """Seconds of invisibility after attempt `receive_count` failed.

    Doubles from BASE_SECONDS with each receive, capped at MAX_SECONDS, then "equal jitter"
    (half fixed, half random) so that a burst of failures does not come back in lockstep.
    """
    exponent = min(max(receive_count, 1) - 1, 20)
    ceiling: float = min(MAX_SECONDS, BASE_SECONDS * 2.0**exponent)
    draw: float = (rng or random).uniform(0.5, 1.0)
    return max(1, round(ceiling * draw))
