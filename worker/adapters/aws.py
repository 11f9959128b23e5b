"""aiobotocore clients and the lean SQS path, created once per process on the exit stack."""

from __future__ import annotations

import asyncio
import platform
import ssl
import urllib.request
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import aiobotocore
import aiohttp
import botocore
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import NoCredentialsError

from worker.adapters.sqs_wire import SqsWire

if TYPE_CHECKING:  # the stubs are for the type checker only; nothing imports them at run time
    from aiobotocore.credentials import AioCredentials
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_storagegateway import StorageGatewayClient

USER_AGENT = (
    f"spotdrain aiobotocore/{aiobotocore.__version__} botocore/{botocore.__version__} "
    f"Python/{platform.python_version()}"
)
# SQS requests are built only by adapters/sqs.py from typed values, on the hot path of every
# message: botocore's validation of them (about 5% of a call's CPU) finds nothing there.
_SERVICE_CONFIG = {"sqs": AioConfig(parameter_validation=False)}


class AwsClients:
    """Lazily opened aiobotocore clients, one per service, closed with the exit stack."""

    def __init__(self, stack: AsyncExitStack, *, region: str | None, max_connections: int) -> None:
        self._stack = stack
        self._session = get_session()
        self._region = region
        self._config = AioConfig(
            retries={"mode": "standard", "total_max_attempts": 4},
            max_pool_connections=max_connections,
            connect_timeout=5,
            read_timeout=60,
            tcp_keepalive=True,
            # botocore rebuilds its default User-Agent twice per request (about a tenth of an
            # SQS call's CPU); a fixed string takes its cheap path.
            user_agent=USER_AGENT,
        )
        self._max_connections = max_connections
        self._clients: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        self._sqs_wire: SqsWire | None = None
        # botocore's (refreshable) credentials, once found
        self._credential_source: AioCredentials | None = None

    async def sqs(self) -> SQSClient:
        return cast("SQSClient", await self._get("sqs"))

    async def s3(self) -> S3Client:
        return cast("S3Client", await self._get("s3"))

    async def dynamodb(self) -> DynamoDBClient:
        return cast("DynamoDBClient", await self._get("dynamodb"))

    async def storagegateway(self) -> StorageGatewayClient:
        return cast("StorageGatewayClient", await self._get("storagegateway"))

    async def _get(self, service: str) -> Any:
        """The client for `service`, created on first use and reused for the whole run."""
        client = self._clients.get(service)
        if client is not None:
            return client
        async with self._lock:
            if service not in self._clients:
                extra = _SERVICE_CONFIG.get(service)
                config = self._config.merge(extra) if extra is not None else self._config
                # One path for the typed accessors above; the stubs type only literal names.
                creator = self._session.create_client(  # type: ignore[call-overload]
                    service, region_name=self._region, config=config
                )
                self._clients[service] = await self._stack.enter_async_context(creator)
            return self._clients[service]

    async def sqs_wire(self) -> SqsWire:
        """The lean path for SQS's per-message calls, aimed and signed like the SQS client."""
        if self._sqs_wire is None:
            client = await self.sqs()
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, ssl=self._tls(), keepalive_timeout=30
            )
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=60),
                # Looked up once: aiohttp's trust_env would ask the environment (and ~/.netrc)
                # on a thread twice per request.
                proxy=_proxy_for(client.meta.endpoint_url),
                skip_auto_headers=("User-Agent", "Content-Type"),
            )
            self._stack.push_async_callback(session.close)
            self._sqs_wire = SqsWire(
                session,
                endpoint_url=client.meta.endpoint_url,
                region=client.meta.region_name,
                service_model=client.meta.service_model,
                credentials=self._credentials,
                user_agent=USER_AGENT,
            )
        return self._sqs_wire

    async def _credentials(self) -> ReadOnlyCredentials:
        """The session's credentials, refreshed by botocore when they are about to expire."""
        if self._credential_source is None:
            self._credential_source = await self._session.get_credentials()
            if self._credential_source is None:
                raise NoCredentialsError()
        return await self._credential_source.get_frozen_credentials()

    def _tls(self) -> ssl.SSLContext | bool:
        """AWS_CA_BUNDLE (or ca_bundle in the profile) when set, as for botocore's clients."""
        bundle = self._session.get_config_variable("ca_bundle")
        return ssl.create_default_context(cafile=bundle) if bundle else True


def _proxy_for(url: str) -> str | None:
    """HTTP(S)_PROXY for `url` unless NO_PROXY exempts its host, as botocore decides."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)
