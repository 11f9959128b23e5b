"""Sidecar jobs as a user runs them: `python -m worker` on a moto queue, writing to real ganesha
(libnfs) or to a plain directory (SIDECAR_ROOT), with servers stopped, killed and frozen."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TestQueue, drain_all
from tests.sidecar.conftest import Destination, read_sidecar, snapshot, temporaries
from tests.support.ganesha import Ganesha
from worker.adapters.files import FileFacts
from worker.handlers.sidecar_job import SidecarRequest, render_sidecar

pytestmark = pytest.mark.slow


def send(sqs: Any, queue: TestQueue, bodies: list[dict[str, Any]]) -> list[str]:
    ids = []
    texts = [json.dumps(body) for body in bodies]
    per_batch = max(1, min(10, 900_000 // max(len(t) for t in texts)))  # SQS: 1 MiB per batch
    for start in range(0, len(texts), per_batch):
        entries = [
            {"Id": str(i), "MessageBody": text}
            for i, text in enumerate(texts[start : start + per_batch])
        ]
        response = sqs.send_message_batch(QueueUrl=queue.url, Entries=entries)
        assert not response.get("Failed"), response["Failed"]
        ids.extend(entry["MessageId"] for entry in response["Successful"])
    return ids


def make_files(root: Path, count: int, prefix: str = "f") -> list[str]:
    names = []
    for i in range(count):
        (root / "data").mkdir(exist_ok=True)
        (root / "data" / f"{prefix}{i:03}.raw").write_bytes(b"r" * (i + 1))
        names.append(f"data/{prefix}{i:03}.raw")
    return names


def expected_sidecar(root: Path, filename: str, results: Any, message_id: str) -> bytes:
    st = os.stat(root / filename.lstrip("/"))
    facts = FileFacts(
        size=st.st_size, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns, is_directory=False
    )
    request = SidecarRequest.parse({"filename": filename, "results": results})
    return render_sidecar(request, facts, message_id=message_id)


def sidecar_of(root: Path, filename: str) -> Path:
    return root / filename.replace(".raw", "-sidecar.json")


def wait_for_sidecars(root: Path, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(list(root.rglob("*-sidecar.json"))) < count:
        assert time.monotonic() < deadline, f"fewer than {count} sidecars after {timeout}s"
        time.sleep(0.02)


def reasons(sqs: Any, url: str) -> list[str]:
    return [
        m["MessageAttributes"]["spotdrain-reason"]["StringValue"] for m in drain_all(sqs, url)
    ]


def wait_until_held(sqs: Any, queue: TestQueue) -> None:
    """Wait until the worker holds the message (in flight, not visible to anyone else)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        attributes = sqs.get_queue_attributes(
            QueueUrl=queue.url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        if int(attributes["ApproximateNumberOfMessagesNotVisible"]) >= 1:
            return
        time.sleep(0.05)
    raise AssertionError("the worker never took the message")


class SidecarWatcher:
    """Reads every sidecar in a tree, over and over, and records any that is not whole JSON."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.broken: list[tuple[str, bytes]] = []
        self.reads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for path in self.root.rglob("*-sidecar.json"):
                try:
                    data = path.read_bytes()
                except FileNotFoundError:
                    continue
                self.reads += 1
                try:
                    json.loads(data)
                except ValueError:
                    self.broken.append((path.name, data[:80]))

    def __enter__(self) -> SidecarWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def watcher(destination: Destination) -> Iterator[SidecarWatcher]:
    with SidecarWatcher(destination.root) as watching:
        yield watching


def test_the_worker_writes_exact_sidecars_for_both_message_shapes(
    sqs: Any, make_queue: Any, start_worker: Any, destination: Destination
) -> None:
    queue = make_queue()
    first, second = make_files(destination.root, 2)
    bodies = [
        {"filename": first, "results": "bare request"},
        {"job": "sidecar", "filename": "/" + second, "results": {"score": 0.93}},
    ]
    ids = send(sqs, queue, bodies)

    worker = start_worker(QUEUE_URL=queue.url, DLQ_URL=queue.dlq_url, **destination.env)

    assert worker.wait() == 0
    assert sidecar_of(destination.root, first).read_bytes() == expected_sidecar(
        destination.root, first, "bare request", ids[0]
    )
    assert sidecar_of(destination.root, second).read_bytes() == expected_sidecar(
        destination.root, "/" + second, {"score": 0.93}, ids[1]
    )
    assert drain_all(sqs, queue.dlq_url) == []


def test_a_missing_file_is_dead_lettered_with_the_reason(
    sqs: Any, make_queue: Any, start_worker: Any, destination: Destination
) -> None:
    queue = make_queue()
    send(sqs, queue, [{"filename": "data/never-made.raw", "results": "x"}])

    worker = start_worker(QUEUE_URL=queue.url, DLQ_URL=queue.dlq_url, **destination.env)

    assert worker.wait() == 0
    assert reasons(sqs, queue.dlq_url) == ["sidecar: no such file: 'data/never-made.raw' (ENOENT)"]
    assert snapshot(destination.root) == {}


def test_traversal_attempts_are_dead_lettered_and_write_nothing_anywhere(
    sqs: Any, make_queue: Any, start_worker: Any, destination: Destination
) -> None:
    queue = make_queue()
    world = destination.root.parent
    (world / "escape.raw").write_bytes(b"outside the root")
    names = ["../escape.raw", "/../escape.raw", "data/../../escape.raw", "", "a\x00b.raw"]
    send(sqs, queue, [{"filename": name, "results": "x"} for name in names])
    before = snapshot(world)

    worker = start_worker(QUEUE_URL=queue.url, DLQ_URL=queue.dlq_url, **destination.env)

    assert worker.wait() == 0
    assert len(reasons(sqs, queue.dlq_url)) == len(names)
    assert snapshot(world) == before


def test_a_worker_killed_mid_run_leaves_no_partial_sidecar_and_the_retry_cleans_up(
    sqs: Any, make_queue: Any, start_worker: Any, destination: Destination, watcher: SidecarWatcher
) -> None:
    queue = make_queue(visibility=2)
    names = make_files(destination.root, 40)
    big = "r" * 150_000  # many pages per sidecar: a long window for a kill to land mid-write
    send(sqs, queue, [{"filename": name, "results": big} for name in names])
    env = {**destination.env, "WORKER_VISIBILITY_SECONDS": "2", "WORKER_CONCURRENCY": "8"}

    first = start_worker(QUEUE_URL=queue.url, DLQ_URL=queue.dlq_url, **env)
    wait_for_sidecars(destination.root, 5)
    first.kill()
    second = start_worker(QUEUE_URL=queue.url, DLQ_URL=queue.dlq_url, **env)

    assert second.wait() == 0
    assert watcher.broken == []
    assert all(read_sidecar(sidecar_of(destination.root, n))["results"] == big for n in names)
    assert temporaries(destination.root) == []
    assert drain_all(sqs, queue.dlq_url) == []


# --- about the NFS server itself ---------------------------------------------------------


@pytest.fixture
def nfs_env(ganesha: Ganesha) -> dict[str, str]:
    return {"SIDECAR_NFS_URL": ganesha.url(), "SIDECAR_NFS_TIMEOUT_MS": "2000"}


@pytest.mark.nfs
def test_stopping_and_restarting_ganesha_mid_run_loses_nothing(
    sqs: Any, make_queue: Any, start_worker: Any, ganesha: Ganesha, nfs_env: dict[str, str]
) -> None:
    queue = make_queue(max_receive=8)
    root = ganesha.export_dir
    names = make_files(root, 40)
    worker = start_worker(QUEUE_URL=queue.url, WORKER_IDLE_EXIT_SECONDS="3", **nfs_env)
    send(sqs, queue, [{"filename": name, "results": "ok"} for name in names[:20]])
    wait_for_sidecars(root, 20)

    ganesha.stop()
    send(sqs, queue, [{"filename": name, "results": "ok"} for name in names[20:]])
    worker.wait_for("message.done", outcome="retried")
    time.sleep(1.5)
    ganesha.start()

    assert worker.wait(120) == 0
    assert all(read_sidecar(sidecar_of(root, name))["results"] == "ok" for name in names)
    assert temporaries(root) == []
    assert drain_all(sqs, queue.dlq_url) == []
    summary = worker.events("worker.exit")[0]
    assert summary["retried"] >= 1


@pytest.mark.nfs
def test_killing_ganesha_during_writes_never_leaves_a_partial_sidecar(
    sqs: Any, make_queue: Any, start_worker: Any, ganesha: Ganesha, nfs_env: dict[str, str]
) -> None:
    queue = make_queue(max_receive=8)
    root = ganesha.export_dir
    names = make_files(root, 40)
    big = "k" * 150_000
    send(sqs, queue, [{"filename": name, "results": big} for name in names])

    with SidecarWatcher(root) as watcher:
        worker = start_worker(
            QUEUE_URL=queue.url, WORKER_IDLE_EXIT_SECONDS="3", WORKER_CONCURRENCY="8", **nfs_env
        )
        wait_for_sidecars(root, 3)
        ganesha.kill()
        time.sleep(2.5)  # past the NFS timeout: calls in flight fail rather than reconnect
        ganesha.start()
        assert worker.wait(120) == 0

    assert watcher.broken == [] and watcher.reads > 0
    assert all(read_sidecar(sidecar_of(root, name))["results"] == big for name in names)
    assert temporaries(root) == []
    assert drain_all(sqs, queue.dlq_url) == []
    assert worker.events("worker.exit")[0]["retried"] >= 1  # the kill did hit running jobs


@pytest.mark.nfs
def test_a_frozen_nfs_server_does_not_stop_the_heartbeat(
    sqs: Any, make_queue: Any, start_worker: Any, ganesha: Ganesha
) -> None:
    """The job waits on a frozen server for longer than the lease; the heartbeat must keep
    extending it meanwhile, so nobody else can receive the message."""
    # A 6 s lease is extended when 3 s are left, at ticks 1.5 s apart: a 1.5 s margin for
    # the extension call even on a loaded machine (a 2 s lease left 0.5 s, and lapsed once).
    queue = make_queue(visibility=6)
    (ganesha.export_dir / "f.raw").write_bytes(b"f")
    worker = start_worker(
        QUEUE_URL=queue.url,
        WORKER_VISIBILITY_SECONDS="6",
        SIDECAR_NFS_URL=ganesha.url(),
        SIDECAR_NFS_TIMEOUT_MS="20000",
    )
    worker.wait_for("worker.started")
    ganesha.pause()
    try:
        send(sqs, queue, [{"filename": "f.raw", "results": "ok"}])
        wait_until_held(sqs, queue)
        stolen: list[Any] = []
        deadline = time.monotonic() + 14  # more than twice the lease
        while time.monotonic() < deadline:
            stolen += sqs.receive_message(QueueUrl=queue.url, WaitTimeSeconds=1).get("Messages", [])
    finally:
        ganesha.resume()

    assert worker.wait() == 0
    assert stolen == []
    done = worker.events("message.done")
    assert [(e["outcome"], e["attempt"]) for e in done] == [("acked", 1)]
    assert read_sidecar(ganesha.export_dir / "f-sidecar.json")["results"] == "ok"
