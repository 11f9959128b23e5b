"""The csv job (not built yet: every csv job fails permanently with that reason)."""

from __future__ import annotations

from contextlib import AsyncExitStack

from worker.adapters.aws import AwsClients
from worker.errors import PermanentError
from worker.jobs import Job, MessageFacts
from worker.settings import Settings


class NotBuilt:
    async def __call__(self, job: Job, facts: MessageFacts) -> str | None:
        raise PermanentError("the csv job is not built yet")


async def create(settings: Settings, clients: AwsClients, stack: AsyncExitStack) -> NotBuilt:
    return NotBuilt()
