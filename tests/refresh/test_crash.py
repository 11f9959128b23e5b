"""A worker killed between the conditional write and the delayed send loses no refresh.

The dying worker reaches SQS through a proxy that never answers its SendMessage of the due
message: the window is written in the table, the send is under way, and the test kills the
process with SIGKILL right there. A healthy worker must still refresh the change.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from tests.conftest import QueueFactory, drain_all
from tests.refresh.aws_proxy import AwsProxy
from tests.refresh.conftest import RefreshRig, RefreshTable, s3_event, wait_for
from tests.support.moto_server import MotoServer
from tests.support.worker_process import WorkerProcess

pytestmark = pytest.mark.slow

StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def sqs_proxy(moto: MotoServer) -> Iterator[AwsProxy]:
    proxy = AwsProxy(moto.url).start()
    proxy.hold(lambda target, body: target == "AmazonSQS.SendMessage" and b"refresh_due" in body)
    yield proxy
    proxy.stop()


def kill_between_write_and_send(
    proxy: AwsProxy, dynamodb: Any, table: RefreshTable, bucket: str, worker: WorkerProcess
) -> dict[str, Any]:
    """Wait until the worker wrote the window and is sending its due message; kill it."""
    wait_for(proxy.held.is_set, timeout=30, what="the due message's send to be under way")
    item = dynamodb.get_item(
        TableName=table.name, Key={"target": {"S": bucket}}, ConsistentRead=True
    )
    worker.kill()
    assert "token" in item["Item"], "the window was not written before the send"
    return dict(item["Item"])


def test_a_change_whose_worker_died_before_the_send_is_refreshed_on_redelivery(
    rig: RefreshRig, dynamodb: Any, sqs_proxy: AwsProxy
) -> None:
    bucket = rig.shared_bucket()
    rig.send(s3_event(bucket, "in/a.txt"))
    dying = rig.start(WORKER_VISIBILITY_SECONDS="2", AWS_ENDPOINT_URL_SQS=sqs_proxy.url)
    item = kill_between_write_and_send(sqs_proxy, dynamodb, rig.table, bucket, dying)

    healthy = rig.start(WORKER_VISIBILITY_SECONDS="2", WORKER_IDLE_EXIT_SECONDS="3")
    assert healthy.wait() == 0
    (refresh,) = rig.gateway.refreshes()
    assert refresh.params["FolderList"] == ["/", "in"]
    assert refresh.at > float(item["changed_at"]["N"])
    assert [e["window"] for e in healthy.events("refresh.window_resend")] == [item["token"]["S"]]


def test_a_lost_window_is_rescued_by_a_later_change(
    rig: RefreshRig, make_queue: QueueFactory, dynamodb: Any, sqs_proxy: AwsProxy
) -> None:
    # max_receive=1: the dead worker's message goes to the DLQ, not back
    rig = replace(rig, queue=make_queue(max_receive=1))
    bucket = rig.shared_bucket()
    rig.send(s3_event(bucket, "lost/a.txt"))
    dying = rig.start(WORKER_VISIBILITY_SECONDS="2", AWS_ENDPOINT_URL_SQS=sqs_proxy.url)
    item = kill_between_write_and_send(sqs_proxy, dynamodb, rig.table, bucket, dying)

    healthy = rig.start(
        WORKER_VISIBILITY_SECONDS="2", REFRESH_RESCUE_SECONDS="1", WORKER_IDLE_EXIT_SECONDS="3"
    )
    dead = wait_for(lambda: drain_all(rig.sqs, rig.queue.dlq_url), timeout=30, what="the DLQ")
    assert len(dead) == 1
    time.sleep(max(0.0, float(item["due"]["N"]) + 1.5 - time.time()))  # the window is overdue
    rig.send(s3_event(bucket, "later/b.txt"))
    assert healthy.wait() == 0
    (refresh,) = rig.gateway.refreshes()
    assert refresh.params["FolderList"] == ["/", "later", "lost"]
    assert [e["window"] for e in healthy.events("refresh.window_rescue")] == [item["token"]["S"]]
