"""Fixtures for the proxy's end-to-end tests: a real ShardManager upstream of the embedded sandbox,
a `Proxy` in front of it, and raw clients (tests/sandbox/rawclient.py) closed at teardown."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sandbox"))

from proxy_helpers import ProxyRig, Restarts, start_rig
from rawclient import RawClient


@pytest.fixture
async def rigs() -> AsyncIterator[Callable[..., Awaitable[ProxyRig]]]:
    """``await rigs(sandbox, shard_total=2, ...)`` -> a started ProxyRig; all stopped at teardown."""
    made: list[ProxyRig] = []

    async def make(sandbox: Any, **kwargs: Any) -> ProxyRig:
        rig = await start_rig(sandbox, **kwargs)
        made.append(rig)
        return rig

    yield make
    for rig in reversed(made):
        await rig.stop()


@pytest.fixture
async def raw() -> AsyncIterator[Callable[..., Awaitable[RawClient]]]:
    """``await raw(url, compress=None)`` -> a connected RawClient (closed at teardown)."""
    clients: list[RawClient] = []

    async def connect(url: str, **kwargs: Any) -> RawClient:
        client = await RawClient.connect(url, **kwargs)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.close()


@pytest.fixture
async def restarts(sandbox_factory: Any, tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Restarts]]]:
    """``await restarts(shards=2, guilds=8)`` -> a `Restarts` over a new sandbox, its first runtime
    started; every runtime closed at teardown."""
    made: list[Restarts] = []

    async def make(**sandbox_settings: Any) -> Restarts:
        sandbox = await sandbox_factory(**sandbox_settings)
        restarts = Restarts(sandbox, str(tmp_path / "state.json"))
        made.append(restarts)
        await restarts.start()
        return restarts

    yield make
    for restarts in made:
        await restarts.close()
