"""A worker on a system whose libnfs has an ABI it does not bind stops at start: exit 2, one
line naming SIDECAR_NFS_URL and the library, before it receives anything."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.conftest import QueueFactory
from tests.support.moto_server import MotoServer

# The worker's own start, in a process of its own, on a system where the only libnfs is
# libnfs 6 (soname .16): what `library()` finds there, since none of the known sonames load.
START_WITH_LIBNFS_6 = """
import sys
from worker.adapters import libnfs
libnfs.library = lambda: libnfs.load(("libnfs.so.999-absent",), other="libnfs.so.16")
from worker.__main__ import main
sys.exit(main([]))
"""


def test_an_unknown_libnfs_stops_the_worker_at_start_naming_sidecar_nfs_url(
    moto: MotoServer, make_queue: QueueFactory, sqs: Any
) -> None:
    queue = make_queue()
    sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps({"job": "probe"}))
    env = {
        **moto.env(),
        "PATH": "/usr/bin:/bin",
        "QUEUE_URL": queue.url,
        "SIDECAR_NFS_URL": "nfs://127.0.0.1/export",
        "SPOT_IMDS": "off",
    }
    done = subprocess.run(
        [sys.executable, "-c", START_WITH_LIBNFS_6],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.strip()]
    assert "SIDECAR_NFS_URL" in line and "libnfs.so.16" in line
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue.url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"  # nothing was received
