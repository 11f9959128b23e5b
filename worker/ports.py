"""What the handlers need of the outside world, as Protocols the adapters fulfil.

Handlers are typed against these, not against the adapters' classes, so a unit test can hand
a handler a small fake; worker/wiring.py builds the real adapters into one `Adapters`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from worker.adapters.dynamodb import Update
from worker.adapters.files import SidecarStore
from worker.adapters.s3 import ObjectInfo, OutputWriter
from worker.adapters.storage_gateway import FileShare
from worker.metrics import Metrics

if TYPE_CHECKING:  # the converter's processes are imported only where the csv job runs
    from worker.csvconv.pool import FramePool


class ObjectStore(Protocol):
    """S3 as the csv job uses it: facts, tags, a stream in, a multipart writer out."""

    async def head(self, bucket: str, key: str) -> ObjectInfo | None: ...

    async def tags(self, bucket: str, key: str) -> dict[str, str]: ...

    def stream(self, source: ObjectInfo, *, chunk_bytes: int = ...) -> AsyncIterator[bytes]: ...

    async def abort_uploads(self, bucket: str, key: str) -> int: ...

    def writer(
        self,
        bucket: str,
        key: str,
        *,
        part_bytes: int,
        metadata: Mapping[str, str],
        content_type: str,
        parts_in_flight: int = ...,
    ) -> OutputWriter: ...


class Outbox(Protocol):
    """A queue that messages are sent to (results, or the worker's own delayed messages)."""

    async def send(
        self, body: str, *, attributes: dict[str, Any] | None = ..., delay_seconds: int = ...
    ) -> str: ...


class ItemTable(Protocol):
    """A DynamoDB table of items by one string key, updated under conditions."""

    async def update(
        self,
        key: str,
        expression: str,
        *,
        values: Mapping[str, Any] | None = ...,
        names: Mapping[str, str] | None = ...,
        condition: str | None = ...,
        returns: str = ...,
    ) -> Update: ...

    async def get(self, key: str) -> dict[str, Any] | None: ...


class FileShares(Protocol):
    """Storage Gateway's file shares and their cache refreshes."""

    async def shares(self) -> list[FileShare]: ...

    def forget(self) -> None: ...

    async def refresh(self, share_arn: str, folders: Sequence[str], *, recursive: bool) -> str: ...


@dataclass(frozen=True)
class Adapters:
    """The outside world as the handlers see it; None where the settings leave a part out."""

    metrics: Metrics
    objects: ObjectStore
    work_queue: Outbox  # the worker's own queue, for the refresh job's delayed messages
    csv_results: Outbox | None
    frames: FramePool  # the CSV converter's processes
    refresh_table: ItemTable | None
    gateway: FileShares | None
    sidecar_store: SidecarStore | None
