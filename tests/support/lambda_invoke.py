"""Lambda's Invoke call (`POST /2015-03-31/functions/{name}/invocations`) on loopback: it
records every invocation and answers an asynchronous one (`X-Amz-Invocation-Type: Event`)
with 202 and an empty body, as Lambda does. Point a client at it with AWS_ENDPOINT_URL_LAMBDA.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

from tests.support.loopback import LoopbackServer

_PATH = re.compile(r"/2015-03-31/functions/(?P<name>[^/]+)/invocations")


@dataclass(frozen=True)
class Invocation:
    function: str
    invocation_type: str
    payload: bytes


class LambdaInvoke(LoopbackServer):
    def __init__(self) -> None:
        self.invocations: list[Invocation] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = self.rfile.read(length) if length else b""
                found = _PATH.fullmatch(self.path.split("?")[0])
                if found is None:
                    self._send(404, b'{"Type":"User","message":"no such route"}')
                    return
                kind = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
                owner.invocations.append(Invocation(unquote(found["name"]), kind, payload))
                self._send(202 if kind == "Event" else 200, b"" if kind == "Event" else b"null")

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("x-amzn-RequestId", "stand-in")
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)
