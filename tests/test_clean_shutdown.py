"""Shutting down leaves nothing behind: no asyncio task, no socket, no HTTP session, no server.

Checked where it is hardest: shards caught mid-fault (zombie, waiting out an op 9, backing off from a
refusing server, waiting for a slow HELLO) when ``shutdown_all()`` comes; a Runtime closed by its
context manager; and the console quit through the pilot.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from support import waiting

from shardtui.config import Config
from shardtui.gateway.manager import ShardManager, ShardManagerOptions
from shardtui.gateway.models import ConnectionStage, ShardId
from shardtui.gateway.protocol import GatewayIntents
from shardtui.runtime import Runtime

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")


def client_sockets_to(port: int) -> int:
    """Sockets this process holds whose remote end is ``port`` on this machine (Linux /proc)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port:
                inodes.add(fields[9])
    held = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            held += 1
    return held


def port_accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def task_names(tasks: set[asyncio.Task]) -> list[str]:
    return sorted(f"{t.get_name()} {t.get_coro().__qualname__}" for t in tasks)


async def tasks_settle(before: set[asyncio.Task], allow: Callable[[asyncio.Task], bool]) -> set[asyncio.Task]:
    """Tasks started since ``before`` still alive after a short grace, except those ``allow`` keeps.

    The grace is for the server side: aiohttp's per-connection handlers end once they notice the
    client went away; the client's own tasks must already be gone."""
    current = asyncio.current_task()
    left: set[asyncio.Task] = set()
    for _ in range(100):
        left = {t for t in asyncio.all_tasks() - before if t is not current and not t.done() and not allow(t)}
        if not left:
            break
        await asyncio.sleep(0.02)
    return left


def is_sandbox_side(task: asyncio.Task) -> bool:
    return task.get_name().startswith("sandbox-") or task.get_coro().__qualname__.startswith(
        ("RequestHandler.", "WebSocketResponse.", "GatewayHandler.")
    )


#: These waits cover whole-fleet stops and fatal closes, so they allow 15 s rather than 10.
eventually = functools.partial(waiting.eventually, within=15.0)


@pytest.mark.parametrize("keep_sessions", [False, True])
async def test_shutdown_all_mid_faults_leaves_nothing(sandbox_factory, keep_sessions: bool) -> None:
    before = set(asyncio.all_tasks())
    sandbox = await sandbox_factory(
        shards=6, max_concurrency=6, guilds=12, event_rate=60.0, heartbeat_interval_ms=400
    )
    manager = ShardManager(
        ShardManagerOptions(
            token=sandbox.token,
            intents=GatewayIntents.default(),
            rest_url=sandbox.rest_url,
            compression="zstd-stream",
            identify_window=0.05,
            health_interval=0.05,
            shutdown_timeout=3.0,
        )
    )
    await manager.initialize()
    assert await manager.wait_until_connected(15)
    session = manager._session
    assert session is not None and not session.closed
    assert client_sockets_to(sandbox.port) >= 6

    # Catch shards in every awkward place at once.
    sandbox.inject("zombie", 0)
    sandbox.inject("invalid_session", 1, resumable=False)  # waits 1-5 s before identifying again
    sandbox.inject("refuse", None, seconds=30)  # every reconnect is refused and backs off
    sandbox.inject("drop", 2)
    sandbox.inject("reconnect", 3)
    sandbox.inject("delay_hello", None, seconds=30, count=5)
    await eventually(lambda: manager.runners[ShardId(2)].stage is not ConnectionStage.CONNECTED)
    await asyncio.sleep(0.3)

    await manager.shutdown_all(keep_sessions=keep_sessions)

    assert session.closed and manager._session is None
    assert all(not info.running for info in manager.runners.values())
    assert all(info.stage is ConnectionStage.DISCONNECTED for info in manager.runners.values())
    left = await tasks_settle(before, is_sandbox_side)
    assert task_names(left) == []
    await eventually(lambda: sandbox.stats()["connections_open"] == 0)
    assert client_sockets_to(sandbox.port) == 0
    # Live shards were closed the way asked: 1000 ends sessions, 4000 keeps them for a resume.
    closes = [
        sandbox.stats()["shards"][str(i)]["client_closes"] for i in (4, 5)
    ]  # shards 4 and 5 saw no fault
    code = "4000" if keep_sessions else "1000"
    assert all(c.get(code) == 1 for c in closes), closes

    port = sandbox.port
    await sandbox.stop()
    assert not port_accepts(port)
    assert task_names(await tasks_settle(before, lambda t: False)) == []


async def test_runtime_context_leaves_no_task_socket_or_server(tmp_path: Path) -> None:
    before = set(asyncio.all_tasks())
    config = Config()
    config.gateway.mode = "sandbox"
    config.gateway.shards = 3
    config.gateway.compression = "zlib-stream"
    config.sandbox.shards = 3
    config.sandbox.max_concurrency = 3
    config.sandbox.guilds = 6
    config.sandbox.identify_window = 0.05
    config.sandbox.heartbeat_interval_ms = 300
    config.sandbox.event_rate = 30.0
    async with Runtime(config) as runtime:
        await runtime.start()
        assert await runtime.manager.wait_until_connected(15)
        sandbox = runtime.sandbox
        port = sandbox.port
        session = runtime.manager._session
        assert client_sockets_to(port) == 3
        sandbox.inject("zombie", 1)
    assert session is not None and session.closed
    assert not sandbox.running and not port_accepts(port)
    assert client_sockets_to(port) == 0
    assert task_names(await tasks_settle(before, lambda t: False)) == []
    assert all(
        s["client_closes"].get("1000", 0) == 1 for sid, s in sandbox.stats()["shards"].items() if sid != "1"
    )


async def test_quitting_the_console_leaves_no_task_socket_or_server() -> None:
    from shardtui.tui.app import ShardTUI
    from shardtui.tui.screens import ConfirmScreen

    before = set(asyncio.all_tasks())
    config = Config()
    config.gateway.mode = "sandbox"
    config.gateway.shards = 3
    config.sandbox.shards = 3
    config.sandbox.guilds = 6
    config.sandbox.identify_window = 0.05
    # A slow heartbeat: at 300 ms a loaded run could miss an ACK, so a shard was reconnecting (no socket to
    # close with 1000) at the moment of quitting.
    config.sandbox.heartbeat_interval_ms = 5000
    config.sandbox.event_rate = 20.0
    config.ui.refresh_interval = 0.05
    app = ShardTUI(config)
    async with app.run_test(size=(160, 30)) as pilot:
        for _ in range(1500):
            runtime = app.runtime
            if runtime is not None and runtime._manager is not None and len(runtime.manager.runners) == 3:
                if all(i.stage is ConnectionStage.CONNECTED for i in runtime.manager.runners.values()):
                    break
            await pilot.pause(0.01)
        else:
            pytest.fail("the console never had 3 connected shards")
        sandbox = app.runtime.sandbox
        port = sandbox.port
        session = app.runtime.manager._session
        assert client_sockets_to(port) == 3
        await pilot.press("q")
        for _ in range(500):
            if isinstance(app.screen, ConfirmScreen):
                break
            await pilot.pause(0.01)
        await pilot.press("y")
        for _ in range(1500):
            if app.return_code is not None:
                break
            await pilot.pause(0.01)
    assert app.return_code == 0
    assert session is not None and session.closed
    assert not sandbox.running and not port_accepts(port)
    assert client_sockets_to(port) == 0
    assert all(s["client_closes"].get("1000", 0) == 1 for s in sandbox.stats()["shards"].values())
    assert task_names(await tasks_settle(before, lambda t: False)) == []
