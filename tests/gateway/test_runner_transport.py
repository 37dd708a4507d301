"""The runner on its own WebSocket client: a refused upgrade's Retry-After, TLS (wss) end to end with a
resume, the fast path keeping order when control payloads land in the middle of a burst, and the close
frame it answers a server's close with."""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace

import orjson
import pytest
import trustme
from aiohttp import WSMsgType, web

from shardtui.gateway.models import ConnectionStage
from shardtui.sandbox import Sandbox, SandboxSettings
from tests.conftest import FAST_SANDBOX_DEFAULTS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_sandbox(ca: trustme.CA) -> AsyncIterator[Sandbox]:
    """The sandbox served over TLS with a certificate for 127.0.0.1 from the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    sandbox = Sandbox(SandboxSettings(**{**FAST_SANDBOX_DEFAULTS, "shards": 1}))
    await sandbox.start(host="127.0.0.1", port=0, ssl_context=context)
    try:
        yield sandbox
    finally:
        await sandbox.stop()


async def test_refused_upgrade_is_retried_once_after_retry_after(sandbox_factory, harness_factory) -> None:
    sandbox = await sandbox_factory()
    sandbox.inject("refuse", seconds=2.5)
    h = harness_factory(sandbox)  # backoff alone would retry every 0.5-1 s (max_backoff 1.0)
    await h.wait_connected(within=10.0)
    assert sandbox.stats()["refused_connections"] == 1, h.log_text()
    line = next(e.message for e in h.logs if "could not connect" in e.message)
    assert "handshake refused with HTTP 503 (retry after 3 s)" in line
    delay = float(re.search(r"retrying in ([0-9.]+) s", line).group(1))  # type: ignore[union-attr]
    assert delay >= 3.0


async def test_wss_gateway_identifies_and_resumes(tls_sandbox, harness_factory, ca) -> None:
    sandbox = tls_sandbox
    assert sandbox.gateway_url.startswith("wss://")
    client = ssl.create_default_context()
    ca.configure_trust(client)
    h = harness_factory(sandbox, ssl_context=client)
    await h.wait_connected(within=10.0)
    sent = sandbox.emit(20)
    assert sent > 0
    await h.wait_for(lambda: len(h.event_ids()) >= sent, what="the events over TLS")
    sandbox.inject("drop", shard_id=0)
    await h.wait_connected(count=2, within=10.0)
    assert h.info.last_start == "resume" and h.info.resumes == 1
    assert h.runner.options.gateway_url.startswith("wss://")
    assert sandbox.emit(5) > 0

    def complete() -> bool:
        report = sandbox.delivery_report(0, h.event_ids())
        return report.ok and report.received == report.sent

    await h.wait_for(complete, what="every event, once, after the resume")
    report = sandbox.delivery_report(0, h.event_ids())
    assert report.ok, report


async def test_wss_with_an_untrusted_certificate_never_connects(tls_sandbox, harness_factory) -> None:
    sandbox = tls_sandbox
    h = harness_factory(sandbox)  # the system's CA store does not know the test CA
    await h.wait_for(lambda: "could not connect" in h.log_text(), within=10.0, what="a failed connect")
    assert "CERTIFICATE_VERIFY_FAILED" in h.log_text()
    assert ConnectionStage.CONNECTED not in h.stage_changes()
    assert h.info.identifies == 0


async def test_control_payloads_inside_a_burst_keep_dispatch_order(sandbox_factory, harness_factory) -> None:
    # op 1 asks for a heartbeat now: the runner awaits its send while more dispatches arrive, which
    # must then queue behind it and still reach the handler once each, in seq order.
    sandbox = await sandbox_factory(shards=1)
    h = harness_factory(sandbox)
    await h.wait_connected(within=10.0)
    sent = 0
    for _ in range(30):
        sent += sandbox.emit(40)
        assert sandbox.inject("heartbeat_request", shard_id=0) == 1
        sent += sandbox.emit(40)
        await asyncio.sleep(0)
    await h.wait_for(lambda: len(h.event_ids()) >= sent, what="every event of the burst")
    report = sandbox.delivery_report(0, h.event_ids())
    assert report.ok and report.received == report.sent, report
    seqs = [d.seq for d in h.received if d.name != "READY" and d.seq is not None]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert h.info.resumes == 0 and h.info.reconnects == 0


async def test_text_frames_on_a_compressed_connection_are_read_as_they_are(harness_factory) -> None:
    # Discord compresses every frame on a zstd-stream connection, but a text frame there is plain JSON:
    # the fast path must leave it to the reader instead of feeding it to the zstd stream.
    async def handle(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoclose=False)
        await ws.prepare(request)
        await ws.send_str('{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":10000}}')
        async for msg in ws:
            payload = orjson.loads(msg.data)
            if payload["op"] == 2:
                ready = {"session_id": "abc", "resume_gateway_url": url.rstrip("/"), "guilds": [], "v": 10}
                await ws.send_str(orjson.dumps({"t": "READY", "s": 1, "op": 0, "d": ready}).decode())
                for seq in range(2, 12):
                    event = {"t": "MESSAGE_CREATE", "s": seq, "op": 0, "d": {"id": str(seq)}}
                    await ws.send_str(orjson.dumps(event).decode())
        return ws

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"ws://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"  # type: ignore[union-attr]
    try:
        h = harness_factory(
            SimpleNamespace(token="MTIz.text.frames", gateway_url=url), compression="zstd-stream"
        )
        await h.wait_for(lambda: len(h.received) >= 11, what="READY and 10 dispatches")
        assert [d.seq for d in h.received] == list(range(1, 12))
        assert h.info.reconnects == 0 and "could not" not in h.log_text()
        await h.stop()
    finally:
        await runner.cleanup()


# -- the close frame the runner answers a server's close with ------------------------------------------
# Discord reads a client close with 1000/1001 as "end my session" (fact sheet §5). When the gateway closes
# first (4000, a server 1000/1001 during a restart, ...) the runner must answer with a code that keeps the
# session, then RESUME. The sandbox ignores the reply frame, so a tiny scripted gateway records it here.

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.review.close-reply-token"


@dataclass
class ScriptedGateway:
    """HELLO, READY on IDENTIFY, RESUMED on RESUME; closes the first session's socket with ``close_code``."""

    close_code: int
    url: str = ""
    client_close_replies: list[int | None] = field(default_factory=list)
    ops_received: list[int] = field(default_factory=list)
    closed_once: bool = False

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoclose=False)
        await ws.prepare(request)
        await ws.send_str(
            orjson.dumps({"t": None, "s": None, "op": 10, "d": {"heartbeat_interval": 10_000}}).decode()
        )
        server_closed = False
        while True:
            msg = await ws.receive()
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                payload = orjson.loads(msg.data)
                self.ops_received.append(payload["op"])
                if payload["op"] == 1:
                    await ws.send_str('{"t":null,"s":null,"op":11,"d":null}')
                elif payload["op"] == 2:
                    ready = {
                        "session_id": "0123456789abcdef0123456789abcdef",
                        "resume_gateway_url": self.url.rstrip("/"),
                        "user": {"id": "1", "username": "bot", "bot": True},
                        "guilds": [],
                        "shard": [0, 1],
                        "v": 10,
                    }
                    await ws.send_str(orjson.dumps({"t": "READY", "s": 1, "op": 0, "d": ready}).decode())
                    if not self.closed_once:
                        self.closed_once = True
                        server_closed = True
                        await ws._writer.close(self.close_code, b"server closing")  # type: ignore[union-attr]
                elif payload["op"] == 6:
                    await ws.send_str('{"t":"RESUMED","s":2,"op":0,"d":{}}')
            elif msg.type == WSMsgType.CLOSE:
                if server_closed:
                    self.client_close_replies.append(msg.data)
                break
            else:
                break
        return ws


@pytest.fixture
async def scripted_gateway():
    runners: list[web.AppRunner] = []

    async def start(close_code: int) -> ScriptedGateway:
        gateway = ScriptedGateway(close_code)
        app = web.Application()
        app.router.add_get("/", gateway.handle)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        gateway.url = f"ws://127.0.0.1:{port}/"
        return gateway

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.mark.parametrize("server_code", [4000, 1000, 1001])
async def test_server_close_is_answered_with_a_session_keeping_code_then_resumed(
    scripted_gateway, harness_factory, server_code: int
) -> None:
    gateway = await scripted_gateway(server_code)
    h = harness_factory(SimpleNamespace(token=TOKEN, gateway_url=gateway.url), compression="none")
    await h.wait_for(lambda: 6 in gateway.ops_received, what="a RESUME after the server's close")
    await h.wait_connected(count=2)
    assert h.info.last_close_code == server_code  # what the server said, not our reply
    assert len(gateway.client_close_replies) == 1
    reply = gateway.client_close_replies[0]
    # 1000/1001 from the client would end the session on Discord's side: the RESUME would then fail.
    assert reply not in (1000, 1001), f"runner answered the server's {server_code} with {reply}"
    assert gateway.ops_received.count(2) == 1  # one IDENTIFY, then a RESUME, never a second identify
    await asyncio.sleep(0)
