"""Hostile input: whatever a message body holds, parsing gives jobs or InvalidMessage, never
anything else (property-based, over random and mutated bodies)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker import envelope, routing
from worker.errors import InvalidMessage
from worker.jobs import Job
from worker.settings import RefreshSettings, Settings

KNOWN = frozenset({"csv", "refresh", "sidecar"})
SETTINGS = Settings(queue_url="http://q", refresh=RefreshSettings(table="refresh"))


def outcome_of(body: str) -> list[Job] | InvalidMessage:
    """The only two acceptable results of reading a body."""
    try:
        jobs = routing.plan(envelope.parse(body), SETTINGS, KNOWN)
    except InvalidMessage as exc:
        assert str(exc), "an InvalidMessage must say what is wrong"
        return exc
    assert isinstance(jobs, list) and all(isinstance(j, Job) for j in jobs)
    for job in jobs:
        assert job.kind in KNOWN
        json.dumps(job.payload)  # payloads stay plain JSON data
    return jobs


def s3_record(key: str) -> dict[str, Any]:
    return {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "eventTime": "2026-11-22T10:00:00Z",
        "s3": {"bucket": {"name": "b"}, "object": {"key": key, "eTag": "e", "size": 1}},
    }


VALID_SHAPES: list[dict[str, Any]] = [
    {"job": "csv", "bucket": "b", "key": "k.csv"},
    {"job": "refresh", "bucket": "b", "key": "k", "event_time": "2026-11-22T10:00:00Z"},
    {"job": "sidecar", "filename": "a/b.raw", "results": "r"},
    {"filename": "a/b.raw", "results": "r"},
    {"Records": [s3_record("a%20b.csv"), s3_record("c.csv")]},
    {"Service": "Amazon S3", "Event": "s3:TestEvent"},
    {"Type": "Notification", "Message": json.dumps({"Records": [s3_record("x.csv")]})},
    {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "time": "2026-11-22T10:00:00Z",
        "detail": {"bucket": {"name": "b"}, "object": {"key": "k.csv"}},
    },
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


def mutate(document: Any, path: tuple[Any, ...], action: str, replacement: Any) -> Any:
    copy = json.loads(json.dumps(document))
    parent = copy
    for step in path[:-1]:
        parent = parent[step]
    if action == "remove":
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return copy


@st.composite
def mutated_bodies(draw: st.DrawFn) -> str:
    document = draw(st.sampled_from(VALID_SHAPES))
    for _ in range(draw(st.integers(1, 3))):
        candidates = paths(document)
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        action = draw(st.sampled_from(["remove", "replace"]))
        document = mutate(document, path, action, draw(json_values))
    return json.dumps(document)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(mutated_bodies())
def test_valid_shapes_with_fields_removed_or_of_the_wrong_type_give_jobs_or_a_typed_error(
    body: str,
):
    outcome_of(body)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_gives_jobs_or_a_typed_error(body: str):
    outcome_of(body)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decoded_leniently_give_jobs_or_a_typed_error(raw: bytes):
    # SQS bodies are text; invalid UTF-8 reaches us as replacement characters or surrogates.
    outcome_of(raw.decode("utf-8", errors="replace"))
    outcome_of(raw.decode("utf-8", errors="surrogateescape"))


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_gives_jobs_or_a_typed_error(value: Any):
    outcome_of(json.dumps(value))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("%+/ab.é\x00") | st.characters(), max_size=30))
def test_url_encoding_edge_cases_decode_once_or_are_refused(key: str):
    body = json.dumps({"Records": [s3_record(key)]})
    outcome = outcome_of(body)
    if isinstance(outcome, list) and outcome:
        from urllib.parse import unquote_plus

        assert outcome[0].payload["key"] == unquote_plus(key, errors="strict")


def test_deep_nesting_is_refused_not_a_crash():
    assert isinstance(outcome_of("[" * 200_000 + "]" * 200_000), InvalidMessage)
    assert isinstance(outcome_of('{"a":' * 100_000 + "1" + "}" * 100_000), InvalidMessage)


def test_huge_values_are_carried_or_refused_without_crashing():
    big_key = "k" * 900_000 + ".csv"
    [csv_job, _] = outcome_of(json.dumps({"Records": [s3_record(big_key)]}))  # type: ignore[misc]
    assert csv_job.payload["key"] == big_key
    assert isinstance(outcome_of(json.dumps({"Records": [1] * 100_000})), InvalidMessage)
