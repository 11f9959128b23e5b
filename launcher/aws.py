"""boto3 clients for the launcher, and the few facts about AWS errors that decide a retry."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.retries.standard import (
    RetryContext,
    ThrottledRetryableChecker,
    TransientRetryableChecker,
)

if TYPE_CHECKING:  # the stubs are a test dependency only
    from types_boto3_dynamodb import DynamoDBClient
    from types_boto3_ecs import ECSClient
    from types_boto3_sqs import SQSClient

# botocore still defaults to the `legacy` retry mode; `standard` retries throttling and 5xx
# answers with backoff before an error reaches our own fallback logic.
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=5,
    read_timeout=20,
)

# Throttling and transient failures as botocore's standard retry mode decides them (its own
# checkers, so the codes never drift from the SDK's); server faults besides, by their codes
# (a batch entry's failure has no HTTP status).
_THROTTLED = ThrottledRetryableChecker()
_TRANSIENT = TransientRetryableChecker()
_SERVER_CODES = frozenset(
    {"InternalError", "InternalFailure", "ServiceUnavailable", "ServerException"}
)


def _checks(checker: ThrottledRetryableChecker | TransientRetryableChecker, code: str) -> bool:
    return bool(checker.is_retryable(RetryContext(1, parsed_response={"Error": {"Code": code}})))


def clients() -> tuple[SQSClient, ECSClient]:
    """An SQS and an ECS client, made once per Lambda container (region from the environment)."""
    return boto3.client("sqs", config=CLIENT_CONFIG), boto3.client("ecs", config=CLIENT_CONFIG)


def dynamodb_client() -> DynamoDBClient:
    """The DynamoDB client of the sizing lease (only when FLEET_LOCK_TABLE is set)."""
    return boto3.client("dynamodb", config=CLIENT_CONFIG)


def error_code(exc: BaseException) -> str:
    """The short error code of a ClientError (`AWS.SimpleQueueService.X` -> `X`), else ''."""
    if not isinstance(exc, ClientError):
        return ""
    return short_code(str(exc.response.get("Error", {}).get("Code", "")))


def short_code(code: str) -> str:
    return code.rsplit(".", 1)[-1]


def is_throttling(exc: BaseException) -> bool:
    return _checks(_THROTTLED, error_code(exc))


def is_transient(exc: BaseException) -> bool:
    """Throttling, a 5xx answer, or no answer at all (a BotoCoreError): trying again may work."""
    if not isinstance(exc, ClientError):
        return True
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return is_transient_code(error_code(exc)) or status >= 500


def is_transient_code(code: str) -> bool:
    """An error code (as in a batch entry's failure) that names throttling or a server fault."""
    short = short_code(code)
    return _checks(_THROTTLED, short) or _checks(_TRANSIENT, short) or short in _SERVER_CODES


def describe(exc: BaseException) -> str:
    """`Code: message` for a ClientError, `Type: text` for anything else."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'ClientError')}: {error.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


def backoff(attempt: int) -> float:
    """Full jitter from 0.1 s, doubling, at most 2 s: a Lambda has little time to spare."""
    return random.uniform(0, min(2.0, 0.1 * 2**attempt))
