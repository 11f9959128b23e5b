"""A message's history across hand-backs: its first id, its real attempts and its deliveries.

SQS counts every receive, and its redrive policy cannot be told that a receive ended in a
stop rather than a failure. So a message handed back because of a stop is not made visible
again: a copy is sent that carries the history in one message attribute, and the original
is deleted (a duplicate at worst, never a loss). On a copy, every receive before the current
one ended in a failure or a crash (a hand-back makes a new copy instead), so

    attempt    = failures before this copy + this copy's receive count
    deliveries = attempt + hand-backs before this copy

`attempt` drives the backoff and the dead-letter decision; `deliveries` tells handlers that
a job ran before (so they clean what an earlier delivery left) and names each delivery's
temporary files apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from worker.adapters.sqs import ReceivedMessage
from worker.jobs import MessageFacts

ATTRIBUTE = "spotdrain-history"
OWN_PREFIX = "spotdrain-"
# SQS allows ten message attributes per message.
MAX_ATTRIBUTES = 10


@dataclass(frozen=True, kw_only=True)
class History:
    """What earlier copies of a message went through; a first delivery has none of it."""

    origin_id: str
    failures: int = 0
    handbacks: int = 0
    first_sent_ms: int | None = None


def raw_history(message: ReceivedMessage) -> str | None:
    """The history attribute as sent, if the message carries one."""
    raw = message.attributes.get(ATTRIBUTE, {}).get("StringValue")
    return raw if isinstance(raw, str) else None


def history(message: ReceivedMessage) -> History:
    """The history a message carries; a missing or unreadable attribute means a first copy."""
    fresh = History(origin_id=message.message_id, first_sent_ms=message.sent_timestamp_ms)
    raw = raw_history(message)
    if raw is None:
        return fresh
    try:
        doc = json.loads(raw)
        found = History(
            origin_id=str(doc["origin"]),
            failures=_count(doc.get("failures", 0)),
            handbacks=_count(doc.get("handbacks", 0)),
            first_sent_ms=_count(doc["first_sent_ms"]) if "first_sent_ms" in doc else None,
        )
    except (ValueError, KeyError, TypeError):
        return fresh  # not ours to trust: count from this copy alone
    return found if found.origin_id else fresh


def attempt(message: ReceivedMessage) -> int:
    """Real attempts so far, this one included: failures and crashes, never hand-backs."""
    return history(message).failures + max(1, message.receive_count)


def facts(message: ReceivedMessage) -> MessageFacts:
    """What handlers, logs and metrics know of a message across its copies, read once."""
    before = history(message)
    attempt = before.failures + max(1, message.receive_count)
    return MessageFacts(
        message_id=before.origin_id,
        receive_count=attempt + before.handbacks,
        sent_timestamp_ms=before.first_sent_ms,
        attempt=attempt,
    )


def handed_back(message: ReceivedMessage) -> History:
    """The history the copy of a message handed back now must carry."""
    before = history(message)
    return History(
        origin_id=before.origin_id,
        failures=before.failures + max(1, message.receive_count) - 1,
        handbacks=before.handbacks + 1,
        first_sent_ms=before.first_sent_ms,
    )


def copy_attributes(message: ReceivedMessage) -> dict[str, Any]:
    """The attributes of a handed-back copy: the sender's own (as many as fit) and the history."""
    after = handed_back(message)
    doc: dict[str, Any] = {
        "origin": after.origin_id,
        "failures": after.failures,
        "handbacks": after.handbacks,
    }
    if after.first_sent_ms is not None:
        doc["first_sent_ms"] = after.first_sent_ms
    kept = dict(list(sendable(message.attributes).items())[: MAX_ATTRIBUTES - 1])
    value = json.dumps(doc, separators=(",", ":"))
    return {**kept, ATTRIBUTE: {"DataType": "String", "StringValue": value}}


def unchanged_attributes(message: ReceivedMessage) -> dict[str, Any]:
    """The attributes that send a received copy again as it was, its history included."""
    kept = sendable(message.attributes)
    raw = raw_history(message)
    if raw is not None:
        kept[ATTRIBUTE] = {"DataType": "String", "StringValue": raw}
    return kept


def sendable(attributes: dict[str, Any]) -> dict[str, Any]:
    """Received message attributes in the form SendMessage takes, without ours."""
    kept = {}
    for name, value in attributes.items():
        if name.startswith(OWN_PREFIX):
            continue
        kept[name] = {
            k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")
        }
    return kept


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"not a count: {value!r}")
    return value
