"""The gateway's WebSocket client against a raw server that writes hand-made bytes: the handshake's
failures, RFC 6455 framing (fragments, control frames, masking), every protocol violation, the closing
handshake both ways, flow control, and the fast path's hand-off and ordering."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from shardtui.gateway.websocket import (
    HandshakeError,
    Message,
    MessageKind,
    WebSocketProtocolError,
    connect,
)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def server_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bool = False) -> bytes:
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    if n < 126:
        head = bytes((first, (0x80 if mask else 0) | n))
    elif n < 65536:
        head = bytes((first, (0x80 if mask else 0) | 126)) + struct.pack("!H", n)
    else:
        head = bytes((first, (0x80 if mask else 0) | 127)) + struct.pack("!Q", n)
    if mask:
        key = b"\x01\x02\x03\x04"
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + payload


@dataclass
class ClientFrame:
    opcode: int
    payload: bytes
    masked: bool


@dataclass
class Peer:
    """One accepted connection of the raw server."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    request: str = ""
    frames: list[ClientFrame] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def read_frame(self, within: float = 5.0) -> ClientFrame:
        async def read() -> ClientFrame:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            key = await self.reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
            data = await self.reader.readexactly(n)
            frame = ClientFrame(b0 & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(data)), bool(b1 & 0x80))
            self.frames.append(frame)
            return frame

        return await asyncio.wait_for(read(), within)

    async def close_code(self) -> int:
        """The code of the next close frame the client sends (other frames are skipped)."""
        while True:
            frame = await self.read_frame()
            if frame.opcode == 0x8:
                return struct.unpack("!H", frame.payload[:2])[0]


Script = Callable[[Peer], Awaitable[None]]


@dataclass
class RawServer:
    url: str
    peers: asyncio.Queue


def accept_for(request: str) -> str:
    key = next(
        line.split(":", 1)[1].strip()
        for line in request.split("\r\n")
        if line.lower().startswith("sec-websocket-key:")
    )
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def switching(request: str, extra: bytes = b"") -> bytes:
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_for(request)}\r\n\r\n"
    ).encode() + extra


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[..., Awaitable[RawServer]]]:
    """``await raw_server(handshake=None)`` -> a server whose accepted connections arrive on ``.peers``
    after their request was read; ``handshake(peer)`` writes the answer (default: a proper 101)."""
    servers: list[asyncio.AbstractServer] = []
    writers: list[asyncio.StreamWriter] = []

    async def start(handshake: Callable[[Peer], None] | None = None) -> RawServer:
        peers: asyncio.Queue = asyncio.Queue()

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            peer = Peer(reader, writer)
            peer.request = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            if handshake is None:
                writer.write(switching(peer.request))
            else:
                handshake(peer)
            await peers.put(peer)

        server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return RawServer(f"ws://127.0.0.1:{port}/?v=10&encoding=json", peers)

    yield start
    for writer in writers:
        writer.close()
    for server in servers:
        server.close()
        await server.wait_closed()


async def open_pair(raw_server, **handshake) -> tuple:  # type: ignore[no-untyped-def]
    server = await raw_server(**handshake)
    ws = await connect(server.url, close_timeout=0.5)
    peer = await server.peers.get()
    return ws, peer


# -- handshake ------------------------------------------------------------------------------------------


async def test_request_carries_the_upgrade_headers_and_the_query(raw_server) -> None:
    server = await raw_server()
    ws = await connect(server.url, user_agent="DiscordBot (test, 1)", close_timeout=0.2)
    peer = await server.peers.get()
    lines = peer.request.split("\r\n")
    assert lines[0] == "GET /?v=10&encoding=json HTTP/1.1"
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    assert headers["upgrade"] == "websocket" and headers["connection"] == "Upgrade"
    assert headers["sec-websocket-version"] == "13" and headers["user-agent"] == "DiscordBot (test, 1)"
    assert len(base64.b64decode(headers["sec-websocket-key"])) == 16
    assert "sec-websocket-extensions" not in headers
    await ws.close()


async def test_a_frame_in_the_same_write_as_the_101_is_received(raw_server) -> None:
    hello = b'{"op":10,"d":{"heartbeat_interval":41250}}'
    server = await raw_server(handshake=lambda p: p.write(switching(p.request, server_frame(0x1, hello))))
    ws = await connect(server.url, close_timeout=0.2)
    message = await ws.receive()
    assert message.kind is MessageKind.TEXT and message.data == hello
    await ws.close()


@pytest.mark.parametrize(
    ("answer", "status", "retry_after", "text"),
    [
        (
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n",
            429,
            3.0,
            "HTTP 429",
        ),
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", 503, None, "HTTP 503"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", None, None, "did not answer the WebSocket handshake with HTTP"),
    ],
)
async def test_a_refused_handshake_names_the_status(raw_server, answer, status, retry_after, text) -> None:
    server = await raw_server(handshake=lambda p: p.write(answer))
    with pytest.raises(HandshakeError) as caught:
        await connect(server.url)
    assert caught.value.status == status and caught.value.retry_after == retry_after
    assert text in str(caught.value) and "\n" not in str(caught.value)
    if retry_after is not None:
        assert str(caught.value) == "handshake refused with HTTP 429 (retry after 3 s)"


async def test_a_wrong_accept_key_is_refused(raw_server) -> None:
    answer = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: bm90IHRoZSByaWdodCBrZXk=\r\n\r\n"
    )
    server = await raw_server(handshake=lambda p: p.write(answer))
    with pytest.raises(HandshakeError, match="Sec-WebSocket-Accept"):
        await connect(server.url)


async def test_a_server_that_hangs_up_mid_handshake(raw_server) -> None:
    server = await raw_server(handshake=lambda p: (p.write(b"HTTP/1.1 101 Swi"), p.writer.close()))
    with pytest.raises(HandshakeError, match="closed during the WebSocket handshake"):
        await connect(server.url)


async def test_a_timed_out_handshake_leaves_no_connection_open(raw_server) -> None:
    server = await raw_server(handshake=lambda p: None)  # never answers
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(connect(server.url), 0.3)
    peer = await server.peers.get()
    assert await asyncio.wait_for(peer.reader.read(), 5) == b""  # the client closed its end


async def test_bad_urls_and_refused_connections() -> None:
    with pytest.raises(ValueError, match="not a WebSocket url"):
        await connect("http://127.0.0.1:1/")
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(OSError):
        await connect(f"ws://127.0.0.1:{port}/")


# -- frames ---------------------------------------------------------------------------------------------


async def test_fragments_are_joined_and_a_ping_between_them_is_answered(raw_server) -> None:
    ws, peer = await open_pair(raw_server)
    peer.write(
        server_frame(0x2, b"abc", fin=False)
        + server_frame(0x0, b"def", fin=False)
        + server_frame(0x9, b"are you there")
        + server_frame(0x0, b"ghi")
    )
    message = await ws.receive()
    assert message == Message(MessageKind.BINARY, b"abcdefghi")
    pong = await peer.read_frame()
    assert (pong.opcode, pong.payload, pong.masked) == (0xA, b"are you there", True)
    await ws.close()


async def test_large_messages_arrive_whole_and_sends_are_masked(raw_server) -> None:
    ws, peer = await open_pair(raw_server)
    big = bytes(range(256)) * (3 * 4096)  # 3 MiB
    peer.write(server_frame(0x2, big))
    message = await ws.receive()
    assert message.kind is MessageKind.BINARY and message.data == big
    await ws.send_frame(b'{"op":1,"d":null}')
    await ws.send_frame(b"\x00" * 70_000, MessageKind.BINARY)
    first, second = await peer.read_frame(), await peer.read_frame()
    assert (first.opcode, first.payload, first.masked) == (0x1, b'{"op":1,"d":null}', True)
    assert (second.opcode, len(second.payload), second.masked) == (0x2, 70_000, True)
    await ws.close()


@pytest.mark.parametrize(
    ("frame", "code", "why"),
    [
        (server_frame(0x1, b"{}", mask=True), 1002, "masked"),
        (server_frame(0x1, b"{}", rsv=4), 1002, "reserved bits"),
        (server_frame(0x3, b""), 1002, "unknown opcode"),
        (server_frame(0x9, b"x", fin=False), 1002, "fragmented a control frame"),
        (server_frame(0x9, b"x" * 126), 1002, "over 125 bytes"),
        (server_frame(0x0, b"tail"), 1002, "never started"),
        (server_frame(0x1, b"a", fin=False) + server_frame(0x1, b"b"), 1002, "inside a fragmented one"),
        (server_frame(0x8, b"\x03"), 1002, "1-byte payload"),
        (server_frame(0x8, b"\x0f\xa0\xff\xfe"), 1007, "not UTF-8"),
    ],
)
async def test_protocol_violations_close_with_the_right_code(raw_server, frame, code, why) -> None:
    ws, peer = await open_pair(raw_server)
    peer.write(frame)
    message = await ws.receive()
    assert message.kind is MessageKind.ERROR
    assert isinstance(message.data, WebSocketProtocolError) and message.data.code == code
    assert why in str(message.data)
    assert await peer.close_code() == code
    assert ws.closed and ws.close_code == code
    assert (await ws.receive()).kind is MessageKind.CLOSED


# -- closing --------------------------------------------------------------------------------------------


async def test_a_server_close_is_reported_then_answered_with_our_code(raw_server) -> None:
    ws, peer = await open_pair(raw_server)
    peer.write(server_frame(0x8, struct.pack("!H", 4004) + b"Authentication failed."))
    message = await ws.receive()
    assert message == Message(MessageKind.CLOSE, 4004, "Authentication failed.")
    assert ws.close_code == 4004 and not ws.closed
    assert await ws.close(code=4000) is True
    assert await peer.close_code() == 4000
    assert ws.closed and ws.close_code == 4004  # what the server said, not our reply
    assert await ws.close(code=4000) is False


async def test_our_close_wakes_the_reader_and_takes_the_servers_reply(raw_server) -> None:
    ws, peer = await open_pair(raw_server)
    reading = asyncio.create_task(ws.receive())
    await asyncio.sleep(0)
    closing = asyncio.create_task(ws.close(code=4000, message=b"restart"))
    assert (await reading).kind is MessageKind.CLOSING
    frame = await peer.read_frame()
    assert frame.opcode == 0x8 and frame.payload == struct.pack("!H", 4000) + b"restart"
    peer.write(server_frame(0x8, struct.pack("!H", 1000)))
    assert await closing is True
    assert ws.close_code == 1000
    with pytest.raises(ConnectionResetError):
        await ws.send_frame(b"{}")


async def test_a_server_that_never_answers_our_close_is_dropped(raw_server) -> None:
    ws, peer = await open_pair(raw_server)
    assert await ws.close(code=4000) is True  # close_timeout 0.5 s
    assert ws.close_code == 1006
    assert await peer.close_code() == 4000
    assert await asyncio.wait_for(peer.reader.read(), 5) == b""


async def test_a_dropped_connection(raw_server) -> None:
    ws, peer = await open_pair(raw_server)
    peer.writer.transport.abort()
    assert (await ws.receive()).kind is MessageKind.CLOSED
    assert ws.closed and ws.close_code == 1006
    assert (await ws.receive()).kind is MessageKind.CLOSED
    with pytest.raises(ConnectionResetError):
        await ws.send_frame(b"{}")
    assert await ws.close() is False


# -- the fast path --------------------------------------------------------------------------------------


async def test_a_waiting_reader_lets_the_taker_have_every_message(raw_server) -> None:
    ws, peer = await open_pair(raw_server)
    taken: list[bytes] = []

    def take(data: bytes) -> Message | None:
        taken.append(data)
        return None

    ws.set_taker(take)
    reading = asyncio.create_task(ws.receive())
    await asyncio.sleep(0)
    sent = [b"%d" % i for i in range(1000)]
    peer.write(b"".join(server_frame(0x2, m) for m in sent))
    for _ in range(500):
        if len(taken) == 1000:
            break
        await asyncio.sleep(0.01)
    assert taken == sent and not reading.done()
    reading.cancel()
    await ws.close()


async def test_handed_back_messages_keep_the_order_with_taken_ones(raw_server) -> None:
    ws, peer = await open_pair(raw_server)
    seen: list[bytes] = []

    def take(data: bytes) -> Message | None:
        if int(data) % 10 == 0:
            return Message(MessageKind.DECODED, data)  # e.g. an op 1: the reader must see it, in place
        seen.append(data)
        return None

    ws.set_taker(take)
    sent = [b"%d" % i for i in range(1, 301)]
    reader_done = asyncio.Event()

    async def read() -> None:
        while len(seen) < len(sent):
            message = await ws.receive()
            # Handed back by the taker, or queued raw while this reader was busy (as the runner's loop,
            # it then handles the message itself).
            assert message.kind in (MessageKind.DECODED, MessageKind.BINARY)
            seen.append(message.data)
            await asyncio.sleep(0.001)  # busy with it: what arrives meanwhile must queue behind it
        reader_done.set()

    reader = asyncio.create_task(read())
    await asyncio.sleep(0)
    for start in range(0, 300, 25):
        peer.write(b"".join(server_frame(0x2, m) for m in sent[start : start + 25]))
        await asyncio.sleep(0)
    await asyncio.wait_for(reader_done.wait(), 10)
    assert seen == sent
    await reader
    await ws.close()


async def test_without_a_waiting_reader_messages_queue_and_the_taker_is_not_called(raw_server) -> None:
    ws, peer = await open_pair(raw_server)
    calls: list[bytes] = []
    ws.set_taker(lambda data: calls.append(data))  # type: ignore[arg-type,func-returns-value]
    peer.write(b"".join(server_frame(0x1, b"%d" % i) for i in range(5)))
    await asyncio.sleep(0.1)
    assert [(await ws.receive()).data for _ in range(5)] == [b"%d" % i for i in range(5)]
    assert calls == []
    await ws.close()


async def test_a_taker_that_raises_ends_the_connection_with_1011(raw_server) -> None:
    ws, peer = await open_pair(raw_server)

    def take(data: bytes) -> Message | None:
        raise RuntimeError("handler bug")

    ws.set_taker(take)
    reading = asyncio.create_task(ws.receive())
    await asyncio.sleep(0)
    peer.write(server_frame(0x2, b"x"))
    message = await reading
    assert message.kind is MessageKind.ERROR and isinstance(message.data, RuntimeError)
    assert await peer.close_code() == 1011
    assert ws.close_code == 1011


async def test_text_is_kept_from_a_binary_only_taker(raw_server) -> None:
    ws, peer = await open_pair(raw_server)
    taken: list[bytes] = []
    ws.set_taker(lambda data: taken.append(data), text=False)  # type: ignore[arg-type,func-returns-value]
    reading = asyncio.create_task(ws.receive())
    await asyncio.sleep(0)
    peer.write(server_frame(0x1, b"plain json"))
    assert await reading == Message(MessageKind.TEXT, b"plain json")
    assert taken == []
    await ws.close()


async def test_an_unread_flood_pauses_reading_and_then_drains_in_order(raw_server) -> None:
    ws, peer = await open_pair(raw_server)
    chunk = b"x" * 65_000
    count = 140  # ~9 MiB, over the 4 MiB high-water mark
    for i in range(count):
        peer.write(server_frame(0x2, i.to_bytes(4, "big") + chunk))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if not ws._transport.is_reading():  # type: ignore[union-attr]
            break
    assert not ws._transport.is_reading()  # type: ignore[union-attr]
    for i in range(count):
        message = await asyncio.wait_for(ws.receive(), 5)
        assert message.kind is MessageKind.BINARY and message.data[:4] == i.to_bytes(4, "big")
    assert ws._transport.is_reading()  # type: ignore[union-attr]
    await ws.close()
