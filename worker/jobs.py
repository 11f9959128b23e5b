"""The values that flow from the envelope to the handlers: requests, jobs and message facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ChangeKind = Literal["created", "removed"]


@dataclass(frozen=True, kw_only=True)
class ObjectChange:
    """One S3 object event, whatever shape carried it (notification, SNS, EventBridge)."""

    bucket: str
    key: str
    change: ChangeKind
    event_name: str
    event_time: str | None = None
    etag: str | None = None
    version_id: str | None = None
    size: int | None = None
    principal: str | None = None


@dataclass(frozen=True, kw_only=True)
class JobRequest:
    """An explicit job envelope (`{"job": ...}`) or a bare sidecar request."""

    job: str
    fields: dict[str, Any]


Request = ObjectChange | JobRequest


@dataclass(frozen=True, kw_only=True)
class Job:
    """One unit of work for one handler; a message yields one or more of these."""

    kind: str
    payload: dict[str, Any]
    change: ObjectChange | None = field(default=None, compare=False)

    def describe(self) -> str:
        """A short label for logs: the job kind and what it is about."""
        target = self.payload.get("key") or self.payload.get("filename") or ""
        bucket = self.payload.get("bucket")
        where = f"s3://{bucket}/{target}" if bucket else str(target)
        return f"{self.kind} {where}".strip()


@dataclass(frozen=True, kw_only=True)
class MessageFacts:
    """What handlers may know about the message that carried their job.

    A message handed back because of a stop comes back as a copy (worker/engine/lineage.py): these
    facts describe the message across its copies. `message_id` is the first copy's id,
    `receive_count` counts every delivery (so `> 1` means a worker had it before), and
    `attempt` counts only real attempts (failures and crashes, this one included).
    """

    message_id: str
    receive_count: int
    sent_timestamp_ms: int | None = None
    attempt: int = 0  # 0: the same as receive_count (a message never handed back)

    @property
    def real_attempt(self) -> int:
        return self.attempt or self.receive_count
