"""Redis going away mid-run: shards keep running, identifies wait and say why, all resumes after."""

from __future__ import annotations

import asyncio

from support.fleet import start_member, stop_member, wait_for_snapshot
from support.waiting import wait_until

from shardtui.gateway.models import ConnectionStage, ShardId


async def test_stopping_redis_keeps_shards_up_and_delays_identifies_until_it_is_back(
    sandbox_factory, private_redis, cluster_name: str
):
    sandbox = await sandbox_factory(shards=2, max_concurrency=1, identify_window=0.1)
    node, manager = await start_member(
        private_redis.url, cluster_name, "solo", (0, 1), sandbox.rest_url, sandbox.token, 2
    )
    try:
        assert await manager.wait_until_connected(10)
        identifies_before = sandbox.stats()["shards"]["1"]["identifies"]
        private_redis.stop()
        await wait_until(lambda: node.publisher.problem is not None, what="the publisher noticing")
        assert node.problem is not None and node.problem.startswith(
            f"Redis at {private_redis.url} unreachable"
        )
        # Running shards do not depend on Redis.
        assert all(info.stage is ConnectionStage.CONNECTED for info in manager.runners.values())

        # A fresh identify must wait for Redis: the gate never guesses.
        await manager.restart(ShardId(1), force_identify=True)
        await wait_until(lambda: node.gate.waiting_reason is not None, what="the gate waiting")
        assert "identifies wait until it is back" in node.gate.waiting_reason
        assert manager.queue_status().waiting_reason == node.gate.waiting_reason
        await asyncio.sleep(0.3)
        assert sandbox.stats()["shards"]["1"]["identifies"] == identifies_before
        assert manager.runners[ShardId(0)].stage is ConnectionStage.CONNECTED

        private_redis.start()
        assert await manager.wait_until_connected(10)
        assert sandbox.stats()["shards"]["1"]["identifies"] == identifies_before + 1
        assert sandbox.stats()["identify_violations"] == 0
        # The Redis that came back is empty: one publication later the fleet is whole again.
        snapshot = await wait_for_snapshot(node.view, lambda s: s.stage_counts() == {"connected": 2})
        assert [s.process for s in snapshot.shards] == ["solo", "solo"]
        await wait_until(lambda: node.problem is None, what="the command listener reconnecting")
        assert node.gate.waiting_reason is None
    finally:
        await stop_member(node, manager)
