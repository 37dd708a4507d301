"""GatewayServer over a real aiohttp socket, with a small backend written against the protocol."""

from __future__ import annotations

import asyncio
import secrets
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
import zstandard
from aiohttp import web

from shardtui.gateway.protocol import Opcode
from shardtui.server import (
    Accepted,
    AuthResult,
    CommandReceived,
    GatewayBackend,
    GatewayServer,
    GatewaySocket,
    IdentifyRequest,
    InvalidSession,
    QueueLimits,
    Rejected,
    ResumeRequest,
    ServerOptions,
)

TOKEN = "Bot good-token"
IDENTIFY = {"token": TOKEN, "intents": 1, "properties": {"os": "x"}, "shard": [0, 1]}


@dataclass
class Session:
    id: str
    seq: int = 0
    buffer: list[dict[str, Any]] = field(default_factory=list)
    socket: GatewaySocket | None = None

    def dispatch(self, name: str, data: Any) -> None:
        # The backend numbers dispatches: seqs belong to the session, not to a socket.
        self.seq += 1
        payload = {"op": 0, "t": name, "s": self.seq, "d": data}
        self.buffer.append(payload)
        if self.socket is not None:
            self.socket.send(payload)


class Backend:
    """What a proxy or sandbox would be, reduced to the protocol's decisions."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self.by_socket: dict[int, Session] = {}
        self.log: list[tuple[Any, ...]] = []
        self.refusing = False
        self.reconnect_instead_of_hello = False
        self.ack_delay = 0.0
        self.dispatch_on_heartbeat = False
        self.ready_burst = 0
        self.burst_results: list[bool] = []
        self.open_sockets: set[int] = set()

    @property
    def heartbeat_interval_ms(self) -> int:
        return 5000

    def before_upgrade(self, request: web.Request) -> web.StreamResponse | None:
        return web.Response(status=503, text="refusing") if self.refusing else None

    def opened(self, socket: GatewaySocket) -> None:
        socket.ack_delay = self.ack_delay
        self.open_sockets.add(socket.id)

    async def before_hello(self, socket: GatewaySocket) -> dict[str, Any] | None:
        if self.reconnect_instead_of_hello:
            socket.send({"t": None, "s": None, "op": Opcode.RECONNECT, "d": None})
            return None
        return {"server": "test"}

    async def identify(self, socket: GatewaySocket, request: IdentifyRequest) -> AuthResult:
        self.log.append(("identify", request.shard))
        if request.token != TOKEN:
            return Rejected(4004, "Authentication failed.")
        if request.properties.get("os") == "retry":
            return InvalidSession(False)
        session = Session(secrets.token_hex(8), socket=socket)
        self.sessions[session.id] = session
        self.by_socket[socket.id] = session
        session.dispatch("READY", {"session_id": session.id})
        for i in range(self.ready_burst):
            session.seq += 1
            self.burst_results.append(socket.send({"op": 0, "t": "X", "s": session.seq, "d": i}))
        return Accepted()

    async def resume(self, socket: GatewaySocket, request: ResumeRequest) -> AuthResult:
        session = self.sessions.get(request.session_id)
        if session is None:
            return InvalidSession(False)
        session.socket = socket
        self.by_socket[socket.id] = session
        for payload in session.buffer:
            if payload["s"] > request.seq:
                socket.send(payload)
        session.dispatch("RESUMED", None)
        return Accepted()

    def heartbeat(self, socket: GatewaySocket, seq: int | None) -> None:
        self.log.append(("heartbeat", seq))
        session = self.by_socket.get(socket.id)
        if self.dispatch_on_heartbeat and session is not None:
            session.dispatch("AFTER_HEARTBEAT", None)

    async def command(self, socket: GatewaySocket, command: CommandReceived) -> Rejected | None:
        self.log.append(("command", command.op))
        if command.op == Opcode.PRESENCE_UPDATE and command.parsed["status"] == "invisible":  # type: ignore[index]
            return Rejected(4001, "no invisibility here")
        return None

    def violation(self, socket: GatewaySocket, code: int, reason: str) -> None:
        self.log.append(("violation", code))

    def closed(self, socket: GatewaySocket, code: int, *, by_client: bool) -> None:
        self.log.append(("closed", code, by_client))
        session = self.by_socket.pop(socket.id, None)
        if session is not None and session.socket is socket:
            session.socket = None

    def finished(self, socket: GatewaySocket) -> None:
        self.open_sockets.discard(socket.id)


def test_the_test_backend_satisfies_the_protocol() -> None:
    backend: GatewayBackend = Backend()
    assert backend.heartbeat_interval_ms == 5000


Serve = Callable[..., Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(backend: Backend, **options: Any) -> str:
        app = web.Application()
        app.router.add_get(
            "/{tail:.*}", GatewayServer(backend, ServerOptions(close_timeout=0.5, **options)).handle
        )
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


class Client:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self._zlib = zlib.decompressobj() if compress == "zlib-stream" else None
        self._zstd = zstandard.ZstdDecompressor().decompressobj() if compress == "zstd-stream" else None

    async def recv(self) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.ws.receive(), 5)
        if msg.type == aiohttp.WSMsgType.BINARY:
            data = self._zlib.decompress(msg.data) if self._zlib else self._zstd.decompress(msg.data)  # type: ignore[union-attr]
            return orjson.loads(data)
        if msg.type == aiohttp.WSMsgType.TEXT:
            return orjson.loads(msg.data)
        return {"close": self.ws.close_code, "type": msg.type}

    async def send(self, op: int, d: Any = None) -> None:
        await self.ws.send_bytes(orjson.dumps({"op": op, "d": d}))


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    session = aiohttp.ClientSession()

    async def open_(url: str, query: str = "?v=10&encoding=json", compress: str | None = None) -> Client:
        if compress:
            query += f"&compress={compress}"
        ws = await session.ws_connect(url.replace("http", "ws") + "/" + query, autoclose=False)
        return Client(ws, compress)

    yield open_
    await session.close()


async def test_hello_identify_ready_heartbeat_and_a_client_close(serve, connect) -> None:
    backend = Backend()
    client = await connect(await serve(backend))
    hello = await client.recv()
    assert hello == {"t": None, "s": None, "op": 10, "d": {"heartbeat_interval": 5000, "server": "test"}}
    await client.send(Opcode.IDENTIFY, IDENTIFY)
    ready = await client.recv()
    assert (ready["t"], ready["s"]) == ("READY", 1)
    await client.send(Opcode.HEARTBEAT, 1)
    assert (await client.recv())["op"] == Opcode.HEARTBEAT_ACK
    await client.send(Opcode.PRESENCE_UPDATE, {"status": "idle"})
    await client.ws.close(code=1000)
    for _ in range(100):
        if not backend.open_sockets:
            break
        await asyncio.sleep(0.01)
    assert backend.log == [("identify", (0, 1)), ("heartbeat", 1), ("command", 3), ("closed", 1000, True)]
    assert not backend.open_sockets


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("?v=5&encoding=json", 4012),
        ("?encoding=json", 4012),
        ("?v=10&encoding=etf", 4002),
        ("?v=10&compress=lz4", 4002),
    ],
)
async def test_bad_query_closes_before_hello(serve, connect, query: str, code: int) -> None:
    backend = Backend()
    client = await connect(await serve(backend), query)
    assert (await client.recv())["close"] == code
    assert backend.log == [("closed", code, False)]


@pytest.mark.parametrize("compress", ["zlib-stream", "zstd-stream"])
async def test_compressed_connections_carry_every_payload(serve, connect, compress: str) -> None:
    client = await connect(await serve(Backend()), compress=compress)
    assert (await client.recv())["op"] == Opcode.HELLO
    await client.send(Opcode.IDENTIFY, IDENTIFY)
    assert (await client.recv())["t"] == "READY"
    await client.send(Opcode.HEARTBEAT, 1)
    assert (await client.recv())["op"] == Opcode.HEARTBEAT_ACK


async def test_backend_rejection_closes_with_its_code_and_is_no_violation(serve, connect) -> None:
    backend = Backend()
    client = await connect(await serve(backend))
    await client.recv()
    await client.send(Opcode.IDENTIFY, {**IDENTIFY, "token": "Bot wrong"})
    assert (await client.recv())["close"] == 4004
    assert ("closed", 4004, False) in backend.log
    assert not [entry for entry in backend.log if entry[0] == "violation"]


async def test_invalid_session_sends_op_9_and_the_client_may_identify_again(serve, connect) -> None:
    client = await connect(await serve(Backend()))
    await client.recv()
    await client.send(Opcode.IDENTIFY, {**IDENTIFY, "properties": {"os": "retry"}})
    assert await client.recv() == {"t": None, "s": None, "op": Opcode.INVALID_SESSION, "d": False}
    await client.send(Opcode.PRESENCE_UPDATE, {"status": "idle"})  # still not authenticated
    assert (await client.recv())["close"] == 4003


async def test_invalid_session_then_identify_gets_ready(serve, connect) -> None:
    client = await connect(await serve(Backend()))
    await client.recv()
    await client.send(Opcode.IDENTIFY, {**IDENTIFY, "properties": {"os": "retry"}})
    assert (await client.recv())["op"] == Opcode.INVALID_SESSION
    await client.send(Opcode.IDENTIFY, IDENTIFY)
    assert (await client.recv())["t"] == "READY"


async def test_command_rejected_by_the_backend_closes_the_socket(serve, connect) -> None:
    client = await connect(await serve(Backend()))
    await client.recv()
    await client.send(Opcode.IDENTIFY, IDENTIFY)
    await client.recv()
    await client.send(Opcode.PRESENCE_UPDATE, {"status": "invisible"})
    assert (await client.recv())["close"] == 4001


async def test_resume_replays_with_the_original_seqs_then_resumed(serve, connect) -> None:
    backend = Backend()
    url = await serve(backend)
    client = await connect(url)
    await client.recv()
    await client.send(Opcode.IDENTIFY, IDENTIFY)
    session_id = (await client.recv())["d"]["session_id"]
    await client.ws.close(code=4000)  # a resumable close
    session = backend.sessions[session_id]
    for _ in range(100):
        if session.socket is None:
            break
        await asyncio.sleep(0.01)
    for i in range(3):
        session.dispatch("MISSED", i)
    client = await connect(url)
    await client.recv()
    await client.send(Opcode.RESUME, {"token": TOKEN, "session_id": session_id, "seq": 1})
    got = [await client.recv() for _ in range(4)]
    assert [(p["t"], p["s"]) for p in got] == [("MISSED", 2), ("MISSED", 3), ("MISSED", 4), ("RESUMED", 5)]


async def test_protocol_violations_reach_the_backend_before_the_close(serve, connect) -> None:
    backend = Backend()
    client = await connect(await serve(backend, commands_per_window=5))
    await client.recv()
    for _ in range(6):
        await client.send(Opcode.HEARTBEAT)
    codes = [(await client.recv()).get("close") for _ in range(6)]
    assert codes[-1] == 4008 and codes[:5] == [None] * 5
    assert backend.log[-2:] == [("violation", 4008), ("closed", 4008, False)]


async def test_a_client_that_stops_heartbeating_is_closed(serve, connect) -> None:
    backend = Backend()
    client = await connect(await serve(backend, heartbeat_timeout=0.2))
    await client.recv()
    await client.send(Opcode.IDENTIFY, IDENTIFY)
    await client.recv()
    assert (await client.recv())["close"] == 4000  # never heartbeats
    assert backend.log[-2:] == [("violation", 4000), ("closed", 4000, False)]


async def test_a_delayed_ack_lets_later_frames_overtake_it(serve, connect) -> None:
    backend = Backend()
    backend.ack_delay = 0.2
    backend.dispatch_on_heartbeat = True
    client = await connect(await serve(backend))
    await client.recv()
    await client.send(Opcode.IDENTIFY, IDENTIFY)
    await client.recv()
    await client.send(Opcode.HEARTBEAT, 1)
    assert (await client.recv())["t"] == "AFTER_HEARTBEAT"
    assert (await client.recv())["op"] == Opcode.HEARTBEAT_ACK


async def test_a_backlog_past_its_bound_is_refused_and_reported(serve, connect) -> None:
    backend = Backend()
    backend.ready_burst = 20
    client = await connect(await serve(backend, queue_limits=QueueLimits(max_messages=5)))
    await client.recv()
    await client.send(Opcode.IDENTIFY, IDENTIFY)
    got = [await client.recv() for _ in range(5)]
    assert [p["s"] for p in got] == [1, 2, 3, 4, 5]
    # READY took one slot; the burst is queued in one go, so only 4 more fit.
    assert backend.burst_results == [True] * 4 + [False] * 16


async def test_refusal_and_plain_http(serve) -> None:
    backend = Backend()
    url = await serve(backend)
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/") as response:
            assert response.status == 404
        backend.refusing = True
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await http.ws_connect(url.replace("http", "ws") + "/?v=10")
        assert exc.value.status == 503
    assert backend.log == []


async def test_a_backend_may_send_op_7_instead_of_hello(serve, connect) -> None:
    backend = Backend()
    backend.reconnect_instead_of_hello = True
    client = await connect(await serve(backend))
    assert (await client.recv())["op"] == Opcode.RECONNECT
    await client.send(Opcode.HEARTBEAT)
    assert (await client.recv())["op"] == Opcode.HEARTBEAT_ACK  # no HELLO was queued before it
