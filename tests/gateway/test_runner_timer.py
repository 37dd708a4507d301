"""The runner's timer is one loop callback per connected shard, and a stopped shard leaves none behind."""

from __future__ import annotations

import asyncio

from support.manager import options_for

from shardtui.gateway.manager import ShardManager
from shardtui.gateway.runner import ShardRunner


def _runner_timers() -> list[asyncio.TimerHandle]:
    loop = asyncio.get_running_loop()
    return [
        handle
        for handle in loop._scheduled  # type: ignore[attr-defined]
        if not handle.cancelled() and isinstance(getattr(handle._callback, "__self__", None), ShardRunner)
    ]


async def test_each_connected_shard_has_one_timer_and_a_stopped_one_none(sandbox_factory) -> None:
    sandbox = await sandbox_factory(guilds=3, shards=3, max_concurrency=3, heartbeat_interval_ms=41_250)
    manager = ShardManager(options_for(sandbox, shard_total=3, max_concurrency=3))
    await manager.initialize()
    try:
        assert await manager.wait_until_connected(timeout=10)
        await asyncio.sleep(0.05)
        owners = sorted(
            handle._callback.__self__.shard_id.id  # type: ignore[attr-defined]
            for handle in _runner_timers()
        )
        assert owners == [0, 1, 2]
    finally:
        await manager.shutdown_all()
    assert _runner_timers() == []
