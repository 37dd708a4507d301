"""Console test helpers: a fast embedded-sandbox config and bounded waits between pilot cycles."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from textual.pilot import Pilot

from shardtui.config import Config

#: Upper bound on polls per wait; each poll yields to the app and the shards for a moment.
MAX_POLLS = 1500
POLL = 0.01


def fast_config(shards: int = 3, **sandbox: object) -> Config:
    """Embedded sandbox, short heartbeats and identify windows, a little traffic, fast table flushes."""
    config = Config()
    config.gateway.mode = "sandbox"
    config.gateway.shards = shards
    config.sandbox.shards = shards
    config.sandbox.guilds = 6
    config.sandbox.identify_window = 0.05
    config.sandbox.heartbeat_interval_ms = 500
    config.sandbox.resume_window = 30.0
    config.sandbox.event_rate = 10.0
    for key, value in sandbox.items():
        setattr(config.sandbox, key, value)
    config.ui.refresh_interval = 0.05
    return config


async def wait_until(pilot: Pilot, condition: Callable[[], object], what: str) -> None:
    """Poll ``condition`` between app cycles; fail naming ``what`` if it never holds."""
    for _ in range(MAX_POLLS):
        if condition():
            return
        await pilot.pause(POLL)
    pytest.fail(f"timed out waiting for {what}")
