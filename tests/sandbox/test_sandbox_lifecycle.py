"""Start/stop leave nothing behind; standalone mode; settings from the config contract."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys

import aiohttp
import pytest

from shardtui.config import FaultRule, SandboxConfig
from shardtui.sandbox import Sandbox, SandboxSettings, ScheduledFault, run_standalone


def _other_tasks() -> set[asyncio.Task]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_stop_closes_clients_with_1001_and_leaves_no_task(raw):
    before = _other_tasks()
    sandbox = Sandbox(
        SandboxSettings(
            guilds=4,
            shards=2,
            event_rate=50.0,
            heartbeat_interval_ms=1000,
            seed=3,
            faults=[ScheduledFault("heartbeat_request", every=0.05)],
        )
    )
    await sandbox.start()
    client = await raw(sandbox)
    await client.ready(sandbox.token, (0, 2), 1)
    idle = await raw(sandbox)
    await idle.hello()
    await sandbox.stop()
    assert await client.expect_close() == 1001
    assert await idle.expect_close() == 1001
    leftover = _other_tasks() - before
    # The raw clients' own aiohttp reader tasks are not the sandbox's.
    assert not [t for t in leftover if "sandbox" in t.get_name()]
    assert not sandbox.running
    with pytest.raises(aiohttp.ClientConnectorError):
        async with aiohttp.ClientSession() as http, http.get(sandbox.rest_url + "/gateway"):
            pass
    await sandbox.stop()  # idempotent


async def test_stop_with_a_client_that_never_answers_the_close(sandbox_factory):
    sandbox = await sandbox_factory()
    reader, writer = await asyncio.open_connection("127.0.0.1", sandbox.port)
    writer.write(
        b"GET /?v=10&encoding=json HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await writer.drain()
    assert b"101" in await reader.readline()
    before = _other_tasks()
    await sandbox.stop()
    assert not [t for t in _other_tasks() if "sandbox" in t.get_name() and not t.done()]
    assert len(_other_tasks()) <= len(before)
    writer.close()


async def test_start_twice_is_an_error(sandbox):
    with pytest.raises(RuntimeError, match="already started"):
        await sandbox.start()


async def test_a_busy_port_gives_one_clear_error(sandbox):
    other = Sandbox(SandboxSettings(guilds=1))
    with pytest.raises(OSError, match=f"sandbox cannot listen on 127.0.0.1:{sandbox.port}"):
        await other.start(port=sandbox.port)


async def test_run_standalone_prints_urls_and_token_and_stops_on_cancel():
    out = io.StringIO()
    task = asyncio.create_task(run_standalone("127.0.0.1", 0, SandboxSettings(guilds=2, seed=1), out=out))
    for _ in range(200):
        if "Press Ctrl+C" in out.getvalue():
            break
        await asyncio.sleep(0.01)
    text = out.getvalue()
    lines = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    rest_url = lines["REST base URL"].strip()
    assert rest_url.startswith("http://127.0.0.1:") and rest_url.endswith("/api/v10")
    assert lines["Gateway URL"].strip().startswith("ws://127.0.0.1:")
    token = lines["Bot token"].strip()
    async with aiohttp.ClientSession() as http:
        async with http.get(rest_url + "/users/@me", headers={"Authorization": f"Bot {token}"}) as response:
            assert response.status == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(aiohttp.ClientConnectorError):
        async with aiohttp.ClientSession() as http, http.get(rest_url + "/gateway"):
            pass


def test_module_entry_point_runs_until_sigint():
    proc = subprocess.Popen(
        [sys.executable, "-m", "shardtui.sandbox", "--guilds", "3", "--seed", "7"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        assert lines[0].startswith("REST base URL: http://127.0.0.1:")
        assert lines[1].startswith("Gateway URL:   ws://127.0.0.1:")
        assert lines[2].startswith("Bot token:     ")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_settings_from_config_cover_the_config_contract():
    cfg = SandboxConfig(
        guilds=7,
        shards=3,
        max_concurrency=2,
        identify_window=0.5,
        heartbeat_interval_ms=900,
        resume_window=12.0,
        event_rate=2.5,
        session_start_total=50,
        privileged_intents=["guild_members"],
        token="MTIz.AAAA.secret",
        faults=[FaultRule(kind="close", every=1.5, shard=1, params={"code": 4009})],
    )
    settings = SandboxSettings.from_config(cfg, seed=9)
    assert (settings.guilds, settings.shards, settings.max_concurrency) == (7, 3, 2)
    assert (settings.identify_window, settings.heartbeat_interval_ms, settings.resume_window) == (
        0.5,
        900,
        12.0,
    )
    assert (settings.event_rate, settings.session_start_total, settings.seed) == (2.5, 50, 9)
    assert settings.privileged_intents == ["guild_members"]
    assert settings.token == "MTIz.AAAA.secret"
    assert settings.faults == [ScheduledFault("close", 1.5, 1, {"code": 4009})]
    assert "secret" not in repr(settings)


def test_settings_name_every_problem():
    with pytest.raises(ValueError, match="shards must be >= 1, got 0; event_rate must be >= 0, got -1"):
        SandboxSettings(shards=0, event_rate=-1)
    with pytest.raises(TypeError, match="unknown sandbox setting"):
        SandboxSettings.from_config(SandboxConfig(), colour="red")


def test_bad_fault_schedule_and_event_mix_are_refused_up_front():
    with pytest.raises(ValueError, match="unknown sandbox fault 'melt'"):
        Sandbox(SandboxSettings(faults=[ScheduledFault("melt", every=1.0)]))
    with pytest.raises(ValueError, match="every must be > 0"):
        Sandbox(SandboxSettings(faults=[ScheduledFault("drop", every=0.0)]))
    with pytest.raises(ValueError, match="unknown sandbox fault 'boom' in choices"):
        Sandbox(SandboxSettings(faults=[ScheduledFault("random", every=1.0, choices=("drop", "boom"))]))
    with pytest.raises(ValueError, match="unknown event kind 'DANCE'"):
        Sandbox(SandboxSettings(event_mix={"DANCE": 1.0}))
    with pytest.raises(ValueError, match="unknown intent 'telepathy'"):
        Sandbox(SandboxSettings(privileged_intents=["telepathy"]))


def test_the_world_is_deterministic_for_a_seed():
    first = Sandbox(SandboxSettings(guilds=10, seed=42))
    second = Sandbox(SandboxSettings(guilds=10, seed=42))
    other = Sandbox(SandboxSettings(guilds=10, seed=43))
    assert first.guild_ids == second.guild_ids != other.guild_ids
    assert len(set(first.guild_ids)) == 10
