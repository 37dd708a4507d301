"""``RunnerInbox``: a runner's command inbox, unbounded with one reader.

An idle ``asyncio.Queue`` costs ~3 KiB per shard (three empty deques and its Event's); this one holds a
deque only while commands wait, and a future only while its reader waits (issue #18). With a consumer
(:meth:`RunnerInbox.consume`) it needs no reader task at all: each put schedules one loop callback that
hands the waiting items over, so an idle shard keeps no task, coroutine or future for its commands.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class RunnerInbox(Generic[T]):
    """``put_nowait`` never blocks nor fails; ``get`` returns items in the order they were put."""

    __slots__ = ("_consumer", "_items", "_scheduled", "_waiter")

    def __init__(self) -> None:
        self._items: deque[T] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._consumer: Callable[[T], None] | None = None
        self._scheduled = False

    def __len__(self) -> int:
        return len(self._items) if self._items else 0

    def put_nowait(self, item: T, /) -> None:
        items = self._items
        if items is None:
            items = self._items = deque()
        items.append(item)
        if self._consumer is not None:
            self._schedule()
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def consume(self, consumer: Callable[[T], None] | None) -> None:
        """Hand every item, in order, to ``consumer`` from the event loop (never from inside
        ``put_nowait``), those already waiting first. None stops: later items wait for the next
        consumer or :meth:`get`. Put from the event loop's thread while a consumer is set."""
        self._consumer = consumer
        if consumer is not None and self._items:
            self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        while (consumer := self._consumer) is not None and (items := self._items):
            item = items.popleft()
            if not items:
                self._items = None
            consumer(item)

    async def get(self) -> T:
        while not self._items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        items = self._items
        item = items.popleft()
        if not items:
            self._items = None  # an empty deque is 0.75 KiB: none kept between commands
        return item
