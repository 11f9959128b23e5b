"""Pure decisions of the aggregated refresh: folders, covering shares, windows and claims.

The table holds one item per bucket (`target` = bucket name). A change adds its folder to the
item and opens a window (`token`, `due`) unless one is open; the due message of that window
later claims the item (removing `token`, `due`, `folders` in one conditional write, leaving a
`claim_<token>` attribute) and refreshes what it claimed. Every change's write is therefore
ordered before or after a claim: before, and that claim's refresh covers it; after, and it
sees no open window and opens one. Nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

ROOT = "/"
# RefreshCache takes at most 50 folders (botocore model: FolderList max 50).
API_MAX_FOLDERS = 50
# SQS DelaySeconds is 0 to 900: longer windows are re-delayed by the due handler.
MAX_DELAY_SECONDS = 900
# A due message this close to its due time (clocks of different workers) is acted on.
DUE_TOLERANCE_SECONDS = 0.5
# A claim whose owner has not finished it after this long is taken over by others.
STALE_CLAIM_SECONDS = 900.0
CLAIM_PREFIX = "claim_"


def folder_of(key: str) -> str:
    """The bucket folder holding `key`, as stored in the table: '/a/b/', or '/' for the top."""
    parent = key.rstrip("/").rpartition("/")[0]
    return f"/{parent}/" if parent else ROOT


@dataclass(frozen=True)
class Location:
    """Where a file share points: a bucket and a key prefix ('' or 'some/prefix/')."""

    bucket: str
    prefix: str


def parse_location(arn: str) -> Location | None:
    """`arn:aws:s3:::bucket` or `arn:aws:s3:::bucket/prefix/`; None for anything else
    (access points and other locations cannot be matched to bucket events)."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "s3" or parts[3] or parts[4]:
        return None
    bucket, _, prefix = parts[5].partition("/")
    if not bucket:
        return None
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return Location(bucket, prefix)


def share_folders(prefix: str, folders: Iterable[str]) -> set[str]:
    """FolderList entries of a share at `prefix` for changed bucket folders.

    Each changed folder comes with its ancestors up to the share's root: a folder that is new
    (or became empty) only appears (or vanishes) once its parent is listed again. Entries are
    share-relative without slashes ('a/b'), the share's root is '/'. Folders outside the
    prefix are not this share's business."""
    base = "/" + prefix
    entries: set[str] = set()
    for folder in folders:
        if not folder.startswith(base):
            continue
        relative = folder[len(base) :].strip("/")
        entries.add(ROOT)
        parts = relative.split("/") if relative else []
        for depth in range(1, len(parts) + 1):
            entries.add("/".join(parts[:depth]))
    return entries


class ShareLike(Protocol):
    @property
    def arn(self) -> str: ...

    @property
    def location(self) -> str: ...


def covering_shares(bucket: str, shares: Iterable[ShareLike]) -> list[ShareLike]:
    """The shares whose location lies in `bucket` (the bucket itself or a prefix of it)."""
    found = [s for s in shares if (loc := parse_location(s.location)) and loc.bucket == bucket]
    return sorted(found, key=lambda s: s.arn)


@dataclass(frozen=True)
class RefreshCall:
    """One RefreshCache request."""

    share_arn: str
    folders: tuple[str, ...]
    recursive: bool


@dataclass(frozen=True)
class Work:
    """What a refresh must cover: changed bucket folders, or everything (`overflow`)."""

    folders: frozenset[str]
    overflow: bool


def decide_refresh(work: Work, shares: Sequence[ShareLike], max_folders: int) -> list[RefreshCall]:
    """The RefreshCache calls that cover `work` on the bucket's `shares`.

    Changed folders (and their ancestors) are refreshed one level deep; past `max_folders`
    entries, or when the changes were not tracked folder by folder, the share's root is
    refreshed recursively."""
    limit = min(max_folders, API_MAX_FOLDERS)
    calls: list[RefreshCall] = []
    for share in shares:
        location = parse_location(share.location)
        if location is None:
            continue
        if work.overflow:
            calls.append(RefreshCall(share.arn, (ROOT,), True))
            continue
        entries = share_folders(location.prefix, work.folders)
        if not entries:
            continue
        if len(entries) > limit:
            calls.append(RefreshCall(share.arn, (ROOT,), True))
        else:
            calls.append(RefreshCall(share.arn, tuple(sorted(entries)), False))
    return calls


def send_delay(due: float, now: float) -> int:
    """DelaySeconds for a message that should arrive at `due` (capped by SQS's 900 s)."""
    return min(MAX_DELAY_SECONDS, max(0, math.ceil(due - now)))


def due_wait(due: float, now: float) -> int | None:
    """None when a due message may act now; otherwise the delay to send it back with."""
    if due - now <= DUE_TOLERANCE_SECONDS:
        return None
    return max(1, send_delay(due, now))


@dataclass(frozen=True)
class Claim:
    """A window taken by its due message; `folders` is None until they were written down."""

    token: str
    at: float
    by: str
    folders: frozenset[str] | None
    overflow: bool

    def attribute(self) -> str:
        return CLAIM_PREFIX + self.token


@dataclass(frozen=True)
class BucketState:
    """The table item of one bucket, decoded."""

    token: str | None
    due: float | None
    folders: frozenset[str]
    overflow: bool
    rescued_at: float | None
    claims: tuple[Claim, ...]

    @classmethod
    def from_item(cls, item: Mapping[str, Any] | None) -> BucketState:
        item = item or {}
        claims = tuple(
            _claim(name[len(CLAIM_PREFIX) :], value)
            for name, value in sorted(item.items())
            if name.startswith(CLAIM_PREFIX) and isinstance(value, Mapping)
        )
        due = item.get("due")
        rescued = item.get("rescued_at")
        return cls(
            token=item.get("token"),
            due=float(due) if due is not None else None,
            folders=frozenset(item.get("folders") or ()),
            overflow=bool(item.get("overflow", False)),
            rescued_at=float(rescued) if rescued is not None else None,
            claims=claims,
        )

    def claim(self, token: str) -> Claim | None:
        return next((c for c in self.claims if c.token == token), None)


def _claim(token: str, value: Mapping[str, Any]) -> Claim:
    # `overflow` is written together with the folders: without it, they were never recorded.
    recorded = "overflow" in value
    return Claim(
        token=token,
        at=float(value.get("at", 0)),
        by=str(value.get("by", "")),
        folders=frozenset(value.get("folders") or ()) if recorded else None,
        overflow=bool(value.get("overflow", False)),
    )


ChangeAction = Literal["opened", "joined", "resend", "rescue"]


@dataclass(frozen=True)
class ChangeDecision:
    action: ChangeAction
    token: str
    due: float


def decide_change(
    state: BucketState, *, my_token: str, now: float, redelivered: bool, rescue_after: float
) -> ChangeDecision:
    """What a change must do after its write returned the bucket's item (`state`).

    - `opened`: this write opened the window; send its due message.
    - `resend`: this message was delivered before, so an earlier attempt may have died
      between its write and its send: send the window's due message again (duplicates are
      harmless: only one due message can claim the window).
    - `rescue`: the window is overdue by `rescue_after`: its due message was probably lost
      (a worker died and its message was dead-lettered); take over the resend.
    - `joined`: a window that will start after this write is already scheduled.
    """
    if state.token is None or state.due is None:
        raise ValueError("the change write left no open window")
    if state.token == my_token:
        action: ChangeAction = "opened"
    elif redelivered:
        action = "resend"
    elif now > state.due + rescue_after and (
        state.rescued_at is None or now > state.rescued_at + rescue_after
    ):
        action = "rescue"
    else:
        action = "joined"
    return ChangeDecision(action, state.token, state.due)


def finish_claim(claim: Claim, message_id: str, now: float) -> bool:
    """Whether the due message `message_id` should carry out an existing claim of its window:
    it took the claim and came back (it died, or the refresh failed), or the owner is gone."""
    return claim.by == message_id or now - claim.at > STALE_CLAIM_SECONDS


def claims_to_merge(state: BucketState, own: str, now: float) -> list[Claim]:
    """Other windows' claims whose owners seem gone: covered by this refresh too."""
    return [c for c in state.claims if c.token != own and now - c.at > STALE_CLAIM_SECONDS]


def work_of(claims: Iterable[Claim]) -> Work:
    """The union of what claims cover; a claim without recorded folders covers everything."""
    folders: set[str] = set()
    overflow = False
    for claim in claims:
        overflow = overflow or claim.overflow or claim.folders is None
        folders.update(claim.folders or ())
    return Work(frozenset(folders), overflow)


def is_ignored(principal: str | None, ignored: Iterable[str]) -> bool:
    """A change by one of the `ignored` principals (the gateway's own role): an entry matches
    the principal itself or, for `AWS:ROLEID`, any session of that role (`AWS:ROLEID:...`)."""
    if not principal:
        return False
    return any(principal == entry or principal.startswith(entry + ":") for entry in ignored)
