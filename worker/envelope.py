"""Parse one SQS message body into requests, or raise InvalidMessage saying what is wrong.

Accepted shapes (README, "Messages it accepts"): a job envelope, an S3
notification (including s3:TestEvent), an SNS envelope around any of these, an EventBridge S3
event, and a bare sidecar request. S3 keys arrive URL-encoded and are decoded exactly once.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

from worker.errors import InvalidMessage
from worker.jobs import ChangeKind, JobRequest, ObjectChange, Request

_EVENTBRIDGE_KINDS: dict[str, ChangeKind] = {
    "Object Created": "created",
    "Object Deleted": "removed",
}


def parse(body: str) -> list[Request]:
    """Return the requests one message body carries (possibly none, for a test event)."""
    return _parse_document(_load_json(body, "message body"), sns_allowed=True)


def _load_json(text: str, what: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except RecursionError:
        raise InvalidMessage(f"{what} is nested too deeply") from None
    except ValueError as exc:
        raise InvalidMessage(f"{what} is not JSON ({_short(exc)})") from None
    if not isinstance(document, dict):
        raise InvalidMessage(f"{what} must be a JSON object, got {type(document).__name__}")
    return document


def _parse_document(doc: dict[str, Any], *, sns_allowed: bool) -> list[Request]:
    if "job" in doc:
        return [_job_request(doc)]
    if doc.get("Event") == "s3:TestEvent":
        return []
    if "Records" in doc:
        return _s3_notification(doc["Records"])
    if doc.get("Type") == "Notification" and "Message" in doc:
        if not sns_allowed:
            raise InvalidMessage("an SNS envelope inside an SNS envelope is not accepted")
        message = doc["Message"]
        if not isinstance(message, str):
            raise InvalidMessage("SNS Message must be a string")
        return _parse_document(_load_json(message, "SNS Message"), sns_allowed=False)
    if doc.get("source") == "aws.s3" and "detail-type" in doc:
        return _eventbridge_event(doc)
    if "filename" in doc and "results" in doc:
        return [JobRequest(job="sidecar", fields=dict(doc))]
    keys = ", ".join(sorted(str(k) for k in doc)[:8]) or "none"
    raise InvalidMessage(f"unknown message shape (top-level keys: {keys})")


def _job_request(doc: dict[str, Any]) -> JobRequest:
    job = doc["job"]
    if not isinstance(job, str) or not job:
        raise InvalidMessage("field 'job' must be a non-empty string")
    fields = {k: v for k, v in doc.items() if k != "job"}
    return JobRequest(job=job, fields=fields)


def _s3_notification(records: Any) -> list[Request]:
    if not isinstance(records, list):
        raise InvalidMessage("S3 notification 'Records' must be a list")
    requests: list[Request] = []
    for index, record in enumerate(records):
        change = _s3_record(record, index)
        if change is not None:
            requests.append(change)
    return requests


def _s3_record(record: Any, index: int) -> ObjectChange | None:
    where = f"Records[{index}]"
    if not isinstance(record, dict) or record.get("eventSource") != "aws:s3":
        raise InvalidMessage(f"{where} is not an S3 event record (eventSource must be aws:s3)")
    event_name = _string(record, "eventName", where)
    change = _change_kind(event_name)
    if change is None:
        return None
    s3 = _mapping(record, "s3", where)
    bucket = _string(_mapping(s3, "bucket", f"{where}.s3"), "name", f"{where}.s3.bucket")
    obj = _mapping(s3, "object", f"{where}.s3")
    identity = record.get("userIdentity")
    return ObjectChange(
        bucket=bucket,
        key=_decode_key(_string(obj, "key", f"{where}.s3.object"), where),
        change=change,
        event_name=event_name,
        event_time=_optional_string(record, "eventTime"),
        etag=_optional_string(obj, "eTag"),
        version_id=_optional_string(obj, "versionId"),
        size=_optional_int(obj, "size"),
        principal=_optional_string(identity, "principalId") if isinstance(identity, dict) else None,
    )


def _change_kind(event_name: str) -> ChangeKind | None:
    """S3 event names that change an object's presence; others (tagging, restore) carry no job."""
    if event_name.startswith("ObjectCreated:"):
        return "created"
    if event_name.startswith("ObjectRemoved:") or event_name == "LifecycleExpiration:Delete":
        return "removed"
    return None


def _eventbridge_event(doc: dict[str, Any]) -> list[Request]:
    detail_type = doc["detail-type"]
    change = _EVENTBRIDGE_KINDS.get(detail_type) if isinstance(detail_type, str) else None
    if change is None:
        return []
    detail = _mapping(doc, "detail", "EventBridge event")
    bucket = _string(_mapping(detail, "bucket", "detail"), "name", "detail.bucket")
    obj = _mapping(detail, "object", "detail")
    return [
        ObjectChange(
            bucket=bucket,
            key=_decode_key(_string(obj, "key", "detail.object"), "detail.object"),
            change=change,
            event_name=f"EventBridge:{detail_type}",
            event_time=_optional_string(doc, "time"),
            etag=_optional_string(obj, "etag"),
            version_id=_optional_string(obj, "version-id"),
            size=_optional_int(obj, "size"),
            principal=_optional_string(detail, "requester"),
        )
    ]


def _decode_key(raw: str, where: str) -> str:
    try:
        key = unquote_plus(raw, errors="strict")
    except UnicodeDecodeError:
        raise InvalidMessage(
            f"{where}: key {_short(raw)!r} is not valid URL-encoded UTF-8"
        ) from None
    if not key:
        raise InvalidMessage(f"{where}: key is empty")
    return key


def _mapping(doc: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = doc.get(name)
    if not isinstance(value, dict):
        raise InvalidMessage(f"{where}.{name} must be an object")
    return value


def _string(doc: dict[str, Any], name: str, where: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidMessage(f"{where}.{name} must be a non-empty string")
    return value


def _optional_string(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    return value if isinstance(value, str) and value else None


def _optional_int(doc: dict[str, Any], name: str) -> int | None:
    value = doc.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _short(value: object, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
