"""The runner's inbox: commands come out in the order they went in, a waiting reader wakes on a put, a
cancelled reader loses nothing, and an emptied inbox keeps no buffer (issue #18: idle memory)."""

from __future__ import annotations

import asyncio

from support.manager import options_for
from support.waiting import eventually

from shardtui.gateway.inbox import RunnerInbox
from shardtui.gateway.manager import ShardManager
from shardtui.gateway.messages import ShardRunnerMessage
from shardtui.gateway.messenger import ShardMessenger
from shardtui.gateway.models import ShardId


async def test_items_come_out_in_order_and_an_emptied_inbox_holds_no_buffer() -> None:
    inbox: RunnerInbox[int] = RunnerInbox()
    for n in range(5):
        inbox.put_nowait(n)
    assert len(inbox) == 5
    assert [await inbox.get() for _ in range(5)] == [0, 1, 2, 3, 4]
    assert len(inbox) == 0
    assert inbox._items is None and inbox._waiter is None


async def test_a_waiting_reader_wakes_on_a_put() -> None:
    inbox: RunnerInbox[str] = RunnerInbox()
    reader = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not reader.done()
    inbox.put_nowait("close")
    inbox.put_nowait("restart")
    assert await reader == "close"
    assert await inbox.get() == "restart"


async def test_a_cancelled_reader_loses_nothing() -> None:
    inbox: RunnerInbox[str] = RunnerInbox()
    reader = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    assert reader.cancelled()
    inbox.put_nowait("status")
    assert await inbox.get() == "status"


async def test_a_messenger_puts_on_the_inbox_without_waiting() -> None:
    inbox: RunnerInbox[object] = RunnerInbox()
    messenger = ShardMessenger(ShardId(0), inbox)
    messenger.send(ShardRunnerMessage.Restart())
    messenger.send(ShardRunnerMessage.Close(1000, "bye"))
    first, second = await inbox.get(), await inbox.get()
    assert isinstance(first, ShardRunnerMessage.Restart)
    assert isinstance(second, ShardRunnerMessage.Close)


async def test_a_consumer_gets_every_item_in_order_from_the_loop_not_from_the_put() -> None:
    inbox: RunnerInbox[int] = RunnerInbox()
    inbox.put_nowait(0)  # waiting before there is a consumer
    got: list[int] = []
    inbox.consume(got.append)
    inbox.put_nowait(1)
    inbox.put_nowait(2)
    assert got == []  # handed over by a loop callback, never inside put_nowait's caller
    await asyncio.sleep(0)
    assert got == [0, 1, 2]
    assert inbox._items is None

    inbox.consume(None)
    inbox.put_nowait(3)
    await asyncio.sleep(0)
    assert got == [0, 1, 2] and len(inbox) == 1  # kept for the next consumer
    assert await inbox.get() == 3


async def test_a_consumer_that_stops_midway_leaves_the_rest_waiting() -> None:
    inbox: RunnerInbox[str] = RunnerInbox()
    got: list[str] = []

    def take(item: str) -> None:
        got.append(item)
        if item == "close":
            inbox.consume(None)

    inbox.consume(take)
    for item in ("status", "close", "restart"):
        inbox.put_nowait(item)
    await asyncio.sleep(0)
    assert got == ["status", "close"] and len(inbox) == 1


async def test_a_connected_idle_shard_runs_one_task_and_still_takes_commands(sandbox_factory) -> None:
    sandbox = await sandbox_factory(guilds=2, shards=2, max_concurrency=2, heartbeat_interval_ms=41_250)
    before = asyncio.all_tasks()
    manager = ShardManager(options_for(sandbox, shard_total=2, max_concurrency=2))
    await manager.initialize()
    try:
        assert await manager.wait_until_connected(timeout=10)
        await asyncio.sleep(0.05)
        shard_tasks = sorted(
            t.get_name()
            for t in asyncio.all_tasks() - before
            if t.get_name().startswith(("shard-", "shardtui-shard-"))
        )
        # Its run() and nothing else running: no inbox reader, no timer task.
        assert shard_tasks == ["shardtui-shard-0", "shardtui-shard-1"], shard_tasks
        info = manager.runners[ShardId(1)]
        manager.messenger(ShardId(1)).send(ShardRunnerMessage.Restart())
        await eventually(lambda: info.resumes >= 1, within=10)
    finally:
        await manager.shutdown_all()
