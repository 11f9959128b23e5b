"""The launcher's counts, aggregated in its container and written as CloudWatch EMF records.

A Lambda container lives across many invocations and has no exit of its own, so the counts
of its invocations are added up and written as one record at the end of the first
invocation that finds METRICS_INTERVAL_SECONDS passed since the last record (CloudWatch
takes the record's own timestamp). Invocations that did nothing (an idle reconcile) add
nothing, so an idle schedule writes no record at all. The price: what a container counted
after its last record is lost if Lambda retires it before another invocation; with the
reconcile schedule invoking it every minute that is rare.

The format is written directly, as the worker does: `json.dumps` of a documented layout
needs no library inside the launcher's zip (see logs.py for why it carries none).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable

# Every metric the launcher writes; all are counts with the dimension Queue.
METRICS = ("JobsEnqueued", "TasksStarted", "RunTaskFailures")


class ContainerMetrics:
    def __init__(
        self,
        *,
        namespace: str,
        queue: str,
        interval_seconds: float,
        enabled: bool = True,
        write: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._namespace = namespace
        self._queue = queue
        self._interval = interval_seconds
        self._enabled = enabled
        self._write = write or _stdout_line
        self._clock = clock
        self._counts: Counter[str] = Counter()
        self._last = float("-inf")  # a new container's first counts are written at once
        self.records = 0

    def count(self, name: str, value: int) -> None:
        if self._enabled and value:
            self._counts[name] += value

    def end_of_invocation(self) -> None:
        """Write the record when the interval has passed and there is something to say."""
        now = self._clock()
        if now - self._last < self._interval or not self._counts:
            return
        self.flush(now)

    def flush(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        self._last = now
        if not self._counts:
            return
        counts, self._counts = dict(self._counts), Counter()
        record = {
            "_aws": {
                "Timestamp": int(now * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": self._namespace,
                        "Dimensions": [["Queue"]],
                        "Metrics": [{"Name": name, "Unit": "Count"} for name in counts],
                    }
                ],
            },
            "event": "metrics",
            "Queue": self._queue,
            **counts,
        }
        self._write(json.dumps(record, separators=(",", ":")))
        self.records += 1


def _stdout_line(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
