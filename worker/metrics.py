"""What the worker did, aggregated per interval and written as CloudWatch embedded metric format.

Every METRICS_INTERVAL_SECONDS (and once at exit) the counts and timings gathered since the
last record become one JSON line on the log stream: one record for the queue (dimension
`Queue`) and one per job kind that ran (dimensions `Queue`, `Job`). CloudWatch Logs turns
those lines into metrics with no agent and no API call, and the cost is a few lines a
minute whatever the message rate.

Why not `aws-embedded-metrics`: it emits one record per scope (per message, here), leaves
aggregation to the caller, and on ECS it sends to a CloudWatch agent's socket unless told
otherwise; what remains of it for us is the JSON layout, which is a documented format that
these few lines write directly.

A timing metric holds at most 100 values per record (the format's limit). Up to that, every
value of the interval is written; beyond it, 100 evenly spaced order statistics of the
interval's values, so percentiles stay close while the record stays small (CloudWatch's
SampleCount of such a metric then counts those values: the Messages* counts are exact).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Unit = Literal["Count", "Milliseconds", "Bytes"]
MAX_VALUES = 100  # per metric and record, the format's limit

# Every metric the worker writes, and its unit; Job-level ones carry the Job dimension.
QUEUE_METRICS: dict[str, Unit] = {
    "MessagesReceived": "Count",
    "MessagesSucceeded": "Count",
    "MessagesRetried": "Count",
    "MessagesDeadLettered": "Count",
    "MessagesHandedBack": "Count",
    "QueueDwell": "Milliseconds",
    "CsvBytesIn": "Bytes",
    "CsvBytesOut": "Bytes",
    "SidecarsWritten": "Count",
    "RefreshCacheCalls": "Count",
    "RefreshCacheBusy": "Count",
}
JOB_METRICS: dict[str, Unit] = {"JobDuration": "Milliseconds"}


@dataclass
class _Tally:
    counts: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    timings: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def empty(self) -> bool:
        return not self.counts and not self.timings


class Metrics:
    """Collects counts and timings; `flush()` writes what was collected as EMF records."""

    def __init__(
        self,
        *,
        namespace: str,
        queue: str,
        interval_seconds: float,
        write: Callable[[str], None],
        enabled: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._namespace = namespace
        self._queue = queue
        self._interval = interval_seconds
        self._write = write
        self._enabled = enabled
        self._clock = clock
        self._queue_tally = _Tally()
        self._job_tallies: dict[str, _Tally] = defaultdict(_Tally)
        self.records = 0  # written so far, for the exit summary

    @classmethod
    def off(cls) -> Metrics:
        """Collects nothing and writes nothing (METRICS=off; tests of a single handler)."""
        return cls(namespace="-", queue="-", interval_seconds=60, write=_discard, enabled=False)

    def count(self, name: str, value: float = 1) -> None:
        if self._enabled and value:
            self._queue_tally.counts[name] += value

    def time(self, name: str, milliseconds: float, *, job: str | None = None) -> None:
        if not self._enabled:
            return
        tally = self._queue_tally if job is None else self._job_tallies[job]
        tally.timings[name].append(milliseconds)

    async def run(self) -> None:
        """Flush every interval until cancelled (the final flush is the caller's)."""
        while True:
            await asyncio.sleep(self._interval)
            self.flush()

    def flush(self) -> None:
        """Write one record for the queue and one per job kind, for what came since the last."""
        now_ms = int(self._clock() * 1000)
        tallies = [(None, self._queue_tally), *self._job_tallies.items()]
        self._queue_tally = _Tally()
        self._job_tallies = defaultdict(_Tally)
        for job, tally in tallies:
            if not tally.empty():
                self._write(self._record(now_ms, job, tally))
                self.records += 1

    def _record(self, now_ms: int, job: str | None, tally: _Tally) -> str:
        units = QUEUE_METRICS if job is None else JOB_METRICS
        values: dict[str, float | list[float]] = dict(tally.counts)
        values.update({name: _spread(samples) for name, samples in tally.timings.items()})
        dimensions = {"Queue": self._queue} if job is None else {"Queue": self._queue, "Job": job}
        document = {
            "_aws": {
                "Timestamp": now_ms,
                "CloudWatchMetrics": [
                    {
                        "Namespace": self._namespace,
                        "Dimensions": [list(dimensions)],
                        "Metrics": [{"Name": name, "Unit": units[name]} for name in values],
                    }
                ],
            },
            "event": "metrics",  # like every log line: findable by its event name
            **dimensions,
            **values,
        }
        return json.dumps(document, separators=(",", ":"))


def _discard(_line: str) -> None:
    return None


def _spread(samples: list[float]) -> list[float]:
    """The values themselves, or MAX_VALUES evenly spaced order statistics of them."""
    ordered = sorted(round(s, 1) for s in samples)
    if len(ordered) <= MAX_VALUES:
        return ordered
    last = len(ordered) - 1
    return [ordered[round(i * last / (MAX_VALUES - 1))] for i in range(MAX_VALUES)]
