"""The proxy as the runtime runs it (`[proxy] listen`): HTTP on the same port, /health, a port in use,
and a restart from `[gateway] state_file` that identifies nothing and serves clients from the cache."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from proxy_helpers import config_for
from support.waiting import eventually

from shardtui.config import ConfigError, load_config
from shardtui.headless import run_headless
from shardtui.runtime import Runtime, preflight, proxy_cache_path, proxy_sessions_path

INTENTS = 513


def saved(path: str) -> bool:
    return Path(path).is_file()


async def test_the_runtime_serves_gateway_bot_health_and_clients_on_one_port(sandbox_factory, raw) -> None:
    sandbox = await sandbox_factory(shards=2, guilds=4)
    async with Runtime(config_for(sandbox)) as runtime:
        proxy = runtime.proxy
        assert proxy is not None
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{proxy.http_url}/health") as response:
                assert response.status == 503  # no shard started yet
            await runtime.start()
            assert await runtime.manager.wait_until_connected(timeout=20)
            async with http.get(f"{proxy.http_url}/health") as response:
                body = await response.json()
                assert response.status == 200, body
                assert set(body["shards"]) == {"0", "1"}
            headers = {"Authorization": f"Bot {sandbox.token}"}
            async with http.get(f"{proxy.rest_url}/gateway/bot", headers=headers) as response:
                gateway = await response.json()
            assert gateway["url"] == proxy.ws_url and gateway["shards"] == 2
        client = await raw(proxy.ws_url)
        ready = await client.ready(sandbox.token, (1, 2), INTENTS)
        assert ready["d"]["shard"] == [1, 2]
        await eventually(lambda: proxy.clients_per_shard() == {0: 0, 1: 1})
    assert runtime.proxy is not None and runtime.proxy._runner is None


async def test_a_proxy_port_in_use_is_one_config_error_and_nothing_keeps_running(sandbox_factory) -> None:
    sandbox = await sandbox_factory(shards=1, guilds=2)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = config_for(sandbox, f"127.0.0.1:{port}")
        with pytest.raises(ConfigError) as early:
            preflight(config)  # what the CLI says before a UI takes the terminal
        assert "proxy.listen" in str(early.value) and "in use" in str(early.value)
        runtime = Runtime(config)
        with pytest.raises(ConfigError) as caught:
            await runtime.open()
        assert "proxy.listen" in str(caught.value) and "in use" in str(caught.value)
        assert runtime._closed
        assert sandbox.stats()["connections_total"] == 0


def test_a_non_loopback_listen_needs_allow_remote() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"proxy.listen": "0.0.0.0:7878"}, environ={})
    assert "proxy.allow_remote" in str(caught.value)
    config = load_config(None, {"proxy.listen": "0.0.0.0:7878", "proxy.allow_remote": "true"}, environ={})
    assert config.proxy.listen == "0.0.0.0:7878"


async def test_a_restart_with_a_state_file_identifies_nothing_and_clients_come_back(
    sandbox_factory, raw, tmp_path: Path
) -> None:
    sandbox = await sandbox_factory(shards=2, guilds=6)
    state_file = str(tmp_path / "sessions.json")
    config = config_for(sandbox, **{"gateway.state_file": state_file})
    first = Runtime(config)
    async with first:
        await first.start()
        assert await first.manager.wait_until_connected(timeout=20)
        assert first.proxy is not None
        client = await raw(first.proxy.ws_url)
        ready = await client.ready(sandbox.token, (0, 2), INTENTS)
        before = [ready, *[await client.recv() for _ in sandbox.guild_ids_for_shard(0, 2)]]
        port = first.proxy.port
    assert await client.expect_close() == 4000
    assert saved(proxy_cache_path(state_file))
    starts = sandbox.stats()["session_starts_used"]

    second = Runtime(config_for(sandbox, f"127.0.0.1:{port}", **{"gateway.state_file": state_file}))
    async with second:
        await second.start()
        assert await second.manager.wait_until_connected(timeout=20)
        assert second.proxy is not None
        again = await raw(second.proxy.ws_url)
        ready2 = await again.ready(sandbox.token, (0, 2), INTENTS)
        after = [ready2, *[await again.recv() for _ in sandbox.guild_ids_for_shard(0, 2)]]
        assert sandbox.stats()["session_starts_used"] == starts
        assert [p["t"] for p in after] == [p["t"] for p in before]
        assert [p["d"].get("id") for p in after[1:]] == [p["d"].get("id") for p in before[1:]]
        assert after[1]["d"]["channels"] == before[1]["d"]["channels"]


def event_ids(payloads: list[dict[str, Any]]) -> list[int]:
    return [p["d"]["_sandbox_event_id"] for p in payloads if p.get("t") == "MESSAGE_CREATE"]


async def test_a_client_resumes_across_a_proxy_restart_and_gets_what_happened_while_it_was_down(
    sandbox_factory, raw, tmp_path: Path
) -> None:
    sandbox = await sandbox_factory(shards=2, guilds=6)
    state_file = str(tmp_path / "sessions.json")
    first = Runtime(config_for(sandbox, **{"gateway.state_file": state_file}))
    async with first:
        await first.start()
        assert await first.manager.wait_until_connected(timeout=20)
        assert first.proxy is not None
        port = first.proxy.port
        client = await raw(first.proxy.ws_url)
        ready = await client.ready(sandbox.token, (0, 2), INTENTS)
        session_id = ready["d"]["session_id"]
        before = len(sandbox.event_ids(0))
        sandbox.emit(12, "MESSAGE_CREATE")
        live = sandbox.event_ids(0)[before:]
        assert live, "no event went to shard 0"
        got = await client.recv_until(lambda p: event_ids([p]) == live[-1:], wait=10)
        assert event_ids(got) == live
        await client.heartbeat(client.last_seq)  # what the proxy keeps for a RESUME starts after this
        await client.recv_until(lambda p: p["op"] == 11)
    assert await client.expect_close() == 4000
    assert saved(proxy_sessions_path(state_file))
    last_seq = client.last_seq
    starts = sandbox.stats()["session_starts_used"]

    # While the proxy is down: events the upstream session will have replayed.
    before = len(sandbox.event_ids(0))
    sandbox.emit(12, "MESSAGE_CREATE")
    missed = sandbox.event_ids(0)[before:]
    assert missed, "no event went to shard 0"

    second = Runtime(config_for(sandbox, f"127.0.0.1:{port}", **{"gateway.state_file": state_file}))
    async with second:
        await second.start()
        assert second.proxy is not None
        assert not saved(proxy_sessions_path(state_file))  # consumed: never restored twice
        again = await raw(second.proxy.ws_url)
        await again.hello()
        await again.send({"op": 6, "d": {"token": sandbox.token, "session_id": session_id, "seq": last_seq}})
        frames = await again.recv_until(lambda p: missed[-1] in event_ids([p]), wait=20)
        assert sandbox.stats()["session_starts_used"] == starts
        assert event_ids(frames) == missed  # each once, in order
        seqs = [p["s"] for p in frames if p.get("s") is not None]
        assert seqs == list(range(last_seq + 1, last_seq + 1 + len(seqs)))
        names = [p.get("t") for p in frames]
        if "RESUMED" not in names:
            names += [p.get("t") for p in await again.recv_until("RESUMED")]
        assert names.count("RESUMED") == 1 and "READY" not in names


async def test_headless_prints_client_lines_and_reports_proxy_counts(
    sandbox_factory, raw, tmp_path: Path
) -> None:
    sandbox = await sandbox_factory(shards=1, guilds=2)
    config = config_for(sandbox, **{"metrics.listen": "127.0.0.1:0"})
    made: list[Runtime] = []

    def factory(cfg: Any) -> Runtime:
        runtime = Runtime(cfg)
        made.append(runtime)
        return runtime

    out = io.StringIO()
    report = tmp_path / "report.json"

    async def bot() -> None:
        try:
            await attach_and_leave()
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    async def attach_and_leave() -> None:
        await eventually(lambda: bool(made) and made[0].proxy is not None and made[0]._started, within=20)
        runtime = made[0]
        assert await runtime.manager.wait_until_connected(timeout=20)
        proxy = runtime.proxy
        assert proxy is not None and runtime.metrics is not None
        client = await raw(proxy.ws_url)
        await client.ready(sandbox.token, (0, 1), INTENTS)
        async with aiohttp.ClientSession() as http, http.get(runtime.metrics.url) as response:
            metrics = await response.text()
        assert 'shardtui_proxy_clients{shard="0"} 1.0' in metrics
        await client.close(1000)
        await eventually(lambda: '"client_detach"' in out.getvalue())

    task = asyncio.create_task(bot())
    status = await run_headless(
        config, duration=60, report_path=str(report), out=out, runtime_factory=factory
    )
    await task
    assert status == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    clients = [line for line in lines if line["event"].startswith("client_")]
    assert [c["event"] for c in clients] == ["client_attach", "client_detach"]
    assert clients[0]["library"] == "rawclient" and clients[0]["resumed"] is False
    assert clients[1]["code"] == 1000 and clients[1]["by_client"] is True
    assert sandbox.token not in out.getvalue()
    summary = read_json(report)["proxy"]
    assert made[0].proxy is not None and summary["url"] == made[0].proxy.ws_url
    assert summary["cut_slow"] == 0 and summary["clients"] == 0


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


async def test_each_fleet_process_serves_its_own_shard_range(
    sandbox_factory, raw, redis_url, tmp_path: Path
) -> None:
    pytest.importorskip("redis")
    from redis.asyncio import Redis

    sandbox = await sandbox_factory(shards=2, guilds=4)
    cluster = f"proxy-{uuid.uuid4().hex[:10]}"
    runtimes = []
    try:
        for shard in (0, 1):
            path = tmp_path / f"p{shard}.toml"
            path.write_text(
                f'[cluster]\nredis_url = "{redis_url}"\nname = "p{shard}"\ncluster = "{cluster}"\n'
                f'shard_range = "{shard}-{shard}"\n'
            )
            config = load_config(
                str(path),
                {
                    "gateway.rest_url": sandbox.rest_url,
                    "gateway.shards": "2",
                    "sandbox.token": sandbox.token,
                    "gateway.identify_window": str(sandbox.settings.identify_window),
                    "proxy.listen": "127.0.0.1:0",
                },
                environ={},
            )
            runtime = Runtime(config)
            runtimes.append(runtime)
            await runtime.start()
        for runtime in runtimes:
            assert await runtime.manager.wait_until_connected(timeout=20)
        for shard, runtime in enumerate(runtimes):
            assert runtime.proxy is not None
            mine = await raw(runtime.proxy.ws_url)
            ready = await mine.ready(sandbox.token, (shard, 2), INTENTS)
            assert ready["d"]["shard"] == [shard, 2]
            other = await raw(runtime.proxy.ws_url)
            await other.hello()
            await other.identify(sandbox.token, (1 - shard, 2), INTENTS)
            assert await other.expect_close() == 4010
    finally:
        for runtime in runtimes:
            await runtime.close()
        client = Redis.from_url(redis_url)
        keys = [key async for key in client.scan_iter(match=f"shardtui:{{{cluster}}}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def test_the_cli_says_a_proxy_port_in_use_in_one_line_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shardtui.cli import main

    config = tmp_path / "shards.toml"
    config.write_text('[sandbox]\nguilds = 2\nshards = 1\ntoken = "cli-proxy-test-token"\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = main(
            [
                "--config",
                str(config),
                "--proxy-listen",
                f"127.0.0.1:{port}",
                "run",
                "--headless",
                "--duration",
                "5",
            ]
        )
    captured = capsys.readouterr()
    assert status == 2
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert "proxy.listen" in lines[0] and "port is in use" in lines[0] and str(port) in lines[0]
    assert '"event":"stage"' not in captured.out


def test_public_url_must_be_a_ws_url_without_a_query() -> None:
    for bad in ("https://gw.example.com", "ws://gw.example.com/?v=10", "gw.example.com:7878", "wss://"):
        with pytest.raises(ConfigError) as caught:
            load_config(None, {"proxy.listen": "127.0.0.1:7878", "proxy.public_url": bad}, environ={})
        assert "proxy.public_url" in str(caught.value) and "ws:// or wss://" in str(caught.value), bad


async def test_the_runtime_tells_bots_the_public_url(sandbox_factory, raw) -> None:
    sandbox = await sandbox_factory(shards=1, guilds=2)
    config = config_for(sandbox, **{"proxy.public_url": "wss://gateway.example.com/bots"})
    async with Runtime(config) as runtime:
        proxy = runtime.proxy
        assert proxy is not None
        await runtime.start()
        assert await runtime.manager.wait_until_connected(timeout=20)
        local = f"http://127.0.0.1:{proxy.port}/api/v10"
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bot {sandbox.token}"}
            async with http.get(f"{local}/gateway/bot", headers=headers) as response:
                assert (await response.json())["url"] == "wss://gateway.example.com/bots"
        client = await raw(f"ws://127.0.0.1:{proxy.port}")
        ready = await client.ready(sandbox.token, (0, 1), INTENTS)
        assert ready["d"]["resume_gateway_url"] == "wss://gateway.example.com/bots"


async def test_hold_heartbeat_ack_gives_a_bot_its_shards_real_latency(sandbox_factory, raw) -> None:
    # Upstream heartbeats every 4 s, each answered 1 s late on shard 1 only.
    sandbox = await sandbox_factory(shards=2, guilds=4, heartbeat_interval_ms=4000)
    config = config_for(sandbox, **{"proxy.hold_heartbeat_ack": "true"})
    async with Runtime(config) as runtime:
        proxy = runtime.proxy
        assert proxy is not None and proxy.settings.hold_heartbeat_ack
        await runtime.start()
        assert await runtime.manager.wait_until_connected(timeout=20)
        sandbox.inject("latency", 1, seconds=1.0)
        slow_info = next(i for s, i in runtime.manager.runners.items() if s.id == 1)
        await eventually(lambda: (slow_info.latency or 0.0) >= 1.0, within=20)

        url = f"ws://127.0.0.1:{proxy.port}"
        slow = await raw(url)
        await slow.ready(sandbox.token, (1, 2), INTENTS)
        fast = await raw(url)
        await fast.ready(sandbox.token, (0, 2), INTENTS)
        loop = asyncio.get_running_loop()
        acked: dict[str, float] = {}

        async def beat(name: str, client: Any) -> None:
            sent = loop.time()
            await client.heartbeat()
            await client.recv_until(lambda p: p["op"] == 11, wait=10.0)
            acked[name] = loop.time() - sent

        await asyncio.gather(beat("slow", slow), beat("fast", fast))
        # The slow shard's client waited at least its shard's latency (a lower bound by construction);
        # the other shard's client was not held behind it.
        assert acked["slow"] >= 1.0
        assert acked["fast"] < acked["slow"]
