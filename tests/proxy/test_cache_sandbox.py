"""The cache against the real sandbox: fed one session's stream, its snapshot is what a later IDENTIFY
to the same gateway is shown (guild state changes, member joins and leaves, presences included)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from shardtui.gateway.protocol import GatewayIntents
from shardtui.proxy.cache import GuildStateCache

EVENT_ID = "_sandbox_event_id"
EVERYTHING = int(GatewayIntents.all())
KINDS = (
    "CHANNEL_CREATE", "CHANNEL_UPDATE", "CHANNEL_DELETE", "GUILD_ROLE_CREATE", "GUILD_ROLE_UPDATE",
    "GUILD_ROLE_DELETE", "GUILD_UPDATE", "GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE", "GUILD_MEMBER_REMOVE",
    "PRESENCE_UPDATE", "MESSAGE_CREATE", "TYPING_START",
)  # fmt: skip


class Client:
    """Just enough of a gateway client: uncompressed JSON, IDENTIFY, and a list of dispatches."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.http, self.ws = http, ws
        self.dispatches: list[dict[str, Any]] = []

    @classmethod
    async def identify(cls, sandbox, intents: int) -> Client:
        http = aiohttp.ClientSession()
        ws = await http.ws_connect(sandbox.gateway_url + "?v=10&encoding=json", max_msg_size=0)
        client = cls(http, ws)
        hello = orjson.loads((await ws.receive()).data)
        assert hello["op"] == 10
        d = {"token": sandbox.token, "intents": intents, "shard": [0, 1], "properties": {"os": "x"}}
        await ws.send_str(orjson.dumps({"op": 2, "d": d}).decode())
        return client

    async def until(self, done) -> None:
        while not done(self.dispatches):
            msg = await asyncio.wait_for(self.ws.receive(), 5.0)
            payload = orjson.loads(msg.data)
            if payload["op"] == 0:
                self.dispatches.append(payload)

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()


def _plain(item: Any) -> Any:
    return {k: v for k, v in item.items() if k != EVENT_ID} if isinstance(item, dict) else item


def comparable(guild: dict[str, Any]) -> dict[str, Any]:
    out = _plain(guild)
    for key in ("channels", "roles"):
        out[key] = {c["id"]: _plain(c) for c in guild[key]}
    out["members"] = {m["user"]["id"]: _plain(m) for m in guild["members"]}
    # Presence activities carry a start time in the live event only; who is online with what status
    # is the state.
    out["presences"] = {p["user"]["id"]: p["status"] for p in guild["presences"]}
    return out


async def test_the_cache_fed_a_sandbox_stream_matches_a_later_identify(sandbox_factory) -> None:
    sandbox = await sandbox_factory(
        guilds=3,
        shards=1,
        identify_window=0.0,
        heartbeat_interval_ms=60_000,
        privileged_intents=["guild_members", "guild_presences", "message_content"],
    )
    early = await Client.identify(sandbox, EVERYTHING)
    try:
        await early.until(lambda got: sum(p["t"] == "GUILD_CREATE" for p in got) == 3)
        for _ in range(10):
            for kind in KINDS:
                sandbox.emit(1, kind)
        total = len(sandbox.sent_events(0))
        await early.until(lambda got: got and got[-1]["s"] == total)
        cache = GuildStateCache()
        for payload in early.dispatches:
            cache.apply(0, payload["t"], payload["d"])
    finally:
        await early.close()

    late = await Client.identify(sandbox, EVERYTHING)
    try:
        await late.until(lambda got: sum(p["t"] == "GUILD_CREATE" for p in got) == 3)
    finally:
        await late.close()
    fresh = [p["d"] for p in late.dispatches if p["t"] == "GUILD_CREATE"]
    assert len(fresh) == 3
    shard = cache.shard(0)
    snapshot = [d for name, d in shard.guild_events() if name == "GUILD_CREATE"]
    assert [g["id"] for g in snapshot] == [g["id"] for g in fresh]
    for mine, theirs in zip(snapshot, fresh, strict=True):
        assert comparable(mine) == comparable(theirs), mine["id"]
    ready = next(p["d"] for p in late.dispatches if p["t"] == "READY")
    assert shard.ready_fields()["user"] == ready["user"]
    assert shard.ready_fields()["guilds"] == ready["guilds"]
    # Things did change, so the comparison above is not between two untouched worlds.
    first = {p["d"]["id"]: p["d"] for p in early.dispatches if p["t"] == "GUILD_CREATE"}
    assert any(comparable(first[g["id"]]) != comparable(g) for g in fresh)
