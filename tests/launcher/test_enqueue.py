"""Enqueueing: SendMessageBatch 10 per call, within the queue's size limit, failures retried."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from launcher.aws import CLIENT_CONFIG
from launcher.enqueue import Outgoing, plan_batches, send_all
from launcher.handler import handle
from tests.launcher.conftest import REGION, RuntimeFactory, receive_bodies, record_calls
from tests.launcher.samples import s3_event, sidecar_job

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs"


def outgoing(count: int, size: int = 10) -> list[Outgoing]:
    return [Outgoing(entry_id=str(i), body="x" * size, unit=0) for i in range(count)]


def no_sleep(_seconds: float) -> None:
    return None


def test_25_records_are_enqueued_in_3_batch_calls(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime()
    calls = record_calls(runtime.sqs, "SendMessageBatch")

    summary = handle(s3_event(*(f"in/{n}.csv" for n in range(25))), runtime)

    assert [len(call["Entries"]) for call in calls] == [10, 10, 5]
    assert summary["enqueued"] == 25
    assert summary["send_calls"] == 3
    assert len(receive_bodies(runtime)) == 25


def test_a_queue_of_256_kib_is_respected_when_batching(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime()
    runtime.sqs.set_queue_attributes(
        QueueUrl=runtime.settings.queue_url, Attributes={"MaximumMessageSize": "262144"}
    )
    calls = record_calls(runtime.sqs, "SendMessageBatch")
    jobs = [sidecar_job(f"f{n}.dat", results="r" * 100_000) for n in range(10)]

    summary = handle({"jobs": jobs}, runtime)

    sizes = [sum(len(e["MessageBody"].encode()) for e in call["Entries"]) for call in calls]
    assert sizes and max(sizes) <= 262_144
    assert [len(call["Entries"]) for call in calls] == [2, 2, 2, 2, 2]
    assert summary["enqueued"] == 10
    assert sorted(json.loads(b)["filename"] for b in receive_bodies(runtime)) == sorted(
        job["filename"] for job in jobs
    )


def test_the_queue_size_limit_is_read_once_per_container(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime()
    reads = record_calls(runtime.sqs, "GetQueueAttributes")

    handle(s3_event("a.csv"), runtime)
    handle(s3_event("b.csv"), runtime)

    limit_reads = [r for r in reads if "MaximumMessageSize" in r["AttributeNames"]]
    assert len(limit_reads) == 1


def test_a_message_larger_than_the_queue_allows_fails_without_a_call() -> None:
    sqs = boto3.client("sqs", region_name=REGION, config=CLIENT_CONFIG)
    with Stubber(sqs) as stub:
        result = send_all(sqs, QUEUE, outgoing(1, size=2048), 1024, no_sleep)
        stub.assert_no_pending_responses()

    assert result.sent == []
    assert "2048 bytes exceeds the queue's 1024" in result.failed[0][1]


def test_batches_hold_at_most_10_entries_and_keep_the_order() -> None:
    batches, oversized = plan_batches(outgoing(23), 262_144)

    assert [len(b) for b in batches] == [10, 10, 3]
    assert [m.entry_id for b in batches for m in b] == [str(i) for i in range(23)]
    assert oversized == []


def test_batches_never_exceed_the_one_mib_batch_limit_of_a_large_queue() -> None:
    batches, _ = plan_batches(outgoing(10, size=300_000), 1_048_576)

    assert [len(b) for b in batches] == [3, 3, 3, 1]


def test_failed_entries_of_a_batch_are_sent_again() -> None:
    sqs = boto3.client("sqs", region_name=REGION, config=CLIENT_CONFIG)
    messages = outgoing(3)
    with Stubber(sqs) as stub:
        stub.add_response(
            "send_message_batch",
            {
                "Successful": [
                    {"Id": "0", "MessageId": "m0", "MD5OfMessageBody": "0" * 32},
                ],
                "Failed": [
                    {"Id": "1", "SenderFault": False, "Code": "InternalError"},
                    {"Id": "2", "SenderFault": False, "Code": "ServiceUnavailable"},
                ],
            },
            {
                "QueueUrl": QUEUE,
                "Entries": [{"Id": m.entry_id, "MessageBody": m.body} for m in messages],
            },
        )
        stub.add_response(
            "send_message_batch",
            {
                "Successful": [
                    {"Id": "1", "MessageId": "m1", "MD5OfMessageBody": "0" * 32},
                    {"Id": "2", "MessageId": "m2", "MD5OfMessageBody": "0" * 32},
                ],
                "Failed": [],
            },
            {
                "QueueUrl": QUEUE,
                "Entries": [{"Id": m.entry_id, "MessageBody": m.body} for m in messages[1:]],
            },
        )
        result = send_all(sqs, QUEUE, messages, 262_144, no_sleep)
        stub.assert_no_pending_responses()

    assert sorted(m.entry_id for m in result.sent) == ["0", "1", "2"]
    assert result.failed == []
    assert result.calls == 2


def test_entries_refused_as_the_senders_fault_are_not_sent_again() -> None:
    sqs = boto3.client("sqs", region_name=REGION, config=CLIENT_CONFIG)
    with Stubber(sqs) as stub:
        stub.add_response(
            "send_message_batch",
            {
                "Successful": [{"Id": "0", "MessageId": "m0", "MD5OfMessageBody": "0" * 32}],
                "Failed": [
                    {
                        "Id": "1",
                        "SenderFault": True,
                        "Code": "InvalidMessageContents",
                        "Message": "bad characters",
                    }
                ],
            },
        )
        result = send_all(sqs, QUEUE, outgoing(2), 262_144, no_sleep)
        stub.assert_no_pending_responses()

    assert [m.entry_id for m in result.sent] == ["0"]
    assert [(m.entry_id, reason) for m, reason in result.failed] == [
        ("1", "InvalidMessageContents: bad characters")
    ]


def test_a_throttled_batch_call_is_retried() -> None:
    sqs = boto3.client("sqs", region_name=REGION, config=CLIENT_CONFIG)
    waits: list[float] = []
    with Stubber(sqs) as stub:
        stub.add_client_error(
            "send_message_batch", service_error_code="RequestThrottled", http_status_code=403
        )
        stub.add_response(
            "send_message_batch",
            {
                "Successful": [{"Id": "0", "MessageId": "m0", "MD5OfMessageBody": "0" * 32}],
                "Failed": [],
            },
        )
        result = send_all(sqs, QUEUE, outgoing(1), 262_144, waits.append)
        stub.assert_no_pending_responses()

    assert [m.entry_id for m in result.sent] == ["0"]
    assert len(waits) == 1


def test_entries_still_failing_after_every_attempt_are_reported() -> None:
    sqs = boto3.client("sqs", region_name=REGION, config=CLIENT_CONFIG)
    with Stubber(sqs) as stub:
        for _ in range(4):
            stub.add_response(
                "send_message_batch",
                {
                    "Successful": [],
                    "Failed": [{"Id": "0", "SenderFault": False, "Code": "InternalError"}],
                },
            )
        result = send_all(sqs, QUEUE, outgoing(1), 262_144, no_sleep)
        stub.assert_no_pending_responses()

    assert result.sent == []
    assert [reason for _, reason in result.failed] == ["InternalError"]
    assert result.calls == 4


@pytest.mark.parametrize("code", ["AccessDenied", "AWS.SimpleQueueService.NonExistentQueue"])
def test_a_refused_batch_call_is_not_retried(code: str) -> None:
    sqs = boto3.client("sqs", region_name=REGION, config=CLIENT_CONFIG)
    with Stubber(sqs) as stub:
        stub.add_client_error("send_message_batch", service_error_code=code, http_status_code=400)
        result = send_all(sqs, QUEUE, outgoing(2), 262_144, no_sleep)
        stub.assert_no_pending_responses()

    assert len(result.failed) == 2
    assert result.calls == 1
