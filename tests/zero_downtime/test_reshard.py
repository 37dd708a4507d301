"""Live reshard against the real sandbox (which routes each session by the total it identified
with): 4 -> 8 shards under steady traffic delivers every event exactly once, and ``runners`` ends
with only the new set. Plus the dedupe identity rules and the refusals."""

from __future__ import annotations

import asyncio

import pytest
from support.manager import options_for
from support.waiting import eventually
from support.zero_downtime import IDENTIFIED_MIX, Recorder

from shardtui.gateway.manager import ShardManager
from shardtui.gateway.models import ConnectionStage, Dispatch, ShardId
from shardtui.gateway.reshard import DispatchRouter, event_identity

TRAFFIC = {"MESSAGE_CREATE", "MESSAGE_REACTION_ADD"}


def sent_traffic_ids(sandbox, shard_ids) -> set[int]:
    return {e.event_id for s in shard_ids for e in sandbox.sent_events(s) if e.name in TRAFFIC}


async def test_reshard_4_to_8_under_traffic_delivers_each_event_once(sandbox_factory):
    sandbox = await sandbox_factory(
        guilds=24, shards=4, max_concurrency=2, event_rate=80.0, event_mix=IDENTIFIED_MIX
    )
    recorder = Recorder()
    manager = ShardManager(options_for(sandbox, event_handler=recorder))
    try:
        await manager.initialize()
        assert await manager.wait_until_connected(10)
        await eventually(lambda: len(recorder.ids) > 30)

        plan = manager.plan("reshard", range(8))
        assert (plan.identifies, plan.over_budget) == (8, 0)
        assert "from 4 to 8 shards" in plan.text
        result = await manager.reshard(8, dedupe_grace=1.0)
        assert (result.old_total, result.new_total) == (4, 8)

        assert sorted(s.id for s in manager.runners) == list(range(8))
        assert all(i.total == 8 and i.stage is ConnectionStage.CONNECTED for i in manager.runners.values())
        assert manager.shard_total == 8
        # Traffic keeps flowing through the new set alone.
        count = len(recorder.ids)
        await eventually(lambda: len(recorder.ids) > count + 40)
        sandbox.quiesce()
        # What was sent before the traffic stopped may still be on its way: wait until it all
        # arrived rather than for a fixed time, then give a late duplicate a moment to show up.
        await eventually(lambda: sent_traffic_ids(sandbox, range(8)) <= recorder.ids.keys())
        await asyncio.sleep(0.3)

        sent = sent_traffic_ids(sandbox, range(8))
        received = {i for i in recorder.ids if i in sent}
        assert sent - received == set(), "events lost across the reshard"
        assert recorder.duplicates() == [], "events delivered twice across the reshard"
        # Both sets really overlapped: the old sessions saw events the new ones saw too.
        assert result.duplicates_dropped > 0
        stats = sandbox.stats()
        assert stats["identify_violations"] == 0
        assert sum(s["identifies"] for s in stats["shards"].values()) == 12
        # Only the old set's READY / guild announcements reached the bot.
        assert recorder.names["READY"] == 4 and recorder.names["GUILD_CREATE"] == 24
        alive = [s for s in stats["sessions"] if s["alive"]]
        assert len(alive) == 8
        assert await manager.wait_until_connected(1)
        # The new set is the manager's own now: restart and rolling restart work on it.
        status = await manager.rolling_restart()
        assert status.total == 8 and status.state.value == "finished"
    finally:
        await manager.shutdown_all()
    assert all(not i.running for i in manager.runners.values())


async def test_reshard_refusals(sandbox_factory):
    sandbox = await sandbox_factory(guilds=4, shards=2, session_start_total=3)
    manager = ShardManager(options_for(sandbox))
    with pytest.raises(RuntimeError, match="not running"):
        await manager.reshard(4)
    try:
        await manager.initialize()
        assert await manager.wait_until_connected(10)
        with pytest.raises(ValueError, match="already running 2"):
            await manager.reshard(2)
        with pytest.raises(ValueError, match="positive integer"):
            await manager.reshard(0)
        plan = manager.plan("reshard", range(4))
        assert plan.over_budget == 3
        with pytest.raises(RuntimeError, match="over the budget"):
            await manager.reshard(4)
        assert sorted(s.id for s in manager.runners) == [0, 1]
        assert manager.options.event_handler is None
    finally:
        await manager.shutdown_all()


def d(name: str, shard: int = 0, **data) -> Dispatch:
    return Dispatch(ShardId(shard), name, 1, data)


def test_event_identity_uses_discord_ids_not_seq():
    a = Dispatch(ShardId(0), "MESSAGE_CREATE", 5, {"id": "1", "guild_id": "9", "content": "x"})
    b = Dispatch(ShardId(3), "MESSAGE_CREATE", 77, {"id": "1", "guild_id": "9", "content": "x"})
    assert event_identity(a) == event_identity(b)
    assert event_identity(d("MESSAGE_CREATE", id="2")) != event_identity(a)
    react = {"message_id": "5", "user_id": "6", "emoji": {"id": None, "name": "x"}}
    assert event_identity(d("MESSAGE_REACTION_ADD", **react)) != event_identity(
        d("MESSAGE_REACTION_ADD", **{**react, "emoji": {"id": None, "name": "y"}})
    )
    assert event_identity(d("READY", session_id="s")) is None
    typing = {"channel_id": "1", "user_id": "2", "timestamp": 10, "guild_id": "3"}
    assert event_identity(d("TYPING_START", **typing)) == event_identity(d("TYPING_START", 5, **typing))
    assert event_identity(d("TYPING_START", **typing)) != event_identity(
        d("TYPING_START", **{**typing, "timestamp": 11})
    )


async def test_router_holds_the_new_set_until_the_switch_and_keeps_order():
    got: list[str] = []
    router = DispatchRouter(lambda x: got.append(x.data.get("id", x.name)))
    router.old_side(d("MESSAGE_CREATE", id="1"))
    router.new_side(d("READY", guilds=[{"id": "g1", "unavailable": True}]))
    router.new_side(d("GUILD_CREATE", id="g1"))
    router.new_side(d("MESSAGE_CREATE", id="1"))
    router.new_side(d("MESSAGE_CREATE", id="2"))
    router.new_side(d("MESSAGE_CREATE", id="3"))
    router.old_side(d("MESSAGE_CREATE", id="2"))
    assert got == ["1", "2"]
    assert await router.switch() == 1  # only "3": the old set delivered 1 and 2
    router.old_side(d("MESSAGE_CREATE", id="4"))  # a late copy from the closing old set
    router.new_side(d("MESSAGE_CREATE", id="4"))
    router.new_side(d("GUILD_CREATE", id="g2"))  # a guild joined after READY is delivered
    assert got == ["1", "2", "3", "4", "g2"]
    assert router.suppressed_announcements == 2


async def test_a_new_set_that_cannot_connect_leaves_the_old_set_running(sandbox_factory):
    # Discord's large-bot rule (total a multiple of 2): the 3-shard set is refused with 4010.
    sandbox = await sandbox_factory(guilds=6, shards=2, shard_multiple=2, event_rate=20.0)
    recorder = Recorder()
    manager = ShardManager(options_for(sandbox, event_handler=recorder))
    try:
        await manager.initialize()
        assert await manager.wait_until_connected(10)
        with pytest.raises(RuntimeError, match=r"did not connect.*old 2 shards keep running"):
            await manager.reshard(3)
        assert sorted(s.id for s in manager.runners) == [0, 1]
        assert manager.shard_total == 2
        assert manager.options.event_handler is recorder
        assert await manager.wait_until_connected(5)
        count = len(recorder.ids)
        await eventually(lambda: len(recorder.ids) > count + 5)
        alive = [s for s in sandbox.stats()["sessions"] if s["alive"]]
        assert len(alive) == 2
    finally:
        await manager.shutdown_all()


async def test_shutdown_during_a_reshard_closes_both_sets(sandbox_factory):
    sandbox = await sandbox_factory(guilds=8, shards=2, identify_window=0.3)
    manager = ShardManager(options_for(sandbox))
    await manager.initialize()
    assert await manager.wait_until_connected(10)
    reshard = asyncio.create_task(manager.reshard(6))
    await eventually(lambda: sum(1 for s in sandbox.stats()["sessions"] if s["alive"]) >= 3)
    await manager.shutdown_all(keep_sessions=False)
    with pytest.raises(RuntimeError, match="shutting down"):
        await reshard
    await eventually(lambda: sandbox.stats()["connections_open"] == 0, within=5)
