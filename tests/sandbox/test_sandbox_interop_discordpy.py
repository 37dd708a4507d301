"""discord.py 2.7 (AutoShardedClient, 2 shards) against the sandbox: READY, guilds, heartbeats, resumes."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict

import pytest

discord = pytest.importorskip("discord")
yarl = pytest.importorskip("yarl")

WAIT = 10.0


class SandboxBot(discord.AutoShardedClient):
    def __init__(self, identify_gap: float) -> None:
        super().__init__(intents=discord.Intents.default(), shard_count=2, guild_ready_timeout=0.2)
        self.identify_gap = identify_gap
        self.ready_shards: set[int] = set()
        self.resumed: dict[int, int] = defaultdict(int)
        self.changed = asyncio.Event()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # discord.py waits 5 s by default; the sandbox's identify window is much shorter.
        if not initial:
            await asyncio.sleep(self.identify_gap)

    async def on_shard_ready(self, shard_id: int) -> None:
        self.ready_shards.add(shard_id)
        self.changed.set()

    async def on_shard_resumed(self, shard_id: int) -> None:
        self.resumed[shard_id] += 1
        self.changed.set()


async def wait_for(bot: SandboxBot, predicate, what: str) -> None:
    async def loop() -> None:
        while not predicate():
            bot.changed.clear()
            await bot.changed.wait()

    try:
        await asyncio.wait_for(loop(), WAIT)
    except TimeoutError:
        pytest.fail(f"discord.py never got to: {what}")


@pytest.fixture
async def discordpy(sandbox_factory, monkeypatch):
    sandbox = await sandbox_factory(guilds=8, shards=2, heartbeat_interval_ms=500, identify_window=0.2)
    # discord.py's seams: every REST route is built on Route.BASE; with an explicit shard_count the
    # gateway url comes from DiscordWebSocket.DEFAULT_GATEWAY instead of /gateway/bot.
    monkeypatch.setattr(discord.http.Route, "BASE", sandbox.rest_url)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(sandbox.gateway_url))
    bot = SandboxBot(identify_gap=0.3)
    runner = asyncio.create_task(bot.start(sandbox.token))
    try:
        yield sandbox, bot, runner
    finally:
        await bot.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(runner, 5.0)


async def test_discordpy_connects_two_shards_and_gets_every_guild(discordpy):
    sandbox, bot, runner = discordpy
    await wait_for(bot, lambda: bot.ready_shards == {0, 1} or runner.done(), "both shards ready")
    assert not runner.done(), runner.exception()
    assert {g.id for g in bot.guilds} == set(sandbox.guild_ids)
    assert {g.shard_id for g in bot.guilds} == {0, 1}
    for guild in bot.guilds:
        assert guild.shard_id == (guild.id >> 22) % 2
    stats = sandbox.stats()
    assert stats["identify_violations"] == 0
    assert stats["shards"]["0"]["identifies"] == 1 and stats["shards"]["1"]["identifies"] == 1
    # discord.py picks zstd-stream whenever the zstandard module is importable (it is: a dependency).
    assert stats["connections_by_compression"] == {"zstd-stream": 2}
    # Heartbeats are answered: discord.py measures a latency from the ACKs.
    await wait_for(
        bot,
        lambda: all(sandbox.stats()["shards"][s]["heartbeats"] >= 2 for s in "01") or _tick(bot),
        "two heartbeats per shard",
    )
    assert all(latency < 5 for _, latency in bot.latencies)


def _tick(bot: SandboxBot) -> bool:
    # Wake the waiter periodically: heartbeats do not fire discord.py events.
    asyncio.get_running_loop().call_later(0.1, bot.changed.set)
    return False


async def test_discordpy_resumes_after_op7_and_after_a_dropped_connection(discordpy):
    sandbox, bot, runner = discordpy
    await wait_for(bot, lambda: bot.ready_shards == {0, 1} or runner.done(), "both shards ready")
    assert sandbox.inject("reconnect", 0) == 1
    await wait_for(bot, lambda: bot.resumed[0] == 1, "resume of shard 0 after op 7")
    assert sandbox.inject("drop", 1) == 1
    await wait_for(bot, lambda: bot.resumed[1] == 1, "resume of shard 1 after a dropped connection")
    stats = sandbox.stats()
    assert stats["shards"]["0"]["resumes"] == 1 and stats["shards"]["1"]["resumes"] == 1
    assert stats["shards"]["0"]["identifies"] == 1 and stats["shards"]["1"]["identifies"] == 1
    assert stats["identify_violations"] == 0 and stats["command_violations"] == 0
    assert not runner.done()
