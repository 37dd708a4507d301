"""Redis for the fleet tests: ``REDIS_URL`` when set, else a private ``redis-server`` on a free
loopback port. Every test gets its own fleet name, so tests never see each other's keys and a
shared Redis is never flushed."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A ``redis-server`` this test suite started (and may stop and start again on the same port)."""

    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("no redis-server binary")
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _need_binary() -> None:
    if REDIS_SERVER is None:
        pytest.skip("no redis-server binary on PATH (.ci/run installs one); fleet tests need a real Redis")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis the whole fleet suite shares."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    _need_binary()
    server = RedisServer(free_port())
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A Redis of this test alone, which the test may stop and start (outage tests)."""
    _need_binary()
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
