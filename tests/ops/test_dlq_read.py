"""`spotdrain dlq list` and `dlq show`: dead letters read and left where they are."""

from __future__ import annotations

import base64
from typing import Any

from tests.conftest import QueueFactory, drain_all
from tests.ops.conftest import Put, dead_letter, held

Spotdrain = Any
NO_REASON = "(no reason: moved by the queue's redrive policy)"


def three_reasons(queue_dlq: str, put: Put) -> list[str]:
    return put(
        queue_dlq,
        [dead_letter(body=f"a{i}", reason="gave up after 5 attempts: timeout") for i in range(4)]
        + [dead_letter(body=f"b{i}", reason="invalid message: not JSON") for i in range(2)]
        + [dead_letter(body="c0", reason=None)],
    )


def test_list_prints_a_table_of_reasons_with_counts_and_samples(
    spotdrain: Spotdrain, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    ids = three_reasons(queue.dlq_url, put_dead_letters)
    run = spotdrain("dlq", "list", "--dlq-url", queue.dlq_url)
    assert run.code == 0, run.err
    print(run.out)
    lines = run.out.splitlines()
    assert lines[0] == f"7 dead letters in {queue.dlq_url}, left in place:"
    assert lines[1].split() == ["REASON", "COUNT", "SAMPLE", "MESSAGE", "IDS"]
    assert lines[2].startswith("gave up after 5 attempts: timeout                     4  ")
    assert lines[3].startswith("invalid message: not JSON                             2  ")
    assert lines[4] == f"{NO_REASON}      1  {ids[6]}"
    assert len(lines) == 5


def test_list_json_groups_dead_letters_by_reason_with_up_to_three_samples(
    spotdrain: Spotdrain, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    ids = three_reasons(queue.dlq_url, put_dead_letters)
    run = spotdrain("dlq", "list", "--json", "--dlq-url", queue.dlq_url)
    doc = run.json()
    assert (doc["dlq_url"], doc["total"], doc["complete"]) == (queue.dlq_url, 7, True)
    reasons = doc["reasons"]
    assert [(r["reason"], r["count"]) for r in reasons] == [
        ("gave up after 5 attempts: timeout", 4),
        ("invalid message: not JSON", 2),
        (NO_REASON, 1),
    ]
    assert len(reasons[0]["sample_message_ids"]) == 3
    assert set(reasons[0]["sample_message_ids"]) <= set(ids[:4])
    assert sorted(reasons[1]["sample_message_ids"]) == sorted(ids[4:6])
    assert reasons[2]["sample_message_ids"] == [ids[6]]


def test_list_leaves_every_dead_letter_receivable_at_once(
    spotdrain: Spotdrain, sqs: Any, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    ids = put_dead_letters(
        queue.dlq_url, [dead_letter(body=f"m{i}", reason=f"r{i % 3}") for i in range(25)]
    )
    assert spotdrain("dlq", "list", "--dlq-url", queue.dlq_url).code == 0
    assert held(sqs, queue.dlq_url) == 0
    assert sorted(m["MessageId"] for m in drain_all(sqs, queue.dlq_url)) == sorted(ids)


def test_list_stops_at_max_and_says_there_may_be_more(
    spotdrain: Spotdrain, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    put_dead_letters(queue.dlq_url, [dead_letter(body=f"m{i}", reason="r") for i in range(15)])
    run = spotdrain("dlq", "list", "--max", "12", "--dlq-url", queue.dlq_url)
    assert run.out.splitlines()[0] == (
        f"12 dead letters in {queue.dlq_url} (stopped at --max 12: there may be more), "
        "left in place:"
    )


def test_list_of_an_empty_dead_letter_queue_says_so(
    spotdrain: Spotdrain, make_queue: QueueFactory
) -> None:
    queue = make_queue()
    run = spotdrain("dlq", "list", "--dlq-url", queue.dlq_url)
    assert (run.code, run.out) == (0, f"No dead letters in {queue.dlq_url}.\n")


def user_attributes() -> dict[str, Any]:
    return {
        "trace": {"DataType": "String", "StringValue": "t-42"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xfe"},
    }


def test_show_prints_body_reason_attributes_and_receive_count(
    spotdrain: Spotdrain, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    body = '{"jobs": [{"type": "csv", "bucket": "b", "key": "k.csv"}]}'
    [message_id] = put_dead_letters(
        queue.dlq_url,
        [dead_letter(body=body, reason="invalid message", attempts=3, extra=user_attributes())],
    )
    run = spotdrain("dlq", "show", message_id, "--dlq-url", queue.dlq_url)
    assert run.code == 0, run.err
    print(run.out)
    lines = run.out.splitlines()
    assert lines[:5] == [
        f"message id           {message_id}",
        f"original message id  orig-{body}",
        "reason               invalid message",
        "receive count        3 (real attempts, counted by the worker)",
        "source queue         https://sqs.us-east-1.amazonaws.com/123456789012/jobs",
    ]
    assert lines[5].startswith("sent                 20")
    assert lines[6] == "attributes:"
    assert "  blob                           Binary  AAH+" in lines
    assert "  trace                          String  t-42" in lines
    assert lines[-2:] == ["body:", body]


def test_show_json_finds_a_dead_letter_by_its_original_message_id(
    spotdrain: Spotdrain, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    entries = [dead_letter(body=f"m{i}", reason="r", original_id=f"first-{i}") for i in range(12)]
    ids = put_dead_letters(queue.dlq_url, entries)
    run = spotdrain("dlq", "show", "--json", "first-7", "--dlq-url", queue.dlq_url)
    doc = run.json()
    assert (doc["message_id"], doc["original_message_id"], doc["body"]) == (ids[7], "first-7", "m7")
    assert (doc["reason"], doc["receive_count"]) == ("r", 5)
    names = {a["name"] for a in doc["attributes"]}
    assert "spotdrain-reason" in names


def test_show_gives_binary_attributes_in_base64(
    spotdrain: Spotdrain, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    [message_id] = put_dead_letters(
        queue.dlq_url, [dead_letter(body="x", reason=None, extra=user_attributes())]
    )
    doc = spotdrain("dlq", "show", message_id, "--json", "--dlq-url", queue.dlq_url).json()
    assert doc["reason"] == NO_REASON
    assert doc["receive_count"] is None and doc["sqs_receive_count"] >= 1
    assert doc["attributes"] == [
        {"name": "blob", "type": "Binary", "value": base64.b64encode(b"\x00\x01\xfe").decode()},
        {"name": "trace", "type": "String", "value": "t-42"},
    ]


def test_show_leaves_the_dead_letter_and_the_others_in_place(
    spotdrain: Spotdrain, sqs: Any, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    ids = put_dead_letters(queue.dlq_url, [dead_letter(body=f"m{i}", reason="r") for i in range(5)])
    assert spotdrain("dlq", "show", ids[2], "--dlq-url", queue.dlq_url).code == 0
    assert sorted(m["MessageId"] for m in drain_all(sqs, queue.dlq_url)) == sorted(ids)


def test_show_of_an_unknown_id_exits_1_with_one_line(
    spotdrain: Spotdrain, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    put_dead_letters(queue.dlq_url, [dead_letter(body="m", reason="r")])
    run = spotdrain("dlq", "show", "no-such-id", "--dlq-url", queue.dlq_url)
    assert (run.code, run.out) == (1, "")
    assert run.error_lines == [
        f"spotdrain: error: no dead letter with message id no-such-id in {queue.dlq_url}"
    ]
