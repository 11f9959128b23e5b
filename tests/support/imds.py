"""A local HTTP endpoint speaking IMDSv2 for the Spot notice: token first, then the notice."""

from __future__ import annotations

import json
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.loopback import LoopbackServer


class FakeImds(LoopbackServer):
    """Answers PUT /latest/api/token and GET .../spot/instance-action (404 until announced)."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex
        self.notice: dict[str, Any] | None = None
        self.polls = 0
        self.unauthorized = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_PUT(self) -> None:
                if self.path == "/latest/api/token" and self.headers.get(
                    "X-aws-ec2-metadata-token-ttl-seconds"
                ):
                    self._send(200, owner.token)
                else:
                    self._send(400, "")

            def do_GET(self) -> None:
                if self.headers.get("X-aws-ec2-metadata-token") != owner.token:
                    owner.unauthorized += 1
                    self._send(401, "")
                elif self.path == "/latest/meta-data/spot/instance-action":
                    owner.polls += 1
                    if owner.notice is None:
                        self._send(404, "Not Found")
                    else:
                        self._send(200, json.dumps(owner.notice))
                else:
                    self._send(404, "Not Found")

            def _send(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)

    def announce(self, action: str = "terminate", time: str = "2026-11-22T12:00:00Z") -> None:
        self.notice = {"action": action, "time": time}
