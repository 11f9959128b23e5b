"""Lambda events as AWS delivers them: S3, SNS, SQS and EventBridge shapes, and direct jobs."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote_plus


def encode_key(key: str) -> str:
    """How S3 writes a key into an event: URL-encoded, a space as `+`."""
    return quote_plus(key, safe="/")


def s3_record(
    key: str, *, bucket: str = "in", event: str = "ObjectCreated:Put", encode: bool = True
) -> dict[str, Any]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-22T10:00:00.000Z",
        "eventName": event,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.9"},
        "responseElements": {"x-amz-request-id": uuid.uuid4().hex[:16].upper()},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "to-launcher",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {
                "key": encode_key(key) if encode else key,
                "size": 12,
                "eTag": "abc123",
                "sequencer": uuid.uuid4().hex[:16].upper(),
            },
        },
    }


def s3_event(*keys: str, **record: Any) -> dict[str, Any]:
    return {"Records": [s3_record(key, **record) for key in keys]}


S3_TEST_EVENT = {
    "Service": "Amazon S3",
    "Event": "s3:TestEvent",
    "Time": "2026-11-22T10:00:00.000Z",
    "Bucket": "in",
    "RequestId": "5582815E1AEA5ADF",
    "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
}


def sns_notification(message: dict[str, Any] | str) -> dict[str, Any]:
    """The SNS JSON envelope (as an SQS subscription without raw delivery receives it)."""
    return {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:uploads",
        "Subject": "Amazon S3 Notification",
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": "2026-11-22T10:00:00.000Z",
        "SignatureVersion": "1",
    }


def sns_event(*messages: dict[str, Any] | str) -> dict[str, Any]:
    """A Lambda invocation by an SNS subscription."""
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:uploads:sub",
                "Sns": sns_notification(message),
            }
            for message in messages
        ]
    }


def sqs_record(body: dict[str, Any] | str, *, message_id: str | None = None) -> dict[str, Any]:
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": uuid.uuid4().hex,
        "body": body if isinstance(body, str) else json.dumps(body),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795000000000"},
        "messageAttributes": {},
        "md5OfBody": "0" * 32,
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:inbox",
        "awsRegion": "us-east-1",
    }


def sqs_event(*bodies: dict[str, Any] | str) -> dict[str, Any]:
    """A Lambda invocation by an SQS event source mapping."""
    return {"Records": [sqs_record(body) for body in bodies]}


def eventbridge_event(
    key: str, *, bucket: str = "in", detail_type: str = "Object Created"
) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-11-22T10:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": encode_key(key), "size": 12, "etag": "abc123", "sequencer": "0A"},
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "reason": "PutObject",
        },
    }


def csv_job(key: str, bucket: str = "in") -> dict[str, Any]:
    return {"job": "csv", "bucket": bucket, "key": key}


def sidecar_job(filename: str, results: str = "ok") -> dict[str, Any]:
    return {"job": "sidecar", "filename": filename, "results": results}


def refresh_job(key: str, bucket: str = "in") -> dict[str, Any]:
    return {"job": "refresh", "bucket": bucket, "key": key, "event_time": "2026-11-22T10:00:00Z"}


def scheduled_event(*, rule: str = "spotdrain-reconcile") -> dict[str, Any]:
    """What a scheduled EventBridge rule delivers: a new id at every tick."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-12-03T10:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:events:us-east-1:123456789012:rule/{rule}"],
        "detail": {},
    }


def task_stopped_event(
    task: dict[str, Any], *, stop_code: str = "SpotInterruption", reason: str = ""
) -> dict[str, Any]:
    """An ECS Task State Change for `task` (as DescribeTasks shows it) having STOPPED."""
    detail = {
        "clusterArn": task.get("clusterArn", ""),
        "taskArn": task["taskArn"],
        "taskDefinitionArn": task.get("taskDefinitionArn", ""),
        "lastStatus": "STOPPED",
        "desiredStatus": "STOPPED",
        "stopCode": stop_code,
        "stoppedReason": reason or "Your Spot Task was interrupted.",
        "launchType": task.get("launchType", "FARGATE"),
        "capacityProviderName": task.get("capacityProviderName", "FARGATE_SPOT"),
        "group": task.get("group", ""),
        "overrides": task.get("overrides", {}),
        "containers": [],
        "version": 3,
    }
    if task.get("startedBy"):
        detail["startedBy"] = task["startedBy"]
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": "123456789012",
        "time": "2026-12-03T10:00:00Z",
        "region": "us-east-1",
        "resources": [task["taskArn"]],
        "detail": detail,
    }
