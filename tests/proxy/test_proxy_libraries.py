"""Real bot libraries through the proxy (only their REST base pointed at it: the gateway url comes from
the proxy's /gateway/bot): discord.py's AutoShardedClient and hikari's GatewayBot get READY and every
guild on 2 shards, and a restarted bot is served from the cache without a new upstream session."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
from support.waiting import eventually

discord = pytest.importorskip("discord")
hikari = pytest.importorskip("hikari")

WAIT = 20.0


class ProxiedBot(discord.AutoShardedClient):
    def __init__(self) -> None:
        # No shard_count: the count and the gateway url come from the proxy's /gateway/bot.
        super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.2)
        self.ready_shards: set[int] = set()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None  # a downstream IDENTIFY costs no upstream identify: nothing to pace

    async def on_shard_ready(self, shard_id: int) -> None:
        self.ready_shards.add(shard_id)


async def run_discordpy(sandbox, rig, monkeypatch) -> tuple[ProxiedBot, asyncio.Task]:
    monkeypatch.setattr(discord.http.Route, "BASE", rig.proxy.rest_url)
    bot = ProxiedBot()
    runner = asyncio.create_task(bot.start(sandbox.token))
    await eventually(lambda: bot.ready_shards == {0, 1} or runner.done(), within=WAIT)
    assert not runner.done(), runner.exception()
    return bot, runner


async def stop(bot, runner) -> None:
    await bot.close()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(runner, 5.0)


async def test_discordpy_gets_every_guild_and_a_restart_costs_no_upstream_session(
    sandbox_factory, rigs, monkeypatch, caplog
) -> None:
    sandbox = await sandbox_factory(shards=2, guilds=8)
    rig = await rigs(sandbox)
    starts = sandbox.stats()["session_starts_used"]
    caplog.set_level(logging.WARNING, logger="discord")
    bot, runner = await run_discordpy(sandbox, rig, monkeypatch)
    try:
        assert {g.id for g in bot.guilds} == set(sandbox.guild_ids)
        assert {g.shard_id for g in bot.guilds} == {0, 1}
        assert bot.shard_count == 2
    finally:
        await stop(bot, runner)
    assert not [r for r in caplog.records if r.name.startswith("discord.gateway")], caplog.text

    again, runner = await run_discordpy(sandbox, rig, monkeypatch)
    try:
        assert {g.id for g in again.guilds} == set(sandbox.guild_ids)
    finally:
        await stop(again, runner)
    assert sandbox.stats()["session_starts_used"] == starts
    assert not [r for r in caplog.records if r.name.startswith("discord.gateway")], caplog.text


async def test_hikari_gets_ready_on_two_shards_through_the_proxy(sandbox_factory, rigs) -> None:
    sandbox = await sandbox_factory(shards=2, guilds=8)
    rig = await rigs(sandbox)
    bot = hikari.GatewayBot(
        sandbox.token,
        rest_url=rig.proxy.rest_url,
        intents=hikari.Intents.ALL_UNPRIVILEGED,
        banner=None,
        suppress_optimization_warning=True,
        logs="CRITICAL",
    )
    ready: set[int] = set()
    guilds: set[int] = set()

    async def on_ready(event) -> None:
        ready.add(event.shard.id)

    async def on_guild(event) -> None:
        guilds.add(int(event.guild_id))

    bot.subscribe(hikari.ShardReadyEvent, on_ready)
    bot.subscribe(hikari.GuildAvailableEvent, on_guild)
    try:
        await asyncio.wait_for(bot.start(check_for_updates=False), WAIT)
        await eventually(lambda: ready == {0, 1} and guilds == set(sandbox.guild_ids), within=WAIT)
        assert bot.shard_count == 2
    finally:
        if bot.is_alive:
            await asyncio.wait_for(bot.close(), WAIT)
