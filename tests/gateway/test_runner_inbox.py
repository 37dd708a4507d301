"""The runner's inbox: commands come out in the order they went in, a waiting reader wakes on a put, a
cancelled reader loses nothing, and an emptied inbox keeps no buffer (issue #18: idle memory)."""

from __future__ import annotations

import asyncio

from shardtui.gateway.inbox import RunnerInbox
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
