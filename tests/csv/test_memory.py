"""Memory stays bounded whatever the size: a 512 MiB CSV converts within 256 MiB of RSS."""

from __future__ import annotations

import contextlib
import io
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig

from tests.conftest import QueueFactory
from tests.csv.conftest import job
from tests.support.worker_process import WorkerProcess

pytestmark = pytest.mark.slow

SIZE = 512 * 1024 * 1024
LIMIT = 256 * 1024 * 1024


def mixed_rows(count: int, seed: int = 3) -> bytes:
    """Rows of integers, decimals, empty fields, unicode and quoted text with commas,
    doubled quotes and line breaks."""
    rnd = random.Random(seed)
    notes = ['"fine, thanks"', '"said ""hi"""', '"line one\nline two"', "plain", ""]
    cities = ["Zürich", "東京", "São Paulo", "Kraków", "Paris"]
    lines = [
        f"{i},{rnd.randint(0, 99999) / 100:.2f},{rnd.choice(('', str(rnd.randint(0, 500))))},"
        f"{rnd.choice(cities)},{rnd.choice(notes)},{rnd.choice(('true', 'false'))}\n"
        for i in range(count)
    ]
    return "".join(lines).encode()


class RssWatch:
    """Samples the peak RSS (VmHWM) of a process and of its children while it runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in [self.pid, *_children(self.pid)]:
                peak = _vm_hwm(pid)
                if peak:
                    self.peaks[pid] = max(self.peaks.get(pid, 0), peak)
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in path.read_text().split()]
    return found


def _vm_hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def test_a_512_mib_csv_converts_with_peak_rss_under_256_mib_all_processes_counted(
    s3: Any, sqs: Any, bucket: str, make_queue: QueueFactory,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    block = mixed_rows(20_000)
    header = b"id,amount,qty,city,note,active\n"
    copies = SIZE // len(block) + 1
    s3.upload_fileobj(
        io.BytesIO(header + block * copies), bucket, "huge.csv",
        Config=TransferConfig(multipart_chunksize=64 * 1024 * 1024),
    )
    queue = make_queue()
    sqs.send_message(QueueUrl=queue.url, MessageBody=job(bucket, "huge.csv"))
    worker = start_worker(QUEUE_URL=queue.url, WORKER_VISIBILITY_SECONDS="30")
    watch = RssWatch(worker.pid)
    try:
        assert worker.wait(170) == 0, worker.stderr()
    finally:
        watch.stop()
    (converted,) = worker.events("csv.converted")
    assert converted["rows"] == 20_000 * copies
    assert converted["source_bytes"] >= SIZE
    worker_peak = watch.peaks[worker.pid]
    converters = {pid: peak for pid, peak in watch.peaks.items() if pid != worker.pid}
    print(f"peak RSS: worker {worker_peak / 2**20:.0f} MiB, converter processes "
          f"{[round(p / 2**20) for p in converters.values()]} MiB, "
          f"{converted['mb_per_s']} MB/s through moto")
    # The whole tree, converter processes included (their shared-memory slots count twice).
    assert converters and worker_peak + sum(converters.values()) < LIMIT
