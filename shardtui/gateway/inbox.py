"""``RunnerInbox``: a runner's command inbox, unbounded with one reader.

An idle ``asyncio.Queue`` costs ~3 KiB per shard (three empty deques and its Event's); this one holds a
deque only while commands wait, and a future only while its reader waits (issue #18).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class RunnerInbox(Generic[T]):
    """``put_nowait`` never blocks nor fails; ``get`` returns items in the order they were put."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[T] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items) if self._items else 0

    def put_nowait(self, item: T, /) -> None:
        items = self._items
        if items is None:
            items = self._items = deque()
        items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

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
