"""Scale out: four worker processes drain one queue of mixed jobs fed steadily; nothing is lost,
nothing is done twice, and every worker exits 0 once the queue is drained.

The suite runs 160 jobs; `bench/scale.py` runs the issue's 1,000 with 1, 2 and 4 workers.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.chaos.conftest import Run, StartWorker, wait_all

pytestmark = [pytest.mark.slow, pytest.mark.nfs]

JOBS = 160
WORKERS = 4


def test_four_workers_drain_a_steady_mixed_feed_and_leave_exactly_the_expected_end_state(
    mixed_run: Callable[..., Run], start_worker: StartWorker
) -> None:
    run = mixed_run(jobs=JOBS, rate=30)
    workers = [start_worker(**run.world.env(WORKER_IDLE_EXIT_SECONDS=3)) for _ in range(WORKERS)]
    run.feeder.start()
    assert wait_all(workers) == ""
    assert run.problems() == []
    served = [len(w.events("message.done")) for w in workers]
    assert all(served), f"a worker took no message at all: {served}"
