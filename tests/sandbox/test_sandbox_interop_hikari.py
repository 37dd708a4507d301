"""hikari 2.7 (GatewayBot, 2 shards) runs against the sandbox: READY, guilds, heartbeats, resumes."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict

import pytest

hikari = pytest.importorskip("hikari")

WAIT = 15.0


class Watch:
    def __init__(self, bot) -> None:
        self.ready: set[int] = set()
        self.resumed: dict[int, int] = defaultdict(int)
        self.guilds: set[int] = set()
        self.changed = asyncio.Event()
        bot.subscribe(hikari.ShardReadyEvent, self.on_ready)
        bot.subscribe(hikari.ShardResumedEvent, self.on_resumed)
        bot.subscribe(hikari.GuildAvailableEvent, self.on_guild)

    async def on_ready(self, event) -> None:
        self.ready.add(event.shard.id)
        self.changed.set()

    async def on_resumed(self, event) -> None:
        self.resumed[event.shard.id] += 1
        self.changed.set()

    async def on_guild(self, event) -> None:
        self.guilds.add(int(event.guild_id))
        self.changed.set()

    async def until(self, predicate, what: str) -> None:
        async def loop() -> None:
            while not predicate():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    # Heartbeats fire no hikari event: re-check now and then.
                    await asyncio.wait_for(self.changed.wait(), 0.1)

        try:
            await asyncio.wait_for(loop(), WAIT)
        except TimeoutError:
            pytest.fail(f"hikari never got to: {what}")


@pytest.fixture
async def hikari_bot(sandbox_factory):
    # hikari starts shards in windows of max_concurrency ids, 5 s apart: one window for both shards.
    sandbox = await sandbox_factory(
        guilds=8, shards=2, heartbeat_interval_ms=500, identify_window=0.2, max_concurrency=2
    )
    bot = hikari.GatewayBot(
        sandbox.token,
        rest_url=sandbox.rest_url,
        intents=hikari.Intents.ALL_UNPRIVILEGED,
        banner=None,
        suppress_optimization_warning=True,
        logs="CRITICAL",
    )
    watch = Watch(bot)
    try:
        await asyncio.wait_for(bot.start(shard_count=2, check_for_updates=False), WAIT)
        yield sandbox, bot, watch
    finally:
        if bot.is_alive:
            await asyncio.wait_for(bot.close(), WAIT)


async def test_hikari_connects_two_shards_and_gets_every_guild(hikari_bot):
    sandbox, bot, watch = hikari_bot
    await watch.until(lambda: watch.ready == {0, 1}, "both shards ready")
    await watch.until(lambda: watch.guilds == set(sandbox.guild_ids), "every guild available")
    stats = sandbox.stats()
    assert stats["identify_violations"] == 0
    assert stats["shards"]["0"]["identifies"] == 1 and stats["shards"]["1"]["identifies"] == 1
    # hikari uses zstd-stream where Python has a zstd module (3.14 / backports.zstd), else zlib-stream.
    used = stats["connections_by_compression"]
    assert sum(used.values()) == 2 and set(used) <= {"zlib-stream", "zstd-stream"}
    await watch.until(
        lambda: all(sandbox.stats()["shards"][s]["heartbeats"] >= 2 for s in "01"), "two heartbeats per shard"
    )
    assert all(shard.heartbeat_latency < 5 for shard in bot.shards.values())


async def test_hikari_resumes_after_op7_and_after_a_dropped_connection(hikari_bot):
    sandbox, _bot, watch = hikari_bot
    await watch.until(lambda: watch.ready == {0, 1}, "both shards ready")
    assert sandbox.inject("reconnect", 0) == 1
    await watch.until(lambda: watch.resumed[0] == 1, "resume of shard 0 after op 7")
    assert sandbox.inject("drop", 1) == 1
    await watch.until(lambda: watch.resumed[1] == 1, "resume of shard 1 after a dropped connection")
    stats = sandbox.stats()
    assert stats["shards"]["0"]["resumes"] == 1 and stats["shards"]["1"]["resumes"] == 1
    assert stats["shards"]["0"]["identifies"] == 1 and stats["shards"]["1"]["identifies"] == 1
    assert stats["identify_violations"] == 0 and stats["command_violations"] == 0
