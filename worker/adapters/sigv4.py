"""AWS Signature Version 4 for the JSON-protocol POSTs of adapters/sqs_wire.py.

Only what those requests need: POST to one path with no query string, and the headers
`content-type`, `host`, `x-amz-date`, `x-amz-target` (plus `x-amz-security-token` with
temporary credentials), all signed. botocore's signer does the same in general and costs
several times more per request; tests/unit/test_sigv4.py checks that both give the same
Authorization header.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None


class Signer:
    """Signs requests for one service in one region; caches the day's signing key."""

    def __init__(self, service: str, region: str) -> None:
        self._service = service
        self._region = region
        self._key_for: tuple[str, str] | None = None  # (secret key, date) of `_key`
        self._key = b""

    def headers(
        self,
        credentials: Credentials,
        *,
        host: str,
        path: str,
        target: str,
        content_type: str,
        body: bytes,
        now: datetime | None = None,
    ) -> dict[str, str]:
        """The headers to send, Authorization included, for a POST of `body` to host+path."""
        moment = now or datetime.now(UTC)
        amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
        date = amz_date[:8]
        signed = {
            "content-type": content_type,
            "host": host,
            "x-amz-date": amz_date,
            "x-amz-target": target,
        }
        if credentials.token:
            signed["x-amz-security-token"] = credentials.token
        names = ";".join(sorted(signed))
        canonical = "\n".join(
            (
                "POST",
                quote(path, safe="/~"),
                "",
                "".join(f"{name}:{signed[name]}\n" for name in sorted(signed)),
                names,
                hashlib.sha256(body).hexdigest(),
            )
        )
        scope = f"{date}/{self._region}/{self._service}/aws4_request"
        to_sign = (
            f"{ALGORITHM}\n{amz_date}\n{scope}\n" + hashlib.sha256(canonical.encode()).hexdigest()
        )
        signature = hmac.new(
            self._signing_key(credentials.secret_key, date), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        headers = {
            "Content-Type": content_type,
            "Host": host,
            "X-Amz-Date": amz_date,
            "X-Amz-Target": target,
            "Authorization": (
                f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
                f"SignedHeaders={names}, Signature={signature}"
            ),
        }
        if credentials.token:
            headers["X-Amz-Security-Token"] = credentials.token
        return headers

    def _signing_key(self, secret_key: str, date: str) -> bytes:
        if self._key_for != (secret_key, date):
            key = _hmac(("AWS4" + secret_key).encode(), date)
            for part in (self._region, self._service, "aws4_request"):
                key = _hmac(key, part)
            self._key, self._key_for = key, (secret_key, date)
        return self._key


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()
