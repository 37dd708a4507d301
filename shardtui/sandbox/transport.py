"""One client WebSocket: transport compression and an ordered outbound queue.

Every server frame of a connection goes through one writer task, so the shared zlib/zstd context
sees payloads in exactly the order their seqs were assigned, whichever task produced them.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import zstandard
from aiohttp import web

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger("shardtui.sandbox")


class Compressor:
    """Transport compression of a whole connection: one context, flushed after each payload."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "zlib-stream":
            self._zlib = zlib.compressobj()
        elif kind == "zstd-stream":
            # One frame for the connection's lifetime; a new frame per message breaks real clients.
            self._zstd = zstandard.ZstdCompressor().compressobj()
        else:
            raise ValueError(f"unsupported compression {kind!r}")

    def compress(self, data: bytes) -> bytes:
        if self.kind == "zlib-stream":
            return self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
        return self._zstd.compress(data) + self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)


@dataclass(slots=True)
class Outgoing:
    """A queued action for the writer: a payload, raw bytes (faults), a close, or a silent drop."""

    kind: str  # "payload" | "raw" | "truncated" | "close" | "abort"
    payload: dict[str, Any] | None = None
    raw: bytes = b""
    code: int = 0
    reason: str = ""


class Connection:
    """Server side of one gateway WebSocket."""

    def __init__(
        self,
        conn_id: int,
        request: web.Request,
        ws: web.WebSocketResponse,
        *,
        version: int,
        compression: str | None,
        close_timeout: float,
        command_window: float,
        commands_per_window: int,
    ) -> None:
        self.id = conn_id
        self.request = request
        self.ws = ws
        self.version = version
        self.compression = compression
        self._compressor = Compressor(compression) if compression else None
        self._queue: asyncio.Queue[Outgoing] = asyncio.Queue()
        self._close_timeout = close_timeout
        self.session: Session | None = None
        #: Shard of the last IDENTIFY on this connection (kept after the session dies, for accounting).
        self.shard_id: int | None = None
        self.opened_at = asyncio.get_running_loop().time()
        self.last_heartbeat: float | None = None
        #: Zombie: nothing at all leaves the server any more (no ACKs, no dispatches).
        self.zombie = False
        #: Wedged: ACKs continue, dispatches stay in the session's replay buffer.
        self.wedged = False
        #: zlib-stream only: write the next payload as two WebSocket frames.
        self.split_next = False
        self.server_close_code: int | None = None
        #: Seq of the last dispatch queued on this socket (what a wedge or zombie holds back is above it).
        self.last_dispatch_seq = 0
        #: Loop time after which the sandbox drops a client that ignored op 7.
        self.reconnect_deadline: float | None = None
        self.dropped = False
        self.closing = False
        #: Our close frame is on the wire; the next CLOSE from the client is its reply.
        self.close_sent = False
        #: Set as soon as the server decided to end the connection (wakes a delayed HELLO).
        self.ended = asyncio.Event()
        #: Close accounting and session detach are done (exactly once per connection).
        self.settled = False
        self._commands: deque[float] = deque()
        self._command_window = command_window
        self._commands_per_window = commands_per_window
        #: Called once when the server decides to end the connection (close frame or drop).
        self.on_server_close: Callable[[Connection, int], None] | None = None
        self.writer_task: asyncio.Task[None] | None = None
        self.handler_task: asyncio.Task[Any] | None = asyncio.current_task()

    def start(self) -> None:
        self.writer_task = asyncio.create_task(self._writer(), name=f"sandbox-conn-{self.id}-writer")

    @property
    def holds_dispatches(self) -> bool:
        return self.zombie or self.wedged

    def count_command(self, now: float) -> bool:
        """Record one received command; False when it exceeds the per-connection budget."""
        window_start = now - self._command_window
        while self._commands and self._commands[0] <= window_start:
            self._commands.popleft()
        self._commands.append(now)
        return len(self._commands) <= self._commands_per_window

    # -- outbound ---------------------------------------------------------------------------------

    def send(self, payload: dict[str, Any]) -> None:
        """Queue a payload; a zombie or closing connection swallows it."""
        if self.closing or self.zombie:
            return
        self._queue.put_nowait(Outgoing("payload", payload=payload))

    def send_raw(self, data: bytes, *, truncated: bool = False) -> None:
        if not self.closing:
            self._queue.put_nowait(Outgoing("truncated" if truncated else "raw", raw=data))

    def close(self, code: int, reason: str = "") -> None:
        """Close after everything already queued has been written."""
        if self.closing:
            return
        self.closing = True
        self.ended.set()
        self.server_close_code = code
        self._queue.put_nowait(Outgoing("close", code=code, reason=reason))
        if self.on_server_close is not None:
            self.on_server_close(self, code)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame, right now."""
        if self.dropped:
            return
        already_closing, self.closing = self.closing, True
        self.ended.set()
        self.dropped = True
        if not already_closing and self.on_server_close is not None:
            self.server_close_code = 1006
            self.on_server_close(self, 1006)
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def _write_frame(self, data: bytes) -> None:
        if self._compressor is None:
            await self.ws.send_str(data.decode())
            return
        blob = self._compressor.compress(data)
        if self.split_next and self._compressor.kind == "zlib-stream" and len(blob) > 1:
            # One gateway message in two WebSocket frames: only the second ends with 00 00 FF FF.
            self.split_next = False
            half = len(blob) // 2
            await self.ws.send_bytes(blob[:half])
            await self.ws.send_bytes(blob[half:])
            return
        await self.ws.send_bytes(blob)

    async def _writer(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                if item.kind == "payload":
                    await self._write_frame(orjson.dumps(item.payload))
                elif item.kind == "raw":
                    await self._write_frame(item.raw)
                elif item.kind == "truncated":
                    if self._compressor is not None:
                        blob = self._compressor.compress(item.raw)
                        await self.ws.send_bytes(blob[: max(1, len(blob) // 2)])
                    else:
                        await self.ws.send_str(item.raw[: max(1, len(item.raw) // 2)].decode(errors="ignore"))
                elif item.kind == "close":
                    await self._close_handshake(item.code, item.reason)
                    return
        except (TimeoutError, ConnectionError, RuntimeError) as exc:
            # The peer vanished mid-write; the reader sees the same and cleans up.
            log.debug("sandbox connection %s writer stopped: %s", self.id, type(exc).__name__)

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
        # The client never answered the close frame.
        self.abort()

    async def shutdown(self, code: int) -> None:
        """Close for Sandbox.stop: a close handshake if the client answers in time, else a drop."""
        self.close(code, "Sandbox stopping.")
        handler = self.handler_task
        if handler is not None and not handler.done() and handler is not asyncio.current_task():
            _, pending = await asyncio.wait([handler], timeout=self._close_timeout + 0.5)
            if pending:
                self.abort()
