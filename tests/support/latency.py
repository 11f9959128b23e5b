"""bench/latency_proxy.py in front of moto, for tests that need SQS answers to arrive late."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.moto_server import MotoServer
from tests.support.ports import free_port
from tests.support.worker_process import PROJECT_ROOT


@contextmanager
def slow_answers(moto: MotoServer, seconds: float) -> Iterator[str]:
    """Every answer of moto arrives `seconds` late through the proxy at the yielded URL (so
    a ReceiveMessage that moto has served is still on its way for that long)."""
    port = free_port()
    proxy = subprocess.Popen(
        [
            sys.executable,
            "bench/latency_proxy.py",
            "--rtt-ms",
            str(seconds * 1000),
            f"{port}:{moto.port}",
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proxy.stdout is not None and proxy.stdout.readline().strip() == "ready"
        yield f"http://127.0.0.1:{port}"
    finally:
        proxy.terminate()
        proxy.wait(10)
        if proxy.stdout is not None:
            proxy.stdout.close()
