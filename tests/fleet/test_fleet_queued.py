"""Shards another process has queued for an identify slot read as queued across the fleet, with why.

One process ("slow") identifies through a long window, so most of its shards wait: two at the Redis
gate, two still in its queuer. Another process sees those two as ``queued`` (not ``disconnected``)
with the bucket they wait for, in its ``FleetView`` and in the fleet console.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from support.fleet import member_options, start_member, stop_member, wait_for_snapshot
from support.waiting import wait_until

from shardtui.config import Config
from shardtui.fleet import ClusterConfig, FleetNode, FleetSnapshot
from shardtui.gateway.manager import ShardManager
from shardtui.gateway.models import ConnectionStage, ShardHealth
from shardtui.tui.fleet import FleetConsole

TOTAL = 8
#: Long enough that nothing queued behind the first grants starts during a test.
SLOW_WINDOW = 30.0


@pytest.fixture
async def slow_fleet(
    sandbox_factory, redis_url: str, redis: Redis, cluster_name: str
) -> AsyncIterator[tuple[FleetNode, ShardManager, FleetNode, ShardManager]]:
    """``fast`` runs shards 6-7 and is connected; ``slow`` runs 0-5 with a 30 s identify window:
    0 and 1 connect (one per bucket), 2 and 3 wait at the gate, 4 and 5 wait in its queuer."""
    sandbox = await sandbox_factory(shards=TOTAL, max_concurrency=2, identify_window=0.05)
    fast, fast_manager = await start_member(
        redis_url, cluster_name, "fast", (6, 7), sandbox.rest_url, sandbox.token, TOTAL
    )
    slow = FleetNode(
        ClusterConfig(
            redis_url=redis_url,
            name="slow",
            cluster=cluster_name,
            shard_range=(0, 5),
            heartbeat_interval=0.2,
            heartbeat_ttl=1.0,
            command_timeout=3.0,
        ),
        window=SLOW_WINDOW,
    )
    slow_manager = slow.build_manager(member_options(sandbox.rest_url, sandbox.token, TOTAL))
    try:
        assert await fast_manager.wait_until_connected(10)
        await slow.start()
        await slow.wait_listening()
        await slow_manager.initialize()
        yield fast, fast_manager, slow, slow_manager
    finally:
        await stop_member(slow, slow_manager)
        await stop_member(fast, fast_manager)


def _slow_waiting(snapshot: FleetSnapshot) -> bool:
    stages = {s.shard_id: s.stage for s in snapshot.shards if s.process == "slow"}
    return stages.get(0) == stages.get(1) == "connected" and stages.get(4) == stages.get(5) == "queued"


async def test_shards_queued_in_another_process_read_as_queued_with_their_bucket(slow_fleet):
    fast, _, _, slow_manager = slow_fleet
    snapshot = await wait_for_snapshot(fast.view, _slow_waiting)

    # What the slow process itself knows: 4 and 5 are not spawned yet.
    assert {int(s) for s in slow_manager.queue_status().queued} == {4, 5}
    for sid in (4, 5):
        shard = snapshot.shard(sid)
        assert shard is not None and shard.process == "slow" and not shard.lost
        assert shard.queued
        assert shard.stage == "queued"
        assert shard.waiting_reason == f"waiting for identify bucket {sid % 2}"
        # Console code reading ShardRunnerInfo sees what a queued local shard looks like, plus why.
        info = shard.to_info()
        assert info.stage is ConnectionStage.DISCONNECTED and info.running
        assert info.health is ShardHealth.DOWN  # not connected, so never "ok" (issue 17)
        assert info.health_reason == f"waiting for identify bucket {sid % 2}"
    # Connected and spawned shards are not queued; neither are the other process's.
    for sid in (0, 1, 2, 3, 6, 7):
        shard = snapshot.shard(sid)
        assert shard is not None and not shard.queued and shard.waiting_reason is None
        assert shard.stage != "queued"
    assert snapshot.queued() == {4, 5}
    assert snapshot.process("slow").stages["queued"] == 2
    assert snapshot.process("slow").waiting_reason is None  # held per bucket, not process-wide
    assert "queued" not in snapshot.process("fast").stages


async def test_a_queued_shard_shut_down_from_another_process_is_no_longer_queued(slow_fleet):
    fast, _, _, slow_manager = slow_fleet
    await wait_for_snapshot(fast.view, _slow_waiting)
    result = await fast.control.shutdown(5)
    assert result.ok, result.message
    assert result.process == "slow"
    await wait_until(
        lambda: {int(s) for s in slow_manager.queue_status().queued} == {4}, what="5 leaving the queue"
    )
    snapshot = await wait_for_snapshot(fast.view, lambda s: s.shard(5).stage == "disconnected")
    assert not snapshot.shard(5).queued and not snapshot.shard(5).info["running"]
    assert snapshot.shard(4).stage == "queued"


def _viewer_config(redis_url: str, cluster: str) -> Config:
    config = Config()
    config.ui.fleet = True
    config.ui.refresh_interval = 0.05
    config.cluster = ClusterConfig(redis_url=redis_url, name="viewer", cluster=cluster)
    return config


async def test_the_fleet_console_shows_another_process_s_queued_shards_as_queued(
    slow_fleet, redis_url: str, cluster_name: str
):
    fast, _, _, _ = slow_fleet
    await wait_for_snapshot(fast.view, _slow_waiting)
    app = FleetConsole(_viewer_config(redis_url, cluster_name))
    async with app.run_test(size=(160, 40)) as pilot:

        def stage_cells() -> dict[int, str]:
            return {sid: str(app.table.get_cell(str(sid), "stage")) for sid in app.model.rows}

        for _ in range(1500):
            if len(app.model.rows) == TOTAL and stage_cells().get(4) == "queued":
                break
            await pilot.pause(0.01)
        cells = stage_cells()
        assert cells[4] == cells[5] == "queued", cells
        assert cells[0] == cells[1] == cells[6] == cells[7] == "connected", cells
        assert app.model.stats().queued == 2
        assert app.model.rows[5].info.health_reason == "waiting for identify bucket 1"
        # The filter finds them by stage word and by reason.
        app.model.filter_text = "queued"
        assert sorted(sid for sid in app.model.rows if app.model.matches(sid)) == [4, 5]
        app.model.filter_text = "bucket 0"
        assert sorted(sid for sid in app.model.rows if app.model.matches(sid)) == [4]
        app.model.filter_text = ""
        assert "queued 2" in app.summary_text()
        await pilot.press("q")
