"""The refresh table's conditional writes, against DynamoDB in moto over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiobotocore.session import get_session

from tests.refresh.conftest import RefreshTable
from worker.adapters.dynamodb import Table
from worker.errors import ConfigError
from worker.handlers.refresh_ledger import Ledger
from worker.handlers.refresh_plan import Claim


@pytest.fixture
async def table(refresh_table: RefreshTable) -> AsyncIterator[Table]:
    async with get_session().create_client("dynamodb", endpoint_url=refresh_table.url) as client:
        yield Table(client, refresh_table.name, key="target")


async def test_the_first_change_opens_a_window_and_later_ones_join_it(table: Table) -> None:
    ledger = Ledger(table, folder_cap=50)
    first = await ledger.record("b", "/a/", token="t1", due=10.0, now=8.0)
    second = await ledger.record("b", "/c/", token="t2", due=11.0, now=9.0)
    assert (first.token, first.due) == ("t1", 10.0)
    assert (second.token, second.due, second.folders) == ("t1", 10.0, frozenset({"/a/", "/c/"}))


async def test_concurrent_changes_open_exactly_one_window(table: Table) -> None:
    ledger = Ledger(table, folder_cap=50)
    states = await asyncio.gather(
        *(ledger.record("b", f"/f{i}/", token=f"t{i}", due=10.0, now=8.0) for i in range(20))
    )
    opened = [i for i, s in enumerate(states) if s.token == f"t{i}"]
    assert len(opened) == 1
    assert len((await ledger.read("b")).folders) == 20


async def test_a_claim_takes_the_changes_and_the_next_change_opens_a_new_window(
    table: Table,
) -> None:
    ledger = Ledger(table, folder_cap=50)
    await ledger.record("b", "/a/", token="t1", due=10.0, now=8.0)
    claimed, before = await ledger.claim("b", "t1", now=10.0, message_id="m1")
    after = await ledger.record("b", "/a/", token="t2", due=13.0, now=11.0)
    assert claimed and before.folders == frozenset({"/a/"})
    assert (after.token, after.folders) == ("t2", frozenset({"/a/"}))
    assert after.claim("t1") == Claim("t1", 10.0, "m1", None, False)


async def test_a_window_is_claimed_once(table: Table) -> None:
    ledger = Ledger(table, folder_cap=50)
    await ledger.record("b", "/a/", token="t1", due=10.0, now=8.0)
    first, _ = await ledger.claim("b", "t1", now=10.0, message_id="m1")
    second, current = await ledger.claim("b", "t1", now=10.0, message_id="m2")
    assert (first, second) == (True, False)
    assert current.claim("t1") is not None and current.claim("t1").by == "m1"  # type: ignore[union-attr]


async def test_a_noted_claim_keeps_its_folders_until_finished(table: Table) -> None:
    ledger = Ledger(table, folder_cap=50)
    await ledger.record("b", "/a/", token="t1", due=10.0, now=8.0)
    await ledger.claim("b", "t1", now=10.0, message_id="m1")
    claim = Claim("t1", 10.0, "m1", frozenset({"/a/"}), False)
    await ledger.note_claim("b", claim)
    assert (await ledger.read("b")).claim("t1") == claim
    await ledger.finish("b", [claim])
    assert (await ledger.read("b")).claims == ()


async def test_past_the_folder_cap_the_window_covers_everything(table: Table) -> None:
    ledger = Ledger(table, folder_cap=2)
    for i in range(4):
        state = await ledger.record("b", f"/f{i}/", token=f"t{i}", due=10.0, now=8.0)
    assert state.overflow and state.token == "t0" and len(state.folders) == 2


async def test_an_overdue_window_is_rescued_once_per_period(table: Table) -> None:
    ledger = Ledger(table, folder_cap=50)
    await ledger.record("b", "/a/", token="t1", due=10.0, now=8.0)
    assert await ledger.rescue("b", "t1", now=100.0, rescue_after=60)
    assert not await ledger.rescue("b", "t1", now=120.0, rescue_after=60)
    assert await ledger.rescue("b", "t1", now=161.0, rescue_after=60)


async def test_a_missing_table_is_a_configuration_error(dynamodb_url: str) -> None:
    async with get_session().create_client("dynamodb", endpoint_url=dynamodb_url) as client:
        with pytest.raises(ConfigError, match="REFRESH_TABLE"):
            await Table(client, "no-such-table", key="target").check("REFRESH_TABLE")
