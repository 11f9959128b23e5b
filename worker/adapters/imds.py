"""The EC2 instance metadata service (IMDSv2): a session token, then the Spot notice."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

TOKEN_PATH = "/latest/api/token"
SPOT_ACTION_PATH = "/latest/meta-data/spot/instance-action"
TOKEN_TTL_SECONDS = 21600


class TokenExpired(Exception):
    """IMDS answered 401: fetch a new token."""


class Imds:
    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self._base = base_url.rstrip("/")

    async def token(self, *, wait_s: float) -> str | None:
        """A session token, or None when no IMDS answers within `wait_s` seconds."""
        try:
            async with self._session.put(
                self._base + TOKEN_PATH,
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)},
                timeout=aiohttp.ClientTimeout(total=wait_s),
            ) as response:
                if response.status != 200:
                    return None
                return (await response.text()).strip() or None
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None

    async def spot_action(self, token: str, *, wait_s: float) -> dict[str, Any] | None:
        """The pending interruption (`{"action": ..., "time": ...}`), or None when there is none."""
        async with self._session.get(
            self._base + SPOT_ACTION_PATH,
            headers={"X-aws-ec2-metadata-token": token},
            timeout=aiohttp.ClientTimeout(total=wait_s),
        ) as response:
            if response.status == 404:
                return None
            if response.status == 401:
                raise TokenExpired()
            response.raise_for_status()
            text = await response.text()
        try:
            notice = json.loads(text)
        except ValueError:
            return {"action": "unknown", "raw": text[:200]}
        return notice if isinstance(notice, dict) else {"action": "unknown", "raw": text[:200]}
