"""Aggregated refreshes as a user runs them: `python -m worker`, moto, the local gateway."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import QueueFactory, unique
from tests.refresh.conftest import (
    RefreshRig,
    RefreshTable,
    iso_time,
    refresh_env,
    s3_event,
    wait_for,
)
from tests.support.storage_gateway import StorageGatewayEndpoint
from tests.support.worker_process import WorkerProcess

pytestmark = pytest.mark.slow

StartWorker = Callable[..., WorkerProcess]


def done(worker: WorkerProcess, job: str) -> list[dict[str, Any]]:
    return [e for e in worker.events("message.done") if e.get("job") == job]


def test_a_change_gets_one_refresh_of_its_folders_after_the_window(rig: RefreshRig) -> None:
    bucket = unique("bucket")
    share = rig.gateway.add_share(bucket)
    rig.send(s3_event(bucket, "in/day 1/a.txt"))
    worker = rig.start()
    assert worker.wait() == 0
    (refresh,) = rig.gateway.refreshes()
    assert refresh.params == {
        "FileShareARN": share,
        "FolderList": ["/", "in", "in/day 1"],
        "Recursive": False,
    }
    (change,) = done(worker, "refresh")
    assert change["outcome"] == "acked" and refresh.at > iso_time(change)
    assert [e["outcome"] for e in done(worker, "refresh_due")] == ["acked"]


def test_the_contract_refresh_envelope_is_one_change(rig: RefreshRig) -> None:
    bucket = rig.shared_bucket()
    body = {
        "job": "refresh",
        "bucket": bucket,
        "key": "x/y.txt",
        "event_time": "2025-01-01T00:00:00Z",
    }
    rig.send(json.dumps(body))
    worker = rig.start()
    assert worker.wait() == 0
    assert [r.params["FolderList"] for r in rig.gateway.refreshes()] == [["/", "x"]]


def test_each_share_covering_the_change_is_refreshed_relative_to_its_location(
    rig: RefreshRig,
) -> None:
    bucket = unique("bucket")
    whole = rig.gateway.add_share(bucket)
    inbox = rig.gateway.add_share(f"{bucket}/in/", kind="SMB")
    rig.gateway.add_share(f"{bucket}/out/")
    rig.send(s3_event(bucket, "in/x/y.txt", removed=True))
    worker = rig.start()
    assert worker.wait() == 0
    calls = {r.params["FileShareARN"]: r.params["FolderList"] for r in rig.gateway.refreshes()}
    assert calls == {whole: ["/", "in", "in/x"], inbox: ["/", "x"]}


def test_a_change_after_a_refresh_fired_gets_its_own_refresh(rig: RefreshRig) -> None:
    bucket = rig.shared_bucket()
    worker = rig.start(WORKER_IDLE_EXIT_SECONDS="3")
    rig.send(s3_event(bucket, "a/1.txt"))
    wait_for(rig.gateway.refreshes, timeout=30, what="the first refresh")
    rig.send(s3_event(bucket, "a/2.txt"))
    assert worker.wait() == 0
    first, second = rig.gateway.refreshes()
    late_change = done(worker, "refresh")[-1]
    assert second.at > iso_time(late_change) > first.at
    assert second.params["FolderList"] == ["/", "a"]


def test_a_busy_share_is_retried_until_the_refresh_is_accepted(rig: RefreshRig) -> None:
    bucket = unique("bucket")
    rig.gateway.add_share(bucket)
    rig.gateway.busy(2)
    rig.send(s3_event(bucket, "a/1.txt"))
    worker = rig.start(WORKER_IDLE_EXIT_SECONDS="3")
    assert worker.wait() == 0
    attempts = rig.gateway.recorded("RefreshCache")
    assert [c.error for c in attempts] == [
        "InvalidGatewayRequestException",
        "InvalidGatewayRequestException",
        None,
    ]
    assert [e["outcome"] for e in done(worker, "refresh_due")] == ["retried", "retried", "acked"]
    assert attempts[2].params == attempts[0].params  # the retry refreshes the same folders


def test_a_bucket_without_a_share_is_logged_once_per_window_and_acknowledged(
    rig: RefreshRig,
) -> None:
    bucket = unique("bucket")
    rig.gateway.add_share(unique("other"))
    for key in ("a.txt", "b/c.txt", "d.txt"):
        rig.send(s3_event(bucket, key))
    worker = rig.start()
    assert worker.wait() == 0
    assert [e["bucket"] for e in worker.events("refresh.no_share")] == [bucket]
    assert {e["outcome"] for e in worker.events("message.done")} == {"acked"}
    assert rig.gateway.refreshes() == []


def test_changes_made_by_the_gateway_itself_are_ignored(rig: RefreshRig, dynamodb: Any) -> None:
    bucket = rig.shared_bucket()
    body = s3_event(bucket, "from-nfs.txt", principal="AWS:AROAGATEWAY:sgw-3C4D5E6F")
    rig.send(body)
    worker = rig.start(REFRESH_IGNORE_PRINCIPALS="AWS:AROAGATEWAY")
    assert worker.wait() == 0
    assert [e["outcome"] for e in done(worker, "refresh")] == ["acked"]
    assert "Item" not in dynamodb.get_item(TableName=rig.table.name, Key={"target": {"S": bucket}})
    assert rig.gateway.refreshes() == []


def test_a_window_longer_than_sqs_delays_travels_in_hops_of_900_seconds(rig: RefreshRig) -> None:
    due = {
        "job": "refresh_due",
        "bucket": unique("bucket"),
        "window": "w1",
        "due": time.time() + 2000,
    }
    rig.send(json.dumps(due))
    worker = rig.start()
    event = worker.wait_for("refresh.redelayed", timeout=30)
    assert event["delay_s"] == 900
    worker.wait_for("message.done", outcome="acked", timeout=10)
    worker.kill()  # it would otherwise stay up for the delayed message
    attributes = rig.sqs.get_queue_attributes(QueueUrl=rig.queue.url, AttributeNames=["All"])[
        "Attributes"
    ]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
    assert rig.gateway.refreshes() == []


def test_a_refresh_table_that_does_not_exist_is_a_configuration_error(
    make_queue: QueueFactory,
    dynamodb_url: str,
    gateway: StorageGatewayEndpoint,
    start_worker: StartWorker,
) -> None:
    missing = RefreshTable("no-such-table", dynamodb_url)
    worker = start_worker(**refresh_env(make_queue(), missing, gateway))
    assert worker.wait() == 2
    assert "REFRESH_TABLE" in worker.stderr()
