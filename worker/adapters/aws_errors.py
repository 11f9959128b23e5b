"""AWS failures, whatever the service or the path they came by, sorted into our error tree.

Every adapter call runs inside `mapped(what)`, which turns any botocore, aiohttp or socket
failure into a RetryableError or a PermanentError naming the call (httpx's
`map_exceptions`, once for all adapters). A call whose answer carries meaning (a missing
queue, a failed condition, a busy gateway) passes a `refine` that recognises it first.

What "worth retrying" means is botocore's own: the throttling and transient checkers of its
standard retry mode decide by error code and HTTP status, so the codes never drift from the
SDK's (ours adds only HTTP 429 and any 5xx, which its transient checker limits to four).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError
from botocore.retries.standard import (
    RetryContext,
    ThrottledRetryableChecker,
    TransientRetryableChecker,
)

from worker.errors import PermanentError, RetryableError

# What an AWS call can raise besides our own errors: the SDK's, the HTTP client's, sockets'.
FAILURES = (ClientError, BotoCoreError, OSError, aiohttp.ClientError, asyncio.TimeoutError)

_THROTTLED = ThrottledRetryableChecker()
_TRANSIENT = TransientRetryableChecker()

# A refine: the error (or None) that a ClientError of one particular call stands for.
Refine = Callable[[ClientError, str], BaseException | None]


@dataclass(frozen=True)
class _Status:
    """The one field of an HTTP response botocore's transient checker reads."""

    status_code: int


def _context(code: str, status: int) -> RetryContext:
    return RetryContext(
        attempt_number=1,
        parsed_response={"Error": {"Code": code}},
        http_response=_Status(status) if status else None,
    )


def error_code(exc: ClientError) -> str:
    """The service's error code of a ClientError ('' when absent)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def short_code(code: str) -> str:
    """`AWS.SimpleQueueService.RequestThrottled` -> `RequestThrottled` (query-compatible SQS)."""
    return code.rsplit(".", 1)[-1]


def is_throttling(code: str, status: int = 0) -> bool:
    """A "slow down" answer: back off longer before the next try."""
    return status == 429 or any(
        _THROTTLED.is_retryable(_context(candidate, 0)) for candidate in {code, short_code(code)}
    )


def is_transient(code: str, status: int = 0) -> bool:
    """A failure of this one attempt (a timeout, a server fault): trying again may work."""
    return status >= 500 or _TRANSIENT.is_retryable(_context(short_code(code), status))


def is_retryable(exc: BaseException) -> bool:
    """Throttling, 5xx and connection trouble are worth retrying; other client errors are not."""
    if isinstance(exc, ClientError):
        code, status = error_code(exc), http_status(exc)
        return is_throttling(code, status) or is_transient(code, status)
    return isinstance(exc, FAILURES)


def translate(exc: BaseException, what: str) -> RetryableError | PermanentError:
    """Turn a botocore/network failure during `what` into our error tree."""
    if isinstance(exc, ClientError):
        detail = f"{what}: {error_code(exc)}: {exc.response.get('Error', {}).get('Message', '')}"
    else:
        detail = f"{what}: {type(exc).__name__}: {exc}"
    return RetryableError(detail) if is_retryable(exc) else PermanentError(detail)


@contextlib.contextmanager
def mapped(what: str, refine: Refine | None = None) -> Iterator[None]:
    """Run one AWS call: its failures leave as our errors, naming `what`."""
    try:
        yield
    except FAILURES as exc:
        error = refine(exc, what) if refine is not None and isinstance(exc, ClientError) else None
        raise (error if error is not None else translate(exc, what)) from exc
