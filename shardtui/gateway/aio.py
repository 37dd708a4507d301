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
    """Cancel ``task`` and wait until it has finished; a failure other than the cancellation is raised.

    Awaiting the task inside ``suppress(CancelledError)`` would also swallow a cancellation of the
    caller that lands meanwhile. ``asyncio.wait`` never raises the task's CancelledError and lets the
    caller's own through, including in cleanup code that runs after the caller was cancelled.
    """
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        failure = task.exception()
        if failure is not None:
            raise failure


async def run_to_end(aw: Awaitable[T]) -> T:
    """Await ``aw`` in a task of its own and let it finish even if the caller is cancelled meanwhile,
    then pass the caller's cancellation on. For cleanups that must not stop half-way (closing sessions
    and sockets): Textual, for one, cancels a worker again while it is already cleaning up."""
    task = asyncio.ensure_future(aw)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return task.result()
