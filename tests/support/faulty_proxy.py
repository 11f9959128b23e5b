"""An HTTP proxy on loopback in front of an AWS endpoint that can misbehave on demand.

- `throttle(fraction, seed)`: answer that share of requests the way AWS throttles: JSON
  protocols (SQS, DynamoDB: `X-Amz-Target`) get HTTP 400 `ThrottlingException`; REST
  protocols (S3) get HTTP 503 `SlowDown`. Deterministic for a seed.
- `outage()`: drop every connection without an answer, as a crashed or restarting server
  does, until `recover()`.
- `signatures`: who signed each request (target, Authorization, security token).
- `answer`: a function of (X-Amz-Target, body) that returns a canned JSON answer for the
  requests it wants to answer itself (None for the rest), as an AWS service would answer.
Everything else is forwarded unchanged, so the worker still talks to the real moto server.
"""

from __future__ import annotations

import http.client
import random
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from tests.support.loopback import LoopbackServer

_SIGNATURE_HEADERS = ("X-Amz-Target", "Authorization", "X-Amz-Security-Token")
# (X-Amz-Target, request body) -> (HTTP status, JSON body) to answer with, or None to forward.
Answer = Callable[[str, bytes], tuple[int, bytes] | None]
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


class FaultyProxy(LoopbackServer):
    def __init__(self, upstream: str, *, answer: Answer | None = None) -> None:
        parts = urlsplit(upstream)
        self.answer = answer
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._rng = random.Random(0)
        self._throttle = 0.0
        self._down = False
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        # (X-Amz-Target, Authorization, X-Amz-Security-Token) of every request, in order.
        self.signatures: list[tuple[str, str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner._handle(self)

            do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

        super().__init__(Handler)

    def throttle(self, fraction: float, seed: int = 0) -> None:
        with self._lock:
            self._throttle = fraction
            self._rng = random.Random(seed)

    def outage(self) -> None:
        self._down = True

    def recover(self) -> None:
        self._down = False

    def _decide(self) -> str:
        if self._down:
            return "dropped"
        with self._lock:
            return "throttled" if self._rng.random() < self._throttle else "forwarded"

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        body = _read_body(request)
        headers = request.headers
        self.signatures.append(
            tuple(headers.get(name, "") for name in _SIGNATURE_HEADERS)  # type: ignore[arg-type]
        )
        verdict = self._decide()
        self.counts[verdict] += 1
        if verdict == "dropped":
            request.close_connection = True
            request.connection.close()
            return
        if verdict == "throttled":
            _send_throttle(request)
            return
        canned = self.answer(headers.get("X-Amz-Target", ""), body) if self.answer else None
        if canned is not None:
            self.counts["answered"] += 1
            _send_json(request, *canned)
            return
        upstream = http.client.HTTPConnection(*self._upstream, timeout=60)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            upstream.request(request.command, request.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            request.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                    request.send_header(key, value)
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            if request.command != "HEAD":
                request.wfile.write(data)
        finally:
            upstream.close()


def _read_body(request: BaseHTTPRequestHandler) -> bytes:
    if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(request.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while request.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(request.rfile.read(size))
            request.rfile.readline()
    length = int(request.headers.get("Content-Length") or 0)
    return request.rfile.read(length) if length else b""


def _send_json(request: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
    request.send_response(status)
    request.send_header("Content-Type", "application/x-amz-json-1.1")
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


def _send_throttle(request: BaseHTTPRequestHandler) -> None:
    if request.headers.get("X-Amz-Target"):
        status = 400
        body = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'
        content_type = "application/x-amz-json-1.0"
        extra = {"x-amzn-query-error": "ThrottlingException;Sender"}
    else:
        status = 503
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>"
        )
        content_type = "application/xml"
        extra = {}
    request.send_response(status)
    request.send_header("Content-Type", content_type)
    request.send_header("Content-Length", str(len(body)))
    for key, value in extra.items():
        request.send_header(key, value)
    request.end_headers()
    request.wfile.write(body)
