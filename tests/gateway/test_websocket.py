"""The gateway's WebSocket client against a real aiohttp server: the upgrade request as the server sees
it, text and binary round trips, TLS with a private CA, and both closing handshakes. Malformed bytes and
the fast path are in test_websocket_protocol.py (raw server)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trustme
from aiohttp import WSMsgType, web

from shardtui.gateway.websocket import MessageKind, connect

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/gateway", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


@pytest.fixture
async def server() -> AsyncIterator[Callable[..., Awaitable[int]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> int:
        runner, port = await _serve(handler, ssl_context)
        runners.append(runner)
        return port

    yield start
    for runner in runners:
        await runner.cleanup()


def echo_handler(seen: list[web.Request]) -> Handler:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        seen.append(request)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    return handler


async def test_the_upgrade_request_as_an_aiohttp_server_sees_it(server) -> None:
    seen: list[web.Request] = []
    port = await server(echo_handler(seen))
    sock = await connect(f"ws://127.0.0.1:{port}/gateway?v=10&encoding=json", user_agent="shardtui-test/1")
    try:
        (request,) = seen
        assert request.headers["Upgrade"].lower() == "websocket"
        assert "upgrade" in request.headers["Connection"].lower()
        assert request.headers["Sec-WebSocket-Version"] == "13"
        assert len(request.headers["Sec-WebSocket-Key"]) == 24
        assert request.headers["User-Agent"] == "shardtui-test/1"
        assert request.path == "/gateway"
        assert request.query_string == "v=10&encoding=json"
        assert "Sec-WebSocket-Extensions" not in request.headers
    finally:
        await sock.close()


async def test_text_and_binary_round_trip_through_an_echo_server(server) -> None:
    port = await server(echo_handler([]))
    sock = await connect(f"ws://127.0.0.1:{port}/gateway")
    try:
        await sock.send_frame(b'{"op":1,"d":null}')
        await sock.send_frame(b"\x00\xff\x10" * 1000, MessageKind.BINARY)
        await sock.send_frame("héllo".encode())
        first = await sock.receive()
        second = await sock.receive()
        third = await sock.receive()
        assert (first.kind, first.data) == (MessageKind.TEXT, b'{"op":1,"d":null}')
        assert (second.kind, second.data) == (MessageKind.BINARY, b"\x00\xff\x10" * 1000)
        assert (third.kind, third.data) == (MessageKind.TEXT, "héllo".encode())
    finally:
        await sock.close()


async def test_a_server_close_4004_is_reported_then_answered(server) -> None:
    got: list[int | None] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoclose=False)
        await ws.prepare(request)
        await ws._writer.send_frame(  # a close frame without aiohttp waiting for the reply itself
            (4004).to_bytes(2, "big") + b"Authentication failed.", WSMsgType.CLOSE
        )
        reply = await ws.receive(timeout=5)
        got.append(reply.data if reply.type is WSMsgType.CLOSE else None)
        return ws

    port = await server(handler)
    sock = await connect(f"ws://127.0.0.1:{port}/gateway")
    msg = await sock.receive()
    assert msg.kind is MessageKind.CLOSE
    assert (msg.data, msg.extra) == (4004, "Authentication failed.")
    assert sock.close_code == 4004
    assert sock.close_reason == "Authentication failed."
    await sock.close(code=4000)
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.02)
    assert got == [4000]


async def test_our_close_is_answered_by_aiohttp_and_wakes_the_reader(server) -> None:
    seen_code: list[int | None] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _ in ws:
            pass
        seen_code.append(ws.close_code)
        return ws

    port = await server(handler)
    sock = await connect(f"ws://127.0.0.1:{port}/gateway")
    reader = asyncio.create_task(sock.receive())
    await asyncio.sleep(0.05)
    assert await sock.close(code=4000) is True
    msg = await reader
    assert msg.kind is MessageKind.CLOSING
    assert sock.closed
    assert sock.close_code == 1000  # the server's reply (aiohttp answers with 1000), not our 4000
    assert seen_code == [4000]
    assert await sock.close() is False
    with pytest.raises(ConnectionResetError):
        await sock.send_frame(b"late")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def _tls_server(server, ca: trustme.CA) -> int:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    return await server(echo_handler([]), server_ctx)


async def test_wss_with_the_private_ca_round_trips(server, ca) -> None:
    port = await _tls_server(server, ca)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    sock = await connect(f"wss://localhost:{port}/gateway", ssl=client_ctx)
    try:
        await sock.send_frame(b"over tls")
        msg = await sock.receive()
        assert (msg.kind, msg.data) == (MessageKind.TEXT, b"over tls")
    finally:
        await sock.close()


async def test_wss_without_the_ca_is_refused(server, ca) -> None:
    port = await _tls_server(server, ca)
    with pytest.raises((ssl.SSLError, OSError)):
        await connect(f"wss://localhost:{port}/gateway")
