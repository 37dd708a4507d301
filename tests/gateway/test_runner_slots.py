"""A connected shard's per-shard objects carry no instance dict (issue #18: memory per idle shard); a
typo'd attribute on them is an error rather than a silently new field."""

from __future__ import annotations

import gc

import pytest
from support.manager import options_for

from shardtui.gateway.connection import Connection
from shardtui.gateway.delivery import Delivery
from shardtui.gateway.manager import ShardManager
from shardtui.gateway.outbox import Outbox
from shardtui.gateway.runner import ShardRunner
from shardtui.gateway.shard import Shard


async def test_a_connected_shards_objects_have_no_instance_dict(sandbox_factory) -> None:
    sandbox = await sandbox_factory(guilds=2, shards=2, max_concurrency=2)
    manager = ShardManager(options_for(sandbox, shard_total=2, max_concurrency=2))
    await manager.initialize()
    try:
        assert await manager.wait_until_connected(timeout=10)
        gc.collect()
        # Runners of earlier tests may still be alive; only the connected ones are this manager's.
        runners = [obj for obj in gc.get_objects() if type(obj) is ShardRunner and obj._ws is not None]
        assert sorted(runner.shard_id.id for runner in runners) == [0, 1]
        for runner in runners:
            parts = [runner, runner._shard, runner._outbox, runner._delivery, runner._conn]
            assert [type(part) for part in parts] == [ShardRunner, Shard, Outbox, Delivery, Connection]
            for part in parts:
                assert not hasattr(part, "__dict__"), type(part).__name__
            with pytest.raises(AttributeError):
                runner._shard.sequence = 1  # type: ignore[attr-defined]
    finally:
        await manager.shutdown_all()
