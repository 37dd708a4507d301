"""``ShardManager.messenger(shard_id)``: the handle for commands to a shard reaches its live runner,
and a shard without a runner has none (a command to a stopped runner would go nowhere)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from shardtui.gateway.manager import ShardManager, ShardManagerOptions
from shardtui.gateway.messenger import ShardMessenger
from shardtui.gateway.models import ConnectionStage, Presence, ShardId
from shardtui.gateway.protocol import GatewayIntents, Status
from shardtui.sandbox import Sandbox


async def eventually(predicate: Callable[[], bool], within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "condition never became true"
        await asyncio.sleep(0.02)


async def test_messenger_reaches_the_live_runner_and_is_gone_while_the_shard_is_stopped(
    sandbox: Sandbox,
) -> None:
    # Options spelled out here: the shared test helpers are moving (tests/support on main).
    manager = ShardManager(
        ShardManagerOptions(
            token=sandbox.token,
            intents=GatewayIntents.default(),
            rest_url=sandbox.rest_url,
            identify_window=sandbox.settings.identify_window,
            shutdown_timeout=3.0,
            health_interval=0.0,
        )
    )
    assert manager.messenger(ShardId(0)) is None  # nothing queued yet
    await manager.initialize()
    try:
        assert await manager.wait_until_connected(10.0)
        first = manager.messenger(ShardId(0))
        assert isinstance(first, ShardMessenger)
        first.set_presence(Presence(status=Status.DND))
        await eventually(lambda: (sandbox.presence(0) or {}).get("status") == "dnd")
        await eventually(lambda: manager.runners[ShardId(0)].presence == Presence(status=Status.DND))
        # The other shard was not told anything.
        assert (sandbox.presence(1) or {}).get("status") != "dnd"

        await manager.shutdown(ShardId(0))
        assert manager.runners[ShardId(0)].stage is ConnectionStage.DISCONNECTED
        assert manager.messenger(ShardId(0)) is None
        assert manager.messenger(ShardId(1)) is not None

        await manager.boot(ShardId(0))
        await eventually(lambda: manager.runners[ShardId(0)].stage is ConnectionStage.CONNECTED)
        second = manager.messenger(ShardId(0))
        assert second is not None and second is not first
        second.set_presence(Presence(status=Status.IDLE))
        await eventually(lambda: (sandbox.presence(0) or {}).get("status") == "idle")
    finally:
        await manager.shutdown_all()
    assert manager.messenger(ShardId(0)) is None
    assert manager.messenger(ShardId(1)) is None
