"""SQS's JSON protocol spoken directly, for the calls made for every message.

ReceiveMessage, DeleteMessageBatch and ChangeMessageVisibilityBatch carry every message the
worker handles. Through aiobotocore each costs about 0.75 ms of CPU (endpoint rules, hooks,
the generic serializer and parser); here one costs a fraction of that: a JSON body, one
aiohttp POST on a kept-alive connection, json.loads. What must be exactly the SDK's is the
SDK's own: botocore's SigV4 signer signs each request with the client's credentials, and
botocore's standard retry mode (its retry conditions, its backoff and its retry quota) decides
every retry. Answers have botocore's shapes and failures its exceptions (ClientError with the
query-compatible error code, HTTPClientError when no answer came), so adapters/sqs.py treats
both paths alike.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import ClientError, HTTPClientError
from botocore.model import OperationModel, ServiceModel
from botocore.retries import quota, standard

CONTENT_TYPE = "application/x-amz-json-1.0"
MAX_ATTEMPTS = 4  # the worker's SQS client's own: the first try and three retries
_MAX_BACKOFF_SECONDS = 20

CredentialSource = Callable[[], Awaitable[ReadOnlyCredentials]]


@dataclass(frozen=True)
class _Answer:
    """The parts of an HTTP answer botocore's retry checkers and backoff read."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes


class SqsWire:
    """One kept-alive aiohttp session to one SQS endpoint, signing with the client's identity."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        endpoint_url: str,
        region: str,
        service_model: ServiceModel,
        credentials: CredentialSource,
        user_agent: str,
    ) -> None:
        self._session = session
        self._url = endpoint_url.rstrip("/") + "/"
        self._region = region
        self._service_model = service_model
        self._operations: dict[str, OperationModel] = {}
        self._credentials = credentials
        self._user_agent = user_agent
        # botocore's standard mode, as register_retry_handler assembles it for a client.
        throttling = standard.ThrottlingErrorDetector(standard.RetryEventAdapter())
        self._retry = standard.RetryPolicy(
            retry_checker=standard.StandardRetryConditions(max_attempts=MAX_ATTEMPTS),
            retry_backoff=standard.ExponentialBackoff(
                max_backoff=_MAX_BACKOFF_SECONDS,
                random=random.random,
                service_name="sqs",
                throttling_detector=throttling,
            ),
        )
        self._quota = standard.RetryQuotaChecker(quota.RetryQuota(), throttling)

    async def call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """Send `operation` with `request`; return the answer, retrying what botocore retries."""
        body = json.dumps(request, separators=(",", ":")).encode()
        model = self._operation(operation)
        attempt = 1
        shared: dict[str, Any] = {}  # the call's retry-quota bookkeeping, over its attempts
        while True:
            failure: Exception
            try:
                answer = await self._post(operation, body)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                failure = HTTPClientError(error=exc)  # what aiobotocore raises: transient
                context = standard.RetryContext(
                    attempt, operation_model=model, caught_exception=failure, request_context=shared
                )
            else:
                if answer.status_code == 200:
                    # botocore's after-call hook hands it the request's context dict, as
                    # here; the stubs name a RetryContext.
                    self._quota.release_retry_quota(shared, answer)  # type: ignore[arg-type]
                    return _decode(answer.content)
                error = _client_error(operation, answer)
                failure = error
                context = standard.RetryContext(
                    attempt,
                    operation_model=model,
                    parsed_response=error.response,
                    http_response=answer,
                    request_context=shared,
                )
            if not (self._retry.should_retry(context) and self._quota.acquire_retry_quota(context)):
                raise failure
            await asyncio.sleep(self._retry.compute_retry_delay(context))
            attempt += 1

    def _operation(self, name: str) -> OperationModel:
        model = self._operations.get(name)
        if model is None:
            model = self._operations[name] = self._service_model.operation_model(name)
        return model

    async def _post(self, operation: str, body: bytes) -> _Answer:
        request = AWSRequest(
            method="POST",
            url=self._url,
            data=body,
            headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": f"AmazonSQS.{operation}"},
        )
        SigV4Auth(await self._credentials(), "sqs", self._region).add_auth(request)
        headers = dict(request.headers.items())
        headers["User-Agent"] = self._user_agent
        async with self._session.post(self._url, data=body, headers=headers) as answer:
            raw = await answer.read()
            return _Answer(answer.status, answer.headers, raw)


def _decode(raw: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(raw) if raw else {}
    for message in decoded.get("Messages", ()):  # ReceiveMessage's answer
        _decode_binary_attributes(message)
    return decoded


def _decode_binary_attributes(message: dict[str, Any]) -> None:
    """Base64 message-attribute values as bytes, as botocore hands them out."""
    for value in message.get("MessageAttributes", {}).values():
        if "BinaryValue" in value:
            value["BinaryValue"] = base64.b64decode(value["BinaryValue"])
        if "BinaryListValues" in value:
            value["BinaryListValues"] = [base64.b64decode(v) for v in value["BinaryListValues"]]


def _client_error(operation: str, answer: _Answer) -> ClientError:
    """botocore's ClientError for an error answer, with SQS's query-compatible code first."""
    try:
        document = json.loads(answer.content)
    except ValueError:
        document = {}
    if not isinstance(document, dict):
        document = {}
    query_code = str(answer.headers.get("x-amzn-query-error", "")).split(";")[0]
    shape = str(document.get("__type", "")).rpartition("#")[2]
    code = query_code or shape or str(answer.status_code)
    message = document.get("message") or document.get("Message")
    message = str(message or answer.content[:200].decode(errors="replace"))
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {
            "HTTPStatusCode": answer.status_code,
            "RequestId": answer.headers.get("x-amzn-requestid", ""),
        },
    }
    return ClientError(response, operation)
