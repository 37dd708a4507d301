"""Helpers for fleet tests: a small fleet member around a real ShardManager and sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from shardtui.fleet import ClusterConfig, FleetNode, FleetSnapshot, FleetView
from shardtui.gateway.manager import ShardManager, ShardManagerOptions
from shardtui.gateway.protocol import GatewayIntents


def member_options(rest_url: str, token: str, total: int, *, window: float = 0.1) -> ShardManagerOptions:
    return ShardManagerOptions(
        token=token,
        intents=GatewayIntents.default(),
        rest_url=rest_url,
        shard_total=total,
        identify_window=window,
        health_interval=0,
        shutdown_timeout=2.0,
    )


async def start_member(
    redis_url: str,
    cluster: str,
    name: str,
    shard_range: tuple[int, int],
    rest_url: str,
    token: str,
    total: int,
    **cluster_overrides: Any,
) -> tuple[FleetNode, ShardManager]:
    config = ClusterConfig(
        redis_url=redis_url,
        name=name,
        cluster=cluster,
        shard_range=shard_range,
        heartbeat_interval=cluster_overrides.pop("heartbeat_interval", 0.2),
        heartbeat_ttl=cluster_overrides.pop("heartbeat_ttl", 1.0),
        command_timeout=cluster_overrides.pop("command_timeout", 3.0),
    )
    node = FleetNode(config)
    manager = node.build_manager(member_options(rest_url, token, total))
    await node.start()
    await node.wait_listening()
    await manager.initialize()
    return node, manager


async def stop_member(node: FleetNode, manager: ShardManager) -> None:
    await manager.shutdown_all()
    await node.close()


async def wait_for_snapshot(
    view: FleetView, predicate: Callable[[FleetSnapshot], bool], within: float = 10.0
) -> FleetSnapshot:
    """Poll the fleet view until ``predicate`` holds; fail with the last snapshot's stages."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    snapshot = await view.snapshot()
    while not predicate(snapshot):
        if loop.time() > deadline:
            raise AssertionError(
                f"fleet never reached the expected state; last: {snapshot.stage_counts()} processes "
                f"{[(p.name, p.state.value) for p in snapshot.processes]} problem {snapshot.problem}"
            )
        await asyncio.sleep(0.05)
        snapshot = await view.snapshot()
    return snapshot
