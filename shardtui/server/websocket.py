"""The aiohttp side: `GatewayServer.handle` runs a `ServerConnection` over a WebSocketResponse
and asks a `GatewayBackend` what to do; `GatewaySocket` is the per-connection handle both use."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from shardtui.gateway.protocol import SUPPORTED_API_VERSIONS, CloseCode, Opcode

from .backend import Accepted, AuthResult, GatewayBackend, InvalidSession, Rejected
from .connection import (
    HEARTBEAT_ACK,
    CloseConnection,
    CommandReceived,
    Event,
    HeartbeatReceived,
    IdentifyReceived,
    ResumeReceived,
    SendPayload,
    ServerConnection,
    control,
)
from .transport import COMPRESSIONS, QueueLimits, WebSocketWriter

log = logging.getLogger("shardtui.server")

#: Largest frame aiohttp reads at all; anything between 4096 B and this gets Discord's 4002.
READ_LIMIT = 1 << 20


@dataclass(frozen=True, slots=True)
class ServerOptions:
    #: Seconds a closing handshake may take before the TCP connection is dropped.
    close_timeout: float = 5.0
    command_window: float = 60.0
    commands_per_window: int = 120
    #: Seconds without op 1 after which an authenticated client is closed with 4000 (None: never).
    #: Discord allows about one interval plus slack; 1.5 x the interval is a fair choice.
    heartbeat_timeout: float | None = None
    #: Bounds of each connection's unsent backlog (the proxy cuts slow clients on overflow).
    queue_limits: QueueLimits | None = None
    #: Prefix of the per-connection writer task names.
    task_prefix: str = "gateway-server"
    #: zlib-stream's compression level (Discord-like 6; 1 halves the cost per message for a few % more
    #: bytes, which a proxy on loopback or a LAN prefers).
    zlib_level: int = 6
    read_limit: int = READ_LIMIT
    #: The answer to a request on the gateway route that is not a WebSocket upgrade (default: 404).
    not_websocket: Callable[[web.Request], web.StreamResponse] | None = None


class GatewaySocket:
    """One client connection: its query, protocol state (`protocol`) and ordered writer.

    The backend sends through `send` / `send_encoded`; everything it queues is written in order
    through the connection's compression context."""

    def __init__(
        self,
        conn_id: int,
        request: web.Request,
        ws: web.WebSocketResponse,
        protocol: ServerConnection,
        *,
        version: int,
        compression: str | None,
        options: ServerOptions,
    ) -> None:
        self.id = conn_id
        self.request = request
        self.ws = ws
        self.protocol = protocol
        self.version = version
        self.compression = compression
        self._close_timeout = options.close_timeout
        self.writer = WebSocketWriter(
            ws,
            compression,
            limits=options.queue_limits,
            close=self._close_handshake,
            zlib_level=options.zlib_level,
        )
        #: Nothing but close frames leaves any more: no ACKs, no dispatches (a zombie server).
        self.muted = False
        #: Seconds to hold each op 11 back (0: answer at once).
        self.ack_delay = 0.0
        #: The server decided to end the connection (close frame queued or TCP dropped).
        self.closing = False
        #: Our close frame is on the wire; the next CLOSE from the client is its reply.
        self.close_sent = False
        self.dropped = False
        #: The code the server closed with (1006 for a drop); None while open or closed by the client.
        self.close_code: int | None = None
        #: Set as soon as the server decided to end the connection.
        self.ended = asyncio.Event()
        #: `GatewayBackend.closed` was called.
        self.settled = False
        self.handler_task: asyncio.Task[Any] | None = asyncio.current_task()
        self._server: GatewayServer | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<GatewaySocket {self.id} {self.protocol.state.value}>"

    @property
    def overflowed(self) -> bool:
        """A send was refused because the backlog was over `ServerOptions.queue_limits`."""
        return self.writer.overflowed

    # -- outbound ---------------------------------------------------------------------------------

    def send(self, payload: dict[str, Any]) -> bool:
        """Encode and queue a payload; False if it was not queued (closing, muted, overflow)."""
        if self.closing or self.muted:
            return False
        return self.writer.put(orjson.dumps(payload))

    def send_encoded(self, data: bytes) -> bool:
        """Queue an already encoded JSON payload (a frame built once for many clients)."""
        if self.closing or self.muted:
            return False
        return self.writer.put(data)

    def send_raw(self, data: bytes, *, truncated: bool = False) -> None:
        """Queue bytes that need not be a valid payload (fault injection); ``truncated`` cuts the
        compressed form in half, breaking the client's decompression stream."""
        if self.closing:
            return
        if truncated:
            self.writer.put_truncated(data)
        else:
            self.writer.put(data)

    def close(self, code: int, reason: str = "") -> None:
        """Close after everything already queued has been written."""
        if self.closing:
            return
        self.closing = True
        self.ended.set()
        self.close_code = code
        self.protocol.closed(code)
        self.writer.put_close(code, reason)
        self._settle(code, by_client=False)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame, right now."""
        if self.dropped:
            return
        already_closing, self.closing = self.closing, True
        self.ended.set()
        self.dropped = True
        if not already_closing:
            self.close_code = 1006
            self.protocol.closed(1006)
            self._settle(1006, by_client=False)
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def shutdown(self, code: int, reason: str) -> None:
        """A close handshake if the client answers in time, else a drop (for a server stopping)."""
        self.close(code, reason)
        handler = self.handler_task
        if handler is not None and not handler.done() and handler is not asyncio.current_task():
            _, pending = await asyncio.wait([handler], timeout=self._close_timeout + 0.5)
            if pending:
                self.abort()

    def deauthenticate(self) -> None:
        """The backend ended the session under this live socket: the client may IDENTIFY again."""
        self.protocol.reset()

    def _settle(self, code: int, *, by_client: bool) -> None:
        if self.settled:
            return
        self.settled = True
        self.protocol.closed(code)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._server is not None:
            self._server.backend.closed(self, code, by_client=by_client)

    async def _close_handshake(self, code: int, reason: str) -> None:
        writer = getattr(self.ws, "_writer", None)
        try:
            if writer is None:
                raise RuntimeError("websocket not prepared")
            # The close frame is written directly rather than through ws.close(): closing from this
            # task while the reader task waits makes aiohttp cut the TCP connection at once, and the
            # client then reports 1006 instead of our code. The reader sees the client's reply.
            await writer.close(code, reason.encode()[:120])
            self.close_sent = True
        except (ConnectionError, RuntimeError):
            self.abort()
            return
        await asyncio.sleep(self._close_timeout)
        self.abort()  # the client never answered the close frame

    def _send_ack(self) -> None:
        if not self.muted and not self.closing:
            self.writer.put(orjson.dumps(HEARTBEAT_ACK))


class GatewayServer:
    """Serves Discord's gateway WebSocket for one `GatewayBackend`; mount `handle` on a GET route."""

    def __init__(self, backend: GatewayBackend, options: ServerOptions | None = None) -> None:
        self.backend = backend
        self.options = options or ServerOptions()
        self._ids = itertools.count(1)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        backend, options = self.backend, self.options
        if not web.WebSocketResponse().can_prepare(request).ok:
            if options.not_websocket is not None:
                return options.not_websocket(request)
            return web.Response(status=404, text="404: Not Found")
        refusal = backend.before_upgrade(request)
        if refusal is not None:
            return refusal
        ws = web.WebSocketResponse(
            max_msg_size=options.read_limit,
            compress=False,
            autoping=True,
            autoclose=False,
            timeout=options.close_timeout,
        )
        await ws.prepare(request)
        query = request.query
        compression = query.get("compress")
        raw_version = query.get("v", "")
        version = int(raw_version) if raw_version.isdigit() else 0
        protocol = ServerConnection(
            heartbeat_interval_ms=backend.heartbeat_interval_ms,
            heartbeat_timeout=options.heartbeat_timeout,
            command_window=options.command_window,
            commands_per_window=options.commands_per_window,
        )
        sock = GatewaySocket(
            next(self._ids),
            request,
            ws,
            protocol,
            version=version,
            compression=compression if compression in COMPRESSIONS else None,
            options=options,
        )
        sock._server = self
        backend.opened(sock)
        sock.writer.start(f"{options.task_prefix}-conn-{sock.id}-writer")
        client_close: int | None = None
        try:
            if version not in SUPPORTED_API_VERSIONS:
                sock.close(CloseCode.INVALID_API_VERSION, "Invalid API version.")
            elif query.get("encoding", "json") != "json":
                sock.close(CloseCode.DECODE_ERROR, "Only encoding=json is supported.")
            elif compression is not None and compression not in COMPRESSIONS:
                sock.close(CloseCode.DECODE_ERROR, "Unknown compress value.")
            else:
                extra = await backend.before_hello(sock)
                if extra is not None:
                    sock.send(protocol.hello(**extra))
            client_close = await self._read_loop(sock)
        finally:
            sock.closing = True
            sock._settle(1006 if client_close is None else client_close, by_client=True)
            await sock.writer.stop()
            backend.finished(sock)
        return ws

    async def _read_loop(self, sock: GatewaySocket) -> int | None:
        ws, protocol = sock.ws, sock.protocol
        loop = asyncio.get_running_loop()
        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.CLOSE:
                code = int(msg.data) if msg.data is not None else None
                if sock.close_sent:
                    return None  # the client's reply to our close
                # Settle before answering, so a client whose close() returned can rely on the
                # backend having seen its 1000/1001.
                sock.closing = True
                sock._settle(1006 if code is None else code, by_client=True)
                with contextlib.suppress(Exception):
                    await ws.close(
                        code=code if code in (1000, 1001) or (code and 3000 <= code < 5000) else 1000
                    )
                return code
            if msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                code = getattr(msg.data, "code", None) if msg.type == WSMsgType.ERROR else None
                if isinstance(code, int) and code != 1006:
                    # aiohttp itself sent the close (a frame above read_limit: 1009).
                    sock.closing = True
                    sock.close_code = code
                    protocol.closed(code)
                    sock._settle(code, by_client=False)
                return None
            if sock.closing:
                continue
            for event in protocol.receive(msg.data, loop.time()):
                await self._handle_event(sock, event)
                if sock.closing:
                    break

    async def _handle_event(self, sock: GatewaySocket, event: Event) -> None:
        backend = self.backend
        if isinstance(event, HeartbeatReceived):
            backend.heartbeat(sock, event.seq)
        elif isinstance(event, SendPayload):
            if event.payload is HEARTBEAT_ACK and sock.ack_delay > 0:
                asyncio.get_running_loop().call_later(sock.ack_delay, sock._send_ack)
            else:
                sock.send(event.payload)
        elif isinstance(event, CommandReceived):
            rejected = await backend.command(sock, event)
            if rejected is not None:
                sock.close(rejected.code, rejected.reason)
        elif isinstance(event, IdentifyReceived):
            self._settle_auth(sock, await backend.identify(sock, event.request))
        elif isinstance(event, ResumeReceived):
            self._settle_auth(sock, await backend.resume(sock, event.request))
        elif isinstance(event, CloseConnection):
            self._violation(sock, event)

    def _violation(self, sock: GatewaySocket, event: CloseConnection) -> None:
        if sock.closing:
            return
        self.backend.violation(sock, event.code, event.reason)
        sock.close(event.code, event.reason)

    def _settle_auth(self, sock: GatewaySocket, result: AuthResult) -> None:
        if sock.closing:
            return
        if isinstance(result, Accepted):
            sock.protocol.accept(asyncio.get_running_loop().time())
            self._arm_watchdog(sock)
        elif isinstance(result, Rejected):
            sock.close(result.code, result.reason)
        elif isinstance(result, InvalidSession):
            sock.protocol.reset()
            sock.send(control(Opcode.INVALID_SESSION, result.resumable))

    def _arm_watchdog(self, sock: GatewaySocket) -> None:
        """One timer per connection for the missed-heartbeat rule, re-armed when it fires early."""
        deadline = sock.protocol.heartbeat_deadline()
        if deadline is None or sock.closing:
            return
        if sock._watchdog is not None:
            sock._watchdog.cancel()
        loop = asyncio.get_running_loop()
        sock._watchdog = loop.call_at(deadline + 0.001, self._check_heartbeat, sock)

    def _check_heartbeat(self, sock: GatewaySocket) -> None:
        sock._watchdog = None
        if sock.closing:
            return
        for event in sock.protocol.tick(asyncio.get_running_loop().time()):
            if isinstance(event, CloseConnection):
                self.backend.violation(sock, event.code, event.reason)
                sock.close(event.code, event.reason)
                return
        self._arm_watchdog(sock)
