"""SQS's JSON protocol spoken directly, for the calls made for every message.

ReceiveMessage, DeleteMessageBatch and ChangeMessageVisibilityBatch carry every message the
worker handles. Through aiobotocore each costs about 0.75 ms of CPU (endpoint rules, hooks,
the generic serializer and parser); here one costs about a quarter of that: a JSON body, a
SigV4 signature (adapters/sigv4.py), one aiohttp POST on a kept-alive connection, json.loads.
Answers have botocore's shapes and failures its exceptions (ClientError with the
query-compatible error code), so adapters/sqs.py treats both paths alike. The endpoint, region
and credentials are the aiobotocore client's own, and retries follow botocore's standard mode.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from botocore.exceptions import ClientError

from worker.adapters.aws_errors import is_throttling, is_transient
from worker.adapters.sigv4 import Credentials, Signer

CONTENT_TYPE = "application/x-amz-json-1.0"
MAX_ATTEMPTS = 4  # botocore's standard mode: the first try and three retries
_MAX_BACKOFF_SECONDS = 20.0

CredentialSource = Callable[[], Awaitable[Credentials]]


class SqsWire:
    """One kept-alive aiohttp session to one SQS endpoint, signing with the client's identity."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        endpoint_url: str,
        region: str,
        credentials: CredentialSource,
        user_agent: str,
    ) -> None:
        parts = urlsplit(endpoint_url)
        self._session = session
        self._url = endpoint_url.rstrip("/") + "/"
        self._host = _host_header(parts.scheme, parts.hostname or "", parts.port)
        self._path = parts.path.rstrip("/") + "/"
        self._signer = Signer("sqs", region)
        self._credentials = credentials
        self._user_agent = user_agent

    async def call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """Send `operation` with `request`; return the answer, retrying what botocore retries."""
        body = json.dumps(request, separators=(",", ":")).encode()
        attempt = 1
        while True:
            try:
                return await self._send(operation, body)
            except ClientError as exc:
                code = str(exc.response["Error"]["Code"])
                status = int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
                throttled = is_throttling(code, status)
                transient = is_transient(code, status)
                if attempt >= MAX_ATTEMPTS or not (throttled or transient):
                    raise
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                if attempt >= MAX_ATTEMPTS:
                    raise ConnectionError(f"{operation} to {self._url}: {exc!r}") from exc
                throttled = False
            await asyncio.sleep(_backoff(attempt, throttled=throttled))
            attempt += 1

    async def _send(self, operation: str, body: bytes) -> dict[str, Any]:
        headers = self._signer.headers(
            await self._credentials(),
            host=self._host,
            path=self._path,
            target=f"AmazonSQS.{operation}",
            content_type=CONTENT_TYPE,
            body=body,
        )
        headers["User-Agent"] = self._user_agent
        async with self._session.post(self._url, data=body, headers=headers) as answer:
            raw = await answer.read()
            if answer.status != 200:
                raise _client_error(operation, answer.status, answer.headers, raw)
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


def _client_error(operation: str, status: int, headers: Any, raw: bytes) -> ClientError:
    """botocore's ClientError for an error answer, with SQS's query-compatible code first."""
    try:
        document = json.loads(raw)
    except ValueError:
        document = {}
    if not isinstance(document, dict):
        document = {}
    query_code = str(headers.get("x-amzn-query-error", "")).split(";")[0]
    shape = str(document.get("__type", "")).rpartition("#")[2]
    code = query_code or shape or str(status)
    message = document.get("message") or document.get("Message")
    message = str(message or raw[:200].decode(errors="replace"))
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {
            "HTTPStatusCode": status,
            "RequestId": headers.get("x-amzn-requestid", ""),
        },
    }
    return ClientError(response, operation)


def _backoff(attempt: int, *, throttled: bool) -> float:
    """botocore's standard-mode delay: full jitter, a second's scale for throttling, 50 ms else."""
    scale = 1.0 if throttled else 0.05
    ceiling: float = min(scale * 2.0 ** (attempt - 1), _MAX_BACKOFF_SECONDS)
    return random.random() * ceiling


def _host_header(scheme: str, hostname: str, port: int | None) -> str:
    default = {"http": 80, "https": 443}.get(scheme)
    host = f"[{hostname}]" if ":" in hostname else hostname
    return host if port is None or port == default else f"{host}:{port}"
