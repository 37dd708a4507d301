"""Per-connection transport compression and the ordered, bounded WebSocket writer.

Every server frame of a connection goes through one writer task, so the connection's zlib/zstd
context sees payloads in exactly the order they were queued, whichever task produced them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import zstandard
from aiohttp import web

log = logging.getLogger("shardtui.server")

COMPRESSIONS: Final = frozenset({"zlib-stream", "zstd-stream"})
#: Queued messages written with one socket write at most: a syscall per message was the writer's main
#: cost with many small dispatches (bench/proxy.py); each stays its own WebSocket message.
WRITE_BATCH: Final = 64
_OP_TEXT, _OP_BINARY = 0x1, 0x2


class Compressor:
    """Transport compression of a whole connection: one context, flushed after each message.

    zlib-stream: one deflate stream, each message ends with Z_SYNC_FLUSH (00 00 FF FF).
    zstd-stream: ONE zstd frame for the connection's lifetime, a block flush per message (a new
    frame per message breaks real clients)."""

    __slots__ = ("_zlib", "_zstd", "kind")

    def __init__(self, kind: str, *, zlib_level: int = 6) -> None:
        if kind not in COMPRESSIONS:
            raise ValueError(f"unsupported compression {kind!r}")
        self.kind = kind
        self._zlib = zlib.compressobj(zlib_level) if kind == "zlib-stream" else None
        self._zstd = zstandard.ZstdCompressor().compressobj() if kind == "zstd-stream" else None

    def compress(self, data: bytes) -> bytes:
        if self._zlib is not None:
            return self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
        assert self._zstd is not None
        return self._zstd.compress(data) + self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """Bounds of one connection's unsent backlog (None: unbounded)."""

    max_messages: int | None = None
    max_bytes: int | None = None


_FRAME, _TRUNCATED, _CLOSE = 0, 1, 2


class WebSocketWriter:
    """The one task that writes a connection's frames, in order, through its compressor.

    `put` refuses (returns False, sets `overflowed`, calls ``on_overflow`` once) a message that
    would take the backlog past its `QueueLimits`; the caller decides what a slow client costs
    it (the proxy disconnects it). Close frames always pass."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        compression: str | None,
        *,
        limits: QueueLimits | None = None,
        close: Callable[[int, str], Awaitable[None]],
        on_overflow: Callable[[], None] | None = None,
        zlib_level: int = 6,
    ) -> None:
        self.ws = ws
        self.compressor = Compressor(compression, zlib_level=zlib_level) if compression else None
        self.limits = limits or QueueLimits()
        self._close = close
        self._on_overflow = on_overflow
        self._items: deque[tuple[int, bytes, int, str]] = deque()
        self._wakeup = asyncio.Event()
        #: Messages and bytes (uncompressed) queued and not yet written.
        self.queued_messages = 0
        self.queued_bytes = 0
        self.overflowed = False
        #: zlib-stream only: write the next message as two WebSocket frames (valid; clients buffer).
        self.split_next = False
        self.task: asyncio.Task[None] | None = None
        #: Woken once the backlog falls to ``_room_at`` messages (`wait_room`); None: nobody waits.
        self._room: asyncio.Future[None] | None = None
        self._room_at = 0

    def start(self, name: str) -> None:
        self.task = asyncio.create_task(self._run(), name=name)

    async def stop(self) -> None:
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def put(self, data: bytes) -> bool:
        """Queue one encoded message; False (and nothing queued) when over the bounds."""
        limits = self.limits
        if (limits.max_messages is not None and self.queued_messages >= limits.max_messages) or (
            limits.max_bytes is not None and self.queued_bytes + len(data) > limits.max_bytes
        ):
            if not self.overflowed:
                self.overflowed = True
                if self._on_overflow is not None:
                    self._on_overflow()
            return False
        self.queued_messages += 1
        self.queued_bytes += len(data)
        self._items.append((_FRAME, data, 0, ""))
        self._wakeup.set()
        return True

    async def wait_room(self, messages: int) -> None:
        """Wait until at most ``messages`` frames are queued (or the writer stopped): lets a producer
        that holds its own bounded backlog (the proxy's client sessions) feed this writer only as fast as
        the client reads."""
        if self.queued_messages <= messages or self.task is None or self.task.done():
            return
        self._room_at = messages
        room = self._room = asyncio.get_running_loop().create_future()
        try:
            await room
        finally:
            self._room = None

    def _wake_room(self) -> None:
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)

    def put_truncated(self, data: bytes) -> None:
        """Queue ``data`` compressed and cut in half: breaks the client's stream (fault injection)."""
        self._items.append((_TRUNCATED, data, 0, ""))
        self._wakeup.set()

    def put_close(self, code: int, reason: str) -> None:
        """Close after everything already queued has been written."""
        self._items.append((_CLOSE, b"", code, reason))
        self._wakeup.set()

    async def _write(self, data: bytes) -> None:
        compressor = self.compressor
        if compressor is None:
            await self.ws.send_str(data.decode())
            return
        blob = compressor.compress(data)
        if self.split_next and compressor.kind == "zlib-stream" and len(blob) > 1:
            # One gateway message in two WebSocket frames: only the second ends with 00 00 FF FF.
            self.split_next = False
            half = len(blob) // 2
            await self.ws.send_bytes(blob[:half])
            await self.ws.send_bytes(blob[half:])
            return
        await self.ws.send_bytes(blob)

    @property
    def _raw(self) -> object | None:
        """aiohttp's frame writer under the response, when this aiohttp has the one `_write_batch` knows
        (a server's frames are unmasked and, with ``compress=False``, never deflated by aiohttp)."""
        writer = getattr(self.ws, "_writer", None)
        if writer is None or getattr(writer, "use_mask", True) or getattr(writer, "compress", 1):
            return None
        if not hasattr(writer, "transport") or not hasattr(writer, "protocol"):
            return None
        return writer

    async def _write_batch(self, batch: list[bytes]) -> None:
        """Several messages, each its own WebSocket frame, in one transport write."""
        writer: Any = self._raw
        compressor = self.compressor
        parts: list[bytes] = []
        for data in batch:
            payload = compressor.compress(data) if compressor is not None else data
            length = len(payload)
            first = 0x80 | (_OP_BINARY if compressor is not None else _OP_TEXT)
            if length < 126:
                parts.append(bytes((first, length)))
            elif length < 65536:
                parts.append(bytes((first, 126)) + length.to_bytes(2, "big"))
            else:
                parts.append(bytes((first, 127)) + length.to_bytes(8, "big"))
            parts.append(payload)
        transport = writer.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("Cannot write to closing transport")
        transport.write(b"".join(parts))
        protocol = writer.protocol
        if protocol._paused:
            await protocol._drain_helper()

    async def _run(self) -> None:
        items = self._items
        try:
            while True:
                if not items:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                kind, data, code, reason = items.popleft()
                if kind == _FRAME:
                    self.queued_messages -= 1
                    self.queued_bytes -= len(data)
                    if items and items[0][0] == _FRAME and not self.split_next and self._raw is not None:
                        batch = [data]
                        while items and items[0][0] == _FRAME and len(batch) < WRITE_BATCH:
                            more = items.popleft()[1]
                            self.queued_messages -= 1
                            self.queued_bytes -= len(more)
                            batch.append(more)
                        await self._write_batch(batch)
                    else:
                        await self._write(data)
                    if self._room is not None and self.queued_messages <= self._room_at:
                        self._wake_room()
                elif kind == _TRUNCATED:
                    if self.compressor is not None:
                        blob = self.compressor.compress(data)
                        await self.ws.send_bytes(blob[: max(1, len(blob) // 2)])
                    else:
                        await self.ws.send_str(data[: max(1, len(data) // 2)].decode(errors="ignore"))
                else:
                    await self._close(code, reason)
                    return
        except (TimeoutError, ConnectionError, RuntimeError) as exc:
            # The peer vanished mid-write; the reader sees the same and cleans up.
            log.debug("gateway writer stopped: %s", type(exc).__name__)
        finally:
            self._wake_room()  # a producer waiting for room must not wait on a dead writer
