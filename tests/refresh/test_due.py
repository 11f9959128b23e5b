"""The due handler's claims, run in-process against moto (DynamoDB, SQS) and the local gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiobotocore.session import get_session

from tests.conftest import QueueFactory, unique
from tests.refresh.conftest import RefreshTable
from tests.support.moto_server import MotoServer
from tests.support.storage_gateway import StorageGatewayEndpoint
from worker.adapters.dynamodb import Table
from worker.adapters.sqs import Queue
from worker.adapters.storage_gateway import Gateway
from worker.errors import RetryableError
from worker.handlers.refresh_job import DUE_JOB, RefreshDue
from worker.handlers.refresh_ledger import Ledger
from worker.handlers.refresh_plan import STALE_CLAIM_SECONDS, Claim
from worker.jobs import Job, MessageFacts
from worker.metrics import Metrics
from worker.settings import RefreshSettings


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    handler: RefreshDue
    ledger: Ledger
    clock: Clock
    bucket: str
    gateway: StorageGatewayEndpoint

    async def due(self, window: str, message_id: str, due: float = 100.0) -> str | None:
        job = Job(kind=DUE_JOB, payload={"bucket": self.bucket, "window": window, "due": due})
        return await self.handler(job, MessageFacts(message_id=message_id, receive_count=1))


@pytest.fixture
async def rig(
    moto: MotoServer,
    refresh_table: RefreshTable,
    gateway: StorageGatewayEndpoint,
    make_queue: QueueFactory,
) -> AsyncIterator[Rig]:
    session = get_session()
    queue = make_queue()
    async with (
        session.create_client("dynamodb", endpoint_url=refresh_table.url) as dynamodb,
        session.create_client("sqs", endpoint_url=moto.url) as sqs,
        session.create_client("storagegateway", endpoint_url=gateway.url) as sgw,
    ):
        ledger = Ledger(Table(dynamodb, refresh_table.name, key="target"), folder_cap=50)
        clock = Clock(100.0)
        handler = RefreshDue(
            ledger=ledger,
            queue=Queue(sqs, queue.url),
            gateway=Gateway(sgw, cache_seconds=0),
            settings=RefreshSettings(table=refresh_table.name, window_seconds=2),
            clock=clock,
            metrics=Metrics.off(),
        )
        bucket = unique("bucket")
        gateway.add_share(bucket)
        yield Rig(handler, ledger, clock, bucket, gateway)


def folder_lists(gateway: StorageGatewayEndpoint) -> list[Any]:
    return [(r.params["FolderList"], r.params["Recursive"]) for r in gateway.refreshes()]


async def test_the_due_message_refreshes_its_window_and_leaves_no_claim(rig: Rig) -> None:
    await rig.ledger.record(rig.bucket, "/a/", token="w1", due=100.0, now=98.0)
    await rig.due("w1", "m1")
    assert folder_lists(rig.gateway) == [(["/", "a"], False)]
    assert (await rig.ledger.read(rig.bucket)).claims == ()


async def test_a_second_copy_of_a_refreshed_due_message_does_nothing(rig: Rig) -> None:
    await rig.ledger.record(rig.bucket, "/a/", token="w1", due=100.0, now=98.0)
    await rig.due("w1", "m1")
    assert await rig.due("w1", "m2") == "window already refreshed"
    assert len(rig.gateway.refreshes()) == 1


async def test_a_copy_arriving_while_the_claim_is_held_retries_later(rig: Rig) -> None:
    await rig.ledger.record(rig.bucket, "/a/", token="w1", due=100.0, now=98.0)
    await rig.ledger.claim(rig.bucket, "w1", now=100.0, message_id="m1")
    with pytest.raises(RetryableError, match="being refreshed by message m1"):
        await rig.due("w1", "m2")
    assert rig.gateway.refreshes() == []


async def test_a_redelivered_owner_refreshes_what_it_claimed_not_later_changes(rig: Rig) -> None:
    await rig.ledger.record(rig.bucket, "/a/", token="w1", due=100.0, now=98.0)
    rig.gateway.busy(1)
    with pytest.raises(RetryableError):
        await rig.due("w1", "m1")
    await rig.ledger.record(rig.bucket, "/b/", token="w2", due=103.0, now=101.0)
    rig.clock.now = 102.0
    await rig.due("w1", "m1")
    assert folder_lists(rig.gateway) == [(["/", "a"], False)]
    assert (await rig.ledger.read(rig.bucket)).token == "w2"


async def test_an_owner_that_died_before_noting_its_claim_refreshes_everything(rig: Rig) -> None:
    await rig.ledger.record(rig.bucket, "/a/", token="w1", due=100.0, now=98.0)
    await rig.ledger.claim(rig.bucket, "w1", now=100.0, message_id="m1")
    await rig.due("w1", "m1")
    assert folder_lists(rig.gateway) == [(["/"], True)]


async def test_a_stale_claim_of_a_vanished_owner_joins_the_next_refresh(rig: Rig) -> None:
    await rig.ledger.record(rig.bucket, "/old/", token="w1", due=100.0, now=98.0)
    await rig.ledger.claim(rig.bucket, "w1", now=100.0, message_id="gone")
    await rig.ledger.note_claim(rig.bucket, Claim("w1", 100.0, "gone", frozenset({"/old/"}), False))
    later = 100.0 + STALE_CLAIM_SECONDS + 10
    await rig.ledger.record(rig.bucket, "/new/", token="w2", due=later, now=later - 2)
    rig.clock.now = later
    await rig.due("w2", "m2", due=later)
    assert folder_lists(rig.gateway) == [(["/", "new", "old"], False)]
    assert (await rig.ledger.read(rig.bucket)).claims == ()
