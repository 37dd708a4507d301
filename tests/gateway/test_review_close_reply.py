"""Review: the close frame a runner sends back when the *server* closes the connection.

Discord reads a client close with 1000/1001 as "end my session" (fact sheet §5). When the gateway closes
first (4000, a server 1000/1001 during a restart, ...) the runner must answer with a code that keeps the
session, then RESUME. The sandbox ignores the reply frame, so a tiny scripted gateway records it here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace

import orjson
import pytest
from aiohttp import WSMsgType, web

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
