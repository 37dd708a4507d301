"""Fixtures for the sandbox's own tests: raw clients that are closed at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from rawclient import RawClient

from shardtui.sandbox import Sandbox


@pytest.fixture
async def raw() -> AsyncIterator[Callable[..., Awaitable[RawClient]]]:
    """``await raw(sandbox, compress=None, v=10)`` -> a connected RawClient (closed at teardown)."""
    clients: list[RawClient] = []

    async def connect(sandbox: Sandbox, **kwargs: Any) -> RawClient:
        client = await RawClient.connect(sandbox.gateway_url, **kwargs)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.close()


@pytest.fixture
async def http_get() -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """``await http_get(sandbox, "/gateway/bot")`` -> decoded JSON of an authorized REST call."""
    async with aiohttp.ClientSession() as http:

        async def get(sandbox: Sandbox, path: str) -> Any:
            headers = {"Authorization": f"Bot {sandbox.token}"}
            async with http.get(sandbox.rest_url + path, headers=headers) as response:
                assert response.status == 200, await response.text()
                return await response.json()

        yield get
