"""`spotdrain dlq purge`: delete the dead letters of one reason, after a confirmation."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import QueueFactory, TestQueue, drain_all
from tests.ops.conftest import Put, Terminal, dead_letter, held, visible

Spotdrain = Any


def two_reasons(queue: TestQueue, put: Put) -> None:
    put(
        queue.dlq_url,
        [dead_letter(body=f"bad-{i}", reason="invalid message: not JSON") for i in range(4)]
        + [dead_letter(body=f"slow-{i}", reason="timeout") for i in range(3)],
    )


def test_purge_with_yes_deletes_only_the_matching_dead_letters(
    spotdrain: Spotdrain, sqs: Any, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    two_reasons(queue, put_dead_letters)
    run = spotdrain("dlq", "purge", "--dlq-url", queue.dlq_url, "--reason", "not JSON", "--yes")
    assert run.code == 0, run.err
    assert run.out.splitlines() == [
        "Deleted 4 dead letters whose reason contains 'not JSON'.",
        "3 other dead letters left in place.",
    ]
    assert held(sqs, queue.dlq_url) == 0
    assert sorted(m["Body"] for m in drain_all(sqs, queue.dlq_url)) == [
        "slow-0",
        "slow-1",
        "slow-2",
    ]


def test_purge_json_reports_the_deleted_count(
    spotdrain: Spotdrain, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    two_reasons(queue, put_dead_letters)
    run = spotdrain(
        "dlq", "purge", "--json", "--dlq-url", queue.dlq_url, "--reason", "timeout", "--yes"
    )
    assert run.json() == {
        "dlq_url": queue.dlq_url,
        "reason": "timeout",
        "scanned": 7,
        "matched": 3,
        "confirmed": True,
        "deleted": 3,
        "failed": 0,
        "complete": True,
    }


def test_purge_without_a_terminal_or_yes_refuses_with_one_line(
    spotdrain: Spotdrain, sqs: Any, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    two_reasons(queue, put_dead_letters)
    run = spotdrain("dlq", "purge", "--dlq-url", queue.dlq_url, "--reason", "timeout")
    assert (run.code, run.out) == (2, "")
    assert run.error_lines == [
        "spotdrain: error: refusing to delete without confirmation: stdin is not a terminal "
        "(pass --yes)"
    ]
    assert visible(sqs, queue.dlq_url) == 7


def test_purge_on_a_terminal_asks_and_deletes_on_yes(
    spotdrain: Spotdrain,
    sqs: Any,
    make_queue: QueueFactory,
    put_dead_letters: Put,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = make_queue()
    two_reasons(queue, put_dead_letters)
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    run = spotdrain("dlq", "purge", "--dlq-url", queue.dlq_url, "--reason", "timeout")
    assert run.code == 0, run.err
    assert run.err == "Delete 3 dead letters whose reason contains 'timeout'? [y/N] "
    assert visible(sqs, queue.dlq_url) == 4


def test_purge_on_a_terminal_deletes_nothing_unless_told_yes(
    spotdrain: Spotdrain,
    sqs: Any,
    make_queue: QueueFactory,
    put_dead_letters: Put,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = make_queue()
    two_reasons(queue, put_dead_letters)
    monkeypatch.setattr("sys.stdin", Terminal("\n"))
    run = spotdrain("dlq", "purge", "--dlq-url", queue.dlq_url, "--reason", "timeout")
    assert (run.code, run.out) == (
        0,
        "Nothing deleted (3 dead letters whose reason contains 'timeout').\n",
    )
    assert held(sqs, queue.dlq_url) == 0
    assert visible(sqs, queue.dlq_url) == 7
