"""An idle shard keeps nothing of the messages it has handled: no READY, no GUILD_CREATE stays alive."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import pytest
from support.manager import options_for
from support.waiting import eventually

from shardtui.gateway.manager import ShardManager
from shardtui.gateway.models import Dispatch


def _decoded_by_the_client(obj: object) -> bool:
    # The in-process sandbox keeps its own copies for replay; only what the runner decoded counts.
    traceback = tracemalloc.get_object_traceback(obj)
    return traceback is not None and traceback[0].filename.endswith("runner.py")


def _kept_payloads() -> list[str]:
    """READY / GUILD_CREATE the client decoded that are still alive, as a Dispatch or as the raw payload."""
    gc.collect()
    kept = []
    for obj in gc.get_objects():
        if type(obj) is Dispatch and obj.name in ("READY", "GUILD_CREATE"):
            kept.append(f"Dispatch {obj.name}")
        elif (
            type(obj) is dict
            and obj.keys() == {"t", "s", "op", "d"}
            and obj["t"] in ("READY", "GUILD_CREATE")
            and _decoded_by_the_client(obj)
        ):
            kept.append(f"payload {obj['t']}")
    return kept


@pytest.mark.parametrize("compression", ["zlib-stream", "zstd-stream", "none"])
async def test_an_idle_shard_keeps_no_ready_or_guild_create(sandbox_factory, compression: str) -> None:
    sandbox = await sandbox_factory(guilds=3, shards=1, heartbeat_interval_ms=41_250)
    manager = ShardManager(options_for(sandbox, shard_total=1, compression=compression))
    tracemalloc.start(1)
    try:
        await manager.initialize()
        assert await manager.wait_until_connected(timeout=10)
        info = next(iter(manager.runners.values()))
        await eventually(lambda: info.guilds == 3)
        await asyncio.sleep(0.05)
        assert _kept_payloads() == []
    finally:
        tracemalloc.stop()
        await manager.shutdown_all()
