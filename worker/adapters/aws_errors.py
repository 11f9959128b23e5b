"""AWS failures, whatever the service or the path they came by, sorted into our error tree."""

from __future__ import annotations

import asyncio

from botocore.exceptions import BotoCoreError, ClientError

from worker.errors import PermanentError, RetryableError

# "Slow down": botocore's standard retry mode treats these as throttling.
THROTTLING_CODES = frozenset(
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
        "TransactionInProgressException",
        "KMS.ThrottlingException",
    }
)
# "Try again": the service failed this once.
TRANSIENT_CODES = frozenset(
    {
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
_RETRYABLE_CODES = THROTTLING_CODES | TRANSIENT_CODES


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
