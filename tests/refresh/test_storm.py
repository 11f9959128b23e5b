"""A storm of changes from three worker processes collapses into one refresh per window."""

from __future__ import annotations

import math
import time

import pytest

from tests.refresh.conftest import RefreshRig, covers, s3_event, send_bodies

pytestmark = pytest.mark.slow

CHANGES = 300
WINDOW = 2
BATCHES_PER_SECOND = 3  # 30 changes a second: about five windows, and moto's queue stays shallow


def test_a_storm_from_three_workers_gives_one_refresh_per_window_and_misses_nothing(
    rig: RefreshRig,
) -> None:
    bucket = rig.shared_bucket()
    env = {"REFRESH_WINDOW_SECONDS": str(WINDOW), "WORKER_IDLE_EXIT_SECONDS": "3"}
    workers = [rig.start(**env, LOG_LEVEL="DEBUG") for _ in range(3)]
    keys = [f"d{i % 7}/s{i % 3}/f{i}.txt" for i in range(CHANGES)]
    sent: list[tuple[str, float]] = []
    for start in range(0, CHANGES, 10):
        sent += send_bodies(
            rig.sqs, rig.queue.url, [s3_event(bucket, k) for k in keys[start : start + 10]]
        )
        time.sleep(1 / BATCHES_PER_SECOND)
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0]

    refreshes = rig.gateway.refreshes()
    span = sent[-1][1] - sent[0][1]
    windows = math.ceil(span / WINDOW)
    assert 2 <= len(refreshes) <= windows + 1, (len(refreshes), span)
    assert refreshes[-1].at > sent[-1][1]  # the last refresh starts after the last change

    recorded = [e for w in workers for e in w.events("refresh.recorded")]
    started = {e["window"]: e for w in workers for e in w.events("refresh.started")}
    # Each change is written; a redelivery (a lease that ran out on a loaded machine) writes
    # it again, harmlessly, so count messages rather than writes.
    assert {e["message_id"] for e in recorded} == {message_id for message_id, _ in sent}
    uncovered = []
    for change in recorded:
        # The write that saw window W came before W's claim, and the claim before its refresh.
        refresh = started.get(change["window"])
        folder = change["folder"].strip("/") or "/"
        calls = [c for c in refreshes if refresh and c.params["FolderList"] == refresh["folders"]]
        if not calls or not covers(calls[0], folder):
            uncovered.append(change)
    assert uncovered == []
    print(f"{CHANGES} changes over {span:.1f} s, window {WINDOW} s: {len(refreshes)} refreshes")
    outcomes = {e["outcome"] for w in workers for e in w.events("message.done")}
    assert outcomes == {"acked"}
