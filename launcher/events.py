"""Parse a Lambda event into the messages to enqueue, or raise InvalidEvent saying why.

Accepted triggers: S3 notifications, the same inside SNS, plain SNS messages (a sidecar
request or a job envelope), EventBridge S3 events, direct invocations `{"jobs": [...]}`, and
SQS batches whose bodies are any of those. EventBridge scheduled events, ECS task state
changes and `{"jobs": []}` carry no job: they ask the launcher to size the fleet now (the
stack sends them on a schedule and whenever a worker's task stops). Each S3 record
becomes its own message, forwarded unchanged (its key still URL-encoded: the worker decodes
it once); the key is decoded here only to apply KEY_SUFFIXES / KEY_PREFIXES. A whole event is
parsed before anything is enqueued, so a malformed one enqueues nothing; in an SQS batch each
record stands alone and a malformed record is reported as a batch item failure.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote_plus

from launcher.errors import InvalidEvent
from launcher.settings import KeyFilter

Trigger = Literal["sqs", "sns", "s3", "eventbridge", "direct", "schedule", "ecs"]
MessageKind = Literal["s3-record", "eventbridge", "job"]
MESSAGE_KINDS: tuple[MessageKind, ...] = ("s3-record", "eventbridge", "job")

# Job envelopes the worker runs (README, "Messages it accepts") and the fields
# each must carry as non-empty strings; a sidecar's `results` may be any string.
JOB_FIELDS: dict[str, tuple[str, ...]] = {
    "csv": ("bucket", "key"),
    "refresh": ("bucket", "key", "event_time"),
    "sidecar": ("filename",),
}
_EVENTBRIDGE_TYPES = ("Object Created", "Object Deleted")


@dataclass(frozen=True)
class Message:
    """One body to enqueue, and which of the worker's accepted shapes it has."""

    kind: MessageKind
    body: str


@dataclass(frozen=True)
class Unit:
    """What one retryable part of the trigger yields: an SQS record, or the whole event."""

    item_id: str | None
    messages: tuple[Message, ...] = ()
    skipped: int = 0
    error: str | None = None


@dataclass(frozen=True)
class ParsedEvent:
    """The event's trigger, its units, and a stable identity for RunTask client tokens."""

    trigger: Trigger
    units: tuple[Unit, ...]
    identity: str
    # For an ECS task state change: which task stopped and why, for the summary line.
    stopped_task: dict[str, Any] | None = None

    @property
    def partial_batch(self) -> bool:
        """Whether the trigger understands `batchItemFailures` (only SQS does here)."""
        return self.trigger == "sqs"


@dataclass
class _Found:
    messages: list[Message] = field(default_factory=list)
    skipped: int = 0

    def unit(self, item_id: str | None) -> Unit:
        return Unit(item_id=item_id, messages=tuple(self.messages), skipped=self.skipped)


def parse_event(event: object, keys: KeyFilter, request_id: str | None = None) -> ParsedEvent:
    """Turn one invocation's event into units of messages; raise InvalidEvent if malformed."""
    if not isinstance(event, dict):
        raise InvalidEvent(f"the event must be a JSON object, got {type(event).__name__}")
    trigger = _trigger(event)
    identity = _identity(trigger, event, request_id)
    if trigger in ("schedule", "ecs"):
        stopped = _stopped_task(event) if trigger == "ecs" else None
        return ParsedEvent(trigger, (Unit(item_id=None),), identity, stopped_task=stopped)
    if trigger == "sqs":
        records = enumerate(event["Records"])
        units = tuple(_sqs_record(record, index, keys) for index, record in records)
    else:
        found = _Found()
        if trigger == "sns":
            for index, record in enumerate(event["Records"]):
                _sns_record(record, index, keys, found)
        elif trigger == "direct":
            _jobs(event, found, "event")
        elif trigger == "eventbridge":
            _eventbridge(event, keys, found, "event")
        elif "Records" in event:
            _s3_records(event["Records"], keys, found, "event")
        else:
            found.skipped += 1  # s3:TestEvent, sent when notifications are configured
        units = (found.unit(None),)
    return ParsedEvent(trigger=trigger, units=units, identity=identity)


def _trigger(event: dict[str, Any]) -> Trigger:
    if "Records" in event:
        records = event["Records"]
        if not isinstance(records, list) or not records:
            raise InvalidEvent("event.Records must be a non-empty list")
        sources = {_record_source(record) for record in records}
        if len(sources) != 1:
            raise InvalidEvent(
                f"event.Records mixes or lacks event sources: {sorted(map(str, sources))}"
            )
        source = sources.pop()
        if source == "aws:sqs":
            return "sqs"
        if source == "aws:sns":
            return "sns"
        if source == "aws:s3":
            return "s3"
        raise InvalidEvent(
            f"event.Records come from {source!r}; accepted: aws:s3, aws:sns, aws:sqs"
        )
    if event.get("Event") == "s3:TestEvent":
        return "s3"
    if event.get("source") == "aws.s3" and "detail-type" in event:
        return "eventbridge"
    if "jobs" in event:
        return "direct"
    reconcile = _RECONCILE_EVENTS.get((event.get("source"), event.get("detail-type")))
    if reconcile is not None:
        return reconcile
    raise InvalidEvent(
        f"unknown event shape (top-level keys: {_keys(event)}); accepted: an S3 notification, "
        'an SNS or SQS trigger, an EventBridge S3 event, {"jobs": [...]}, a scheduled event '
        "or an ECS task state change"
    )


_RECONCILE_EVENTS: dict[tuple[object, object], Trigger] = {
    ("aws.events", "Scheduled Event"): "schedule",
    ("aws.ecs", "ECS Task State Change"): "ecs",
}


def _stopped_task(event: dict[str, Any]) -> dict[str, Any]:
    """What an ECS task state change says of its task; any task's change sizes the fleet."""
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise InvalidEvent("an ECS task state change must have a detail object")
    fields = {
        "task": detail.get("taskArn"),
        "started_by": detail.get("startedBy"),
        "last_status": detail.get("lastStatus"),
        "stop_code": detail.get("stopCode"),
        "stopped_reason": detail.get("stoppedReason"),
        "capacity_provider": detail.get("capacityProviderName"),
    }
    return {name: value for name, value in fields.items() if isinstance(value, str)}


def _record_source(record: object) -> str | None:
    if not isinstance(record, dict):
        return None
    source = record.get("eventSource", record.get("EventSource"))
    return source if isinstance(source, str) else None


def _sqs_record(record: dict[str, Any], index: int, keys: KeyFilter) -> Unit:
    item_id = record.get("messageId")
    if not isinstance(item_id, str) or not item_id:
        raise InvalidEvent(f"Records[{index}].messageId must be a non-empty string")
    found = _Found()
    try:
        body = record.get("body")
        if not isinstance(body, str):
            raise InvalidEvent("body must be a string")
        _document(_load(body, "body"), keys, found, sns_allowed=True, where="body")
    except InvalidEvent as exc:
        return Unit(item_id=item_id, error=f"SQS message {item_id}: {exc}")
    return found.unit(item_id)


def _sns_record(record: dict[str, Any], index: int, keys: KeyFilter, found: _Found) -> None:
    sns = record.get("Sns")
    if not isinstance(sns, dict):
        raise InvalidEvent(f"Records[{index}].Sns must be an object")
    _sns_notification(sns, keys, found, where=f"Records[{index}].Sns")


def _sns_notification(sns: dict[str, Any], keys: KeyFilter, found: _Found, where: str) -> None:
    message = sns.get("Message")
    if not isinstance(message, str):
        raise InvalidEvent(f"{where}.Message must be a string")
    doc = _load(message, f"{where}.Message")
    _document(doc, keys, found, sns_allowed=False, where=f"{where}.Message")


def _document(
    doc: dict[str, Any], keys: KeyFilter, found: _Found, *, sns_allowed: bool, where: str
) -> None:
    """One of the shapes a message body (or an S3/EventBridge/direct event) may have."""
    if "job" in doc:
        found.messages.append(_job(doc, where))
    elif doc.get("Event") == "s3:TestEvent":
        found.skipped += 1
    elif "Records" in doc:
        _s3_records(doc["Records"], keys, found, where)
    elif doc.get("Type") == "Notification" and "Message" in doc:
        if not sns_allowed:
            raise InvalidEvent(f"{where}: an SNS notification inside another is not accepted")
        _sns_notification(doc, keys, found, where)
    elif doc.get("source") == "aws.s3" and "detail-type" in doc:
        _eventbridge(doc, keys, found, where)
    elif "jobs" in doc:
        _jobs(doc, found, where)
    elif "filename" in doc and "results" in doc:
        found.messages.append(_job({"job": "sidecar", **doc}, where))
    else:
        raise InvalidEvent(f"{where}: unknown message shape (top-level keys: {_keys(doc)})")


def _jobs(doc: dict[str, Any], found: _Found, where: str) -> None:
    extra = sorted(set(doc) - {"jobs"})
    if extra:
        raise InvalidEvent(f'{where}: a direct invocation holds only "jobs", not {extra}')
    jobs = doc["jobs"]
    if not isinstance(jobs, list):
        raise InvalidEvent(f"{where}.jobs must be a list of job envelopes")
    for index, job in enumerate(jobs):
        if not isinstance(job, dict):
            raise InvalidEvent(f"{where}.jobs[{index}] must be an object")
        found.messages.append(_job(job, f"{where}.jobs[{index}]"))


def _job(doc: dict[str, Any], where: str) -> Message:
    kind = doc.get("job")
    if not isinstance(kind, str) or kind not in JOB_FIELDS:
        raise InvalidEvent(f"{where}.job must be one of {', '.join(JOB_FIELDS)}, got {kind!r}")
    for name in JOB_FIELDS[kind]:
        _string(doc, name, where)
    if kind == "sidecar" and not isinstance(doc.get("results"), str):
        raise InvalidEvent(f"{where}.results must be a string")
    return Message(kind="job", body=_dumps(doc))


def _s3_records(records: object, keys: KeyFilter, found: _Found, where: str) -> None:
    if not isinstance(records, list):
        raise InvalidEvent(f"{where}.Records must be a list")
    for index, record in enumerate(records):
        here = f"{where}.Records[{index}]"
        if not isinstance(record, dict) or record.get("eventSource") != "aws:s3":
            raise InvalidEvent(f"{here} is not an S3 event record (eventSource must be aws:s3)")
        event_name = _string(record, "eventName", here)
        s3 = _mapping(record, "s3", here)
        _string(_mapping(s3, "bucket", f"{here}.s3"), "name", f"{here}.s3.bucket")
        key = decode_key(
            _string(_mapping(s3, "object", f"{here}.s3"), "key", f"{here}.s3.object"), here
        )
        if _object_change(event_name) and keys.allows(key):
            found.messages.append(Message(kind="s3-record", body=_dumps({"Records": [record]})))
        else:
            found.skipped += 1


def _object_change(event_name: str) -> bool:
    """Event names the worker turns into jobs; tagging, ACL and restore events carry none."""
    return event_name.startswith(("ObjectCreated:", "ObjectRemoved:")) or (
        event_name == "LifecycleExpiration:Delete"
    )


def _eventbridge(doc: dict[str, Any], keys: KeyFilter, found: _Found, where: str) -> None:
    detail = _mapping(doc, "detail", where)
    _string(_mapping(detail, "bucket", f"{where}.detail"), "name", f"{where}.detail.bucket")
    obj = _mapping(detail, "object", f"{where}.detail")
    key = decode_key(_string(obj, "key", f"{where}.detail.object"), where)
    if doc.get("detail-type") in _EVENTBRIDGE_TYPES and keys.allows(key):
        found.messages.append(Message(kind="eventbridge", body=_dumps(doc)))
    else:
        found.skipped += 1


def decode_key(raw: str, where: str) -> str:
    """An S3 key as notifications carry it (URL-encoded, `+` for a space), decoded once."""
    try:
        key = unquote_plus(raw, errors="strict")
    except UnicodeDecodeError:
        raise InvalidEvent(f"{where}: key {raw[:80]!r} is not valid URL-encoded UTF-8") from None
    if not key:
        raise InvalidEvent(f"{where}: key is empty")
    return key


def _identity(trigger: Trigger, event: dict[str, Any], request_id: str | None) -> str:
    """A digest that is the same whenever this event is delivered again.

    SQS and SNS redeliveries carry the same message ids (but new receipt handles and receive
    counts, so the raw event would differ); EventBridge keeps its event id; an S3
    notification is delivered byte for byte again. A direct invocation has no id of its own:
    Lambda's request id is kept across its asynchronous retries, and the content is added so
    that tests without a context still get a stable value.
    """
    records = event.get("Records", [])
    if trigger == "sqs":
        material = ",".join(sorted(str(r.get("messageId")) for r in records))
    elif trigger == "sns":
        material = ",".join(str(r.get("Sns", {}).get("MessageId")) for r in records)
    elif trigger in ("eventbridge", "schedule", "ecs") and isinstance(event.get("id"), str):
        material = event["id"]  # EventBridge keeps an event's id across its retries
    else:
        material = json.dumps(event, sort_keys=True, separators=(",", ":"), default=str)
        if trigger in ("direct", "schedule", "ecs") and request_id:
            material = f"{request_id}:{material}"
    return hashlib.sha256(f"{trigger}:{material}".encode()).hexdigest()


def _load(text: str, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except RecursionError:
        raise InvalidEvent(f"{where} is nested too deeply") from None
    except ValueError as exc:
        raise InvalidEvent(f"{where} is not JSON ({str(exc)[:80]})") from None
    if not isinstance(doc, dict):
        raise InvalidEvent(f"{where} must be a JSON object, got {type(doc).__name__}")
    return doc


def _dumps(doc: dict[str, Any]) -> str:
    """Compact ASCII JSON: every character escaped is one SQS accepts, sizes are bytes."""
    return json.dumps(doc, ensure_ascii=True, separators=(",", ":"))


def _mapping(doc: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = doc.get(name)
    if not isinstance(value, dict):
        raise InvalidEvent(f"{where}.{name} must be an object")
    return value


def _string(doc: dict[str, Any], name: str, where: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"{where}.{name} must be a non-empty string")
    return value


def _keys(doc: dict[str, Any]) -> str:
    return ", ".join(sorted(str(k) for k in doc)[:8]) or "none"
