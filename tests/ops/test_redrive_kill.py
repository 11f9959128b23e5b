"""A redrive killed halfway loses nothing: every body is in the queue or the DLQ afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.conftest import QueueFactory, drain_all
from tests.ops.conftest import Put, dead_letter, held, visible
from tests.support.latency import slow_answers
from tests.support.moto_server import MotoServer
from tests.support.worker_process import PROJECT_ROOT

MESSAGES = 200
LEASE_SECONDS = 2  # what the killed redrive held reappears this soon


@pytest.mark.slow
def test_a_redrive_killed_halfway_loses_no_dead_letter(
    moto: MotoServer, sqs: Any, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    sent = [f"job-{i:03d}" for i in range(MESSAGES)]
    put_dead_letters(queue.dlq_url, [dead_letter(body=b, reason="timeout") for b in sent])
    with slow_answers(moto, 0.05) as proxy:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "worker.ops",
                "dlq",
                "redrive",
                "--dlq-url",
                queue.dlq_url,
                "--queue-url",
                queue.url,
                "--reason",
                "timeout",
                "--visibility-timeout",
                str(LEASE_SECONDS),
            ],
            env={**os.environ, "AWS_ENDPOINT_URL": proxy},
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 30
            while visible(sqs, queue.url) < MESSAGES // 3 and time.monotonic() < deadline:
                assert process.poll() is None, process.communicate()
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.communicate(timeout=10)
    assert process.returncode == -signal.SIGKILL
    moved = visible(sqs, queue.url)
    assert MESSAGES // 3 <= moved < MESSAGES, "killed after it finished: no halfway state"
    deadline = time.monotonic() + 10
    while held(sqs, queue.dlq_url) and time.monotonic() < deadline:
        time.sleep(0.1)
    found = [m["Body"] for m in drain_all(sqs, queue.url) + drain_all(sqs, queue.dlq_url)]
    assert set(found) == set(sent)
    assert len(found) - MESSAGES <= 10, "at most the batch in flight is duplicated"
