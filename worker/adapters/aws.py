"""aiobotocore clients, created once per process on the lifecycle's exit stack."""

from __future__ import annotations

import asyncio
import platform
from contextlib import AsyncExitStack
from typing import Any

import aiobotocore
import botocore
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from worker.errors import PermanentError, RetryableError

# Codes that mean "try again later" whatever the service.
_RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "RequestTimeout",
        "RequestTimeoutException",
        "TransactionInProgressException",
        "KMS.ThrottlingException",
    }
)

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
        self._clients: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    async def get(self, service: str) -> Any:
        """The client for `service`, created on first use and reused for the whole run."""
        client = self._clients.get(service)
        if client is not None:
            return client
        async with self._lock:
            if service not in self._clients:
                extra = _SERVICE_CONFIG.get(service)
                config = self._config.merge(extra) if extra is not None else self._config
                creator = self._session.create_client(
                    service, region_name=self._region, config=config
                )
                self._clients[service] = await self._stack.enter_async_context(creator)
            return self._clients[service]


def error_code(exc: ClientError) -> str:
    """The service's error code of a ClientError ('' when absent)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_retryable(exc: BaseException) -> bool:
    """Throttling, 5xx and connection trouble are worth retrying; other client errors are not."""
    if isinstance(exc, ClientError):
        return error_code(exc) in _RETRYABLE_CODES or http_status(exc) >= 500
    return isinstance(exc, BotoCoreError | OSError | asyncio.TimeoutError)


def translate(exc: BaseException, what: str) -> RetryableError | PermanentError:
    """Turn a botocore/network failure during `what` into our error tree."""
    if isinstance(exc, ClientError):
        detail = f"{what}: {error_code(exc)}: {exc.response.get('Error', {}).get('Message', '')}"
    else:
        detail = f"{what}: {type(exc).__name__}: {exc}"
    return RetryableError(detail) if is_retryable(exc) else PermanentError(detail)
