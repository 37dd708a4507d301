"""Rolling restart against the real sandbox: 8 shards under max_concurrency 2 reconnect a round at a
time (one shard per bucket), resume-first, and the sandbox never sees two identifies in one bucket
within a window; progress is observable and an abort stops before the next round."""

from __future__ import annotations

import asyncio

import pytest
from support.manager import options_for
from support.waiting import eventually
from support.zero_downtime import IDENTIFIED_MIX, Recorder

from shardtui.gateway.manager import ShardManager
from shardtui.gateway.models import ConnectionStage, ShardId, ShardLogEvent
from shardtui.gateway.rolling import RollingState, plan_rounds


def test_rounds_take_one_shard_per_bucket():
    rounds = plan_rounds([ShardId(i) for i in range(8)], 2)
    assert [[s.id for s in r] for r in rounds] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert [[s.id for s in r] for r in plan_rounds([ShardId(i) for i in (0, 2, 3)], 2)] == [[0, 3], [2]]


async def test_rolling_restart_of_8_shards_never_breaks_the_identify_limit(sandbox_factory):
    sandbox = await sandbox_factory(
        guilds=16, shards=8, max_concurrency=2, event_rate=40.0, event_mix=IDENTIFIED_MIX
    )
    recorder = Recorder()
    manager = ShardManager(options_for(sandbox, event_handler=recorder))
    logs: list[str] = []
    stages: list[tuple[int, ConnectionStage]] = []
    manager.subscribe(lambda e: logs.append(e.message) if isinstance(e, ShardLogEvent) else None)
    try:
        await manager.initialize()
        assert await manager.wait_until_connected(15)
        identifies_before = {s: sandbox.stats()["shards"][str(s)]["identifies"] for s in range(8)}

        plan = manager.plan("rolling_restart", manager.runners)
        assert (plan.identifies, plan.resumes) == (0, 8)
        assert "4 rounds" in plan.text
        status = await manager.rolling_restart()
        assert status.state is RollingState.FINISHED
        assert (status.resumes, status.identifies) == (8, 0)
        assert sorted(s.id for s in status.done) == list(range(8))
        stats = sandbox.stats()
        assert all(stats["shards"][str(s)]["identifies"] == identifies_before[s] for s in range(8))
        assert all(stats["shards"][str(s)]["resumes"] == 1 for s in range(8))

        plan = manager.plan("rolling_restart_identify", manager.runners)
        assert plan.identifies == 8
        manager.subscribe(lambda e: stages.append((e.shard_id.id, e.new)) if hasattr(e, "new") else None)
        status = await manager.rolling_restart(force_identify=True)
        assert status.state is RollingState.FINISHED
        assert status.identifies == 8
        stats = sandbox.stats()
        assert stats["identify_violations"] == 0
        assert all(stats["shards"][str(s)]["identifies"] == identifies_before[s] + 1 for s in range(8))
        # Never more than one round (one shard per bucket) away from CONNECTED at once.
        down: set[int] = set()
        most_down = 0
        for shard, stage in stages:
            if stage is ConnectionStage.CONNECTED:
                down.discard(shard)
            else:
                down.add(shard)
            most_down = max(most_down, len(down))
        assert most_down == 2
        assert any("round 4/4" in line for line in logs)
        assert await manager.wait_until_connected(5)
        sandbox.quiesce()
        await eventually(
            lambda: all(sandbox.delivery_report(s, recorder.by_shard.get(s, [])).ok for s in range(8))
        )
    finally:
        await manager.shutdown_all()


async def test_abort_stops_before_the_next_round(sandbox_factory):
    sandbox = await sandbox_factory(guilds=8, shards=4, max_concurrency=1, identify_window=0.2)
    manager = ShardManager(options_for(sandbox))
    try:
        await manager.initialize()
        assert await manager.wait_until_connected(10)
        assert not manager.abort_rolling_restart()  # nothing running
        task = asyncio.create_task(manager.rolling_restart(force_identify=True))
        await eventually(lambda: manager.rolling_status is not None and manager.rolling_status.done)
        assert manager.abort_rolling_restart()
        status = await task
        assert status.state is RollingState.ABORTED
        assert 1 <= len(status.done) < 4
        assert "aborted" in status.describe()
        assert await manager.wait_until_connected(10)
        assert sandbox.stats()["identify_violations"] == 0
    finally:
        await manager.shutdown_all()


async def test_a_second_rolling_restart_is_refused_while_one_runs(sandbox_factory):
    sandbox = await sandbox_factory(guilds=4, shards=2, identify_window=0.2)
    manager = ShardManager(options_for(sandbox))
    try:
        await manager.initialize()
        assert await manager.wait_until_connected(10)
        task = asyncio.create_task(manager.rolling_restart(force_identify=True))
        await asyncio.sleep(0)
        try:
            await manager.rolling_restart()
        except RuntimeError as exc:
            assert "already running" in str(exc)
        else:
            raise AssertionError("a second rolling restart was accepted")
        assert (await task).state is RollingState.FINISHED
    finally:
        await manager.shutdown_all()


async def test_identifies_beyond_the_daily_budget_are_refused_before_any_restart(sandbox_factory):
    sandbox = await sandbox_factory(guilds=4, shards=2, session_start_total=3)
    manager = ShardManager(options_for(sandbox))
    try:
        await manager.initialize()
        assert await manager.wait_until_connected(10)
        plan = manager.plan("rolling_restart_identify", manager.runners)
        assert plan.over_budget == 1
        with pytest.raises(RuntimeError, match="over the budget"):
            await manager.rolling_restart(force_identify=True)
        assert manager.rolling_status.state is RollingState.FAILED
        assert sum(s["identifies"] for s in sandbox.stats()["shards"].values()) == 2
        # Resuming costs nothing from the budget, so that one still runs.
        assert (await manager.rolling_restart()).state is RollingState.FINISHED
    finally:
        await manager.shutdown_all()
