"""Guild state changes in the sandbox's traffic: announced, gated by intents, and true to its world.

A bot that follows the stream from its READY must arrive at exactly what a bot identifying later is
shown in its GUILD_CREATEs — the sandbox changes its world first and then announces the change.
"""

from __future__ import annotations

from typing import Any

from shardtui.gateway.protocol import GatewayIntents
from shardtui.sandbox.payloads import STATE_CHANGES
from shardtui.sandbox.settings import DEFAULT_EVENT_MIX

EVENT_ID = "_sandbox_event_id"
GUILD_KINDS = ("CHANNEL_CREATE", "CHANNEL_UPDATE", "CHANNEL_DELETE", "GUILD_ROLE_CREATE")
GUILD_KINDS += ("GUILD_ROLE_UPDATE", "GUILD_ROLE_DELETE", "GUILD_UPDATE")
MEMBER_KINDS = ("GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE", "GUILD_MEMBER_REMOVE")
SETTINGS: dict[str, Any] = {
    "guilds": 3,
    "shards": 1,
    "identify_window": 0.0,
    "heartbeat_interval_ms": 60_000,
    "privileged_intents": ["guild_members", "guild_presences", "message_content"],
}
EVERYTHING = int(GatewayIntents.all())


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in (EVENT_ID, "guild_id")}


class Observer:
    """What a bot following the stream knows, built from the payloads alone (no sandbox internals)."""

    def __init__(self) -> None:
        self.guilds: dict[str, dict[str, Any]] = {}
        self.bad_channel_uses: list[str] = []

    def feed(self, payload: dict[str, Any]) -> None:
        t, d = payload.get("t"), payload.get("d")
        if t == "GUILD_CREATE":
            self.guilds[d["id"]] = {
                "name": d["name"],
                "member_count": d["member_count"],
                "channels": {c["id"]: _clean(c) for c in d["channels"]},
                "roles": {r["id"]: r for r in d["roles"]},
                "members": {m["user"]["id"]: m for m in d["members"]},
            }
            return
        if not isinstance(d, dict) or d.get("guild_id", d.get("id")) not in self.guilds:
            return
        guild = self.guilds[d.get("guild_id") or d["id"]]
        if t in ("CHANNEL_CREATE", "CHANNEL_UPDATE"):
            guild["channels"][d["id"]] = _clean(d)
        elif t == "CHANNEL_DELETE":
            del guild["channels"][d["id"]]
        elif t in ("GUILD_ROLE_CREATE", "GUILD_ROLE_UPDATE"):
            guild["roles"][d["role"]["id"]] = d["role"]
        elif t == "GUILD_ROLE_DELETE":
            del guild["roles"][d["role_id"]]
            for uid, member in guild["members"].items():
                guild["members"][uid] = {**member, "roles": [r for r in member["roles"] if r != d["role_id"]]}
        elif t == "GUILD_UPDATE":
            guild["name"] = d["name"]
        elif t == "GUILD_MEMBER_ADD":
            guild["member_count"] += 1
            guild["members"][d["user"]["id"]] = _clean(d)
        elif t == "GUILD_MEMBER_UPDATE":
            guild["members"][d["user"]["id"]] = _clean(d)
        elif t == "GUILD_MEMBER_REMOVE":
            guild["member_count"] -= 1
            del guild["members"][d["user"]["id"]]
        elif t in ("MESSAGE_CREATE", "TYPING_START", "MESSAGE_REACTION_ADD"):
            if d["channel_id"] not in guild["channels"]:
                self.bad_channel_uses.append(f"{t} in {d['channel_id']}")


async def _follow(client, sandbox) -> list[dict[str, Any]]:
    total = len(sandbox.sent_events(0))
    return await client.recv_until(lambda p: p.get("s") == total)


async def test_a_late_identify_sees_what_the_stream_announced(sandbox_factory, raw):
    sandbox = await sandbox_factory(**SETTINGS)
    early = await raw(sandbox)
    await early.ready(sandbox.token, (0, 1), EVERYTHING)
    for _ in range(8):
        for kind in (*GUILD_KINDS, *MEMBER_KINDS):
            sandbox.emit(1, kind)
            sandbox.emit(1, "MESSAGE_CREATE")
            sandbox.emit(1, "TYPING_START")
    names = [e.name for e in sandbox.sent_events(0)]
    assert {n for n in names if n in STATE_CHANGES} == set(STATE_CHANGES), "every state kind was sent"
    await _follow(early, sandbox)
    stream = early.received

    observer = Observer()
    for payload in stream:
        observer.feed(payload)
    assert observer.bad_channel_uses == []
    # State events are accounted like any other: every id sent on the shard arrived once.
    report = sandbox.delivery_report(0, [p["d"][EVENT_ID] for p in early.received if p.get("op") == 0])
    assert report.ok and report.received == report.sent, report

    late = await raw(sandbox)
    await late.ready(sandbox.token, (0, 1), EVERYTHING)
    fresh = Observer()
    snapshot = await late.recv_until(lambda p: sum(q.get("t") == "GUILD_CREATE" for q in late.received) == 3)
    for payload in snapshot:
        fresh.feed(payload)
    assert set(fresh.guilds) == set(observer.guilds) == {str(g) for g in sandbox.guild_ids}
    for gid, seen in observer.guilds.items():
        assert fresh.guilds[gid] == seen, gid
    # The run changed something in every respect, so the equality above is not trivially true.
    creates = [p["d"] for p in stream if p.get("t") == "GUILD_CREATE"]
    first = {g["id"]: g for g in creates}
    assert any(first[g]["name"] != observer.guilds[g]["name"] for g in first)
    assert any({c["id"] for c in first[g]["channels"]} != set(observer.guilds[g]["channels"]) for g in first)
    assert any({r["id"] for r in first[g]["roles"]} != set(observer.guilds[g]["roles"]) for g in first)


async def test_state_changes_are_gated_like_discord(sandbox_factory, raw):
    sandbox = await sandbox_factory(**SETTINGS)
    messages = GatewayIntents.GUILD_MESSAGES  # each client also gets the closing MESSAGE_CREATE
    guilds_only = await raw(sandbox)
    await guilds_only.ready(sandbox.token, (0, 1), int(GatewayIntents.GUILDS | messages))
    members_only = await raw(sandbox)
    await members_only.ready(sandbox.token, (0, 1), int(GatewayIntents.GUILD_MEMBERS | messages))
    messages_only = await raw(sandbox)
    await messages_only.ready(sandbox.token, (0, 1), int(messages))
    for kind in (*GUILD_KINDS, *MEMBER_KINDS):
        sandbox.emit(2, kind)
    sandbox.emit(1, "MESSAGE_CREATE")  # the last event: every client gets this one

    async def names(client) -> set[str]:
        got = await client.recv_until(lambda p: p.get("t") == "MESSAGE_CREATE")
        return {p["t"] for p in got if p.get("op") == 0} - {"READY", "GUILD_CREATE", "MESSAGE_CREATE"}

    assert await names(guilds_only) == set(GUILD_KINDS)
    assert await names(members_only) == set(MEMBER_KINDS)
    assert await names(messages_only) == set()


async def test_the_default_mix_keeps_state_changes_a_small_share():
    state = {k: w for k, w in DEFAULT_EVENT_MIX.items() if k in STATE_CHANGES or k == "GUILD_MEMBER_ADD"}
    assert set(state) == {*STATE_CHANGES, "GUILD_MEMBER_ADD"}
    share = sum(state.values()) / sum(DEFAULT_EVENT_MIX.values())
    assert 0.02 < share < 0.10, share


async def test_long_runs_stay_bounded_and_never_message_a_deleted_channel(sandbox_factory, raw):
    sandbox = await sandbox_factory(**{**SETTINGS, "guilds": 2, "members_per_guild": 3})
    client = await raw(sandbox)
    await client.ready(sandbox.token, (0, 1), EVERYTHING)
    observer = Observer()
    for _ in range(60):
        for kind in ("CHANNEL_DELETE", "GUILD_ROLE_DELETE", "GUILD_MEMBER_REMOVE", "MESSAGE_CREATE"):
            sandbox.emit(1, kind)
    for payload in await _follow(client, sandbox):
        observer.feed(payload)
    assert observer.bad_channel_uses == []
    for guild in observer.guilds.values():
        # The system channel and @everyone stay; deletes past the floor turn into creates.
        assert any(c["type"] == 0 for c in guild["channels"].values())
        assert len(guild["roles"]) >= 1 and len(guild["channels"]) <= 12
        assert guild["member_count"] >= 2 and guild["member_count"] == len(guild["members"])
