"""Hostile gateway against the real ShardRunner: a tiny in-test server sends junk, and the runner must
neither raise nor deliver a replayed dispatch twice; only an unreadable frame may cost a reconnect (and
resume). Live dispatches whose seq does not increase are the server's numbering: delivered, one warning
per connection (issue #14, as discord.py and hikari do)."""

from __future__ import annotations

import asyncio
import json
import random

import orjson
import pytest
from aiohttp import WSMsgType, web

from shardtui.gateway.models import ConnectionStage, ShardId, ShardRunnerInfo
from shardtui.gateway.protocol import GatewayIntents
from shardtui.gateway.runner import ShardRunner, ShardRunnerOptions

TOKEN = "hostile.test.token-value-1234567890"

IGNORABLE = [
    [1, 2, 3],
    "just a string",
    5,
    None,
    {"op": "0", "d": {}},
    {"op": 2.0, "d": {}},
    {"op": True},
    {"op": 99, "d": None},
    {"op": 10**30},
    {"op": -(2**70), "s": 2**80},
    {"d": {"no": "op"}},
    {"op": 11},  # an ACK nobody asked for
    {"op": 10, "d": "hello again, as a string"},
    {"op": 0, "t": None, "s": "seven", "d": 5},
    {"op": 0, "t": "WEIRD", "s": 2**70, "d": [1]},
    {"op": 0, "t": "X" * 300, "d": None},
]


def random_junk(rng: random.Random, n: int) -> list[object]:
    def value(depth: int = 0) -> object:
        kind = rng.randrange(7 if depth < 3 else 4)
        if kind == 0:
            return None
        if kind == 1:
            return rng.choice([True, False, 0, -1, 2**63 - 1, -(2**63), 1.5e300, rng.randrange(-99, 99)])
        if kind == 2:
            return "".join(rng.choice('ab{}"\\\u0000é💥') for _ in range(rng.randrange(8)))
        if kind == 3:
            return rng.random()
        if kind == 4:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        return {rng.choice(["op", "d", "s", "t", "x"]): value(depth + 1) for _ in range(rng.randrange(5))}

    out: list[object] = []
    for _ in range(n):
        payload = value()
        if isinstance(payload, dict) and rng.random() < 0.5:
            payload["op"] = rng.choice([1, 7, 9, 10, 11, 0, 42, 10**6])
            if payload["op"] in (1, 7, 9):  # these are real requests, not junk: leave them to other tests
                payload["op"] = 11
            if payload["op"] == 0:
                payload["s"] = None  # an unnumbered dispatch is delivered, never deduplicated
        out.append(payload)
    return out


class HostileGateway:
    """Connection 1: HELLO, READY (numbered 0, no shard, no resume url), junk, dispatches 1..5 with a
    repeated and a backwards one, then a frame that is not JSON. Connection 2 must RESUME at seq 5, and
    its replay repeats 5 (a duplicate: dropped)."""

    def __init__(self, junk: list[object]) -> None:
        self.junk = junk
        self.connections = 0
        self.received: list[list[dict]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"ws://127.0.0.1:{port}/"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        number = self.connections
        got: list[dict] = []
        self.received.append(got)

        async def send(payload: object) -> None:
            # The stdlib encoder, because orjson refuses the oversized integers we want to send.
            await ws.send_str(json.dumps(payload))

        await send({"op": 10, "d": {"heartbeat_interval": 5000}})
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            payload = orjson.loads(msg.data)
            got.append(payload)
            if payload.get("op") == 1:
                await send({"op": 11})
            elif payload.get("op") == 2 and number == 1:
                await send({"op": 0, "t": "READY", "s": 0, "d": {"session_id": "hostile-1", "guilds": []}})
                for junk in self.junk:
                    await send(junk)
                for s in (1, 2, 3, 2, 4, 3, 5):
                    await send({"op": 0, "t": "MESSAGE_CREATE", "s": s, "d": {"n": s}})
                await ws.send_bytes(b"\x00not json at all\xff")
            elif payload.get("op") == 6 and number == 2:
                await send({"op": 0, "t": "MESSAGE_CREATE", "s": 5, "d": {"n": 5}})  # replayed again
                await send({"op": 0, "t": "MESSAGE_CREATE", "s": 6, "d": {"n": 6}})
                await send({"op": 0, "t": "RESUMED", "s": 7, "d": None})
        return ws


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_runner_survives_a_hostile_gateway_and_never_delivers_a_replay_twice(seed: int) -> None:
    gateway = HostileGateway(IGNORABLE + random_junk(random.Random(seed), 150))
    await gateway.start()
    received = []
    logs = []

    class Gate:
        async def acquire(self, shard_id: ShardId) -> None:
            return None

    info = ShardRunnerInfo(ShardId(0), 1)
    manager_tx: asyncio.Queue = asyncio.Queue()
    options = ShardRunnerOptions(
        token=TOKEN,
        gateway_url=gateway.url,
        intents=GatewayIntents.GUILDS,
        identify_gate=Gate(),
        compression="none",
        event_handler=received.append,
    )
    runner = ShardRunner(ShardId(0), 1, options, info, manager_tx, lambda e: logs.append(e.message))
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(10):
            while not any(d.name == "RESUMED" for d in received):
                assert not task.done(), "\n".join(logs)
                await asyncio.sleep(0.01)
        numbered = [(d.name, d.seq) for d in received if d.seq is not None]
        live = [("MESSAGE_CREATE", s) for s in (1, 2, 3, 2, 4, 3, 5)]
        assert numbered == [("READY", 0), *live, ("MESSAGE_CREATE", 6), ("RESUMED", 7)]
        assert sum("did not increase" in line for line in logs) == 1
        assert gateway.connections == 2
        resume = next(p for p in gateway.received[1] if p.get("op") == 6)
        assert resume["d"] == {"token": TOKEN, "session_id": "hostile-1", "seq": 5}
        # Every command we sent was well formed.
        for payload in gateway.received[0] + gateway.received[1]:
            assert type(payload["op"]) is int and "d" in payload
        assert not any("unexpected error" in line for line in logs)
        assert any("not JSON" in line or "unreadable" in line for line in logs)
        assert all(TOKEN not in line for line in logs)
        assert runner.stage is ConnectionStage.CONNECTED
    finally:
        runner.messenger.shutdown_clean()
        await asyncio.wait_for(task, 5)
        await gateway.stop()


@pytest.mark.parametrize("code", [4004, 4000])
async def test_a_gateway_echoing_the_token_never_gets_it_into_logs_or_info(code: int) -> None:
    connections = 0
    reconnected = asyncio.Event()

    async def handle(request: web.Request) -> web.WebSocketResponse:
        nonlocal connections
        connections += 1
        if connections == 2:
            reconnected.set()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 5000}}))
        async for msg in ws:
            payload = orjson.loads(msg.data)
            if payload.get("op") == 2:
                await ws.close(code=code, message=f"bad {payload['d']['token']}".encode())
        return ws

    app = web.Application()
    app.router.add_get("/", handle)
    server = web.AppRunner(app)
    await server.setup()
    site = web.TCPSite(server, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    logs: list[str] = []

    class Gate:
        async def acquire(self, shard_id: ShardId) -> None:
            return None

    info = ShardRunnerInfo(ShardId(0), 1)
    manager_tx: asyncio.Queue = asyncio.Queue()
    options = ShardRunnerOptions(
        token=TOKEN,
        gateway_url=f"ws://127.0.0.1:{port}/",
        intents=GatewayIntents.GUILDS,
        identify_gate=Gate(),
        compression="none",
        max_backoff=0.5,
    )
    runner = ShardRunner(ShardId(0), 1, options, info, manager_tx, lambda e: logs.append(e.message))
    task = asyncio.create_task(runner.run())
    try:
        if code == 4000:  # not fatal: it resumes (the session was never made) and is met again
            await asyncio.wait_for(reconnected.wait(), 5)
            runner.messenger.shutdown_clean()
        await asyncio.wait_for(task, 5)
        messages = []
        while not manager_tx.empty():
            messages.append(manager_tx.get_nowait())
        assert any("[token]" in line for line in logs)
        assert all(TOKEN not in line for line in logs)
        assert TOKEN not in repr(info) and TOKEN not in repr(messages) and TOKEN not in repr(runner)
        if code == 4004:
            assert connections == 1 and info.fatal_error and TOKEN not in info.fatal_error
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.cleanup()
