"""envelope.parse + routing.plan: every accepted message shape, as the README lists them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from worker import envelope, routing
from worker.errors import InvalidMessage
from worker.jobs import Job, JobRequest, ObjectChange
from worker.settings import CsvSettings, RefreshSettings, Settings

KNOWN = frozenset({"csv", "refresh", "sidecar"})


def settings(**overrides: Any) -> Settings:
    return Settings(queue_url="http://q", **overrides)


def jobs_of(body: Any, **overrides: Any) -> list[Job]:
    text = body if isinstance(body, str) else json.dumps(body)
    return routing.plan(envelope.parse(text), settings(**overrides), KNOWN)


def s3_record(key: str, bucket: str = "in", event: str = "ObjectCreated:Put") -> dict[str, Any]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": event,
        "eventTime": "2026-11-22T10:00:00.000Z",
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "s3": {
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": key, "size": 12, "eTag": "abc123", "sequencer": "0A1B"},
        },
    }


def eventbridge(key: str, detail_type: str = "Object Created") -> dict[str, Any]:
    return {
        "version": "0",
        "id": "e-1",
        "detail-type": detail_type,
        "source": "aws.s3",
        "time": "2026-11-22T10:00:00Z",
        "detail": {
            "bucket": {"name": "in"},
            "object": {"key": key, "size": 12, "etag": "abc123"},
            "requester": "123456789012",
        },
    }


def sns(inner: Any) -> dict[str, Any]:
    return {"Type": "Notification", "MessageId": "m-1", "Message": json.dumps(inner)}


def test_a_job_envelope_becomes_one_job_with_its_fields():
    [job] = jobs_of({"job": "csv", "bucket": "b", "key": "k.csv"})
    assert (job.kind, job.payload) == ("csv", {"bucket": "b", "key": "k.csv"})


def test_a_bare_filename_and_results_object_is_a_sidecar_request():
    [job] = jobs_of({"filename": "run/a.raw", "results": "ok"})
    assert (job.kind, job.payload) == ("sidecar", {"filename": "run/a.raw", "results": "ok"})


def test_every_record_of_an_s3_notification_becomes_a_job():
    jobs = jobs_of({"Records": [s3_record("a.csv"), s3_record("b.csv"), s3_record("c.csv")]})
    assert [j.payload["key"] for j in jobs] == ["a.csv", "b.csv", "c.csv"]
    assert jobs[0].payload == {"bucket": "in", "key": "a.csv", "etag": "abc123"}


def test_keys_are_url_decoded_exactly_once():
    [job] = jobs_of({"Records": [s3_record("a+b%C3%A9.csv")]})
    assert job.payload["key"] == "a bé.csv"
    [job] = jobs_of({"Records": [s3_record("100%2525.csv")]})
    assert job.payload["key"] == "100%25.csv"


def test_a_key_with_invalid_percent_encoding_is_an_invalid_message():
    with pytest.raises(InvalidMessage, match="URL-encoded"):
        envelope.parse(json.dumps({"Records": [s3_record("bad%FF.csv")]}))


def test_sns_wrapped_and_eventbridge_forms_give_the_same_job_as_the_direct_form():
    direct = jobs_of({"Records": [s3_record("x/a+b.csv")]})
    wrapped = jobs_of(sns({"Records": [s3_record("x/a+b.csv")]}))
    bridged = jobs_of(eventbridge("x/a+b.csv"))
    assert direct == wrapped == bridged
    assert direct[0].payload["key"] == "x/a b.csv"


def test_sns_around_a_job_envelope_and_around_a_sidecar_request():
    assert jobs_of(sns({"job": "csv", "bucket": "b", "key": "k.csv"}))[0].kind == "csv"
    assert jobs_of(sns({"filename": "f.dat", "results": "r"}))[0].kind == "sidecar"


def test_the_s3_test_event_yields_no_job():
    assert jobs_of({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"}) == []
    assert jobs_of(sns({"Service": "Amazon S3", "Event": "s3:TestEvent"})) == []


def test_keys_without_a_csv_suffix_yield_no_csv_job_and_suffixes_ignore_case():
    assert jobs_of({"Records": [s3_record("notes.txt")]}) == []
    assert [j.kind for j in jobs_of({"Records": [s3_record("DATA.CSV")]})] == ["csv"]
    custom = {"csv": CsvSettings(suffixes=(".tsv", ".csv.gz"))}
    assert [j.payload["key"] for j in jobs_of({"Records": [s3_record("a.TSV")]}, **custom)] == [
        "a.TSV"
    ]


def test_our_own_output_is_never_converted_again():
    assert jobs_of({"Records": [s3_record("converted/a.csv")]}) == []
    other_bucket = {"csv": CsvSettings(output_bucket="out")}
    assert len(jobs_of({"Records": [s3_record("converted/a.csv")]}, **other_bucket)) == 1
    assert jobs_of({"Records": [s3_record("converted/a.csv", bucket="out")]}, **other_bucket) == []


def test_removed_objects_yield_no_csv_job():
    assert jobs_of({"Records": [s3_record("a.csv", event="ObjectRemoved:Delete")]}) == []


def test_with_a_refresh_table_every_change_also_yields_a_refresh_job():
    refresh = {"refresh": RefreshSettings(table="t")}
    body = {"Records": [s3_record("a.csv"), s3_record("b.txt", event="ObjectRemoved:Delete")]}
    jobs = jobs_of(body, **refresh)
    assert [(j.kind, j.payload["key"]) for j in jobs] == [
        ("csv", "a.csv"),
        ("refresh", "a.csv"),
        ("refresh", "b.txt"),
    ]
    assert jobs[1].payload["event_time"] == "2026-11-22T10:00:00.000Z"
    assert jobs[1].payload["principal"] == "AWS:AIDAEXAMPLE"


def test_eventbridge_deletions_are_changes_and_other_detail_types_carry_no_job():
    [request] = envelope.parse(json.dumps(eventbridge("a.csv", "Object Deleted")))
    assert isinstance(request, ObjectChange) and request.change == "removed"
    assert envelope.parse(json.dumps(eventbridge("a.csv", "Object Restore Completed"))) == []


def test_tagging_events_carry_no_job():
    assert (
        envelope.parse(json.dumps({"Records": [s3_record("a.csv", event="ObjectTagging:Put")]}))
        == []
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "must be a JSON object, got list"),
        ('"text"', "must be a JSON object, got str"),
        ("{}", "unknown message shape"),
        ('{"job": 7}', "'job' must be a non-empty string"),
        ('{"Records": {}}', "'Records' must be a list"),
        ('{"Records": [{"eventSource": "aws:sqs"}]}', "not an S3 event record"),
        (
            '{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}',
            "s3 must be an object",
        ),
        ('{"Type": "Notification", "Message": 5}', "SNS Message must be a string"),
        ('{"Type": "Notification", "Message": "nope"}', "SNS Message is not JSON"),
        ("[" * 50_000 + "]" * 50_000, "nested too deeply"),
    ],
)
def test_bad_bodies_raise_invalid_message_naming_the_problem(body: str, reason: str):
    with pytest.raises(InvalidMessage, match=reason.replace("(", r"\(").replace("[", r"\[")):
        envelope.parse(body)


def test_sns_inside_sns_is_refused():
    with pytest.raises(InvalidMessage, match="inside an SNS envelope"):
        envelope.parse(json.dumps(sns(sns({"job": "csv"}))))


def test_an_unknown_job_kind_is_an_invalid_message():
    with pytest.raises(InvalidMessage, match="unknown job 'teleport'"):
        routing.plan([JobRequest(job="teleport", fields={})], settings(), KNOWN)
