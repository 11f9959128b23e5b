"""Crash at random points: a worker is killed with SIGKILL at seeded random moments, round after
round, while another keeps running; afterwards the end state is exactly the expected one.

The seed fixes the schedule (how long each victim lives), not the interleaving: the same seed
replays the same kills against whatever the workers happen to be doing. Set CHAOS_SEED to
replay one; CHAOS_ROUNDS runs more rounds than the suite's 20.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable

import pytest

from tests.chaos.conftest import Run, StartWorker, redelivered, wait_all
from tests.support.worker_process import WorkerProcess

pytestmark = [pytest.mark.slow, pytest.mark.nfs]

ROUNDS = int(os.environ.get("CHAOS_ROUNDS", "20"))
VISIBILITY = 3  # a killed worker's messages come back this soon


def test_sigkill_at_random_moments_loses_nothing_and_leaves_no_partial_output(
    mixed_run: Callable[..., Run], start_worker: StartWorker, seed: int
) -> None:
    rng = random.Random(seed)
    run = mixed_run(jobs=8 * ROUNDS, large=3, rate=8)
    env = run.world.env(WORKER_VISIBILITY_SECONDS=VISIBILITY)
    survivor = start_worker(**env, WORKER_IDLE_EXIT_SECONDS=4)
    run.feeder.start()
    victims: list[WorkerProcess] = []
    upcoming = start_worker(**env, WORKER_IDLE_EXIT_SECONDS=0)
    for round_ in range(ROUNDS):
        victim = upcoming
        victim.wait_for("worker.started", timeout=60)
        if round_ + 1 < ROUNDS:  # the next victim starts up while this one works
            upcoming = start_worker(**env, WORKER_IDLE_EXIT_SECONDS=0)
        time.sleep(rng.uniform(0.05, 1.5))
        victim.kill()
        victims.append(victim)
    assert wait_all([survivor]) == "", f"seed {seed}"
    # Moving a message to the dead-letter queue is a send, then a delete: a kill between the
    # two leaves the poison message to be dead-lettered again. A copy of poison is tolerated.
    assert run.problems(dead_letter_repeats=True) == [], f"seed {seed}"
    taken_up = redelivered([survivor, *victims])
    print(f"{ROUNDS} kills; {taken_up} messages finished on a later delivery")
    assert taken_up > 0, "no kill interrupted any work: the scenario tested nothing"
