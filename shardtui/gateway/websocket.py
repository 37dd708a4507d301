"""The gateway's own WebSocket client (RFC 6455) on an :class:`asyncio.Protocol`.

Why not aiohttp's client: its receive path (frame parser, message objects, a flow-controlled queue and
``receive()``) costs more per gateway event than inflating and decoding the event itself. Here frames are
parsed where the bytes land, and while the reader waits with nothing queued, each data message goes
straight to a *taker* (the runner's decode-and-dispatch) inside ``data_received``: no message object, no
queue, no task wake-up per event. Everything else (control frames, messages that arrive while the reader
is busy) is queued and read with :meth:`GatewaySocket.receive`, so order is kept.

Only what a gateway client needs: no extensions (transport compression is the gateway's own), no
proxies. aiohttp stays for REST and for the sandbox server.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hashlib
import ipaddress
import os
import socket as socket_module
import ssl as ssl_module
import struct
from collections import deque
from collections.abc import Callable
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit

from shardtui.gateway.aio import wait_for

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Largest HTTP response head we read before giving up on a handshake.
MAX_HANDSHAKE_HEAD: Final = 16 * 1024
#: Queued bytes at which the socket stops reading, and the level under which it reads again.
QUEUE_HIGH: Final = 4 * 1024 * 1024
QUEUE_LOW: Final = 1024 * 1024

_OP_CONT: Final = 0x0
_OP_TEXT: Final = 0x1
_OP_BINARY: Final = 0x2
_OP_CLOSE: Final = 0x8
_OP_PING: Final = 0x9
_OP_PONG: Final = 0xA
#: First header byte of an unfragmented text / binary frame (FIN set, no RSV bits).
_FIN_TEXT: Final = 0x80 | _OP_TEXT
_FIN_BINARY: Final = 0x80 | _OP_BINARY

_pack_h: Final = struct.Struct("!H").pack
_pack_q: Final = struct.Struct("!Q").pack


class MessageKind(enum.Enum):
    TEXT = "text"
    BINARY = "binary"
    #: An object the taker already decoded (its meaning is the taker's).
    DECODED = "decoded"
    #: The taker could not decode a message; ``data`` says why.
    DECODE_FAILED = "decode failed"
    #: The server's close frame: ``data`` is its code (1005 when the frame had none), ``extra`` its reason.
    CLOSE = "close"
    #: Our own close() began while a receive() waited.
    CLOSING = "closing"
    #: The connection is gone.
    CLOSED = "closed"
    #: The server broke the protocol: ``data`` is a :class:`WebSocketProtocolError`.
    ERROR = "error"


class Message(NamedTuple):
    kind: MessageKind
    data: Any
    extra: str | None = None


_CLOSED_MESSAGE: Final = Message(MessageKind.CLOSED, None)
_CLOSING_MESSAGE: Final = Message(MessageKind.CLOSING, None)

Taker = Callable[[bytes], Message | None]


class HandshakeError(Exception):
    """The server did not switch to the WebSocket protocol."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class WebSocketProtocolError(Exception):
    """The server broke RFC 6455; ``code`` is the close code we answered with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


_default_ssl: ssl_module.SSLContext | None = None


def _default_ssl_context() -> ssl_module.SSLContext:
    # Loading the CA store takes milliseconds: one context for every shard of the process.
    global _default_ssl
    if _default_ssl is None:
        _default_ssl = ssl_module.create_default_context()
    return _default_ssl


def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if not n:
        return data
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")).to_bytes(n, "little")


def _frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + _pack_h(n)
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + _pack_q(n)
    key = os.urandom(4)
    return head + key + _mask(payload, key)


def _accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 and seconds == seconds and seconds != float("inf") else None


class GatewaySocket(asyncio.Protocol):
    """One client WebSocket connection. Made by :func:`connect`; one reader, any number of senders."""

    # One per connected shard, idle most of its life: no instance dict (asyncio.Protocol has slots too).
    __slots__ = (
        "_close_frame_seen",
        "_close_sent",
        "_close_timeout",
        "_drain_waiters",
        "_fragment_opcode",
        "_fragments",
        "_handshaking",
        "_head",
        "_key",
        "_loop",
        "_lost",
        "_need",
        "_pending",
        "_pending_len",
        "_queue",
        "_queued_bytes",
        "_reading_paused",
        "_receiving",
        "_server_closed",
        "_take",
        "_take_text",
        "_transport",
        "_waiter",
        "_write_paused",
        "close_code",
        "close_reason",
        "closed",
        "handshake",
    )

    def __init__(self, key: str, close_timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._key = key
        self._close_timeout = close_timeout
        self._transport: asyncio.Transport | None = None
        #: Done when the opening handshake succeeded (or failed); ``_handshaking`` until then.
        self.handshake: asyncio.Future[None] = self._loop.create_future()
        self._handshaking = True
        self._head = bytearray()
        # Bytes of an incomplete frame: kept as a list until enough have arrived, so a large frame is
        # joined once instead of once per read.
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._need = 2
        self._fragments: list[bytes] | None = None
        self._fragment_opcode = 0
        # Made when a message must wait and dropped once drained: an empty deque is 760 bytes, and an
        # idle shard's messages all go to the taker.
        self._queue: deque[tuple[Message, int]] | None = None
        self._queued_bytes = 0
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._receiving = False
        self._take: Taker | None = None
        self._take_text = True
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._close_sent = False
        self._close_frame_seen = False
        self._server_closed: asyncio.Future[None] = self._loop.create_future()
        self._lost = False
        self.closed = False
        self.close_code: int | None = None
        self.close_reason = ""

    def __repr__(self) -> str:
        return f"GatewaySocket(closed={self.closed}, close_code={self.close_code})"

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._close_frame_seen:
            return  # nothing may follow a close frame (RFC 6455 5.5.1)
        if self._handshaking:
            data = self._read_handshake(data)
            if not data:
                return
        pending = self._pending
        if pending:
            total = self._pending_len + len(data)
            if total < self._need:
                pending.append(data)
                self._pending_len = total
                return
            pending.append(data)
            data = b"".join(pending)
            pending.clear()
            self._pending_len = 0
        self._parse(data)

    def eof_received(self) -> bool | None:
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.closed = True
        if self.close_code is None:
            self.close_code = 1006
        if self._handshaking:
            self._handshaking = False
            if not self.handshake.done():
                self.handshake.set_exception(
                    HandshakeError("the connection closed during the WebSocket handshake")
                )
        if not self._server_closed.done():
            self._server_closed.set_result(None)
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionResetError("the gateway connection is closed"))
        self._drain_waiters.clear()
        self._wake()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    # -- handshake ------------------------------------------------------------------------------------

    def _read_handshake(self, data: bytes) -> bytes:
        head = self._head
        head += data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > MAX_HANDSHAKE_HEAD:
                self._fail_handshake(HandshakeError("the server's handshake response is too large"))
            return b""
        rest = bytes(head[end + 4 :])
        text = bytes(head[:end]).decode("latin-1")
        head.clear()
        error = self._check_response(text)
        if error is not None:
            self._fail_handshake(error)
            return b""
        self._handshaking = False
        if not self.handshake.done():
            self.handshake.set_result(None)
        return rest

    def _check_response(self, text: str) -> HandshakeError | None:
        lines = text.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            return HandshakeError("the server did not answer the WebSocket handshake with HTTP")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                key = name.strip().lower()
                value = value.strip()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if status != 101:
            retry_after = _retry_after(headers.get("retry-after"))
            suffix = f" (retry after {retry_after:g} s)" if retry_after is not None else ""
            return HandshakeError(f"handshake refused with HTTP {status}{suffix}", status, retry_after)
        if headers.get("upgrade", "").lower() != "websocket":
            return HandshakeError("the server's 101 response does not upgrade to websocket", status)
        if "upgrade" not in (token.strip().lower() for token in headers.get("connection", "").split(",")):
            return HandshakeError("the server's 101 response lacks Connection: upgrade", status)
        if headers.get("sec-websocket-accept") != _accept_key(self._key):
            return HandshakeError("the server's Sec-WebSocket-Accept does not match our key", status)
        if headers.get("sec-websocket-extensions"):
            return HandshakeError("the server chose a WebSocket extension we did not offer", status)
        return None

    def _fail_handshake(self, error: HandshakeError) -> None:
        self._handshaking = False
        if not self.handshake.done():
            self.handshake.set_exception(error)
        if self._transport is not None:
            self._transport.close()

    # -- frames ---------------------------------------------------------------------------------------

    def _parse(self, data: bytes) -> None:
        pos = 0
        end_of_data = len(data)
        while True:
            left = end_of_data - pos
            if left < 2:
                need = 2
                break
            b0 = data[pos]
            b1 = data[pos + 1]
            length = b1 & 0x7F
            start = pos + 2
            if length == 126:
                if left < 4:
                    need = 4
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
            elif length == 127:
                if left < 10:
                    need = 10
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
            if b1 & 0x80:
                self._protocol_error(1002, "the server sent a masked frame")
                return
            end = start + length
            if end > end_of_data:
                need = end - pos
                break
            payload = data[start:end]
            pos = end
            if (b0 == _FIN_BINARY or b0 == _FIN_TEXT) and self._fragments is None:
                # _deliver's fast path inlined: one Python call per event fewer on the hot path.
                take = self._take
                if (
                    take is not None
                    and not self._queue  # (re-read: a message queued by this loop is made here)
                    and self._waiter is not None
                    and (b0 == _FIN_BINARY or self._take_text)
                ):
                    try:
                        out = take(payload)
                    except Exception as exc:
                        self._taker_failed(exc)
                        return
                    if out is not None:
                        self._enqueue(out, len(payload))
                elif not self._deliver(payload, b0 == _FIN_BINARY):
                    return
            elif not self._other_frame(b0, payload) or self._lost:
                return
        if pos < end_of_data:
            self._pending.append(data[pos:] if pos else data)
            self._pending_len = end_of_data - pos
        self._need = need

    def _deliver(self, data: bytes, binary: bool) -> bool:
        """A complete data message: to the taker if the reader waits with nothing queued, else queued.
        False when the taker failed and the connection is ending."""
        take = self._take
        if take is not None and self._waiter is not None and not self._queue and (binary or self._take_text):
            try:
                out = take(data)
            except Exception as exc:
                self._taker_failed(exc)
                return False
            if out is not None:
                self._enqueue(out, len(data))
        else:
            self._enqueue(Message(MessageKind.BINARY if binary else MessageKind.TEXT, data), len(data))
        return True

    def _taker_failed(self, exc: Exception) -> None:
        self._take = None
        self._enqueue(Message(MessageKind.ERROR, exc), 0)
        self._fail(1011)

    def _other_frame(self, b0: int, payload: bytes) -> bool:
        """Control frames, fragments and everything wrong. False when the connection is ending."""
        if b0 & 0x70:
            return self._protocol_error(1002, "the server set reserved bits on a frame")
        fin = b0 & 0x80
        opcode = b0 & 0x0F
        if opcode >= _OP_CLOSE:
            if not fin:
                return self._protocol_error(1002, "the server fragmented a control frame")
            if len(payload) > 125:
                return self._protocol_error(1002, "the server sent a control frame over 125 bytes")
            if opcode == _OP_PING:
                if not self._close_sent and self._transport is not None:
                    self._transport.write(_frame(_OP_PONG, payload))
                return True
            if opcode == _OP_PONG:
                return True
            if opcode == _OP_CLOSE:
                return self._close_frame(payload)
            return self._protocol_error(1002, f"the server sent an unknown opcode {opcode:#x}")
        if opcode == _OP_CONT:
            fragments = self._fragments
            if fragments is None:
                return self._protocol_error(1002, "the server continued a message it never started")
            fragments.append(payload)
            if fin:
                self._fragments = None
                return self._deliver(b"".join(fragments), self._fragment_opcode == _OP_BINARY)
            return True
        if opcode in (_OP_TEXT, _OP_BINARY):
            if self._fragments is not None:
                return self._protocol_error(1002, "the server began a message inside a fragmented one")
            if fin:  # reached only with RSV bits clear and a fragment in progress: handled above
                return self._protocol_error(1002, "unexpected frame")
            self._fragments = [payload]
            self._fragment_opcode = opcode
            return True
        return self._protocol_error(1002, f"the server sent an unknown opcode {opcode:#x}")

    def _close_frame(self, payload: bytes) -> bool:
        if len(payload) == 1:
            return self._protocol_error(1002, "the server sent a close frame with a 1-byte payload")
        if payload:
            code = (payload[0] << 8) | payload[1]
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                return self._protocol_error(1007, "the server's close reason is not UTF-8")
        else:
            code, reason = 1005, ""
        self._close_frame_seen = True
        self.close_code = code
        self.close_reason = reason
        if self._close_sent:
            # The reply to our close: the closing handshake is complete.
            if not self._server_closed.done():
                self._server_closed.set_result(None)
        else:
            self._enqueue(Message(MessageKind.CLOSE, code, reason), 0)
        return False

    def _protocol_error(self, code: int, text: str) -> bool:
        self._enqueue(Message(MessageKind.ERROR, WebSocketProtocolError(code, text)), 0)
        self._fail(code)
        return False

    def _fail(self, code: int) -> None:
        """We end the connection for a fault of the server's (or our taker's): close frame, then drop."""
        self.close_code = code
        self.closed = True
        self._take = None
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if not self._close_sent:
                self._close_sent = True
                transport.write(_frame(_OP_CLOSE, _pack_h(code)))
            transport.close()

    # -- the queue ------------------------------------------------------------------------------------

    def _enqueue(self, message: Message, size: int) -> None:
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append((message, size))
        if size:
            self._queued_bytes += size
            if self._queued_bytes > QUEUE_HIGH and not self._reading_paused and self._transport is not None:
                self._reading_paused = True
                self._transport.pause_reading()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def set_taker(self, take: Taker | None, *, text: bool = True) -> None:
        """Install (or with None remove) the fast path; ``text=False`` keeps text messages queued."""
        self._take = take
        self._take_text = text

    async def receive(self) -> Message:
        if self._receiving:
            raise RuntimeError("receive() is already waiting on this socket")
        queue = self._queue
        if not queue:
            if self._lost:
                return _CLOSED_MESSAGE
            self._receiving = True
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
                self._receiving = False
            queue = self._queue
            if not queue:
                return _CLOSED_MESSAGE
        message, size = queue.popleft()
        if not queue:
            self._queue = None
        if size:
            self._queued_bytes -= size
            if self._reading_paused and self._queued_bytes < QUEUE_LOW:
                self._reading_paused = False
                if self._transport is not None and not self._lost:
                    self._transport.resume_reading()
        return message

    # -- sending and closing ---------------------------------------------------------------------------

    async def send_frame(self, data: bytes, kind: MessageKind = MessageKind.TEXT) -> None:
        transport = self._transport
        if self._close_sent or self._lost or transport is None or transport.is_closing():
            raise ConnectionResetError("the gateway connection is closed")
        opcode = _OP_BINARY if kind is MessageKind.BINARY else _OP_TEXT
        transport.write(_frame(opcode, data))
        if self._write_paused:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        if self.closed and (self._close_sent or self._lost):
            return False
        self.closed = True
        transport = self._transport
        if not self._close_sent:
            self._close_sent = True
            if self._waiter is not None:
                self._enqueue(_CLOSING_MESSAGE, 0)
            if transport is not None and not transport.is_closing():
                transport.write(_frame(_OP_CLOSE, _pack_h(code) + message[:123]))
        if transport is None or self._lost:
            return True
        if self._close_frame_seen:
            transport.close()
            return True
        try:
            await wait_for(asyncio.shield(self._server_closed), self._close_timeout)
        except TimeoutError:
            if not self._close_frame_seen:
                self.close_code = 1006
            transport.abort()
            return True
        except asyncio.CancelledError:
            if not self._close_frame_seen:
                self.close_code = 1006
            transport.abort()
            raise
        if not self._close_frame_seen:
            self.close_code = 1006  # dropped instead of answering
        transport.close()
        return True


async def connect(
    url: str,
    *,
    ssl: ssl_module.SSLContext | None = None,
    user_agent: str | None = None,
    close_timeout: float = 2.0,
) -> GatewaySocket:
    """Open a WebSocket to ``url`` (``ws://`` or ``wss://``) and complete the opening handshake."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a WebSocket url (ws:// or wss://): {parts.scheme}://{parts.hostname or ''}")
    secure = scheme == "wss"
    host = parts.hostname
    default_port = 443 if secure else 80
    try:
        port = parts.port or default_port
    except ValueError as exc:
        raise ValueError(f"bad port in the gateway url: {exc}") from None
    host_header = f"[{host}]" if ":" in host else host
    if port != default_port:
        host_header = f"{host_header}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    loop = asyncio.get_running_loop()
    context = (ssl or _default_ssl_context()) if secure else None
    socket = GatewaySocket(key, close_timeout)
    transport: asyncio.BaseTransport | None = None
    try:
        transport = await _open(loop, socket, host, port, context)
        request = (
            f"GET {target} HTTP/1.1\r\n"
            f"Host: {host_header}\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n" + (f"User-Agent: {user_agent}\r\n" if user_agent else "") + "\r\n"
        )
        transport.write(request.encode("latin-1"))
        await socket.handshake
    except BaseException:
        if transport is not None:
            transport.abort()
        raise
    return socket


async def _open(
    loop: asyncio.AbstractEventLoop,
    socket: GatewaySocket,
    host: str,
    port: int,
    context: ssl_module.SSLContext | None,
) -> asyncio.Transport:
    """Connect to the first of ``host``'s addresses that answers (TLS named for ``host``)."""
    last: OSError | None = None
    for address in await _resolve(loop, host, port):
        try:
            transport, _ = await loop.create_connection(
                lambda: socket, address, port, ssl=context, server_hostname=host if context else None
            )
        except OSError as exc:
            last = exc
            continue
        return transport
    assert last is not None  # _resolve never returns an empty list
    raise last


#: Seconds a name's addresses are reused: after an outage every shard reconnects at once, and each
#: would otherwise make its own lookup on the executor's few threads.
DNS_TTL: Final = 30.0
_dns: dict[tuple[str, int], tuple[float, list[str]]] = {}
_dns_pending: dict[tuple[str, int], asyncio.Future[list[str]]] = {}


async def _resolve(loop: asyncio.AbstractEventLoop, host: str, port: int) -> list[str]:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [host]
    key = (host, port)
    now = loop.time()
    cached = _dns.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    pending = _dns_pending.get(key)
    if pending is not None and pending.get_loop() is loop:
        return await asyncio.shield(pending)
    future: asyncio.Future[list[str]] = loop.create_future()
    _dns_pending[key] = future
    try:
        infos = await loop.getaddrinfo(host, port, type=socket_module.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise OSError(f"no addresses for {host}")
    except BaseException as exc:
        # Those sharing this lookup get an OSError (a failed connect, retried with backoff) even when
        # it was the first caller that was cancelled: they were not.
        shared = exc if isinstance(exc, OSError) else OSError(f"looking up {host} failed: {exc!r}")
        future.set_exception(shared)
        future.exception()  # retrieved here, so an unshared failure is not reported as unhandled
        raise
    finally:
        if _dns_pending.get(key) is future:
            del _dns_pending[key]
    _dns[key] = (now + DNS_TTL, addresses)
    future.set_result(addresses)
    return addresses
