"""A pass-through HTTP proxy in front of moto: counts AWS requests by target, can hold some.

Workers reach it through the standard AWS_ENDPOINT_URL variables, so nothing in the worker
knows it is there. Counting at the wire gives DynamoDB and SQS requests per change for the
bench; holding a request (never answering it) puts a worker exactly between two calls, where
the test can kill it.
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from tests.support.loopback import LoopbackServer

# (X-Amz-Target, body) -> hold this request?
HoldRule = Callable[[str, bytes], bool]
UPSTREAM_FAILED = "!upstream-failed"  # counted when moto dropped a request (answered 502)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection"}


class AwsProxy(LoopbackServer):
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.counts: Counter[str] = Counter()
        self._hold: HoldRule | None = None
        self.held = threading.Event()  # set once a request was held
        self._release = threading.Event()
        self._lock = threading.Lock()
        super().__init__(_handler_for(self))

    def stop(self) -> None:
        self._release.set()  # a held request is answered, so that shutdown does not wait on it
        super().stop()

    def hold(self, rule: HoldRule | None) -> None:
        """Requests matching `rule` get no answer (until `stop`)."""
        self._hold = rule

    def count(self, prefix: str) -> int:
        """Requests whose target starts with `prefix` ('AmazonSQS.', 'DynamoDB_20120810.')."""
        with self._lock:
            return sum(n for target, n in self.counts.items() if target.startswith(prefix))

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()

    def forward(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> Any:
        target = next((v for k, v in headers if k.lower() == "x-amz-target"), "")
        with self._lock:
            self.counts[target or method] += 1
        rule = self._hold
        if rule is not None and rule(target, body):
            self.held.set()
            self._release.wait()
            return None
        connection = http.client.HTTPConnection(*self._upstream, timeout=120)
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                if name.lower() not in _HOP_BY_HOP:
                    connection.putheader(name, value)
            connection.endheaders(body)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        except (OSError, http.client.HTTPException) as exc:
            with self._lock:
                self.counts[UPSTREAM_FAILED] += 1
            return 502, [("Content-Type", "text/plain")], f"proxy: upstream failed: {exc}".encode()
        finally:
            connection.close()


def _handler_for(proxy: AwsProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _relay(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
            answer = proxy.forward(self.command, self.path, list(self.headers.items()), body)
            if answer is None:  # held: drop the connection without an answer
                self.close_connection = True
                return
            status, headers, payload = answer
            try:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in _HOP_BY_HOP | {"content-length", "date", "server"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the client went away (a worker exited or was killed)
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _relay

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
