"""Fixtures of the `spotdrain` command's tests: the command run in-process, dead letters as the
worker writes them, and stand-ins for what moto lacks (move tasks, Lambda's Invoke)."""

from __future__ import annotations

import io
import json
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.faulty_proxy import FaultyProxy
from tests.support.lambda_invoke import LambdaInvoke
from tests.support.moto_server import MotoServer
from tests.support.sqs_move_tasks import MoveTasks
from worker.ops import dead_letters
from worker.ops.cli import main


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def error_lines(self) -> list[str]:
        return self.err.splitlines()


@pytest.fixture(autouse=True)
def quick_scan_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """A scan ends with one empty long poll (1 s), because SQS's short poll samples servers
    and may answer empty while messages wait. moto's short poll sees every message, so here
    that second is only waiting; test_scan.py checks the rule itself on a fake client."""
    monkeypatch.setattr(dead_letters, "CONFIRM_WAIT_SECONDS", 0)


@pytest.fixture
def spotdrain(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """spotdrain(*argv) -> Run: the command in this process, its output captured."""

    def run(*argv: str) -> Run:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def dead_letter(
    *,
    body: str,
    reason: str | None,
    attempts: int = 5,
    source: str = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs",
    original_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A SendMessageBatch entry (without Id) shaped as the worker dead-letters a message;
    reason=None: as the queue's redrive policy moves one (no spotdrain attributes)."""
    attributes: dict[str, Any] = dict(extra or {})
    if reason is not None:
        attributes |= {
            "spotdrain-reason": {"DataType": "String", "StringValue": reason},
            "spotdrain-original-message-id": {
                "DataType": "String",
                "StringValue": original_id or f"orig-{body}",
            },
            "spotdrain-receive-count": {"DataType": "Number", "StringValue": str(attempts)},
            "spotdrain-source-queue": {"DataType": "String", "StringValue": source},
        }
    entry: dict[str, Any] = {"MessageBody": body}
    if attributes:
        entry["MessageAttributes"] = attributes
    return entry


Put = Callable[..., list[str]]


@pytest.fixture
def put_dead_letters(sqs: Any) -> Put:
    """put(dlq_url, entries) -> their message ids, in order."""

    def put(url: str, entries: list[dict[str, Any]]) -> list[str]:
        ids: list[str] = []
        for start in range(0, len(entries), 10):
            chunk = entries[start : start + 10]
            response = sqs.send_message_batch(
                QueueUrl=url, Entries=[{"Id": str(i), **e} for i, e in enumerate(chunk)]
            )
            assert not response.get("Failed"), response["Failed"]
            by_id = {ok["Id"]: ok["MessageId"] for ok in response["Successful"]}
            ids += [by_id[str(i)] for i in range(len(chunk))]
        return ids

    return put


def visible(sqs: Any, url: str) -> int:
    name = "ApproximateNumberOfMessages"
    return int(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[name])["Attributes"][name])


def held(sqs: Any, url: str) -> int:
    name = "ApproximateNumberOfMessagesNotVisible"
    return int(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[name])["Attributes"][name])


@pytest.fixture
def move_tasks(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MoveTasks]:
    """SQS calls go through a proxy whose stand-in answers the move-task calls."""
    tasks = MoveTasks(moto.url)
    with FaultyProxy(moto.url, answer=tasks.answer) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", proxy.url)
        yield tasks


@pytest.fixture
def lambda_invoke(monkeypatch: pytest.MonkeyPatch) -> Iterator[LambdaInvoke]:
    with LambdaInvoke() as stand_in:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", stand_in.url)
        yield stand_in


@pytest.fixture
def tasks_stay_running(moto: MotoServer) -> Iterator[None]:
    """moto advances an ECS task's lastStatus on every DescribeTasks (RUNNING, then
    DEACTIVATING...); hold it where RunTask left it, and restore moto's setting after."""
    api = f"{moto.url}/moto-api/state-manager"
    with urllib.request.urlopen(f"{api}/get-transition?model_name=ecs::task") as answer:
        before = json.loads(answer.read())

    def set_transition(transition: dict[str, Any]) -> None:
        body = json.dumps({"model_name": "ecs::task", "transition": transition}).encode()
        request = urllib.request.Request(f"{api}/set-transition", data=body, method="POST")
        with urllib.request.urlopen(request):
            pass

    set_transition({"progression": "manual", "times": 1_000_000})
    yield
    set_transition(before)
