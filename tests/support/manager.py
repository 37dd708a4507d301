"""Options for a ShardManager of the sandbox's shards (waiting for a state: ``support.waiting``)."""

from __future__ import annotations

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
