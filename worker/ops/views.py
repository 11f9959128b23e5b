"""The text people read for each command's result (`--json` prints the document instead)."""

from __future__ import annotations

from typing import Any

from worker.ops.output import clip, duration, table

REASON_WIDTH = 70
NEXT_RECONCILE = (
    "No --launcher given: the next scheduled reconcile (within ReconcileMinutes, 1 minute by "
    "default) will start workers."
)


def status(doc: dict[str, Any]) -> list[str]:
    queue = doc["queue"]
    rows: list[list[str | int | None]] = [
        ["visible", queue["visible"]],
        ["in flight", queue["in_flight"]],
        ["delayed", queue["delayed"]],
        ["oldest message", duration(queue["oldest_message_age_seconds"])],
    ]
    dead = doc["dead_letters"]
    rows.append(
        [
            "dead letters",
            "unknown (no --dlq-url, no redrive policy)" if dead is None else dead["count"],
        ]
    )
    lines = [f"Queue {queue['url']}", *("  " + line for line in table(rows))]
    if dead is not None:
        lines.append(f"Dead-letter queue {dead['url']}")
    fleet = doc["workers"]
    if fleet is not None:
        lines.append(f"Workers in cluster {fleet['cluster']} (startedBy {fleet['started_by']})")
        by = fleet["by_capacity_provider"]
        stopping = bool(fleet["stopping"])  # on the way out while ECS still wants it running
        headers = ["CAPACITY PROVIDER", "RUNNING", "PENDING"] + (["STOPPING"] if stopping else [])

        def row(name: str, n: dict[str, Any]) -> list[str | int | None]:
            return [name, n["running"], n["pending"]] + ([n["stopping"]] if stopping else [])

        rows = [row(name, counts) for name, counts in by.items()] + [row("total", fleet)]
        lines += ["  " + line for line in table(rows, headers)]
    return lines


def dead_letter_list(doc: dict[str, Any]) -> list[str]:
    total = doc["total"]
    if not total:
        return [f"No dead letters in {doc['dlq_url']}."]
    more = "" if doc["complete"] else f" (stopped at --max {total}: there may be more)"
    lines = [f"{total} dead letters in {doc['dlq_url']}{more}, left in place:"]
    rows = [
        [clip(g["reason"], REASON_WIDTH), g["count"], ", ".join(g["sample_message_ids"])]
        for g in doc["reasons"]
    ]
    return lines + table(rows, ["REASON", "COUNT", "SAMPLE MESSAGE IDS"])


def dead_letter(doc: dict[str, Any]) -> list[str]:
    attempts = doc["receive_count"]
    count = (
        f"{attempts} (real attempts, counted by the worker)"
        if attempts is not None
        else f"{doc['sqs_receive_count']} (SQS's ApproximateReceiveCount, reads included)"
    )
    rows: list[list[str | int | None]] = [
        ["message id", doc["message_id"]],
        ["original message id", doc["original_message_id"] or "-"],
        ["reason", doc["reason"]],
        ["receive count", count],
        ["source queue", doc["source_queue"] or "-"],
        ["sent", doc["sent"] or "-"],
    ]
    lines = table(rows)
    attributes = doc["attributes"]
    if attributes:
        lines.append("attributes:")
        rows = [[a["name"], a["type"], clip(a["value"], 200)] for a in attributes]
        lines += ["  " + line for line in table(rows, ["NAME", "TYPE", "VALUE"])]
    return [*lines, "body:", doc["body"]]


def redrive(doc: dict[str, Any]) -> list[str]:
    which = "dead letters"
    if doc["reason"] is not None:
        which += f" whose reason contains {doc['reason']!r}"
    how = " (SQS message move task)" if doc["via"] == "move-task" else ""
    if doc["dry_run"]:
        lines = [f"Would move {doc['matched']} {which} to {doc['queue_url']} (--dry-run)."]
    else:
        lines = [f"Moved {doc['moved']} {which} to {doc['queue_url']}{how}."]
    left = doc["scanned"] - doc["moved"]
    if doc["via"] == "batches" and left and not doc["dry_run"]:
        lines.append(f"{left} other dead letters left in place.")
    if doc["failed"]:
        lines.append(f"{doc['failed']} could not be sent; they stay in the dead-letter queue.")
    if doc["duplicated"]:
        lines.append(f"{doc['duplicated']} were sent but not deleted: they are in both queues.")
    if not doc["complete"]:
        lines.append(f"Stopped after reading {doc['scanned']} (--max): run again for the rest.")
    launcher = doc["launcher"]
    if launcher is not None:
        lines.append(f"Invoked the launcher {launcher}: it sizes the fleet now.")
    elif doc["moved"] and not doc["dry_run"]:
        lines.append(NEXT_RECONCILE)
    return lines


def purge(doc: dict[str, Any]) -> list[str]:
    which = f"dead letters whose reason contains {doc['reason']!r}"
    if not doc["matched"]:
        return [f"No {which}; nothing deleted."]
    if not doc["confirmed"]:
        return [f"Nothing deleted ({doc['matched']} {which})."]
    lines = [f"Deleted {doc['deleted']} {which}."]
    if doc["scanned"] - doc["matched"]:
        lines.append(f"{doc['scanned'] - doc['matched']} other dead letters left in place.")
    if doc["failed"]:
        lines.append(f"{doc['failed']} could not be deleted; they stay in the dead-letter queue.")
    return lines
