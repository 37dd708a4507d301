"""A virtual clock for the gate, queuer and health tests: time moves only when a test says so."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class FakeClock:
    """Implements ``shardtui.gateway.gate.Clock``; ``sleep`` parks until ``advance`` passes its deadline."""

    def __init__(self, wall_start: float = 1_800_000_000.0) -> None:
        self._now = 0.0
        self._wall_start = wall_start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._wall_start + self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), future))
        await future

    @staticmethod
    async def settle() -> None:
        """Let every ready task run until nothing more happens without time moving."""
        for _ in range(20):
            await asyncio.sleep(0)

    def pending_sleepers(self) -> int:
        return sum(1 for _, _, future in self._sleepers if not future.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking sleepers in deadline order."""
        target = self._now + seconds
        await self.settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            if future.done():
                continue
            self._now = max(self._now, deadline)
            future.set_result(None)
            await self.settle()
        self._now = target
        await self.settle()

    async def run_until(self, predicate, step: float = 0.01, limit: float = 100_000.0) -> None:
        """Advance in ``step`` increments until ``predicate()`` holds (or fail after ``limit`` seconds)."""
        start = self._now
        await self.settle()
        while not predicate():
            if self._now - start > limit:
                raise AssertionError(f"condition not reached within {limit} virtual seconds")
            await self.advance(step)
