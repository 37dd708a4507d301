"""wait_for and cancel_and_wait never lose a cancellation (Python 3.11's asyncio.wait_for does when the
cancel lands in the same loop iteration as the awaited event: a fleet publisher stopped that way kept
publishing and its close() never returned)."""

from __future__ import annotations

import asyncio

import pytest

from shardtui.gateway.aio import cancel_and_wait, run_to_end, wait_for


async def cancel_as_the_event_fires(offset: int) -> asyncio.Task[None]:
    """A task waiting on an event through wait_for, cancelled ``offset`` loop iterations after the
    event is set; returns the finished task."""
    event = asyncio.Event()

    async def waiter() -> None:
        await wait_for(event.wait(), 10)
        await asyncio.sleep(3600)  # a lost cancellation would leave the task here

    task = asyncio.create_task(waiter())
    for _ in range(2):
        await asyncio.sleep(0)
    event.set()
    for _ in range(offset):
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    return task


@pytest.mark.parametrize("offset", range(6))
async def test_a_cancellation_landing_with_the_event_is_kept(offset: int) -> None:
    task = await cancel_as_the_event_fires(offset)
    assert task.done() and task.cancelled()


async def test_wait_for_times_out_and_returns_results() -> None:
    with pytest.raises(TimeoutError):
        await wait_for(asyncio.Event().wait(), 0.01)
    assert await wait_for(asyncio.sleep(0, result=7), 5) == 7
    assert await wait_for(asyncio.sleep(0, result=8), None) == 8


async def test_cancel_and_wait_ends_the_task_and_keeps_the_callers_cancellation() -> None:
    stopping = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            stopping.set()
            await asyncio.sleep(0.05)  # cleanup that takes a moment

    worker = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    await cancel_and_wait(worker)
    assert worker.cancelled()

    # A caller cancelled while it waits for the worker to stop is cancelled too, not let through.
    worker = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    went_on = []

    async def closer() -> None:
        await cancel_and_wait(worker)
        went_on.append(True)

    stopping.clear()
    caller = asyncio.create_task(closer())
    await stopping.wait()
    caller.cancel()
    await asyncio.wait({caller, worker}, timeout=5)
    assert caller.cancelled() and not went_on
    assert worker.cancelled()


async def test_run_to_end_finishes_a_cleanup_the_caller_is_cancelled_twice_in() -> None:
    steps: list[str] = []

    async def cleanup() -> str:
        for step in ("shards", "fleet", "sandbox"):
            await asyncio.sleep(0.02)
            steps.append(step)
        return "closed"

    async def owner() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await run_to_end(cleanup())

    task = asyncio.create_task(owner())
    await asyncio.sleep(0)
    task.cancel()  # the owner starts cleaning up ...
    await asyncio.sleep(0.01)
    task.cancel()  # ... and is cancelled again meanwhile (Textual does this to a worker)
    await asyncio.wait({task}, timeout=5)
    assert task.cancelled()
    assert steps == ["shards", "fleet", "sandbox"]
    assert await run_to_end(asyncio.sleep(0, result="done")) == "done"
