"""boto3 clients for the operator's command, made once, and AWS failures as one line."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:  # the stubs are a test dependency only
    from types_boto3_cloudwatch import CloudWatchClient
    from types_boto3_ecs import ECSClient
    from types_boto3_lambda import LambdaClient
    from types_boto3_sqs import SQSClient

# Standard mode retries throttling and 5xx answers with backoff; an operator waits gladly.
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30
)


class Clients:
    """One boto3 session; each client made on first use. Endpoints, region and credentials
    come from the standard variables (AWS_ENDPOINT_URL_<SERVICE> too) and the chain."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None
        self._session = boto3.session.Session(region_name=region)

    @cached_property
    def sqs(self) -> SQSClient:
        return self._session.client("sqs", config=CLIENT_CONFIG)

    @cached_property
    def ecs(self) -> ECSClient:
        return self._session.client("ecs", config=CLIENT_CONFIG)

    @cached_property
    def cloudwatch(self) -> CloudWatchClient:
        return self._session.client("cloudwatch", config=CLIENT_CONFIG)

    @cached_property
    def lambda_(self) -> LambdaClient:
        return self._session.client("lambda", config=CLIENT_CONFIG)


def error_code(exc: ClientError) -> str:
    """The short error code (`AWS.SimpleQueueService.NonExistentQueue` -> `NonExistentQueue`)."""
    return str(exc.response.get("Error", {}).get("Code", "")).rsplit(".", 1)[-1]


def describe(exc: ClientError | BotoCoreError) -> str:
    """`ReceiveMessage failed: Code: message` on one line, whatever the service answered."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        text = f"{exc.operation_name} failed: {error.get('Code', '')}: {error.get('Message', '')}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split()).rstrip(": ")
