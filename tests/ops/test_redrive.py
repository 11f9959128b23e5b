"""`spotdrain dlq redrive`: dead letters back to the queue, bodies and the sender's attributes
unchanged, the worker's attributes (and so the attempt count) gone; nothing lost."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import QueueFactory, TestQueue, drain_all
from tests.ops.conftest import Put, Terminal, dead_letter, held, visible
from tests.support.faulty_proxy import FaultyProxy
from tests.support.lambda_invoke import LambdaInvoke
from tests.support.moto_server import MotoServer
from tests.support.sqs_move_tasks import MoveTasks
from worker.ops.views import NEXT_RECONCILE

Spotdrain = Any


def user_attributes(i: int) -> dict[str, Any]:
    return {
        "trace": {"DataType": "String", "StringValue": f"t-{i}"},
        "blob": {"DataType": "Binary", "BinaryValue": bytes([i, 0, 255])},
    }


def mixed(queue: TestQueue, put: Put, *, timeouts: int = 3, invalid: int = 2) -> None:
    """Dead letters of two reasons, with the sender's attributes and a hand-back history."""
    history = {"spotdrain-history": {"DataType": "String", "StringValue": '{"origin":"x"}'}}
    put(
        queue.dlq_url,
        [
            dead_letter(
                body=f"timeout-{i}",
                reason="gave up after 5 attempts: timeout",
                extra={**user_attributes(i), **history},
            )
            for i in range(timeouts)
        ]
        + [dead_letter(body=f"invalid-{i}", reason="invalid message") for i in range(invalid)],
    )


def redrive(spotdrain: Spotdrain, queue: TestQueue, *args: str) -> Any:
    return spotdrain("dlq", "redrive", "--dlq-url", queue.dlq_url, "--queue-url", queue.url, *args)


def bodies(messages: list[dict[str, Any]]) -> list[str]:
    return sorted(m["Body"] for m in messages)


def test_filtered_redrive_moves_exactly_the_matching_dead_letters(
    spotdrain: Spotdrain, sqs: Any, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    mixed(queue, put_dead_letters)
    run = redrive(spotdrain, queue, "--reason", "timeout")
    assert run.code == 0, run.err
    print(run.out)
    assert run.out.splitlines() == [
        f"Moved 3 dead letters whose reason contains 'timeout' to {queue.url}.",
        "2 other dead letters left in place.",
        NEXT_RECONCILE,
    ]
    assert bodies(drain_all(sqs, queue.url)) == ["timeout-0", "timeout-1", "timeout-2"]


def test_redrive_keeps_bodies_and_the_senders_attributes_and_drops_spotdrain_ones(
    spotdrain: Spotdrain, sqs: Any, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    mixed(queue, put_dead_letters)
    assert redrive(spotdrain, queue, "--reason", "timeout").code == 0
    moved = sorted(drain_all(sqs, queue.url), key=lambda m: m["Body"])
    for i, message in enumerate(moved):
        assert message["Body"] == f"timeout-{i}"
        assert message["MessageAttributes"] == {
            "trace": {"DataType": "String", "StringValue": f"t-{i}"},
            "blob": {"DataType": "Binary", "BinaryValue": bytes([i, 0, 255])},
        }
        assert message["Attributes"]["ApproximateReceiveCount"] == "1"


def test_redrive_leaves_the_other_dead_letters_visible_in_the_dead_letter_queue(
    spotdrain: Spotdrain, sqs: Any, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    mixed(queue, put_dead_letters)
    assert redrive(spotdrain, queue, "--reason", "timeout").code == 0
    assert held(sqs, queue.dlq_url) == 0
    left = drain_all(sqs, queue.dlq_url)
    assert bodies(left) == ["invalid-0", "invalid-1"]
    assert {m["MessageAttributes"]["spotdrain-reason"]["StringValue"] for m in left} == {
        "invalid message"
    }


def test_redrive_json_reports_what_it_read_matched_and_moved(
    spotdrain: Spotdrain, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    mixed(queue, put_dead_letters)
    doc = redrive(spotdrain, queue, "--json", "--reason", "invalid").json()
    assert doc == {
        "dlq_url": queue.dlq_url,
        "queue_url": queue.url,
        "reason": "invalid",
        "limit": None,
        "dry_run": False,
        "via": "batches",
        "scanned": 5,
        "matched": 2,
        "moved": 2,
        "would_move": None,
        "failed": 0,
        "duplicated": 0,
        "complete": True,
        "launcher": None,
    }


def test_redrive_limit_moves_at_most_that_many(
    spotdrain: Spotdrain, sqs: Any, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    mixed(queue, put_dead_letters, timeouts=25)
    doc = redrive(spotdrain, queue, "--json", "--reason", "timeout", "--limit", "13").json()
    assert (doc["matched"], doc["moved"]) == (13, 13)
    assert len(drain_all(sqs, queue.url)) == 13
    assert held(sqs, queue.dlq_url) == 0
    assert visible(sqs, queue.dlq_url) == 25 + 2 - 13


def test_dry_run_says_how_many_would_move_and_moves_none(
    spotdrain: Spotdrain, sqs: Any, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    mixed(queue, put_dead_letters)
    run = redrive(spotdrain, queue, "--reason", "timeout", "--dry-run")
    assert run.code == 0, run.err
    assert run.out.splitlines() == [
        f"Would move 3 dead letters whose reason contains 'timeout' to {queue.url} (--dry-run)."
    ]
    assert visible(sqs, queue.url) == 0
    assert held(sqs, queue.dlq_url) == 0
    assert visible(sqs, queue.dlq_url) == 5


def test_dry_run_json_counts_every_dead_letter_without_a_reason(
    spotdrain: Spotdrain, sqs: Any, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    mixed(queue, put_dead_letters)
    doc = redrive(spotdrain, queue, "--json", "--dry-run").json()
    assert (doc["would_move"], doc["moved"], doc["via"]) == (5, 0, "batches")
    assert visible(sqs, queue.dlq_url) == 5


def test_redrive_with_launcher_invokes_it_once_asynchronously_with_no_jobs(
    spotdrain: Spotdrain,
    make_queue: QueueFactory,
    put_dead_letters: Put,
    lambda_invoke: LambdaInvoke,
) -> None:
    queue = make_queue()
    mixed(queue, put_dead_letters)
    run = redrive(spotdrain, queue, "--reason", "timeout", "--launcher", "spotdrain-launcher")
    assert run.code == 0, run.err
    assert run.out.splitlines()[-1] == (
        "Invoked the launcher spotdrain-launcher: it sizes the fleet now."
    )
    [call] = lambda_invoke.invocations
    assert (call.function, call.invocation_type) == ("spotdrain-launcher", "Event")
    assert json.loads(call.payload) == {"jobs": []}


def test_redrive_that_moves_nothing_does_not_invoke_the_launcher(
    spotdrain: Spotdrain,
    make_queue: QueueFactory,
    put_dead_letters: Put,
    lambda_invoke: LambdaInvoke,
) -> None:
    queue = make_queue()
    mixed(queue, put_dead_letters)
    run = redrive(spotdrain, queue, "--reason", "nothing like it", "--launcher", "l")
    assert run.out.splitlines() == [
        f"Moved 0 dead letters whose reason contains 'nothing like it' to {queue.url}.",
        "5 other dead letters left in place.",
    ]
    assert lambda_invoke.invocations == []


def test_a_launcher_that_cannot_be_invoked_exits_1_after_the_move(
    spotdrain: Spotdrain,
    sqs: Any,
    make_queue: QueueFactory,
    put_dead_letters: Put,
    monkeypatch: pytest.MonkeyPatch,
    lambda_invoke: LambdaInvoke,
) -> None:
    queue = make_queue()
    mixed(queue, put_dead_letters)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", lambda_invoke.url + "/wrong-prefix")
    run = redrive(spotdrain, queue, "--reason", "timeout", "--launcher", "l")
    assert run.code == 1
    assert len(run.error_lines) == 1 and run.error_lines[0].startswith(
        "spotdrain: error: Invoke failed: "
    )
    assert visible(sqs, queue.url) == 3


def test_long_redrive_shows_a_progress_bar_on_a_terminal(
    spotdrain: Spotdrain,
    make_queue: QueueFactory,
    put_dead_letters: Put,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = make_queue()
    mixed(queue, put_dead_letters, timeouts=30)
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert redrive(spotdrain, queue, "--reason", "timeout").code == 0
    shown = terminal.getvalue()
    assert shown.startswith("\rredrive [") and shown.endswith("] 32/32 moved 30\n")
    assert "\n" not in shown[:-1]


def test_short_or_piped_redrive_shows_no_progress(
    spotdrain: Spotdrain, make_queue: QueueFactory, put_dead_letters: Put
) -> None:
    queue = make_queue()
    mixed(queue, put_dead_letters, timeouts=30)
    assert redrive(spotdrain, queue, "--reason", "timeout").err == ""


def test_unfiltered_redrive_runs_an_sqs_message_move_task(
    spotdrain: Spotdrain,
    sqs: Any,
    make_queue: QueueFactory,
    put_dead_letters: Put,
    move_tasks: MoveTasks,
) -> None:
    queue = make_queue()
    mixed(queue, put_dead_letters)
    run = redrive(spotdrain, queue)
    assert run.code == 0, run.err
    print(run.out)
    assert run.out.splitlines() == [
        f"Moved 5 dead letters to {queue.url} (SQS message move task).",
        NEXT_RECONCILE,
    ]
    arn = "arn:aws:sqs:us-east-1:123456789012:"
    assert move_tasks.started == [
        {"SourceArn": arn + queue.name + "-dlq", "DestinationArn": arn + queue.name}
    ]
    assert len(drain_all(sqs, queue.url)) == 5
    assert visible(sqs, queue.dlq_url) == 0


def test_unfiltered_redrive_json_reports_the_move_tasks_count(
    spotdrain: Spotdrain, make_queue: QueueFactory, put_dead_letters: Put, move_tasks: MoveTasks
) -> None:
    queue = make_queue()
    mixed(queue, put_dead_letters)
    doc = redrive(spotdrain, queue, "--json").json()
    assert (doc["via"], doc["moved"]) == ("move-task", 5)


def test_a_failed_move_task_exits_1_with_its_failure_reason(
    spotdrain: Spotdrain, make_queue: QueueFactory, put_dead_letters: Put, move_tasks: MoveTasks
) -> None:
    queue = make_queue()
    mixed(queue, put_dead_letters)
    move_tasks.fail = "AWS.SimpleQueueService.NonExistentQueue"
    run = redrive(spotdrain, queue)
    assert (run.code, run.out) == (1, "")
    assert run.error_lines == [
        "spotdrain: error: the message move task ended FAILED: "
        "AWS.SimpleQueueService.NonExistentQueue"
    ]


def test_a_refused_move_task_falls_back_to_moving_in_batches(
    spotdrain: Spotdrain,
    sqs: Any,
    make_queue: QueueFactory,
    put_dead_letters: Put,
    move_tasks: MoveTasks,
) -> None:
    queue = make_queue()
    mixed(queue, put_dead_letters)
    move_tasks.refuse = True
    run = redrive(spotdrain, queue, "--json")
    assert run.code == 0, run.err
    assert (run.json()["via"], run.json()["moved"]) == ("batches", 5)
    assert run.error_lines == [
        "spotdrain: SQS will not run a message move task (Source queue must be configured "
        "as a Dead Letter Queue.): moving in batches"
    ]
    assert len(drain_all(sqs, queue.url)) == 5


def test_redrive_to_the_dead_letter_queue_itself_is_a_usage_error(
    spotdrain: Spotdrain, make_queue: QueueFactory
) -> None:
    queue = make_queue()
    run = spotdrain("dlq", "redrive", "--dlq-url", queue.dlq_url, "--queue-url", queue.dlq_url)
    assert run.code == 2
    assert run.error_lines == ["spotdrain: error: --queue-url and --dlq-url name the same queue"]


def refuse_every_send(target: str, body: bytes) -> tuple[int, bytes] | None:
    """SendMessageBatch answered as SQS answers when it takes none of the entries."""
    if target != "AmazonSQS.SendMessageBatch":
        return None
    failed = [
        {"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "try again"}
        for e in json.loads(body)["Entries"]
    ]
    return 200, json.dumps({"Successful": [], "Failed": failed}).encode()


def test_dead_letters_sqs_did_not_take_stay_in_the_dead_letter_queue(
    spotdrain: Spotdrain,
    sqs: Any,
    moto: MotoServer,
    make_queue: QueueFactory,
    put_dead_letters: Put,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = make_queue()
    mixed(queue, put_dead_letters)
    with FaultyProxy(moto.url, answer=refuse_every_send) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", proxy.url)
        run = redrive(spotdrain, queue, "--json", "--reason", "timeout")
    assert run.code == 1
    assert (run.json()["moved"], run.json()["failed"]) == (0, 3)
    assert run.error_lines == ["spotdrain: error: 3 dead letters could not be sent to the queue"]
    assert held(sqs, queue.dlq_url) == 0
    assert visible(sqs, queue.dlq_url) == 5
