"""Free job slots: receivers take slots before receiving, so no message waits in memory."""

from __future__ import annotations

import asyncio


class Slots:
    def __init__(self, total: int) -> None:
        self.total = total
        self._free = total
        self._changed = asyncio.Event()

    @property
    def busy(self) -> int:
        return self.total - self._free

    async def take(self, most: int) -> int:
        """Wait for at least one free slot, then take up to `most` of them."""
        while self._free == 0:
            self._changed.clear()
            await self._changed.wait()
        taken = min(most, self._free)
        self._free -= taken
        return taken

    def give(self, count: int) -> None:
        if count:
            self._free += count
            self._changed.set()
