"""Routing that is not fan-out: member chunks by nonce, and voice updates to the guild's voice owner."""

from __future__ import annotations

from typing import Any

from hub_helpers import BOT_ID, Upstream, attach, make_hub, names_and_seqs, take

from shardtui.proxy import ShardHub


def chunk(nonce: str | None, index: int = 0, count: int = 1, guild: str = "1") -> dict[str, Any]:
    data: dict[str, Any] = {
        "guild_id": guild,
        "members": [{"user": {"id": "5"}}],
        "chunk_index": index,
        "chunk_count": count,
    }
    if nonce is not None:
        data["nonce"] = nonce
    return data


async def test_chunks_go_to_the_requester_only_with_its_own_nonce() -> None:
    hub = make_hub()
    up = Upstream(hub)
    a, b, c = (attach(hub, guilds=0) for _ in range(3))
    for link in (a, b, c):
        await take(link)
    # Two clients pick the same nonce: upstream the requests must still differ.
    req_a = hub.request_members(a.session, {"guild_id": "1", "query": "", "limit": 0, "nonce": "n1"})
    req_b = hub.request_members(b.session, {"guild_id": "1", "query": "", "limit": 0, "nonce": "n1"})
    assert req_a["nonce"] != req_b["nonce"]
    assert len(req_a["nonce"].encode()) <= 32
    assert {k: v for k, v in req_a.items() if k != "nonce"} == {"guild_id": "1", "query": "", "limit": 0}

    up.send("GUILD_MEMBERS_CHUNK", chunk(req_b["nonce"], 0, 2))
    up.send("GUILD_MEMBERS_CHUNK", chunk(req_a["nonce"], 0, 1))
    up.send("GUILD_MEMBERS_CHUNK", chunk(req_b["nonce"], 1, 2))

    got_a, got_b, got_c = await take(a), await take(b), await take(c)
    assert [(p["s"], p["d"]["nonce"], p["d"]["chunk_index"]) for p in got_a] == [(2, "n1", 0)]
    assert [(p["s"], p["d"]["nonce"], p["d"]["chunk_index"]) for p in got_b] == [(2, "n1", 0), (3, "n1", 1)]
    assert got_c == []

    # The last chunk ended the request: the same nonce again is unknown, so everyone gets it.
    up.send("GUILD_MEMBERS_CHUNK", chunk(req_b["nonce"]))
    assert [len(await take(link)) for link in (a, b, c)] == [1, 1, 1]


async def test_a_chunk_nobody_asked_for_through_the_proxy_goes_to_all() -> None:
    hub = make_hub()
    up = Upstream(hub)
    links = [attach(hub, guilds=0) for _ in range(2)]
    up.send("GUILD_MEMBERS_CHUNK", chunk("someone-else"))
    up.send("GUILD_MEMBERS_CHUNK", chunk(None))
    for link in links:
        got = await take(link)
        assert [p["t"] for p in got[1:]] == ["GUILD_MEMBERS_CHUNK"] * 2
        assert got[1]["d"]["nonce"] == "someone-else" and "nonce" not in got[2]["d"]


async def test_without_a_valid_nonce_the_chunk_comes_back_without_one() -> None:
    hub = make_hub()
    up = Upstream(hub)
    a, b = attach(hub, guilds=0), attach(hub, guilds=0)
    await take(a)
    await take(b)
    plain = hub.request_members(a.session, {"guild_id": "1", "user_ids": ["5"]})
    too_long = hub.request_members(b.session, {"guild_id": "1", "user_ids": ["5"], "nonce": "x" * 33})
    up.send("GUILD_MEMBERS_CHUNK", chunk(plain["nonce"]))
    up.send("GUILD_MEMBERS_CHUNK", chunk(too_long["nonce"]))
    (got_a,), (got_b,) = await take(a), await take(b)
    assert "nonce" not in got_a["d"] and "nonce" not in got_b["d"]


async def test_rate_limited_answers_go_to_the_requester() -> None:
    hub = make_hub()
    up = Upstream(hub)
    a, b = attach(hub, guilds=0), attach(hub, guilds=0)
    await take(a)
    await take(b)
    req = hub.request_members(a.session, {"guild_id": "1", "query": "", "limit": 0, "nonce": "mine"})
    up.send(
        "RATE_LIMITED", {"opcode": 8, "retry_after": 12.5, "meta": {"guild_id": "1", "nonce": req["nonce"]}}
    )
    (got,) = await take(a)
    assert got["t"] == "RATE_LIMITED" and got["d"]["meta"] == {"guild_id": "1", "nonce": "mine"}
    assert await take(b) == []


async def test_chunks_for_a_session_that_is_gone_are_dropped() -> None:
    hub = make_hub()
    up = Upstream(hub)
    a, b = attach(hub, guilds=0), attach(hub, guilds=0)
    await take(b)
    req = hub.request_members(a.session, {"guild_id": "1", "nonce": "n"})
    hub.resume(a.session.session_id, 99)  # refused: the session is dropped
    up.send("GUILD_MEMBERS_CHUNK", chunk(req["nonce"]))
    assert await take(b) == []


def own_voice(channel: str | None, guild: str = "1") -> dict[str, Any]:
    return {"guild_id": guild, "channel_id": channel, "user_id": BOT_ID, "session_id": "v1"}


def voice_server(guild: str = "1", token: str = "t1") -> dict[str, Any]:
    return {"guild_id": guild, "token": token, "endpoint": "voice.example:443"}


async def test_voice_updates_for_the_bot_go_to_the_guilds_voice_owner() -> None:
    hub = make_hub()
    up = Upstream(hub)
    owner, other = attach(hub, guilds=0), attach(hub, guilds=0)
    await take(owner)
    await take(other)
    op4 = {"guild_id": "1", "channel_id": "20", "self_mute": False, "self_deaf": False}
    hub.voice_state(owner.session, op4)
    up.send("VOICE_STATE_UPDATE", own_voice("20"))
    up.send("VOICE_SERVER_UPDATE", voice_server())
    up.send("VOICE_STATE_UPDATE", {"guild_id": "1", "channel_id": "20", "user_id": "77"})  # someone else
    up.send("VOICE_SERVER_UPDATE", voice_server(guild="2"))  # a guild nobody owns

    assert [p["t"] for p in await take(owner)] == [
        "VOICE_STATE_UPDATE",
        "VOICE_SERVER_UPDATE",
        "VOICE_STATE_UPDATE",
        "VOICE_SERVER_UPDATE",
    ]
    got = await take(other)
    assert [(p["t"], p["d"]["guild_id"]) for p in got] == [
        ("VOICE_STATE_UPDATE", "1"),
        ("VOICE_SERVER_UPDATE", "2"),
    ]
    assert got[0]["d"]["user_id"] == "77"


async def rejoin(hub: ShardHub, up: Upstream, channel: str) -> list[dict[str, Any]]:
    """A bot in voice restarts: its session goes away and a new one sends op 4 for ``channel``."""
    first = attach(hub, guilds=0)
    hub.voice_state(first.session, {"guild_id": "1", "channel_id": "20"})
    up.send("VOICE_STATE_UPDATE", own_voice("20"))
    up.send("VOICE_SERVER_UPDATE", voice_server())
    first.session.invalidate("bot restarted")
    second = attach(hub, guilds=0)
    await take(second)
    hub.voice_state(second.session, {"guild_id": "1", "channel_id": channel})
    return await take(second)


async def test_a_restarted_bot_rejoining_its_channel_gets_the_kept_voice_updates() -> None:
    hub = make_hub()
    up = Upstream(hub)
    got = await rejoin(hub, up, "20")
    assert names_and_seqs(got) == [("VOICE_STATE_UPDATE", 2), ("VOICE_SERVER_UPDATE", 3)]
    assert got[0]["d"] == own_voice("20") and got[1]["d"] == voice_server()


async def test_joining_another_channel_waits_for_discords_answer() -> None:
    hub = make_hub()
    up = Upstream(hub)
    assert await rejoin(hub, up, "21") == []


async def test_leaving_voice_forgets_the_kept_updates() -> None:
    hub = make_hub()
    up = Upstream(hub)
    link = attach(hub, guilds=0)
    hub.voice_state(link.session, {"guild_id": "1", "channel_id": "20"})
    up.send("VOICE_STATE_UPDATE", own_voice("20"))
    up.send("VOICE_SERVER_UPDATE", voice_server())
    up.send("VOICE_STATE_UPDATE", own_voice(None))
    await take(link)
    hub.voice_state(link.session, {"guild_id": "1", "channel_id": "20"})
    assert await take(link) == []


async def test_without_an_owner_the_bots_voice_updates_reach_every_client() -> None:
    hub = make_hub()
    up = Upstream(hub)
    links = [attach(hub, guilds=0) for _ in range(2)]
    up.send("VOICE_STATE_UPDATE", own_voice("20"))
    for link in links:
        assert [p["t"] for p in await take(link)] == ["READY", "VOICE_STATE_UPDATE"]
