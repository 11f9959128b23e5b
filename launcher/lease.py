"""One sizing at a time per fleet, so that concurrent invocations never start more than
MAX_TASKS between them: a lease on one DynamoDB item per fleet (FLEET_LOCK_TABLE).

Counting the workers and starting the missing ones is read-then-act: two invocations that
count at once both see room and both start tasks. Enqueuing stays concurrent; only sizing
takes the lease, with two conditional updates of the fleet's item (key `fleet` = STARTED_BY):

- take: SET holder, expires_ms, if nobody holds it or the holder's time ran out, so an
  invocation that died holding it blocks the fleet for at most LEASE_MS;
- give back: SET sized_from_ms (when the holder began to count) and workers (running plus
  started), REMOVE holder, if the lease is still ours.

A waiter often needs no turn of its own. Once a sizing that began counting after the waiter's
messages were sent has finished, and left workers running, those workers drain the
messages: the waiter is covered and returns. So in a burst of uploads one invocation
sizes and the others return after a poll or two, instead of queueing up behind each other as
they would with a reserved concurrency of 1 (which would also throttle S3's and SNS's
asynchronous invocations into Lambda's retry backoff of up to 5 minutes). A waiter neither
covered nor holding the lease after WAIT_SECONDS gives up sizing; its summary says so and the
reconcile schedule sizes the fleet within a period.
"""

from __future__ import annotations

import enum
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from launcher.aws import error_code

if TYPE_CHECKING:  # the stubs are a test dependency only
    from types_boto3_dynamodb import DynamoDBClient

LEASE_MS = 30_000  # longer than any sizing: RunTask calls, their retries and fallbacks
WAIT_SECONDS = 10.0
POLL_SECONDS = 0.1


class Turn(enum.Enum):
    HELD = "held"  # this invocation sizes the fleet, then gives the lease back
    COVERED = "covered"  # a later sizing counted this invocation's messages
    BUSY = "busy"  # neither, within WAIT_SECONDS


@dataclass
class SizingLease:
    dynamodb: DynamoDBClient
    table: str
    fleet: str
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    wait_seconds: float = WAIT_SECONDS
    holder: str = field(default="", init=False)  # this turn's identity, new for each take

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def take(self, sent_at_ms: int) -> Turn:
        """Wait for the lease, or for a sizing that covers messages sent at `sent_at_ms`.

        Raises what DynamoDB raises besides a failed condition (the caller reports it).
        """
        deadline = self.clock() + self.wait_seconds
        self.holder = uuid.uuid4().hex
        while True:
            now = self.now_ms()
            try:
                self.dynamodb.update_item(
                    TableName=self.table,
                    Key=self._key(),
                    UpdateExpression="SET holder = :me, expires_ms = :until",
                    # Free (or run out), and no finished sizing covers us yet: covered, we
                    # leave the lease alone and the failed condition says why.
                    ConditionExpression=(
                        "(attribute_not_exists(holder) OR expires_ms < :now)"
                        " AND NOT (sized_from_ms >= :sent AND workers > :none)"
                    ),
                    ExpressionAttributeValues={
                        ":me": {"S": self.holder},
                        ":until": {"N": str(now + LEASE_MS)},
                        ":now": {"N": str(now)},
                        ":sent": {"N": str(sent_at_ms)},
                        ":none": {"N": "0"},
                    },
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return Turn.HELD
            except ClientError as exc:
                if error_code(exc) != "ConditionalCheckFailedException":
                    raise
                # ReturnValuesOnConditionCheckFailure's item: a key botocore's error type lacks.
                item = cast("dict[str, Any]", exc.response.get("Item", {}))
            # SQS's approximate counts may lag the send by a moment, so the covering sizing may
            # have counted one worker too few; it cannot have left the messages without one.
            if _number(item, "sized_from_ms") >= sent_at_ms and _number(item, "workers"):
                return Turn.COVERED
            if self.clock() >= deadline:
                return Turn.BUSY
            self.sleep(random.uniform(POLL_SECONDS / 2, POLL_SECONDS * 1.5))

    def give_back(self, sized_from_ms: int, workers: int) -> None:
        """Release the lease, recording what this sizing covered. A lease that ran out and
        went to another invocation is left to it."""
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key=self._key(),
                UpdateExpression=(
                    "SET sized_from_ms = :from, workers = :workers REMOVE holder, expires_ms"
                ),
                ConditionExpression="holder = :me",
                ExpressionAttributeValues={
                    ":me": {"S": self.holder},
                    ":from": {"N": str(sized_from_ms)},
                    ":workers": {"N": str(workers)},
                },
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    def _key(self) -> dict[str, Any]:
        return {"fleet": {"S": self.fleet}}


def _number(item: dict[str, Any], name: str) -> int:
    return int(item.get(name, {}).get("N", 0))
