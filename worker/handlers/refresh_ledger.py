"""The refresh table's writes: record a change, rescue a window, claim it, finish the claim.

One item per bucket (`target` = bucket). Attributes: `token`, `due`, `opened_at` (the open
window), `folders` (string set of changed folders), `overflow` (too many folders to track),
`rescued_at`, `changed_at`, `refreshed_at`, and `claim_<token>` maps {at, by, folders, overflow}
for windows whose refresh is under way. See `refresh_plan` for why this never loses a change.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from worker.handlers.refresh_plan import BucketState, Claim
from worker.ports import ItemTable

# DynamoDB refuses expression names an expression does not use: each call names its own.
_WINDOW_NAMES = {"#token": "token", "#due": "due"}
_OPEN_WINDOW = (
    "#token = if_not_exists(#token, :token), #due = if_not_exists(#due, :due), "
    "opened_at = if_not_exists(opened_at, :now), changed_at = :now"
)


class Ledger:
    """The conditional writes on one bucket's item."""

    def __init__(self, table: ItemTable, *, folder_cap: int) -> None:
        self._table = table
        # Past this many folders the set stops growing and the window refreshes whole shares.
        self._cap = folder_cap

    async def record(
        self, bucket: str, folder: str, *, token: str, due: float, now: float
    ) -> BucketState:
        """Add `folder` to the bucket's changes and open a window (`token`, `due`) unless one
        is open; return the item as this write left it."""
        window = {":token": token, ":due": due, ":now": now}
        added = await self._table.update(
            bucket,
            f"ADD #folders :folder_set SET {_OPEN_WINDOW}",
            names={**_WINDOW_NAMES, "#folders": "folders"},
            values={**window, ":folder_set": {folder}, ":folder": folder, ":cap": self._cap},
            condition="attribute_not_exists(#folders) OR size(#folders) < :cap "
            "OR contains(#folders, :folder)",
        )
        if added.applied:
            return BucketState.from_item(added.item)
        current = BucketState.from_item(added.item)
        if current.overflow and current.token is not None:
            return current  # a failed condition writes nothing: that window covers everything
        flagged = await self._table.update(
            bucket,
            f"SET #overflow = :true, {_OPEN_WINDOW}",
            names={**_WINDOW_NAMES, "#overflow": "overflow"},
            values={**window, ":true": True},
        )
        return BucketState.from_item(flagged.item)

    async def rescue(self, bucket: str, token: str, *, now: float, rescue_after: float) -> bool:
        """Take over re-sending an overdue window's due message; at most one taker per period."""
        result = await self._table.update(
            bucket,
            "SET rescued_at = :now",
            names={"#token": "token"},
            values={":token": token, ":now": now, ":cutoff": now - rescue_after},
            condition="#token = :token "
            "AND (attribute_not_exists(rescued_at) OR rescued_at < :cutoff)",
        )
        return result.applied

    async def claim(
        self, bucket: str, token: str, *, now: float, message_id: str
    ) -> tuple[bool, BucketState]:
        """Close window `token`: its changes leave the open set for a `claim_<token>` marker.
        Returns whether this call claimed it, and the item before (claimed) or as it is."""
        result = await self._table.update(
            bucket,
            "SET #claim = :claim, refreshed_at = :now "
            "REMOVE #token, #due, #folders, #overflow, opened_at, rescued_at",
            names={
                **_WINDOW_NAMES,
                "#folders": "folders",
                "#overflow": "overflow",
                "#claim": Claim(token, now, message_id, None, False).attribute(),
            },
            values={":claim": {"at": now, "by": message_id}, ":now": now, ":token": token},
            condition="#token = :token",
            returns="ALL_OLD",
        )
        return result.applied, BucketState.from_item(result.item)

    async def note_claim(self, bucket: str, claim: Claim) -> None:
        """Write down what a claim covers, so that a retry refreshes just that."""
        names = {"#claim": claim.attribute(), "#overflow": "overflow"}
        values: dict[str, Any] = {":overflow": claim.overflow or not claim.folders}
        expression = "SET #claim.#overflow = :overflow"
        if claim.folders:
            names["#folders"] = "folders"
            values[":folders"] = set(claim.folders)
            expression += ", #claim.#folders = :folders"
        await self._table.update(
            bucket,
            expression,
            names=names,
            values=values,
            condition="attribute_exists(#claim)",
            returns="NONE",
        )

    async def finish(self, bucket: str, claims: Iterable[Claim]) -> None:
        """Remove claims whose refresh has started: nothing is left to do for them."""
        names = {f"#c{i}": claim.attribute() for i, claim in enumerate(claims)}
        if names:
            await self._table.update(
                bucket, "REMOVE " + ", ".join(names), names=names, returns="NONE"
            )

    async def read(self, bucket: str) -> BucketState:
        return BucketState.from_item(await self._table.get(bucket))
