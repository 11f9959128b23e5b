"""The Storage Gateway adapter against the local endpoint, and the endpoint's own fidelity."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import boto3
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from tests.support.storage_gateway import StorageGatewayEndpoint
from worker.adapters.storage_gateway import Gateway
from worker.errors import RetryableError

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture
async def client(gateway: StorageGatewayEndpoint) -> AsyncIterator[Any]:
    config = AioConfig(retries={"mode": "standard", "total_max_attempts": 4})
    async with get_session().create_client(
        "storagegateway",
        region_name="us-east-1",
        endpoint_url=gateway.url,
        config=config,
        **CREDENTIALS,
    ) as sgw:
        yield sgw


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def boto3_client(gateway: StorageGatewayEndpoint) -> Any:
    return boto3.client(
        "storagegateway", region_name="us-east-1", endpoint_url=gateway.url, **CREDENTIALS
    )


@pytest.mark.parametrize(
    "folders",
    [[], [f"f{i}" for i in range(51)], ["x" * 1025]],
    ids=["empty", "51 folders", "long name"],
)
def test_the_endpoint_refuses_a_request_the_api_model_refuses(
    gateway: StorageGatewayEndpoint, folders: list[str]
) -> None:
    share = gateway.add_share("bucket")
    body = json.dumps({"FileShareARN": share, "FolderList": folders}).encode()
    status, answer = gateway.handle(
        "StorageGateway_20130630.RefreshCache",
        "application/x-amz-json-1.1",
        "AWS4-HMAC-SHA256 Credential=x/20250101/us-east-1/storagegateway/aws4_request",
        body,
    )
    assert (status, answer["__type"]) == (400, "ValidationException")
    assert gateway.refreshes() == []


def test_the_endpoint_answers_what_botocore_expects(gateway: StorageGatewayEndpoint) -> None:
    share = gateway.add_share("bucket/in/")
    sgw = boto3_client(gateway)
    listed = sgw.list_file_shares()["FileShareInfoList"]
    described = sgw.describe_nfs_file_shares(FileShareARNList=[share])["NFSFileShareInfoList"]
    refreshed = sgw.refresh_cache(FileShareARN=share, FolderList=["a"], Recursive=False)
    assert [s["FileShareARN"] for s in listed] == [share]
    assert described[0]["LocationARN"] == "arn:aws:s3:::bucket/in/"
    assert refreshed["FileShareARN"] == share and refreshed["NotificationId"]
    assert gateway.refreshes()[0].params == {
        "FileShareARN": share,
        "FolderList": ["a"],
        "Recursive": False,
    }


def test_a_share_running_two_refreshes_is_busy(gateway: StorageGatewayEndpoint) -> None:
    gateway.refresh_seconds = 30
    share = gateway.add_share("bucket")
    sgw = boto3_client(gateway)
    sgw.refresh_cache(FileShareARN=share)
    sgw.refresh_cache(FileShareARN=share)
    with pytest.raises(ClientError) as caught:
        sgw.refresh_cache(FileShareARN=share)
    assert caught.value.response["Error"]["Code"] == "InvalidGatewayRequestException"


async def test_shares_are_listed_across_pages_with_their_locations(
    gateway: StorageGatewayEndpoint, client: Any
) -> None:
    gateway.page_size = 3
    nfs = {gateway.add_share(f"bucket-{i}") for i in range(12)}
    smb = {gateway.add_share("bucket-0/smb/", kind="SMB")}
    shares = await Gateway(client, cache_seconds=60).shares()
    assert {s.arn for s in shares if s.kind == "NFS"} == nfs
    assert {s.arn for s in shares if s.kind == "SMB"} == smb
    assert {s.location for s in shares} >= {"arn:aws:s3:::bucket-0/smb/", "arn:aws:s3:::bucket-11"}
    assert len(gateway.recorded("ListFileShares")) == 5  # 13 shares, 3 a page
    assert len(gateway.recorded("DescribeNFSFileShares")) == 2  # at most 10 ARNs a call


async def test_shares_are_cached_until_they_expire(
    gateway: StorageGatewayEndpoint, client: Any
) -> None:
    gateway.add_share("bucket")
    clock = Clock()
    directory = Gateway(client, cache_seconds=300, clock=clock)
    await directory.shares()
    gateway.add_share("later")
    clock.now = 299
    assert len(await directory.shares()) == 1
    clock.now = 301
    assert len(await directory.shares()) == 2
    assert len(gateway.recorded("ListFileShares")) == 2


async def test_deleting_shares_are_left_out(gateway: StorageGatewayEndpoint, client: Any) -> None:
    gateway.add_share("bucket", status="DELETING")
    assert await Gateway(client, cache_seconds=0).shares() == []


async def test_a_busy_share_is_a_retryable_error(
    gateway: StorageGatewayEndpoint, client: Any
) -> None:
    share = gateway.add_share("bucket")
    gateway.busy(1)
    with pytest.raises(RetryableError, match="InvalidGatewayRequestException"):
        await Gateway(client, cache_seconds=0).refresh(share, ["/"], recursive=False)


async def test_throttling_beyond_the_clients_own_retries_is_a_retryable_error(
    gateway: StorageGatewayEndpoint, client: Any
) -> None:
    share = gateway.add_share("bucket")
    gateway.throttle(4)
    with pytest.raises(RetryableError, match="ThrottlingException"):
        await Gateway(client, cache_seconds=0).refresh(share, ["/"], recursive=False)


async def test_brief_throttling_is_absorbed_by_the_clients_retries(
    gateway: StorageGatewayEndpoint, client: Any
) -> None:
    share = gateway.add_share("bucket")
    gateway.throttle(1)
    notification = await Gateway(client, cache_seconds=0).refresh(
        share, ["a", "a/b"], recursive=False
    )
    assert notification
    assert gateway.refreshes()[0].params["FolderList"] == ["a", "a/b"]
