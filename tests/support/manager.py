"""Helpers for tests that drive a ShardManager against the sandbox: its options, and waiting for a
state. (On the path for every test directory: pytest puts the folder of tests/conftest.py there.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from shardtui.gateway.manager import ShardManagerOptions
from shardtui.gateway.protocol import GatewayIntents


def options_for(sandbox: Any, **overrides: Any) -> ShardManagerOptions:
    """Options for a manager of ``sandbox``'s shards, paced by its identify window, health check off."""
    values: dict[str, Any] = {
        "token": sandbox.token,
        "intents": GatewayIntents.default(),
        "rest_url": sandbox.rest_url,
        "identify_window": sandbox.settings.identify_window,
        "shutdown_timeout": 3.0,
        "health_interval": 0.0,
    }
    values.update(overrides)
    return ShardManagerOptions(**values)


async def eventually(predicate: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until ``predicate()`` holds (polling), or fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition never became true")
        await asyncio.sleep(0.02)
