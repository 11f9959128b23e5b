"""events.parse_event: every trigger the launcher accepts, key decoding, filters, rejections."""

from __future__ import annotations

import json
from typing import Any

import pytest

from launcher.errors import InvalidEvent
from launcher.events import ParsedEvent, parse_event
from launcher.settings import KeyFilter
from tests.launcher.samples import (
    S3_TEST_EVENT,
    csv_job,
    encode_key,
    eventbridge_event,
    refresh_job,
    s3_event,
    s3_record,
    sidecar_job,
    sns_event,
    sns_notification,
    sqs_event,
    sqs_record,
)

ALL = KeyFilter()


def bodies(parsed: ParsedEvent) -> list[dict[str, Any]]:
    return [json.loads(m.body) for unit in parsed.units for m in unit.messages]


def forwarded_keys(parsed: ParsedEvent) -> list[str]:
    """The still-encoded S3 keys of the forwarded records."""
    return [body["Records"][0]["s3"]["object"]["key"] for body in bodies(parsed)]


def test_every_record_of_a_multi_record_s3_notification_becomes_its_own_message() -> None:
    event = s3_event("a.csv", "b.csv", "c.csv")

    parsed = parse_event(event, ALL)

    assert parsed.trigger == "s3"
    assert [body["Records"] for body in bodies(parsed)] == [[r] for r in event["Records"]]


def test_keys_with_spaces_plus_and_unicode_are_decoded_to_filter_and_forwarded_as_sent() -> None:
    key = "reports/Q1 2026+draft/été 💾.csv"
    event = s3_event(key, "reports/other.csv")
    keys = KeyFilter(prefixes=("reports/Q1 2026+draft/",), suffixes=(".csv",))

    parsed = parse_event(event, keys)

    assert encode_key(key) == "reports/Q1+2026%2Bdraft/%C3%A9t%C3%A9+%F0%9F%92%BE.csv"
    assert forwarded_keys(parsed) == [encode_key(key)]  # decoded once, by the worker
    assert parsed.units[0].skipped == 1


def test_an_undecodable_key_rejects_the_event() -> None:
    with pytest.raises(InvalidEvent, match="not valid URL-encoded UTF-8"):
        parse_event(s3_event("bad%FF.csv", encode=False), ALL)


def test_s3_test_event_is_skipped_wherever_it_arrives() -> None:
    for event in (S3_TEST_EVENT, sns_event(S3_TEST_EVENT), sqs_event(S3_TEST_EVENT)):
        parsed = parse_event(event, ALL)
        assert bodies(parsed) == []
        assert sum(unit.skipped for unit in parsed.units) == 1


def test_records_that_change_no_object_are_skipped() -> None:
    event = {
        "Records": [
            s3_record("a.csv", event="ObjectTagging:Put"),
            s3_record("b.csv", event="ObjectRestore:Completed"),
            s3_record("c.csv", event="ObjectRemoved:Delete"),
            s3_record("d.csv", event="LifecycleExpiration:Delete"),
        ]
    }

    parsed = parse_event(event, ALL)

    assert forwarded_keys(parsed) == ["c.csv", "d.csv"]
    assert parsed.units[0].skipped == 2


def test_an_sns_wrapped_s3_notification_is_unwrapped_record_by_record() -> None:
    inner = s3_event("x/1.csv", "x/2 two.csv")

    parsed = parse_event(sns_event(inner), ALL)

    assert parsed.trigger == "sns"
    assert [body["Records"] for body in bodies(parsed)] == [[r] for r in inner["Records"]]


def test_a_plain_sns_message_is_a_sidecar_request() -> None:
    request = {"filename": "exports/run 7/a.dat", "results": "pass", "extra": 1}

    parsed = parse_event(sns_event(request), ALL)

    assert bodies(parsed) == [{"job": "sidecar", **request}]


def test_a_job_envelope_in_sns_is_forwarded() -> None:
    assert bodies(parse_event(sns_event(csv_job("a.csv")), ALL)) == [csv_job("a.csv")]


def test_an_eventbridge_s3_event_is_forwarded_whole() -> None:
    event = eventbridge_event("in/a b.csv")

    parsed = parse_event(event, ALL)

    assert parsed.trigger == "eventbridge"
    assert bodies(parsed) == [event]


def test_eventbridge_events_other_than_created_or_deleted_are_skipped() -> None:
    parsed = parse_event(eventbridge_event("a.csv", detail_type="Object Restore Completed"), ALL)

    assert bodies(parsed) == []
    assert parsed.units[0].skipped == 1


def test_eventbridge_keys_are_filtered_on_their_decoded_value() -> None:
    keys = KeyFilter(prefixes=("in/a b",))

    assert len(bodies(parse_event(eventbridge_event("in/a b.csv"), keys))) == 1
    assert bodies(parse_event(eventbridge_event("in/a+b.csv"), keys)) == []


def test_a_direct_invocation_forwards_each_job_envelope() -> None:
    jobs = [csv_job("a b.csv"), refresh_job("k"), sidecar_job("/e/f.dat", results="")]

    parsed = parse_event({"jobs": jobs}, ALL)

    assert parsed.trigger == "direct"
    assert bodies(parsed) == jobs


def test_an_empty_direct_invocation_enqueues_nothing_and_is_not_an_error() -> None:
    assert bodies(parse_event({"jobs": []}, ALL)) == []


@pytest.mark.parametrize(
    ("keys", "key", "allowed"),
    [
        (KeyFilter(suffixes=(".csv",)), "a.csv", True),
        (KeyFilter(suffixes=(".csv",)), "a.CSV", False),  # exact: no case folding
        (KeyFilter(suffixes=(".csv",)), "a_csv", False),  # `.` is a dot, not "any character"
        (KeyFilter(suffixes=(".csv",)), "a.csv.gz", False),  # a suffix, not a substring
        (KeyFilter(suffixes=(".csv", ".tsv")), "a.tsv", True),
        (KeyFilter(suffixes=("*.csv",)), "a.csv", False),  # no glob either
        (KeyFilter(suffixes=("*.csv",)), "a*.csv", True),
        (KeyFilter(prefixes=("in/",)), "in/a.csv", True),
        (KeyFilter(prefixes=("in/",)), "out/in/a.csv", False),
        (KeyFilter(prefixes=("in/", "up/")), "up/a.csv", True),
        (KeyFilter(prefixes=("in/",), suffixes=(".csv",)), "in/a.txt", False),
        (KeyFilter(prefixes=("in/",), suffixes=(".csv",)), "in/a.csv", True),
        (KeyFilter(prefixes=("a+b/",)), "a+b/x", True),  # `+` literal, after decoding
        (KeyFilter(), "anything", True),
    ],
)
def test_key_filters_match_exact_strings(keys: KeyFilter, key: str, allowed: bool) -> None:
    parsed = parse_event(s3_event(key), keys)

    assert len(bodies(parsed)) == int(allowed)
    assert parsed.units[0].skipped == int(not allowed)


def test_key_filters_leave_direct_jobs_and_sidecars_alone() -> None:
    keys = KeyFilter(suffixes=(".csv",), prefixes=("in/",))
    jobs = [csv_job("out/a.txt"), sidecar_job("x.dat")]

    assert bodies(parse_event({"jobs": jobs}, keys)) == jobs
    assert len(bodies(parse_event(sns_event({"filename": "y", "results": "r"}), keys))) == 1


MALFORMED: list[tuple[Any, str]] = [
    ([], "must be a JSON object"),
    ("s3", "must be a JSON object"),
    ({}, "unknown event shape"),
    ({"detail": {}}, "unknown event shape"),
    ({"Records": []}, "non-empty list"),
    ({"Records": [{"eventSource": "aws:kinesis"}]}, "aws:kinesis"),
    ({"Records": [s3_record("a.csv"), {"eventSource": "aws:sqs"}]}, "mixes"),
    ({"Records": [{**s3_record("a"), "s3": {"bucket": {"name": "b"}}}]}, "s3.object"),
    ({"Records": [s3_record("a.csv"), s3_record("", encode=False)]}, "key must be"),
    ({"jobs": "csv"}, "must be a list"),
    ({"jobs": [csv_job("a")], "dry_run": True}, "holds only"),
    ({"jobs": [csv_job("a"), {"job": "rm -rf"}]}, r"jobs\[1\]\.job must be one of"),
    ({"jobs": [{"job": "csv", "bucket": "b"}]}, "key must be a non-empty string"),
    ({"jobs": [{"job": "refresh", "bucket": "b", "key": "k"}]}, "event_time"),
    ({"jobs": [{"job": "sidecar", "filename": "f", "results": 3}]}, "results must be a string"),
    ({"jobs": [["csv"]]}, "must be an object"),
    (sns_event("not json"), "not JSON"),
    (sns_event({"filename": "only"}), "unknown message shape"),
    (sns_event(sns_notification({"filename": "f", "results": "r"})), "inside another"),
    ({**eventbridge_event("a"), "detail": {"bucket": {"name": "b"}}}, "detail.object"),
]


@pytest.mark.parametrize(("event", "reason"), MALFORMED)
def test_malformed_events_are_rejected_with_a_clear_reason(event: Any, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        parse_event(event, ALL)


def test_in_an_sqs_batch_a_malformed_record_fails_alone() -> None:
    event = {
        "Records": [
            sqs_record(s3_event("a.csv"), message_id="m1"),
            sqs_record("{not json", message_id="m2"),
            sqs_record(sns_notification(s3_event("b.csv", "c.csv")), message_id="m3"),
            sqs_record({"jobs": [csv_job("d.csv")]}, message_id="m4"),
        ]
    }

    parsed = parse_event(event, ALL)

    assert parsed.partial_batch
    assert [(u.item_id, len(u.messages), u.error is not None) for u in parsed.units] == [
        ("m1", 1, False),
        ("m2", 0, True),
        ("m3", 2, False),
        ("m4", 1, False),
    ]
    assert "m2" in (parsed.units[1].error or "")


def test_only_sqs_triggers_support_partial_batch_responses() -> None:
    for event in (s3_event("a"), sns_event(csv_job("a")), eventbridge_event("a"), {"jobs": []}):
        assert not parse_event(event, ALL).partial_batch


def test_the_same_event_delivered_again_has_the_same_identity() -> None:
    for event in (s3_event("a", "b"), sns_event(csv_job("a")), eventbridge_event("a")):
        again = json.loads(json.dumps(event))
        assert parse_event(event, ALL).identity == parse_event(again, ALL).identity


def test_an_sqs_redelivery_keeps_its_identity_despite_new_receipt_handles() -> None:
    first = sqs_event(csv_job("a"), csv_job("b"))
    redelivered = json.loads(json.dumps(first))
    for record in redelivered["Records"]:
        record["receiptHandle"] = "new"
        record["attributes"]["ApproximateReceiveCount"] = "2"

    assert parse_event(first, ALL).identity == parse_event(redelivered, ALL).identity


def test_different_events_have_different_identities() -> None:
    identities = {
        parse_event(event, ALL).identity
        for event in (s3_event("a"), s3_event("a"), sqs_event(csv_job("a")), eventbridge_event("a"))
    }

    assert len(identities) == 4


def test_a_direct_invocation_is_identified_by_its_request_id() -> None:
    event = {"jobs": [csv_job("a")]}

    first = parse_event(event, ALL, request_id="r-1").identity

    assert parse_event(event, ALL, request_id="r-1").identity == first  # an async retry
    assert parse_event(event, ALL, request_id="r-2").identity != first  # a new invocation
