"""Review: a broken ``resume_gateway_url`` node must not hold a shard forever.

A resume node that accepts the WebSocket but never sends HELLO (or never answers the RESUME) is not a
connect *error*, so it used to be retried for ever: the session expired meanwhile and the shard never
came back. After a connection that never became usable the shard resumes through the base url instead
(Discord accepts RESUME there; twilight clears its resume url the same way).
"""

from __future__ import annotations

import random

from aiohttp import WSMsgType, web

from shardtui.gateway.models import ConnectionStage
from shardtui.gateway.protocol import GatewayIntents
from shardtui.gateway.shard import Reconnect, Shard

TOKEN = "MTIz.review-fallback.secret-token-value"
BASE = "ws://gateway.test/"
RESUME_URL = "wss://resume.gateway.test"
QUERY = "?v=10&encoding=json&compress=zstd-stream"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def resumed_shard(clock: Clock) -> Shard:
    shard = Shard(
        0,
        1,
        token=TOKEN,
        intents=GatewayIntents.GUILDS,
        gateway_url=BASE,
        hello_timeout=5.0,
        clock=clock,
        rng=random.Random(3),
    )
    shard.begin_connect()
    shard.connection_opened(clock.now)
    shard.receive({"op": 10, "d": {"heartbeat_interval": 1000}})
    shard.identify_payload()
    ready = {"session_id": "s1", "resume_gateway_url": RESUME_URL, "guilds": []}
    shard.receive({"op": 0, "t": "READY", "s": 1, "d": ready})
    assert shard.stage is ConnectionStage.CONNECTED
    shard.connection_closed(1006)
    assert shard.connect_url() == RESUME_URL + "/" + QUERY
    return shard


def test_no_hello_from_the_resume_node_resumes_through_the_base_url_next() -> None:
    clock = Clock()
    shard = resumed_shard(clock)
    shard.begin_connect()
    shard.connection_opened(clock.now)
    clock.now += 5.0
    [reconnect] = [a for a in shard.tick(clock.now) if isinstance(a, Reconnect)]
    assert reconnect.resume and reconnect.failure
    assert reconnect.url == BASE + QUERY
    assert shard.connect_url() == BASE + QUERY
    assert shard.has_session


def test_resume_node_closing_before_resumed_resumes_through_the_base_url_next() -> None:
    clock = Clock()
    shard = resumed_shard(clock)
    shard.begin_connect()
    shard.connection_opened(clock.now)
    shard.receive({"op": 10, "d": {"heartbeat_interval": 1000}})
    assert shard.stage is ConnectionStage.RESUMING
    [reconnect] = [a for a in shard.connection_closed(4000) if isinstance(a, Reconnect)]
    assert reconnect.resume
    assert reconnect.url == BASE + QUERY


def test_a_usable_connection_keeps_the_resume_url() -> None:
    clock = Clock()
    shard = resumed_shard(clock)
    shard.begin_connect()
    shard.connection_opened(clock.now)
    shard.receive({"op": 10, "d": {"heartbeat_interval": 1000}})
    shard.receive({"op": 0, "t": "RESUMED", "s": 2, "d": {}})
    [reconnect] = [a for a in shard.connection_closed(1006) if isinstance(a, Reconnect)]
    assert reconnect.url == RESUME_URL + "/" + QUERY


async def test_runner_gets_past_a_resume_node_that_never_says_hello(sandbox_factory, harness_factory):
    """End to end: READY points at a node that accepts sockets and stays silent; after a drop the
    runner must come back on the sandbox with a RESUME (no identify spent, nothing lost)."""
    silent_connections = 0

    async def silent(request: web.Request) -> web.WebSocketResponse:
        nonlocal silent_connections
        silent_connections += 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:  # never HELLO
            if msg.type is WSMsgType.ERROR:
                break
        return ws

    app = web.Application()
    app.router.add_get("/", silent)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        sandbox = await sandbox_factory()
        sandbox._state.resume_url = f"ws://127.0.0.1:{port}"  # what READY will advertise
        h = harness_factory(sandbox, connect_timeout=0.3, compression="zlib-stream")
        await h.wait_connected()
        sandbox.emit(4, "DM_MESSAGE_CREATE")
        sandbox.inject("drop", 0)
        sandbox.emit(3, "DM_MESSAGE_CREATE")
        await h.wait_for(lambda: h.info.resumes == 1, within=8.0, what="a resume on the base url")
        assert silent_connections >= 1
        assert h.info.identifies == 1
        await h.wait_for(lambda: len(h.event_ids()) >= len(sandbox.event_ids(0)), what="all events")
        assert h.event_ids() == sandbox.event_ids(0)
    finally:
        await runner.cleanup()
