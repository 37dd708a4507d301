"""Real bot libraries through the proxy (only their REST base pointed at it: the gateway url comes from
the proxy's /gateway/bot): discord.py's AutoShardedClient and hikari's GatewayBot get READY and every
guild on 2 shards, and a restarted bot is served from the cache without a new upstream session."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
import yarl
from support.waiting import eventually

discord = pytest.importorskip("discord")
hikari = pytest.importorskip("hikari")

WAIT = 20.0


class ProxiedBot(discord.AutoShardedClient):
    def __init__(self) -> None:
        # No shard_count: the count and the gateway url come from the proxy's /gateway/bot.
        super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.2)
        self.ready_shards: set[int] = set()
        self.resumed_shards: set[int] = set()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None  # a downstream IDENTIFY costs no upstream identify: nothing to pace

    async def on_shard_ready(self, shard_id: int) -> None:
        self.ready_shards.add(shard_id)

    async def on_shard_resumed(self, shard_id: int) -> None:
        self.resumed_shards.add(shard_id)


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


def hikari_bot(token: str, rest_url: str) -> hikari.GatewayBot:
    """A quiet hikari GatewayBot pointed at ``rest_url`` (the gateway url comes from /gateway/bot)."""
    return hikari.GatewayBot(
        token,
        rest_url=rest_url,
        intents=hikari.Intents.ALL_UNPRIVILEGED,
        banner=None,
        suppress_optimization_warning=True,
        logs="CRITICAL",
    )


async def test_hikari_gets_ready_on_two_shards_through_the_proxy(sandbox_factory, rigs) -> None:
    sandbox = await sandbox_factory(shards=2, guilds=8)
    rig = await rigs(sandbox)
    bot = hikari_bot(sandbox.token, rig.proxy.rest_url)
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


async def test_hikari_resumes_across_a_restart_of_shardtui_and_misses_nothing(restarts) -> None:
    run = await restarts(shards=2, guilds=8)
    sandbox, proxy = run.sandbox, run.current.proxy
    bot = hikari_bot(sandbox.token, proxy.rest_url)
    readies: list[int] = []
    resumed: set[int] = set()
    seen: list[int] = []

    async def on_ready(event) -> None:
        readies.append(event.shard.id)

    async def on_resumed(event) -> None:
        resumed.add(event.shard.id)

    async def on_payload(event) -> None:
        if event.name == "MESSAGE_CREATE":
            seen.append(event.payload["_sandbox_event_id"])

    bot.subscribe(hikari.ShardReadyEvent, on_ready)
    bot.subscribe(hikari.ShardResumedEvent, on_resumed)
    bot.subscribe(hikari.ShardPayloadEvent, on_payload)
    try:
        await asyncio.wait_for(bot.start(check_for_updates=False), WAIT)
        await eventually(lambda: sorted(readies) == [0, 1], within=WAIT)
        starts = sandbox.stats()["session_starts_used"]

        missed = await run.restart()
        await eventually(lambda: resumed == {0, 1} and set(missed) <= set(seen), within=2 * WAIT)
        assert sorted(readies) == [0, 1]  # resumed, never identified again
        assert len(seen) == len(set(seen))  # nothing twice
        assert sandbox.stats()["session_starts_used"] == starts
    finally:
        if bot.is_alive:
            await asyncio.wait_for(bot.close(), WAIT)


async def test_discordpy_comes_back_through_the_proxy_after_a_restart_of_shardtui(
    restarts, monkeypatch
) -> None:
    # discord.py tries one RESUME after a close; when that connect fails (shardtui is restarting) it
    # identifies again at DEFAULT_GATEWAY: without that setting pointing at the proxy, it would go
    # straight to Discord.
    run = await restarts(shards=2, guilds=8)
    sandbox, proxy = run.sandbox, run.current.proxy
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(proxy.ws_url))
    bot, runner = await run_discordpy(sandbox, run.current, monkeypatch)
    try:
        starts = sandbox.stats()["session_starts_used"]
        bot.ready_shards.clear()
        await run.restart()

        def back() -> bool:
            # Per shard, a RESUME (when its one attempt found the new process up) or a new IDENTIFY.
            return bot.ready_shards | bot.resumed_shards == {0, 1} or runner.done()

        await eventually(back, within=3 * WAIT)
        assert not runner.done(), runner.exception()
        assert {g.id for g in bot.guilds} == set(sandbox.guild_ids)
        assert sandbox.stats()["session_starts_used"] == starts  # its identifies cost nothing upstream
    finally:
        await stop(bot, runner)
