"""Storage Gateway calls: the file shares of the account (cached with expiry) and RefreshCache."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from worker.adapters.aws_errors import error_code, mapped
from worker.errors import RetryableError

# DescribeNFSFileShares / DescribeSMBFileShares take at most 10 ARNs per call.
_DESCRIBE_BATCH = 10
_LIST_LIMIT = 100
_GONE = frozenset({"DELETING", "FORCE_DELETING"})
# The gateway answers this when a share already runs two refreshes (or is briefly
# unavailable): worth retrying with backoff, never dropping.
_BUSY = "InvalidGatewayRequestException"


if TYPE_CHECKING:
    from types_aiobotocore_storagegateway import StorageGatewayClient


@dataclass(frozen=True)
class FileShare:
    arn: str
    kind: str
    location: str
    status: str
    gateway_arn: str


class Gateway:
    """The Storage Gateway API as the refresh job uses it."""

    def __init__(
        self,
        client: StorageGatewayClient,
        *,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._shares: list[FileShare] | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def shares(self) -> list[FileShare]:
        """Every file share (NFS and SMB) with its location; listed again after the expiry."""
        async with self._lock:
            fresh = self._clock() - self._fetched_at < self._cache_seconds
            if self._shares is None or not fresh:
                self._shares = await self._list_shares()
                self._fetched_at = self._clock()
            return self._shares

    def forget(self) -> None:
        """Drop the cached shares (for example after a share was not found)."""
        self._shares = None

    async def _list_shares(self) -> list[FileShare]:
        summaries: list[dict[str, Any]] = []
        marker: str | None = None
        while True:
            request: dict[str, Any] = {"Limit": _LIST_LIMIT}
            if marker:
                request["Marker"] = marker
            response = await self._call("ListFileShares", self._client.list_file_shares, request)
            summaries.extend(response.get("FileShareInfoList", []))
            marker = response.get("NextMarker")
            if not marker:
                break
        shares: list[FileShare] = []
        for kind, operation, method, result_key in (
            (
                "NFS",
                "DescribeNFSFileShares",
                self._client.describe_nfs_file_shares,
                "NFSFileShareInfoList",
            ),
            (
                "SMB",
                "DescribeSMBFileShares",
                self._client.describe_smb_file_shares,
                "SMBFileShareInfoList",
            ),
        ):
            arns = [s["FileShareARN"] for s in summaries if s.get("FileShareType") == kind]
            for start in range(0, len(arns), _DESCRIBE_BATCH):
                batch = arns[start : start + _DESCRIBE_BATCH]
                response = await self._call(operation, method, {"FileShareARNList": batch})
                shares.extend(_share(kind, info) for info in response.get(result_key, []))
        return [s for s in shares if s.status not in _GONE]

    async def refresh(self, share_arn: str, folders: Sequence[str], *, recursive: bool) -> str:
        """Start a RefreshCache; return its notification id."""
        response = await self._call(
            "RefreshCache",
            self._client.refresh_cache,
            {"FileShareARN": share_arn, "FolderList": list(folders), "Recursive": recursive},
        )
        return str(response.get("NotificationId", ""))

    async def _call(self, what: str, method: Any, request: dict[str, Any]) -> dict[str, Any]:
        with mapped(what, _busy):
            response: dict[str, Any] = await method(**request)
        return response


class GatewayBusy(RetryableError):
    """The gateway is still busy with an earlier operation (it runs one refresh at a time)."""


def _busy(exc: ClientError, what: str) -> GatewayBusy | None:
    if error_code(exc) != _BUSY:
        return None
    error = exc.response.get("Error", {})
    return GatewayBusy(f"{what}: {_BUSY}: {error.get('Message', '')}")


def _share(kind: str, info: dict[str, Any]) -> FileShare:
    return FileShare(
        arn=info["FileShareARN"],
        kind=kind,
        location=info.get("LocationARN", ""),
        status=info.get("FileShareStatus", ""),
        gateway_arn=info.get("GatewayARN", ""),
    )
