"""Waiting and cancelling without losing a cancellation.

On Python 3.11, ``asyncio.wait_for`` can lose a cancellation that arrives in the same loop iteration as
the thing it waits on completing (CPython issue 86296; 3.12 rebuilt ``wait_for`` on ``asyncio.timeout``).
The cancelled task then carries on as if nothing had happened: a fleet publisher stopped that way kept
publishing its heartbeat, so its process never showed as lost, and the ``close()`` awaiting it never
returned. ``wait_for`` here is 3.12's shape on 3.11 and ``asyncio.wait_for`` itself on 3.12+.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

if sys.version_info >= (3, 12):
    wait_for = asyncio.wait_for  # noqa: TID251 - fixed in 3.12
else:

    async def wait_for(aw: Awaitable[T], timeout: float | None) -> T:  # noqa: ASYNC109 - asyncio.wait_for's signature
        """``await aw``, raising ``TimeoutError`` after ``timeout`` seconds (None: no limit)."""
        if timeout is None:
            return await aw
        async with asyncio.timeout(timeout):
            return await aw


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait until it has finished.

    Awaiting a cancelled task inside ``suppress(CancelledError)`` also swallows a cancellation of the
    caller that lands meanwhile; here the caller's own cancellation still propagates.
    """
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
