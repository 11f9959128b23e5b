"""Moving dead letters back (ours, or SQS's own move task) and deleting them; nothing is lost.

Each batch is sent to the queue first and deleted from the dead-letter queue only for the
entries SQS took, so a crash between the two leaves a duplicate, never a gap.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from worker.ops.aws import error_code
from worker.ops.dead_letters import BATCH, DeadLetter, Lease, chunks
from worker.ops.output import Progress

if TYPE_CHECKING:  # the stubs are a test dependency only
    from types_boto3_lambda import LambdaClient
    from types_boto3_sqs import SQSClient
    from types_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

# SendMessageBatch refuses a call whose messages add up to more than this.
BATCH_BYTES = 262_144
MOVE_TASK_POLL_SECONDS = 1.0
MOVE_TASK_DONE = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
# What SQS (or an emulator) answers when it will not run a move task from this queue, e.g.
# "Source queue must be configured as a Dead Letter Queue": we move the messages ourselves.
MOVE_TASK_REFUSED = frozenset(
    {"InvalidParameterValue", "UnsupportedOperation", "InvalidAction", "UnknownOperation"}
)
LAUNCHER_EVENT = b'{"jobs": []}'


@dataclass(kw_only=True)
class Moved:
    """What a redrive or a purge did."""

    scanned: int = 0
    matched: int = 0
    moved: int = 0  # sent to the queue and deleted from the dead-letter queue (or purged)
    failed: int = 0  # not sent (or not deleted by a purge): still in the dead-letter queue
    duplicated: int = 0  # sent, but the delete failed: in both queues
    complete: bool = True  # False when --max stopped the scan early
    via: str = "batches"  # or "move-task"


class MoveTaskRefused(Exception):
    """SQS will not run a move task from this queue; the caller moves the messages itself."""


class MoveTaskFailed(Exception):
    """The move task ended FAILED or CANCELLED; the message is its FailureReason."""


def queue_arn(sqs: SQSClient, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def redrive(
    sqs: SQSClient,
    lease: Lease,
    queue_url: str,
    *,
    reason: str | None,
    limit: int | None,
    dry_run: bool,
    progress: Progress,
) -> Moved:
    """Move the dead letters whose reason contains `reason` (all when None), at most `limit`."""
    result = Moved()
    for batch in lease.batches():
        result.scanned += len(batch)
        room = None if limit is None else limit - result.matched
        chosen = [m for m in batch if m.matches(reason)][:room]
        result.matched += len(chosen)
        if not dry_run:
            _move(sqs, lease, queue_url, chosen, result)
        progress.update(result.scanned, f"moved {result.moved}")
        if limit is not None and result.matched >= limit:
            break
    result.complete = lease.complete
    return result


def _move(
    sqs: SQSClient, lease: Lease, queue_url: str, letters: Sequence[DeadLetter], result: Moved
) -> None:
    for part in _by_size(letters):
        entries: list[SendMessageBatchRequestEntryTypeDef] = []
        for i, letter in enumerate(part):
            copy = letter.redriven()
            entry: SendMessageBatchRequestEntryTypeDef = {"Id": str(i), "MessageBody": copy["body"]}
            if copy["attributes"]:
                entry["MessageAttributes"] = copy["attributes"]
            entries.append(entry)
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        sent = [part[int(ok["Id"])] for ok in response.get("Successful", [])]
        result.failed += len(part) - len(sent)  # still held: visible again when we finish
        if not sent:
            continue
        deleted = _delete(sqs, lease, sent)
        result.moved += deleted
        result.duplicated += len(sent) - deleted


def _delete(sqs: SQSClient, lease: Lease, letters: Sequence[DeadLetter]) -> int:
    """Delete from the dead-letter queue; return how many SQS deleted."""
    done = 0
    for part in chunks(letters, BATCH):
        response = sqs.delete_message_batch(
            QueueUrl=lease.url,
            Entries=[{"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(part)],
        )
        ids = [part[int(ok["Id"])].message_id for ok in response.get("Successful", [])]
        lease.forget(ids)
        done += len(ids)
    return done


def _by_size(letters: Sequence[DeadLetter]) -> list[list[DeadLetter]]:
    """Batches of at most ten whose messages fit in one SendMessageBatch call together."""
    parts: list[list[DeadLetter]] = []
    size = 0
    for letter in letters:
        if not parts or len(parts[-1]) == BATCH or size + letter.size() > BATCH_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(letter)
        size += letter.size()
    return parts


def purge(sqs: SQSClient, lease: Lease, letters: Sequence[DeadLetter]) -> Moved:
    """Delete these (held) dead letters."""
    deleted = _delete(sqs, lease, letters)
    return Moved(matched=len(letters), moved=deleted, failed=len(letters) - deleted)


def move_task(
    sqs: SQSClient,
    dlq_url: str,
    queue_url: str,
    *,
    progress: Progress,
    sleep: Callable[[float], None] = time.sleep,
) -> Moved:
    """Every dead letter back through SQS's StartMessageMoveTask, polled until it ends."""
    source, destination = queue_arn(sqs, dlq_url), queue_arn(sqs, queue_url)
    try:
        handle = sqs.start_message_move_task(SourceArn=source, DestinationArn=destination)[
            "TaskHandle"
        ]
    except ClientError as exc:
        if error_code(exc) in MOVE_TASK_REFUSED:
            raise MoveTaskRefused(str(exc.response.get("Error", {}).get("Message", ""))) from exc
        raise
    while True:
        results = sqs.list_message_move_tasks(SourceArn=source, MaxResults=10).get("Results", [])
        task = next((r for r in results if r.get("TaskHandle") == handle), None)
        if task is None and results:
            task = results[0]  # the newest task of this source: ours
        if task is not None:
            moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
            progress.update(moved)
            status = str(task.get("Status", ""))
            if status in MOVE_TASK_DONE:
                if status != "COMPLETED":
                    why = task.get("FailureReason") or "no reason given"
                    raise MoveTaskFailed(f"{status}: {why}")
                return Moved(scanned=moved, matched=moved, moved=moved, via="move-task")
        sleep(MOVE_TASK_POLL_SECONDS)


def nudge_launcher(lambda_: LambdaClient, name: str) -> None:
    """Invoke the launcher asynchronously with `{"jobs": []}`: it sizes the fleet now."""
    lambda_.invoke(FunctionName=name, InvocationType="Event", Payload=LAUNCHER_EVENT)
