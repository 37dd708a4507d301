"""Redis for the fleet tests: the shared ``redis_url`` (tests/conftest.py), or a private ``redis-server``
for a test that stops and starts it. Every test gets its own fleet name, so tests never see each
other's keys and a shared Redis is never flushed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from support.redis_server import REDIS_SERVER, RedisServer, free_port, need_redis_server

__all__ = ["REDIS_SERVER", "RedisServer", "free_port"]  # tests import these from here too


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A Redis of this test alone, which the test may stop and start (outage tests)."""
    need_redis_server()
    server = RedisServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cluster_name() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis(redis_url: str, cluster_name: str) -> AsyncIterator[Redis]:
    """A client of the shared Redis; the test's fleet keys are removed afterwards."""
    client = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(match=f"shardtui:{{{cluster_name}}}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
