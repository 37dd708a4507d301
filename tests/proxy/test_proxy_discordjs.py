"""An unmodified discord.js 14 bot (tests/js/bot.mjs, run by Node) behind the proxy, pointed at it by its REST
base only: READY with every guild on 2 shards, live state changes, op 3 reaching the upstream shards, and a
restarted bot served from the cache with no new upstream session — with no warning, error, disconnect or
invalidation from discord.js.

Needs Node and `npm ci --prefix tests/js` (which `.ci/run` does); skipped without them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from support.waiting import eventually

JS_DIR = Path(__file__).resolve().parent.parent / "js"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(
    NODE is None or not (JS_DIR / "node_modules" / "discord.js").is_dir(),
    reason="discord.js is not installed: run `npm ci --prefix tests/js` (Node 18+)",
)

WAIT = 30.0
TROUBLE = {
    "warn",
    "error",
    "shardError",
    "shardDisconnect",
    "shardReconnecting",
    "invalidated",
    "loginFailed",
}


class JsBot:
    """The Node process: its JSON lines as they arrive, commands on its stdin."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self.stderr = b""
        self.quit_at: int | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, api: str, token: str) -> JsBot:
        env = {**os.environ, "SHARDTUI_API": api, "SHARDTUI_TOKEN": token}
        process = await asyncio.create_subprocess_exec(
            NODE,
            str(JS_DIR / "bot.mjs"),
            cwd=JS_DIR,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.events.append(orjson.loads(line))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]

    def trouble(self) -> list[dict[str, Any]]:
        """What discord.js reported going wrong before it was told to quit (its own destroy reports its
        shards as reconnecting)."""
        return [e for e in self.events[: self.quit_at] if e["event"] in TROUBLE]

    async def wait_for(self, name: str, count: int = 1) -> list[dict[str, Any]]:
        await eventually(
            lambda: len(self.named(name)) >= count or self.process.returncode is not None, within=WAIT
        )
        found = self.named(name)
        assert len(found) >= count, (
            f"discord.js exited {self.process.returncode}: {self.events} {await self._err()}"
        )
        return found

    async def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def _err(self) -> bytes:
        if self.process.returncode is not None and self.process.stderr is not None:
            self.stderr += await self.process.stderr.read()
        return self.stderr

    async def quit(self) -> None:
        if self.quit_at is None:
            self.quit_at = len(self.events)
        if self.process.returncode is None:
            with contextlib.suppress(ConnectionError):
                await self.command("quit")
            try:
                await asyncio.wait_for(self.process.wait(), 10.0)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self._reader, 5.0)


@pytest.fixture
async def js_bots():
    bots: list[JsBot] = []

    async def start(api: str, token: str) -> JsBot:
        bot = await JsBot.start(api, token)
        bots.append(bot)
        return bot

    yield start
    for bot in bots:
        await bot.quit()


async def test_discordjs_runs_behind_the_proxy_and_a_restart_costs_no_upstream_session(
    sandbox_factory, rigs, js_bots
) -> None:
    sandbox = await sandbox_factory(shards=2, guilds=8)
    rig = await rigs(sandbox)
    starts = sandbox.stats()["session_starts_used"]

    bot = await js_bots(rig.proxy.http_url + "/api", sandbox.token)
    (ready,) = await bot.wait_for("ready")
    assert ready["shardCount"] == 2 and ready["shards"] == [0, 1]
    assert {int(g["id"]) for g in ready["guilds"]} == set(sandbox.guild_ids)
    for guild in ready["guilds"]:
        assert int(guild["id"]) in sandbox.guild_ids_for_shard(guild["shard"], 2)

    # Live state changes reach the bot, each once.
    sandbox.emit(4, "CHANNEL_CREATE")
    created = await bot.wait_for("channelCreate", 4)
    await bot.command("channels")
    (channels,) = await bot.wait_for("channels")
    assert {c["id"] for c in created} <= set(channels["ids"])
    assert len({c["id"] for c in created}) == 4

    # The bot's presence becomes every upstream shard's presence.
    await bot.command("presence via discord.js")
    for shard in (0, 1):
        await eventually(lambda s=shard: (sandbox.presence(s) or {}).get("status") == "dnd", within=WAIT)
        assert sandbox.presence(shard)["activities"][0]["name"] == "via discord.js"

    await bot.quit()
    assert bot.trouble() == [], bot.events

    # A new process is served from the proxy's cache, the channels just made included.
    again = await js_bots(rig.proxy.http_url + "/api", sandbox.token)
    (ready,) = await again.wait_for("ready")
    assert {int(g["id"]) for g in ready["guilds"]} == set(sandbox.guild_ids)
    await again.command("channels")
    (channels,) = await again.wait_for("channels")
    assert {c["id"] for c in created} <= set(channels["ids"])
    assert sandbox.stats()["session_starts_used"] == starts
    await again.quit()
    assert again.trouble() == [], again.trouble()


async def test_discordjs_with_a_wrong_token_is_refused_and_the_token_never_printed(
    sandbox_factory, rigs, js_bots
) -> None:
    sandbox = await sandbox_factory(shards=2, guilds=4)
    rig = await rigs(sandbox)
    bot = await js_bots(rig.proxy.http_url + "/api", "not-the-token")
    await eventually(lambda: bot.process.returncode is not None or bot.named("loginFailed"), within=WAIT)
    assert bot.named("loginFailed") or bot.named("shardDisconnect"), bot.events
    assert not bot.named("ready")
    assert sandbox.token not in str(bot.events)


async def test_discordjs_resumes_across_a_restart_of_shardtui_and_misses_nothing(restarts, js_bots) -> None:
    run = await restarts(shards=2, guilds=8)
    sandbox = run.sandbox
    bot = await js_bots(run.current.proxy.http_url + "/api", sandbox.token)
    await bot.wait_for("ready")
    starts = sandbox.stats()["session_starts_used"]
    missed = await run.restart()

    def back() -> bool:
        resumed = {e["id"] for e in bot.named("shardResume")}
        seen = {e["id"] for e in bot.named("message")}
        return (resumed == {0, 1} and set(missed) <= seen) or bot.process.returncode is not None

    # discord.js retries its RESUME until the new process answers: the gap is replayed to it.
    await eventually(back, within=2 * WAIT)
    assert bot.process.returncode is None, bot.events
    seen = [e["id"] for e in bot.named("message")]
    assert len(seen) == len(set(seen))  # nothing twice
    assert set(missed) <= set(seen)
    assert len(bot.named("shardReady")) == 2  # resumed, never identified again
    assert sandbox.stats()["session_starts_used"] == starts
