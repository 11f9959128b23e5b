"""A fuzz run through a live worker: every hostile message is settled (dead-lettered with a
reason, or acknowledged when it is harmless) and the worker keeps going and exits 0."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import pytest

from tests.chaos.test_hostile_input import VALID_SHAPES, mutate, paths
from tests.conftest import drain_all

pytestmark = pytest.mark.slow
SEED = 20261122


def hostile_bodies(rng: random.Random, count: int) -> list[str]:
    fillers: list[Any] = [
        None,
        0,
        -1,
        2**70,
        "",
        "x" * 5000,
        [],
        {},
        [[[[]]]],
        True,
        1.5,
        "../../etc",
    ]
    bodies = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.6:
            document = rng.choice(VALID_SHAPES)
            for _ in range(rng.randint(1, 3)):
                candidates = paths(document)
                if not candidates:
                    break
                action = rng.choice(["remove", "replace"])
                document = mutate(document, rng.choice(candidates), action, rng.choice(fillers))
            bodies.append(json.dumps(document))
        elif kind < 0.8:
            bodies.append("".join(chr(rng.randint(1, 0xD7FF)) for _ in range(rng.randint(1, 200))))
        else:
            text = json.dumps(rng.choice(VALID_SHAPES))
            cut = rng.randint(0, len(text) - 1)
            bodies.append(
                text[:cut] + rng.choice(["", "\ufffd", "{", "]", "%ZZ"]) + text[cut + 1 :]
            )
    return bodies


def test_hostile_messages_are_settled_with_reasons_and_the_worker_carries_on(
    sqs, make_queue, start_worker
):
    print(f"fuzz seed: {SEED}")
    queue = make_queue()
    bodies = hostile_bodies(random.Random(SEED), 60)
    for start in range(0, len(bodies), 10):
        sqs.send_message_batch(
            QueueUrl=queue.url,
            Entries=[
                {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])
            ],
        )
    sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps({"job": "probe"}))

    worker = start_worker(
        QUEUE_URL=queue.url,
        DLQ_URL=queue.dlq_url,
        WORKER_PROBE_JOBS="true",
        WORKER_MAX_RECEIVES="1",
    )

    assert worker.wait(timeout=120) == 0
    done = worker.events("message.done")
    outcomes = Counter(e["outcome"] for e in done)
    assert len(done) == len(bodies) + 1
    assert set(outcomes) <= {"acked", "dead_lettered"}
    assert all(e.get("reason") for e in done if e["outcome"] == "dead_lettered")
    dead = drain_all(sqs, queue.dlq_url)
    assert len(dead) == outcomes["dead_lettered"]
    assert Counter(m["Body"] for m in dead) <= Counter(bodies)
    assert all(m["MessageAttributes"]["spotdrain-reason"]["StringValue"] for m in dead)
    assert not worker.events("job.crashed")
