"""The Lambda handler end to end on moto: triggers, failure policy, summary and its log line."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from launcher import handler
from launcher.aws import CLIENT_CONFIG
from launcher.errors import ConfigError, EnqueueFailed, InvalidEvent
from launcher.handler import handle, lambda_handler
from tests.launcher.conftest import (
    REGION,
    Cluster,
    QueueFactory,
    RuntimeFactory,
    queue_depth,
    receive_bodies,
    running_tasks,
)
from tests.launcher.samples import (
    S3_TEST_EVENT,
    csv_job,
    eventbridge_event,
    s3_event,
    sidecar_job,
    sns_event,
    sqs_event,
    sqs_record,
)


def summary_lines(out: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if line["event"] == "launcher.summary"]


@pytest.mark.parametrize(
    ("event", "enqueued", "skipped"),
    [
        (s3_event("a.csv", "b c.csv", "d+e.csv"), 3, 0),
        (sns_event(s3_event("a.csv", "b.csv")), 2, 0),
        (sns_event({"filename": "exports/a.dat", "results": "ok"}), 1, 0),
        (eventbridge_event("a.csv"), 1, 0),
        ({"jobs": [csv_job("a.csv"), sidecar_job("b.dat")]}, 2, 0),
        (sqs_event(s3_event("a.csv"), csv_job("b.csv"), S3_TEST_EVENT), 2, 1),
        (S3_TEST_EVENT, 0, 1),
    ],
    ids=["s3", "sns-s3", "sns-sidecar", "eventbridge", "direct", "sqs", "s3-test"],
)
def test_each_trigger_enqueues_one_message_per_job_and_sizes_the_fleet(
    make_runtime: RuntimeFactory, event: dict[str, Any], enqueued: int, skipped: int
) -> None:
    runtime = make_runtime()

    summary = handle(event, runtime)

    assert (summary["enqueued"], summary["skipped"]) == (enqueued, skipped)
    assert queue_depth(runtime) == enqueued
    assert (summary["running"], summary["started"]) == (0, 1 if enqueued else 0)
    assert summary["failures"] == []


def test_a_malformed_event_enqueues_nothing_and_raises(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime()
    event = s3_event("a.csv", "b.csv")
    del event["Records"][1]["s3"]["object"]["key"]

    with pytest.raises(InvalidEvent, match=r"Records\[1\]\.s3\.object\.key"):
        handle(event, runtime)

    assert queue_depth(runtime) == 0
    assert running_tasks(runtime) == []


def test_an_sqs_batch_reports_its_malformed_records_as_batch_item_failures(
    make_runtime: RuntimeFactory,
) -> None:
    runtime = make_runtime()
    event = {
        "Records": [
            sqs_record(s3_event("a.csv"), message_id="good"),
            sqs_record({"unknown": "shape"}, message_id="bad"),
        ]
    }

    summary = handle(event, runtime)

    assert summary["batchItemFailures"] == [{"itemIdentifier": "bad"}]
    assert summary["enqueued"] == 1
    assert summary["rejected"] == 1


def test_an_sqs_batch_reports_records_whose_messages_were_not_enqueued(
    make_queue: QueueFactory, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime(queue_url=make_queue(MaximumMessageSize="1024"))
    event = {
        "Records": [
            sqs_record({"jobs": [sidecar_job("small")]}, message_id="fits"),
            sqs_record({"jobs": [sidecar_job("large", "r" * 2000)]}, message_id="too-large"),
        ]
    }

    summary = handle(event, runtime)

    assert summary["batchItemFailures"] == [{"itemIdentifier": "too-large"}]
    assert [json.loads(b)["filename"] for b in receive_bodies(runtime)] == ["small"]


def test_a_fully_enqueued_sqs_batch_reports_no_failures(make_runtime: RuntimeFactory) -> None:
    summary = handle(sqs_event(csv_job("a"), csv_job("b")), make_runtime())

    assert summary["batchItemFailures"] == []


def test_it_raises_when_nothing_could_be_enqueued(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime()
    sqs = boto3.client("sqs", region_name=REGION, config=CLIENT_CONFIG)
    runtime = replace(runtime, sqs=sqs, max_message_size=262_144)
    with Stubber(sqs) as stub:
        for _ in range(4):
            stub.add_client_error("send_message_batch", "ServiceUnavailable", http_status_code=503)
        stub.add_response(
            "get_queue_attributes",
            {"Attributes": {"ApproximateNumberOfMessages": "0"}},
        )

        with pytest.raises(EnqueueFailed, match="2 of 2 message"):
            handle(sqs_event(csv_job("a"), csv_job("b")), runtime)


def test_without_partial_responses_any_message_not_enqueued_raises(
    make_queue: QueueFactory, make_runtime: RuntimeFactory
) -> None:
    """An S3 or SNS trigger cannot retry one record: the whole event is retried instead."""
    runtime = make_runtime(queue_url=make_queue(MaximumMessageSize="1024"))
    event = {"jobs": [sidecar_job("small"), sidecar_job("large", "r" * 2000)]}

    with pytest.raises(EnqueueFailed, match="1 of 2 message"):
        handle(event, runtime)


def test_an_event_with_nothing_to_enqueue_is_not_an_error(make_runtime: RuntimeFactory) -> None:
    summary = handle({"jobs": []}, make_runtime())

    assert (summary["enqueued"], summary["started"], summary["failures"]) == (0, 0, [])


def test_a_fleet_that_cannot_be_sized_is_reported_not_raised(
    make_runtime: RuntimeFactory,
) -> None:
    """The messages are on the queue; raising would only enqueue them again."""
    runtime = make_runtime(cluster="no-such-cluster")

    summary = handle(s3_event("a.csv"), runtime)

    assert summary["enqueued"] == 1
    assert summary["started"] == 0
    assert summary["failures"]


def test_the_summary_is_logged_as_one_json_line(
    make_runtime: RuntimeFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = handle(s3_event("a.csv", "b.txt"), make_runtime(), request_id="req-1")

    (line,) = summary_lines(capsys.readouterr().out)
    assert line["level"] == "info"
    assert line["outcome"] == "ok"
    assert line["request_id"] == "req-1"
    for field in ("enqueued", "skipped", "running", "started", "failures"):
        assert line[field] == summary[field]


def test_a_rejected_event_is_logged_as_one_error_line(
    make_runtime: RuntimeFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(InvalidEvent):
        handle({"nope": 1}, make_runtime())

    (line,) = summary_lines(capsys.readouterr().out)
    assert (line["level"], line["outcome"], line["enqueued"]) == ("error", "rejected", 0)
    assert "unknown event shape" in line["failures"][0]


@pytest.fixture
def lambda_env(cluster: Cluster, make_queue: QueueFactory, monkeypatch: pytest.MonkeyPatch) -> str:
    queue_url = make_queue()
    monkeypatch.setattr(handler, "_runtime", None)
    monkeypatch.setenv("QUEUE_URL", queue_url)
    monkeypatch.setenv("CLUSTER", cluster.name)
    monkeypatch.setenv("TASK_DEFINITION", cluster.task_definition)
    monkeypatch.setenv("SUBNETS", ",".join(cluster.subnets))
    monkeypatch.setenv("SECURITY_GROUPS", ",".join(cluster.security_groups))
    monkeypatch.setenv("KEY_SUFFIXES", ".csv")
    monkeypatch.setenv("CSV_OUTPUT_PREFIX", "json/")
    return queue_url


class Context:
    aws_request_id = "8f5a3c1e-request"


def test_lambda_handler_configures_itself_from_the_environment_once(
    lambda_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = lambda_handler(s3_event("a.csv", "b.txt"), Context())
    monkeypatch.setenv("KEY_SUFFIXES", ".txt")  # read once per container, not per event
    second = lambda_handler(s3_event("c.csv"), Context())

    assert (first["enqueued"], first["skipped"], first["started"]) == (1, 1, 1)
    assert (second["enqueued"], second["started"]) == (1, 0)
    runtime = handler._runtime
    assert runtime is not None
    (task,) = running_tasks(runtime)
    environment = task["overrides"]["containerOverrides"][0]["environment"]
    assert {"name": "CSV_OUTPUT_PREFIX", "value": "json/"} in environment


def test_lambda_handler_names_a_missing_option(
    lambda_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CLUSTER")

    with pytest.raises(ConfigError, match=r"^CLUSTER is required"):
        lambda_handler(s3_event("a.csv"), Context())

    assert '"event":"launcher.config_error"' in capsys.readouterr().out
