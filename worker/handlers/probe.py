"""A diagnostic job for smoke tests and benchmarks, enabled by WORKER_PROBE_JOBS=true.

`{"job": "probe", "seconds": 0.02, "fail": "retryable", "until_attempt": 3}` waits `seconds`
(simulated I/O), then fails as `fail` says while the attempt is below `until_attempt`
(always, when that is absent). It touches nothing outside the worker.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

from worker.errors import PermanentError, RetryableError
from worker.jobs import Job, MessageFacts
from worker.ports import Adapters
from worker.settings import Settings


@dataclass(frozen=True)
class ProbePayload:
    seconds: float
    fail: Literal["retryable", "permanent"] | None
    until_attempt: int | None

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> ProbePayload:
        seconds = payload.get("seconds", 0)
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 <= seconds <= 3600
        ):
            raise PermanentError("probe: 'seconds' must be a number from 0 to 3600")
        fail = payload.get("fail")
        if fail not in (None, "retryable", "permanent"):
            raise PermanentError("probe: 'fail' must be 'retryable' or 'permanent'")
        until = payload.get("until_attempt")
        if until is not None and (isinstance(until, bool) or not isinstance(until, int)):
            raise PermanentError("probe: 'until_attempt' must be a whole number")
        return cls(float(seconds), fail, until)


class Probe:
    async def __call__(self, job: Job, facts: MessageFacts) -> str | None:
        probe = ProbePayload.parse(job.payload)
        await asyncio.sleep(probe.seconds)
        attempt = facts.real_attempt
        failing = probe.until_attempt is None or attempt < probe.until_attempt
        if probe.fail == "retryable" and failing:
            raise RetryableError(f"asked to fail on attempt {attempt}")
        if probe.fail == "permanent" and failing:
            raise PermanentError("asked to fail permanently")
        return None


def create(settings: Settings, adapters: Adapters) -> Probe:
    return Probe()
