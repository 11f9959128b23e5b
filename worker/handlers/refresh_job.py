"""Aggregated refreshes: record each object change in the table, fire one RefreshCache per window.

Two job kinds: `refresh` (one object change, README "Aggregated refreshes") and
`refresh_due`, the delayed message
`{"job": "refresh_due", "bucket": B, "window": TOKEN, "due": EPOCH_SECONDS}` this job
sends to its own queue when a change opens a window. The decisions live in `refresh_plan`,
the table's writes in `refresh_ledger`; this module is the thin async shell around them.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from worker.adapters.storage_gateway import GatewayBusy
from worker.errors import PermanentError, RetryableError
from worker.handlers.refresh_ledger import Ledger
from worker.handlers.refresh_plan import (
    Claim,
    claims_to_merge,
    covering_shares,
    decide_change,
    decide_refresh,
    due_wait,
    finish_claim,
    folder_of,
    is_ignored,
    send_delay,
    work_of,
)
from worker.jobs import Job, MessageFacts
from worker.metrics import Metrics
from worker.ports import Adapters, FileShares, Outbox
from worker.settings import RefreshSettings, Settings

log = structlog.get_logger("worker.refresh")

TABLE_KEY = "target"
DUE_JOB = "refresh_due"
Clock = Callable[[], float]


@dataclass(frozen=True)
class ChangePayload:
    bucket: str
    key: str
    event_time: str | None
    principal: str | None

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> ChangePayload:
        return cls(
            bucket=_text(payload, "bucket"),
            key=_text(payload, "key"),
            event_time=_optional_text(payload, "event_time"),
            principal=_optional_text(payload, "principal"),
        )


@dataclass(frozen=True)
class DuePayload:
    bucket: str
    window: str
    due: float

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> DuePayload:
        due = payload.get("due")
        if isinstance(due, bool) or not isinstance(due, int | float) or not math.isfinite(due):
            raise PermanentError("'due' must be a number of seconds since the epoch")
        return cls(bucket=_text(payload, "bucket"), window=_text(payload, "window"), due=float(due))

    def body(self) -> str:
        return json.dumps(
            {
                "job": DUE_JOB,
                "bucket": self.bucket,
                "window": self.window,
                "due": round(self.due, 3),
            }
        )


class RefreshChange:
    """`refresh`: one conditional write per change; send the due message when it opens a window."""

    def __init__(
        self, *, ledger: Ledger, queue: Outbox, settings: RefreshSettings, clock: Clock
    ) -> None:
        self._ledger = ledger
        self._queue = queue
        self._settings = settings
        self._clock = clock

    async def __call__(self, job: Job, facts: MessageFacts) -> str | None:
        change = ChangePayload.parse(job.payload)
        if is_ignored(change.principal, self._settings.ignore_principals):
            log.debug(
                "refresh.own_change_ignored", bucket=change.bucket, principal=change.principal
            )
            return "ignored: made by the gateway"
        now = self._clock()
        token = uuid.uuid4().hex[:16]
        folder = folder_of(change.key)
        state = await self._ledger.record(
            change.bucket,
            folder,
            token=token,
            due=now + self._settings.window_seconds,
            now=now,
        )
        decision = decide_change(
            state,
            my_token=token,
            now=now,
            redelivered=facts.receive_count > 1,
            rescue_after=self._settings.rescue_seconds,
        )
        action = decision.action
        log.debug("refresh.recorded", bucket=change.bucket, folder=folder, window=decision.token)
        if action == "rescue" and not await self._ledger.rescue(
            change.bucket, decision.token, now=now, rescue_after=self._settings.rescue_seconds
        ):
            action = "joined"  # another change is rescuing it
        if action != "joined":
            due = DuePayload(change.bucket, decision.token, decision.due)
            delay = send_delay(due.due, self._clock())
            await self._queue.send(due.body(), delay_seconds=delay)
            log.info(
                f"refresh.window_{action}", bucket=change.bucket, window=due.window, delay_s=delay
            )
        return f"{action} window {decision.token}"


class RefreshDue:
    """`refresh_due`: claim the window, refresh what it collected on every covering share."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        queue: Outbox,
        gateway: FileShares,
        settings: RefreshSettings,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self._ledger = ledger
        self._queue = queue
        self._gateway = gateway
        self._metrics = metrics
        self._settings = settings
        self._clock = clock

    async def __call__(self, job: Job, facts: MessageFacts) -> str | None:
        due = DuePayload.parse(job.payload)
        now = self._clock()
        wait = due_wait(due.due, now)
        if wait is not None:  # windows past SQS's 900 s limit travel in several hops
            await self._queue.send(due.body(), delay_seconds=wait)
            log.info("refresh.redelayed", bucket=due.bucket, window=due.window, delay_s=wait)
            return f"re-delayed {wait} s"
        claimed, state = await self._ledger.claim(
            due.bucket, due.window, now=now, message_id=facts.message_id
        )
        if claimed:
            own = Claim(due.window, now, facts.message_id, state.folders, state.overflow)
            await self._ledger.note_claim(due.bucket, own)
        else:
            found = state.claim(due.window)
            if found is None:
                return "window already refreshed"
            if not finish_claim(found, facts.message_id, now):
                # Usually done within moments; if its message was dead-lettered instead, this
                # copy takes over once the claim is stale. Acknowledging could lose it.
                raise RetryableError(
                    f"window {due.window} is being refreshed by message {found.by}"
                )
            own = found
        claims = [own, *claims_to_merge(state, due.window, now)]
        return await self._refresh(due, claims)

    async def _refresh(self, due: DuePayload, claims: list[Claim]) -> str:
        shares = covering_shares(due.bucket, await self._gateway.shares())
        calls = decide_refresh(work_of(claims), shares, self._settings.max_folders)
        if not shares:
            log.warning("refresh.no_share", bucket=due.bucket, window=due.window)
        elif not calls:
            log.info("refresh.not_covered", bucket=due.bucket, window=due.window)
        for call in calls:
            started_at = self._clock()
            try:
                notification = await self._gateway.refresh(
                    call.share_arn, call.folders, recursive=call.recursive
                )
            except GatewayBusy:
                self._metrics.count("RefreshCacheBusy")
                raise
            self._metrics.count("RefreshCacheCalls")
            log.info(
                "refresh.started",
                bucket=due.bucket,
                window=due.window,
                share=call.share_arn,
                folders=list(call.folders),
                recursive=call.recursive,
                notification_id=notification,
                started_at=round(started_at, 3),
            )
        await self._ledger.finish(due.bucket, claims)
        return f"{len(calls)} refreshes" if shares else "no file share"


class Disabled:
    """Without REFRESH_TABLE nothing aggregates: an explicit refresh job cannot succeed."""

    async def __call__(self, job: Job, facts: MessageFacts) -> str | None:
        raise PermanentError("REFRESH_TABLE is not set")


def create(settings: Settings, adapters: Adapters) -> RefreshChange | Disabled:
    if adapters.refresh_table is None:
        return Disabled()
    return RefreshChange(
        ledger=Ledger(adapters.refresh_table, folder_cap=settings.refresh.max_folders),
        queue=adapters.work_queue,
        settings=settings.refresh,
        clock=time.time,
    )


def create_due(settings: Settings, adapters: Adapters) -> RefreshDue | Disabled:
    if adapters.refresh_table is None or adapters.gateway is None:
        return Disabled()
    return RefreshDue(
        ledger=Ledger(adapters.refresh_table, folder_cap=settings.refresh.max_folders),
        queue=adapters.work_queue,
        gateway=adapters.gateway,
        settings=settings.refresh,
        clock=time.time,
        metrics=adapters.metrics,
    )


def _text(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise PermanentError(f"'{name}' must be a non-empty string")
    return value


def _optional_text(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise PermanentError(f"'{name}' must be a string")
    return value or None
