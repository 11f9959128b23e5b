"""How a scan of the dead-letter queue reads: leases, repeats, the end, the hand-back."""

from __future__ import annotations

from typing import Any

import pytest

from worker.ops import dead_letters
from worker.ops.dead_letters import Lease, read_all


class Answers:
    """An SQS client whose ReceiveMessage answers from a script; it records every call."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.receives: list[dict[str, Any]] = []
        self.released: list[str] = []

    def receive_message(self, **request: Any) -> dict[str, Any]:
        self.receives.append(request)
        ids = self.answers.pop(0) if self.answers else []
        return {
            "Messages": [
                {"MessageId": i, "ReceiptHandle": f"{i}@{len(self.receives)}", "Body": i}
                for i in ids
            ]
        }

    def change_message_visibility_batch(self, **request: Any) -> dict[str, Any]:
        assert all(e["VisibilityTimeout"] == 0 for e in request["Entries"])
        self.released += [e["ReceiptHandle"] for e in request["Entries"]]
        return {"Successful": [{"Id": e["Id"]} for e in request["Entries"]], "Failed": []}


@pytest.fixture(autouse=True)
def real_scan_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dead_letters, "CONFIRM_WAIT_SECONDS", 1)


def test_a_scan_ends_only_after_an_empty_long_poll_follows_an_empty_short_one() -> None:
    sqs = Answers(["a", "b"], [], ["c"], [], [])
    with Lease(sqs, "url", seconds=60, most=100) as lease:
        assert [m.message_id for m in read_all(lease)] == ["a", "b", "c"]
    assert [r["WaitTimeSeconds"] for r in sqs.receives] == [0, 0, 1, 0, 1]
    assert {r["VisibilityTimeout"] for r in sqs.receives} == {60}


def test_a_message_whose_lease_ran_out_is_read_once_and_released_with_its_newest_handle() -> None:
    sqs = Answers(["a", "b"], ["a"], [], [])
    with Lease(sqs, "url", seconds=60, most=100) as lease:
        assert [m.message_id for m in read_all(lease)] == ["a", "b"]
    assert sorted(sqs.released) == ["a@2", "b@1"]


def test_a_scan_stops_at_most_messages_and_asks_for_no_more_than_that() -> None:
    sqs = Answers([str(i) for i in range(10)], ["x", "y"], ["z"])
    with Lease(sqs, "url", seconds=60, most=12) as lease:
        assert len(read_all(lease)) == 12
        assert not lease.complete
    assert [r["MaxNumberOfMessages"] for r in sqs.receives] == [10, 2]


def test_what_the_scan_held_is_released_when_the_command_fails() -> None:
    sqs = Answers(["a", "b"])
    with pytest.raises(RuntimeError), Lease(sqs, "url", seconds=60, most=100) as lease:
        next(lease.batches())
        raise RuntimeError("the command failed")
    assert sorted(sqs.released) == ["a@1", "b@1"]
