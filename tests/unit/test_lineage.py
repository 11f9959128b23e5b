"""lineage: hand-backs carry a message's history, so only real failures count as attempts."""

from __future__ import annotations

import json
from typing import Any

from worker.adapters.sqs import ReceivedMessage
from worker.engine import lineage


def received(
    receive_count: int = 1, *, message_id: str = "m-1", **attributes: Any
) -> ReceivedMessage:
    return ReceivedMessage(
        message_id=message_id,
        receipt_handle="h",
        body="{}",
        receive_count=receive_count,
        sent_timestamp_ms=1_000,
        attributes=attributes,
    )


def copy_of(
    message: ReceivedMessage, *, message_id: str, receive_count: int = 1
) -> ReceivedMessage:
    """What SQS hands out after the copy the worker sent for `message` is received."""
    return ReceivedMessage(
        message_id=message_id,
        receipt_handle="h2",
        body=message.body,
        receive_count=receive_count,
        sent_timestamp_ms=9_000,
        attributes=lineage.copy_attributes(message),
    )


def deliveries(message: ReceivedMessage) -> int:
    """Times any worker was given the message, as handlers see it."""
    return lineage.facts(message).receive_count


def test_a_first_delivery_counts_its_receives_as_attempts() -> None:
    message = received(3)

    assert (lineage.attempt(message), deliveries(message)) == (3, 3)
    assert lineage.history(message).origin_id == "m-1"


def test_ten_hand_backs_leave_the_attempt_count_at_one() -> None:
    message = received(1)
    for n in range(10):
        message = copy_of(message, message_id=f"copy-{n}")

    assert lineage.attempt(message) == 1
    assert deliveries(message) == 11
    assert lineage.history(message).origin_id == "m-1"


def test_failures_before_a_hand_back_still_count_after_it() -> None:
    failed_twice = received(3)  # two failed receives, then the one that was handed back

    copy = copy_of(failed_twice, message_id="copy", receive_count=2)  # then one more failure

    assert lineage.attempt(copy) == 2 + 2
    assert deliveries(copy) == 2 + 1 + 2


def test_the_copy_keeps_the_first_sent_time_for_the_queue_dwell() -> None:
    copy = copy_of(received(), message_id="copy")

    assert lineage.history(copy).first_sent_ms == 1_000


def test_the_copy_keeps_the_senders_attributes_and_drops_ours() -> None:
    message = received(
        trace={"DataType": "String", "StringValue": "t-1", "StringListValues": []},
        **{"spotdrain-reason": {"DataType": "String", "StringValue": "old"}},
    )

    attributes = lineage.copy_attributes(message)

    assert attributes["trace"] == {"DataType": "String", "StringValue": "t-1"}
    assert set(attributes) == {"trace", lineage.ATTRIBUTE}


def test_the_copy_fits_sqs_ten_attribute_limit() -> None:
    many = {f"a{n}": {"DataType": "String", "StringValue": str(n)} for n in range(10)}

    attributes = lineage.copy_attributes(received(**many))

    assert len(attributes) == 10 and lineage.ATTRIBUTE in attributes


def test_a_history_that_is_not_ours_is_ignored() -> None:
    for value in ("not json", json.dumps({"origin": "x", "failures": -1}), json.dumps([1])):
        message = received(2, **{lineage.ATTRIBUTE: {"DataType": "String", "StringValue": value}})

        assert lineage.attempt(message) == 2
        assert lineage.history(message).origin_id == "m-1"
