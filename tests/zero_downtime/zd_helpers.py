"""Shared helpers for the zero-downtime tests: manager options for a sandbox, waiting, and a
handler that records which sandbox events reached the bot (tests only: the library never reads
the sandbox's event ids)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from shardtui.gateway.manager import ShardManagerOptions
from shardtui.gateway.models import Dispatch
from shardtui.gateway.protocol import GatewayIntents
from shardtui.sandbox.accounting import EVENT_ID_KEY

#: Traffic kinds with a Discord identity (message id, user + message + emoji): the
#: exactly-once checks use these. Typing and presence updates carry no identity (see reshard.py).
IDENTIFIED_MIX = {
    "MESSAGE_CREATE": 5.0,
    "MESSAGE_REACTION_ADD": 2.0,
    "DM_MESSAGE_CREATE": 0.5,
}


def options_for(sandbox: Any, **overrides: Any) -> ShardManagerOptions:
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
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition never became true")
        await asyncio.sleep(0.02)


class Recorder:
    """The bot's event handler: counts every sandbox event id it was given, per name."""

    def __init__(self) -> None:
        self.ids: Counter[int] = Counter()
        self.names: Counter[str] = Counter()
        self.by_shard: dict[int, list[int]] = {}

    def __call__(self, dispatch: Dispatch) -> None:
        self.names[dispatch.name] += 1
        data = dispatch.data
        if isinstance(data, dict) and EVENT_ID_KEY in data:
            event_id = data[EVENT_ID_KEY]
            self.ids[event_id] += 1
            self.by_shard.setdefault(dispatch.shard_id.id, []).append(event_id)

    def duplicates(self) -> list[int]:
        return sorted(i for i, n in self.ids.items() if n > 1)
