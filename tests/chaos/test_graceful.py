"""Graceful stop under load: SIGTERM or an IMDS Spot notice at seeded random moments, each
right after the stopped worker took messages (the survivor is paused for that moment, so that
the victim is the one to take them). Each stopped worker exits 0 within its grace plus
cancel budget, and what it hands back is taken up by the surviving worker at once, not after
the lease (set far longer than the whole run).
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest

from tests.chaos.conftest import Run, StartWorker, wait_for_a_receive
from tests.conftest import QueueFactory
from tests.support.imds import FakeImds
from tests.support.latency import slow_answers
from tests.support.moto_server import MotoServer
from tests.support.worker_process import WorkerProcess

pytestmark = pytest.mark.slow

ROUNDS = 8
CANCEL = 2.0  # WORKER_CANCEL_SECONDS
# A message not handed back stays invisible this long: the survivor could not drain the queue
# until then. The whole scenario takes well under half of it.
VISIBILITY = 150
SPOT_POLL = 0.2
# Between the stop and the process's end, beyond grace + cancel: noticing a Spot notice (one
# poll), the final flush of deletes, closing clients and pools, interpreter exit. The budget
# is what ECS's stopTimeout must cover, so this slack is asserted too.
SLACK = 4.0


@dataclass(frozen=True)
class Stop:
    how: str
    grace: float
    code: int
    seconds: float

    @property
    def in_budget(self) -> bool:
        return self.seconds <= self.grace + CANCEL + SLACK


def stop_one(
    victim: WorkerProcess, grace: float, imds: FakeImds | None, *, then: Callable[[], None]
) -> Stop:
    """Announce a Spot interruption on `imds`, or send SIGTERM; call `then`; time the stop
    until the process ends."""
    began = time.monotonic()
    if imds is not None:
        imds.announce()
    else:
        victim.signal(signal.SIGTERM)
    then()
    code = victim.wait(timeout=grace + CANCEL + 60)
    how = "sigterm" if imds is None else "spot"
    return Stop(how, grace, code, round(time.monotonic() - began, 2))


def handed_back(victims: list[WorkerProcess]) -> int:
    """Messages the stopped workers handed back: jobs cut short, and receives still under way."""
    running = sum(
        1 for v in victims for e in v.events("message.done") if e["outcome"] == "handed_back"
    )
    return running + sum(e["handed_back"] for v in victims for e in v.events("stop.late_receives"))


@pytest.mark.nfs
def test_sigterm_and_spot_notices_under_load_exit_0_in_budget_and_hand_work_to_the_survivor(
    mixed_run: Callable[..., Run], start_worker: StartWorker, sqs: Any, seed: int
) -> None:
    rng = random.Random(seed)
    run = mixed_run(jobs=120, large=8, rate=4)  # the feed lasts about as long as the stops
    env = run.world.env(WORKER_VISIBILITY_SECONDS=VISIBILITY, WORKER_CANCEL_SECONDS=CANCEL)
    survivor = start_worker(**env, WORKER_IDLE_EXIT_SECONDS=3)
    run.feeder.start()
    stops: list[Stop] = []
    victims: list[WorkerProcess] = []
    first_stop = 0.0
    for round_ in range(ROUNDS):
        grace = rng.choice([0.0, 0.0, 0.0, 0.5, 2.0])
        with FakeImds() as imds:
            spot = round_ % 2 == 1
            watch = {"SPOT_IMDS": "on", "IMDS_ENDPOINT": imds.url, "SPOT_POLL_SECONDS": SPOT_POLL}
            victim = start_worker(
                **env,
                **(watch if spot else {}),
                WORKER_IDLE_EXIT_SECONDS=0,
                WORKER_SHUTDOWN_GRACE_SECONDS=grace,
            )
            victims.append(victim)
            victim.wait_for("worker.started", timeout=60)
            time.sleep(rng.uniform(0.2, 1.5))
            survivor.signal(signal.SIGSTOP)  # so that the next messages go to the victim
            wait_for_a_receive(sqs, run.world.queue.url, timeout=3)
            if round_ == 0:
                first_stop = time.monotonic()
            thaw = partial(survivor.signal, signal.SIGCONT)
            stops.append(stop_one(victim, grace, imds if spot else None, then=thaw))
    assert survivor.wait(timeout=VISIBILITY) == 0
    drained_after = time.monotonic() - first_stop
    given = handed_back(victims)
    print(f"{stops}; {given} messages handed back; drained {drained_after:.1f} s after stop 1")

    assert [s.code for s in stops] == [0] * ROUNDS, f"seed {seed}: {stops}"
    assert [s for s in stops if not s.in_budget] == [], f"seed {seed}"
    assert drained_after < VISIBILITY - 30, "a message waited out its lease: not handed back"
    assert run.problems() == [], f"seed {seed}"
    assert given > 0, "no stop caught a message in hand: the scenario tested nothing"


def counts(sqs: Any, url: str) -> tuple[int, int]:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return int(attributes[names[0]]), int(attributes[names[1]])


def test_messages_a_stopping_worker_was_still_receiving_are_handed_back_not_left_invisible(
    moto: MotoServer, sqs: Any, make_queue: QueueFactory, start_worker: StartWorker
) -> None:
    queue = make_queue(visibility=VISIBILITY)
    for _ in range(5):
        sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps({"job": "probe"}))
    with slow_answers(moto, 1.5) as proxy:
        worker = start_worker(
            QUEUE_URL=queue.url,
            WORKER_PROBE_JOBS="true",
            WORKER_VISIBILITY_SECONDS=VISIBILITY,
            AWS_ENDPOINT_URL_SQS=proxy,
        )
        deadline = time.monotonic() + 60
        while counts(sqs, queue.url) != (0, 5):  # moto served them; the answer is under way
            assert time.monotonic() < deadline and worker.process.poll() is None
            time.sleep(0.02)
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    assert counts(sqs, queue.url) == (5, 0)
    assert not worker.events("message.done")  # none had started: all five were handed back
