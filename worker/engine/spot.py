"""Watch IMDSv2 for an EC2 Spot interruption notice and turn it into a stop request."""

from __future__ import annotations

import asyncio

import aiohttp
import structlog

from worker.adapters.imds import Imds, TokenExpired
from worker.engine.stopping import StopRequest
from worker.settings import Settings

log = structlog.get_logger("worker.engine.spot")

PROBE_TIMEOUT_SECONDS = 1.0


async def watch(settings: Settings, stop: StopRequest) -> None:
    """Poll the notice until it appears (then request a stop) or the task is cancelled.

    `auto` watches only when a token can be had within a second (so on Fargate, with no
    IMDS, it gives up at once); `on` keeps trying even when IMDS does not answer yet.
    """
    if settings.spot_imds == "off":
        return
    async with aiohttp.ClientSession() as session:
        imds = Imds(session, settings.imds_endpoint)
        token = await imds.token(wait_s=PROBE_TIMEOUT_SECONDS)
        if token is None and settings.spot_imds == "auto":
            log.info("spot.imds_unavailable", endpoint=settings.imds_endpoint)
            return
        log.info(
            "spot.watching", endpoint=settings.imds_endpoint, every_s=settings.spot_poll_seconds
        )
        while not stop.requested:
            token = token or await imds.token(wait_s=PROBE_TIMEOUT_SECONDS)
            notice = None
            if token is not None:
                try:
                    notice = await imds.spot_action(token, wait_s=PROBE_TIMEOUT_SECONDS * 2)
                except TokenExpired:
                    token = None
                    continue
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    log.debug("spot.poll_failed", error=str(exc))
            if notice is not None:
                log.warning("spot.interruption_notice", **{k: str(v) for k, v in notice.items()})
                stop.request(f"spot notice: {notice.get('action', 'unknown')}")
                return
            await asyncio.sleep(settings.spot_poll_seconds)
