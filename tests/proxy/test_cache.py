"""The proxy's guild state cache: a late snapshot shows what the stream made of the world.

The main test drives a small world of its own (the ground truth): each step changes the world and emits
the dispatch Discord would send for it. The cache sees only the dispatches; its snapshot must equal the
world as a fresh GUILD_CREATE would show it.
"""

from __future__ import annotations

import copy
import logging
import random
from typing import Any

import orjson
import pytest

from shardtui.gateway.models import Dispatch, ShardId
from shardtui.gateway.protocol import GatewayIntents
from shardtui.proxy.cache import (
    CACHE_FILE_VERSION,
    STATE_EVENTS,
    CacheFileError,
    CacheOptions,
    GuildStateCache,
    ShardCache,
    is_state_event,
)

BOT_ID = "1000"

# -- the ground truth -------------------------------------------------------------------------------


class World:
    """Guilds as Discord holds them; every change returns the (name, d) dispatches that announce it."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.next_id = 2000
        self.user: dict[str, Any] = {"id": BOT_ID, "username": "bot", "bot": True, "verified": True}
        self.guilds: dict[str, dict[str, Any]] = {}
        #: Guilds in an outage, in the order they went down (a list: set order varies between runs).
        self.outage: list[str] = []
        for _ in range(3):
            self._new_guild()

    def _id(self) -> str:
        self.next_id += 1
        return str(self.next_id)

    def _member(self, uid: str, name: str) -> dict[str, Any]:
        return {"user": {"id": uid, "username": name}, "roles": [], "nick": None, "joined_at": "2026-01-01"}

    def _new_guild(self) -> str:
        gid = self._id()
        everyone = {"id": gid, "name": "@everyone", "color": 0, "position": 0}
        guild: dict[str, Any] = {
            "fields": {"id": gid, "name": f"guild {gid}", "joined_at": "2026-01-01", "large": False},
            "roles": {gid: everyone},
            "channels": {},
            "threads": {},
            "members": {BOT_ID: {**self._member(BOT_ID, "bot"), "user": dict(self.user)}},
            "presences": {},
            "voice_states": {},
            "stage_instances": {},
            "emojis": [],
            "stickers": [],
        }
        for _ in range(3):
            cid = self._id()
            guild["channels"][cid] = {"id": cid, "type": 0, "name": f"c{cid}", "parent_id": None}
        for _ in range(5):
            uid = self._id()
            guild["members"][uid] = self._member(uid, f"u{uid}")
        guild["member_count"] = len(guild["members"])
        self.guilds[gid] = guild
        return gid

    def guild_create(self, gid: str) -> dict[str, Any]:
        g = self.guilds[gid]
        return copy.deepcopy(
            {
                **g["fields"],
                "unavailable": False,
                "member_count": g["member_count"],
                "roles": list(g["roles"].values()),
                "emojis": g["emojis"],
                "stickers": g["stickers"],
                "channels": list(g["channels"].values()),
                "threads": list(g["threads"].values()),
                "members": list(g["members"].values()),
                "presences": list(g["presences"].values()),
                "voice_states": list(g["voice_states"].values()),
                "stage_instances": list(g["stage_instances"].values()),
                "guild_scheduled_events": [],
                "soundboard_sounds": [],
            }
        )

    def ready(self) -> dict[str, Any]:
        return {
            "user": dict(self.user),
            "application": {"id": BOT_ID, "flags": 0},
            "guilds": [{"id": gid, "unavailable": True} for gid in self.guilds],
            "session_id": "upstream",
        }

    def step(self) -> list[tuple[str, dict[str, Any]]]:
        """One random change of the world and its dispatches (deep copies: what goes on the wire)."""
        rng = self.rng
        live = [gid for gid in self.guilds if gid not in self.outage]
        if not live or rng.random() < 0.03:
            if self.outage and rng.random() < 0.6:
                gid = self.outage.pop(0)
                return [("GUILD_CREATE", self.guild_create(gid))]
            gid = self._new_guild()
            return [("GUILD_CREATE", self.guild_create(gid))]
        gid = rng.choice(live)
        g = self.guilds[gid]
        others = [uid for uid in g["members"] if uid != BOT_ID]
        kind = rng.choice(KINDS)
        out: list[tuple[str, dict[str, Any]]] = []

        def emit(name: str, d: dict[str, Any]) -> None:
            out.append((name, copy.deepcopy(d)))

        if kind == "outage":
            self.outage.append(gid)
            emit("GUILD_DELETE", {"id": gid, "unavailable": True})
        elif kind == "leave" and len(self.guilds) > 3:
            del self.guilds[gid]
            emit("GUILD_DELETE", {"id": gid})
        elif kind == "guild_update":
            g["fields"]["name"] = f"renamed {rng.randrange(1000)}"
            emit("GUILD_UPDATE", {**g["fields"], "roles": list(g["roles"].values()), "emojis": g["emojis"]})
        elif kind == "channel_create" or (kind in ("channel_update", "channel_delete") and not g["channels"]):
            cid = self._id()
            g["channels"][cid] = {"id": cid, "type": 0, "name": f"c{cid}", "parent_id": None}
            emit("CHANNEL_CREATE", {**g["channels"][cid], "guild_id": gid})
        elif kind == "channel_update":
            cid = rng.choice(list(g["channels"]))
            g["channels"][cid] = {**g["channels"][cid], "topic": f"t{rng.randrange(100)}"}
            emit("CHANNEL_UPDATE", {**g["channels"][cid], "guild_id": gid})
        elif kind == "channel_delete":
            cid = rng.choice(list(g["channels"]))
            channel = g["channels"].pop(cid)
            # Discord sends no THREAD_DELETE for a deleted channel's threads; they are gone all the same.
            g["threads"] = {t: th for t, th in g["threads"].items() if th["parent_id"] != cid}
            emit("CHANNEL_DELETE", {**channel, "guild_id": gid})
        elif kind == "thread_create" and g["channels"]:
            tid, parent = self._id(), rng.choice(list(g["channels"]))
            g["threads"][tid] = {
                "id": tid,
                "guild_id": gid,
                "parent_id": parent,
                "type": 11,
                "name": f"th{tid}",
                "thread_metadata": {"archived": False},
            }
            emit("THREAD_CREATE", g["threads"][tid])
        elif kind == "thread_update" and g["threads"]:
            tid = rng.choice(list(g["threads"]))
            if rng.random() < 0.3:
                thread = g["threads"].pop(tid)
                emit("THREAD_UPDATE", {**thread, "thread_metadata": {"archived": True}})
            else:
                g["threads"][tid] = {**g["threads"][tid], "name": f"renamed {rng.randrange(100)}"}
                emit("THREAD_UPDATE", g["threads"][tid])
        elif kind == "thread_delete" and g["threads"]:
            tid = rng.choice(list(g["threads"]))
            thread = g["threads"].pop(tid)
            emit("THREAD_DELETE", {"id": tid, "guild_id": gid, "parent_id": thread["parent_id"], "type": 11})
        elif kind == "thread_sync" and g["channels"]:
            parent = rng.choice(list(g["channels"]))
            g["threads"] = {t: th for t, th in g["threads"].items() if th["parent_id"] != parent}
            synced, members = [], []
            for _ in range(rng.randrange(3)):
                tid = self._id()
                thread = {"id": tid, "guild_id": gid, "parent_id": parent, "type": 11, "name": f"s{tid}"}
                thread["thread_metadata"] = {"archived": False}
                synced.append(thread)
                g["threads"][tid] = thread
                if rng.random() < 0.5:
                    member = {"id": tid, "user_id": BOT_ID, "flags": 0}
                    members.append(member)
                    g["threads"][tid] = {**thread, "member": member}
            emit(
                "THREAD_LIST_SYNC",
                {"guild_id": gid, "channel_ids": [parent], "threads": synced, "members": members},
            )
        elif kind == "role_create" or (kind in ("role_update", "role_delete") and len(g["roles"]) < 2):
            rid = self._id()
            g["roles"][rid] = {"id": rid, "name": f"r{rid}", "color": 1, "position": len(g["roles"])}
            emit("GUILD_ROLE_CREATE", {"guild_id": gid, "role": g["roles"][rid]})
        elif kind == "role_update":
            rid = rng.choice(list(g["roles"]))
            g["roles"][rid] = {**g["roles"][rid], "color": rng.randrange(1 << 24)}
            emit("GUILD_ROLE_UPDATE", {"guild_id": gid, "role": g["roles"][rid]})
        elif kind == "role_delete":
            rid = rng.choice([r for r in g["roles"] if r != gid])
            del g["roles"][rid]
            for uid, member in g["members"].items():
                g["members"][uid] = {**member, "roles": [r for r in member["roles"] if r != rid]}
            emit("GUILD_ROLE_DELETE", {"guild_id": gid, "role_id": rid})
        elif kind == "member_add":
            uid = self._id()
            g["members"][uid] = self._member(uid, f"u{uid}")
            g["member_count"] += 1
            emit("GUILD_MEMBER_ADD", {**g["members"][uid], "guild_id": gid})
        elif kind == "member_update" and others:
            uid = rng.choice(others)
            roles = [r for r in g["roles"] if r != gid]
            member = {
                **g["members"][uid],
                "nick": f"n{rng.randrange(100)}",
                "roles": rng.sample(roles, min(1, len(roles))),
            }
            g["members"][uid] = member
            emit("GUILD_MEMBER_UPDATE", {**member, "guild_id": gid})
        elif kind == "member_remove" and others:
            uid = rng.choice(others)
            member = g["members"].pop(uid)
            g["presences"].pop(uid, None)
            g["voice_states"].pop(uid, None)
            g["member_count"] -= 1
            emit("GUILD_MEMBER_REMOVE", {"guild_id": gid, "user": member["user"]})
        elif kind == "presence" and others:
            uid = rng.choice(others)
            status = rng.choice(("online", "idle", "offline"))
            presence = {"user": {"id": uid}, "guild_id": gid, "status": status, "activities": []}
            if status == "offline":
                g["presences"].pop(uid, None)
            else:
                g["presences"][uid] = presence
            emit("PRESENCE_UPDATE", presence)
        elif kind == "voice" and others and g["channels"]:
            uid = rng.choice(others)
            if uid in g["voice_states"] and rng.random() < 0.5:
                del g["voice_states"][uid]
                emit(
                    "VOICE_STATE_UPDATE",
                    {"guild_id": gid, "user_id": uid, "channel_id": None, "member": g["members"][uid]},
                )
            else:
                state = {
                    "user_id": uid,
                    "channel_id": rng.choice(list(g["channels"])),
                    "session_id": "s",
                    "self_mute": False,
                }
                g["voice_states"][uid] = state
                emit("VOICE_STATE_UPDATE", {**state, "guild_id": gid, "member": g["members"][uid]})
        elif kind == "emojis":
            g["emojis"] = [{"id": self._id(), "name": "e"} for _ in range(rng.randrange(3))]
            emit("GUILD_EMOJIS_UPDATE", {"guild_id": gid, "emojis": g["emojis"]})
        elif kind == "stickers":
            g["stickers"] = [{"id": self._id(), "name": "s"} for _ in range(rng.randrange(3))]
            emit("GUILD_STICKERS_UPDATE", {"guild_id": gid, "stickers": g["stickers"]})
        elif kind == "stage" and g["channels"]:
            if g["stage_instances"] and rng.random() < 0.5:
                sid = rng.choice(list(g["stage_instances"]))
                instance = g["stage_instances"].pop(sid)
                emit("STAGE_INSTANCE_DELETE", instance)
            else:
                sid = self._id()
                g["stage_instances"][sid] = {
                    "id": sid,
                    "guild_id": gid,
                    "channel_id": rng.choice(list(g["channels"])),
                    "topic": "x",
                }
                emit("STAGE_INSTANCE_CREATE", g["stage_instances"][sid])
        elif kind == "user_update":
            self.user = {**self.user, "username": f"bot{rng.randrange(100)}"}
            for guild in self.guilds.values():
                bot = guild["members"][BOT_ID]
                guild["members"][BOT_ID] = {**bot, "user": {**bot["user"], **self.user}}
            emit("USER_UPDATE", self.user)
        return out


KINDS = (
    "outage", "leave", "guild_update", "channel_create", "channel_update", "channel_delete",
    "thread_create", "thread_update", "thread_delete", "thread_sync", "role_create", "role_update",
    "role_delete", "member_add", "member_update", "member_remove", "presence", "presence", "voice",
    "emojis", "stickers", "stage", "user_update",
)  # fmt: skip


def keyed(guild_create: dict[str, Any]) -> dict[str, Any]:
    """A GUILD_CREATE with its lists keyed by id (list order is not something clients rely on)."""
    out = dict(guild_create)
    for key in ("roles", "channels", "threads", "stage_instances", "emojis", "stickers"):
        out[key] = {item["id"]: item for item in guild_create[key]}
    for key in ("members", "presences"):
        out[key] = {item["user"]["id"]: item for item in guild_create[key]}
    out["voice_states"] = {item["user_id"]: item for item in guild_create["voice_states"]}
    return out


def expected_snapshot(world: World) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("GUILD_DELETE", {"id": gid, "unavailable": True})
        if gid in world.outage
        else ("GUILD_CREATE", keyed(world.guild_create(gid)))
        for gid in world.guilds
    ]


def snapshot_of(cache: ShardCache, intents: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    return [(n, keyed(d) if n == "GUILD_CREATE" else d) for n, d in cache.guild_events(intents)]


def start(world: World, cache: GuildStateCache, shard: int = 0) -> None:
    cache.apply(shard, "READY", world.ready())
    for gid in world.guilds:
        cache.apply(shard, "GUILD_CREATE", world.guild_create(gid))


# -- tests --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_late_snapshot_equals_the_world_the_stream_described(seed: int) -> None:
    world = World(seed)
    cache = GuildStateCache()
    start(world, cache)
    seen: set[str] = set()
    for _ in range(600):
        for name, d in world.step():
            seen.add(name)
            assert cache.apply(0, name, d)
    # The run exercised (nearly) every state event it can produce.
    assert len(seen) >= 18, sorted(seen)
    shard = cache.shard(0)
    assert shard.ready_fields() == {
        "user": world.user,
        "application": {"id": BOT_ID, "flags": 0},
        "guilds": [{"id": gid, "unavailable": True} for gid in world.guilds],
    }
    assert snapshot_of(shard) == expected_snapshot(world)


def test_the_cache_never_changes_the_dicts_it_is_given() -> None:
    # The hub forwards the same decoded dicts to clients; an update must not rewrite them.
    world = World(7)
    cache = GuildStateCache()
    given: list[tuple[str, dict[str, Any]]] = [("READY", world.ready())]
    given += [("GUILD_CREATE", world.guild_create(gid)) for gid in world.guilds]
    for _ in range(300):
        given += world.step()
    before = copy.deepcopy(given)
    for name, d in given:
        cache.apply(0, name, d)
    cache.shard(0).guild_events()
    assert given == before


def test_non_state_events_are_not_touched() -> None:
    cache = GuildStateCache()
    assert not is_state_event("MESSAGE_CREATE") and not is_state_event("TYPING_START")
    assert is_state_event("GUILD_MEMBER_ADD") and "THREAD_LIST_SYNC" in STATE_EVENTS
    assert cache.apply(0, "MESSAGE_CREATE", {"guild_id": "1"}) is False
    assert cache.shards == {}  # not even a shard slot was made for it
    assert cache.feed(Dispatch(ShardId(3), "READY", 1, World(1).ready())) is True
    assert sorted(cache.shards) == [3] and cache.shard(3).ready_seen


def test_members_and_presences_can_be_left_out_but_the_bot_member_stays() -> None:
    world = World(11)
    full, lean = GuildStateCache(), GuildStateCache(CacheOptions(members=False, presences=False))
    start(world, full)
    start(world, lean)
    for _ in range(400):
        for name, d in world.step():
            full.apply(0, name, d)
            lean.apply(0, name, d)
    for (name, kept), (_, lean_d) in zip(snapshot_of(full.shard(0)), snapshot_of(lean.shard(0)), strict=True):
        if name != "GUILD_CREATE":
            continue
        assert set(lean_d["members"]) == {BOT_ID} and lean_d["presences"] == {}
        assert len(kept["members"]) > 1
        # Counts, channels and roles do not depend on what members are kept.
        assert lean_d["member_count"] == kept["member_count"] == len(kept["members"])
        assert lean_d["channels"] == kept["channels"] and lean_d["roles"] == kept["roles"]
        assert lean_d["members"][BOT_ID] == kept["members"][BOT_ID]
    assert any(full_d["presences"] for n, full_d in snapshot_of(full.shard(0)) if n == "GUILD_CREATE")


def test_delete_with_unavailable_is_an_outage_and_without_it_the_guild_is_gone() -> None:
    world = World(5)
    cache = GuildStateCache()
    start(world, cache)
    gone, down, fine = list(world.guilds)
    cache.apply(0, "GUILD_DELETE", {"id": down, "unavailable": True})
    cache.apply(0, "GUILD_DELETE", {"id": gone})
    shard = cache.shard(0)
    assert [g["id"] for g in shard.ready_fields()["guilds"]] == [down, fine]
    assert [(n, d["id"]) for n, d in shard.guild_events()] == [
        ("GUILD_DELETE", down),
        ("GUILD_CREATE", fine),
    ]
    assert dict(shard.guild_events())["GUILD_DELETE"] == {"id": down, "unavailable": True}
    # Events for a guild in an outage change nothing; its return brings it back whole.
    cache.apply(0, "CHANNEL_CREATE", {"id": "9", "guild_id": down, "type": 0})
    cache.apply(0, "GUILD_CREATE", world.guild_create(down))
    assert [(n, d["id"]) for n, d in shard.guild_events()] == [("GUILD_CREATE", down), ("GUILD_CREATE", fine)]
    assert shard.guild_create(down) == world.guild_create(down)
    assert not shard.is_outage(down)


def test_guilds_still_loading_after_ready_get_no_event_and_a_new_ready_starts_over() -> None:
    world = World(6)
    cache = GuildStateCache()
    first, second, third = world.guilds
    cache.apply(0, "READY", world.ready())
    cache.apply(0, "GUILD_CREATE", world.guild_create(second))
    shard = cache.shard(0)
    assert [g["id"] for g in shard.ready_fields()["guilds"]] == [first, second, third]
    assert [(n, d["id"]) for n, d in shard.guild_events()] == [("GUILD_CREATE", second)]
    # A new upstream session: every guild comes again, and one the bot left meanwhile is not listed.
    again = world.ready()
    again["guilds"] = again["guilds"][1:]
    cache.apply(0, "READY", again)
    assert list(shard.guild_events()) == []
    assert [g["id"] for g in shard.ready_fields()["guilds"]] == [second, third]


def test_thread_list_sync_replaces_the_synced_channels_threads_only() -> None:
    cache = ShardCache(0)
    cache.apply("READY", {"user": {"id": BOT_ID}, "application": {"id": BOT_ID}, "guilds": [{"id": "1"}]})
    channels = [{"id": c, "type": 0} for c in ("10", "20", "30")]
    threads = [
        {"id": "11", "parent_id": "10", "guild_id": "1"},
        {"id": "12", "parent_id": "10", "guild_id": "1"},
        {"id": "21", "parent_id": "20", "guild_id": "1"},
        {"id": "31", "parent_id": "30", "guild_id": "1"},
    ]
    cache.apply("GUILD_CREATE", {"id": "1", "channels": channels, "threads": threads, "member_count": 1})
    new = {"id": "13", "parent_id": "10", "guild_id": "1"}
    cache.apply(
        "THREAD_LIST_SYNC",
        {
            "guild_id": "1",
            "channel_ids": ["10", "20"],
            "threads": [new],
            "members": [{"id": "13", "user_id": BOT_ID, "flags": 0}],
        },
    )
    got = {t["id"]: t for t in cache.guild_create("1")["threads"]}
    assert set(got) == {"13", "31"}
    assert got["13"] == {**new, "member": {"id": "13", "user_id": BOT_ID, "flags": 0}}
    # Without channel_ids the sync covers the whole guild.
    cache.apply("THREAD_LIST_SYNC", {"guild_id": "1", "threads": [threads[2]], "members": []})
    assert [t["id"] for t in cache.guild_create("1")["threads"]] == ["21"]


def test_a_snapshot_for_narrower_intents_is_narrowed_like_discord() -> None:
    world = World(8)
    cache = GuildStateCache()
    start(world, cache)
    gid = next(iter(world.guilds))
    member = next(uid for uid in world.guilds[gid]["members"] if uid != BOT_ID)
    channel = next(iter(world.guilds[gid]["channels"]))
    cache.apply(0, "PRESENCE_UPDATE", {"user": {"id": member}, "guild_id": gid, "status": "online"})
    cache.apply(0, "VOICE_STATE_UPDATE", {"guild_id": gid, "user_id": member, "channel_id": channel})
    shard = cache.shard(0)
    no_presences = int(GatewayIntents.GUILDS | GatewayIntents.GUILD_MEMBERS)
    narrowed = shard.guild_create(gid, no_presences)
    assert narrowed is not None
    assert {m["user"]["id"] for m in narrowed["members"]} == {BOT_ID, member}  # the bot and who is in voice
    assert narrowed["presences"] == []
    assert len(shard.guild_create(gid)["members"]) == len(world.guilds[gid]["members"])
    assert list(shard.guild_events(int(GatewayIntents.GUILD_MESSAGES))) == []  # no GUILDS: no GUILD_CREATE


def test_ready_data_is_a_whole_ready_for_a_client() -> None:
    world = World(9)
    cache = GuildStateCache()
    start(world, cache)
    ready = cache.shard(0).ready_data(session_id="abc", resume_gateway_url="ws://proxy", shard=(0, 2))
    assert ready["session_id"] == "abc" and ready["resume_gateway_url"] == "ws://proxy"
    assert ready["shard"] == [0, 2] and ready["v"] == 10
    assert ready["user"] == world.user and ready["application"] == {"id": BOT_ID, "flags": 0}
    assert ready["guilds"] == [{"id": gid, "unavailable": True} for gid in world.guilds]


def test_save_and_load_round_trip_every_shard(tmp_path) -> None:
    worlds = {0: World(21), 5: World(22)}
    cache = GuildStateCache()
    for sid, world in worlds.items():
        start(world, cache, sid)
        for _ in range(200):
            for name, d in world.step():
                cache.apply(sid, name, d)
    path = tmp_path / "proxy-cache.json"
    cache.save(path)
    assert orjson.loads(path.read_bytes())["version"] == CACHE_FILE_VERSION
    loaded = GuildStateCache.load(path)
    assert sorted(loaded.shards) == [0, 5]
    for sid, world in worlds.items():
        assert loaded.shard(sid).ready_fields() == cache.shard(sid).ready_fields()
        assert snapshot_of(loaded.shard(sid)) == expected_snapshot(world)
    # The loaded cache goes on following the stream.
    world = worlds[0]
    for _ in range(100):
        for name, d in world.step():
            loaded.apply(0, name, d)
    assert snapshot_of(loaded.shard(0)) == expected_snapshot(world)
    # Loading with members left out drops them, but the bot's own member stays.
    lean = GuildStateCache.load(path, CacheOptions(members=False))
    for name, d in snapshot_of(lean.shard(5)):
        if name == "GUILD_CREATE":
            assert set(d["members"]) == {BOT_ID}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{not json", "is not JSON"),
        (orjson.dumps({"kind": "shardtui-proxy-cache", "version": 0, "shards": {}}), "version 0"),
        (orjson.dumps({"kind": "something else"}), "not a shardtui proxy cache file"),
        (orjson.dumps({"kind": "shardtui-proxy-cache", "version": 1, "shards": {"x": {}}}), "corrupt"),
        (
            orjson.dumps(
                {"kind": "shardtui-proxy-cache", "version": 1, "shards": {"0": {"guilds": [{"id": "1"}]}}}
            ),
            "unknown state",
        ),
    ],
)
def test_a_bad_file_is_one_clear_error_and_no_cache(tmp_path, caplog, content: bytes, problem: str) -> None:
    path = tmp_path / "proxy-cache.json"
    path.write_bytes(content)
    with pytest.raises(CacheFileError, match=problem):
        GuildStateCache.load(path)
    with caplog.at_level(logging.WARNING, logger="shardtui.proxy"):
        cache = GuildStateCache.load_or_empty(path)
    assert cache.shards == {}
    lines = [r.getMessage() for r in caplog.records if r.name == "shardtui.proxy"]
    assert len(lines) == 1 and str(path) in lines[0] and problem in lines[0], lines


def test_no_file_yet_is_a_quiet_empty_cache(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="shardtui.proxy"):
        cache = GuildStateCache.load_or_empty(tmp_path / "missing.json")
    assert cache.shards == {} and caplog.records == []
