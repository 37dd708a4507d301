"""Shared fixtures: a real sandbox server on an ephemeral loopback port, and a real Redis."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from support.redis_server import RedisServer, free_port, need_redis_server

from shardtui.sandbox import Sandbox, SandboxSettings

#: Fast defaults for tests: short heartbeats and identify windows, few guilds, no background traffic.
FAST_SANDBOX_DEFAULTS: dict[str, Any] = {
    "guilds": 6,
    "shards": 2,
    "max_concurrency": 1,
    "identify_window": 0.1,
    "heartbeat_interval_ms": 1000,
    "resume_window": 30.0,
    "event_rate": 0.0,
    "seed": 1234,
    "members_per_guild": 6,
    "close_timeout": 0.5,
}

SandboxFactory = Callable[..., Awaitable[Sandbox]]


@pytest.fixture
async def sandbox_factory() -> AsyncIterator[SandboxFactory]:
    """``await sandbox_factory(**settings_overrides)`` -> a started Sandbox; all are stopped at teardown."""
    made: list[Sandbox] = []

    async def factory(**overrides: Any) -> Sandbox:
        settings = SandboxSettings(**{**FAST_SANDBOX_DEFAULTS, **overrides})
        sandbox = Sandbox(settings)
        await sandbox.start(host="127.0.0.1", port=0)
        made.append(sandbox)
        return sandbox

    yield factory
    for sandbox in reversed(made):
        await sandbox.stop()


@pytest.fixture
async def sandbox(sandbox_factory: SandboxFactory) -> Sandbox:
    """One started sandbox with the fast test defaults."""
    return await sandbox_factory()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis the whole run shares: ``REDIS_URL`` when set, else a ``redis-server`` started for it.

    Tests keep apart by fleet name (their ``cluster_name`` fixture removes its keys); a test that
    stops its Redis takes a private one instead.
    """
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    need_redis_server()
    server = RedisServer(free_port())
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
