"""Inflaters for the gateway's transport compression (zlib-stream, zstd-stream, none).

One inflater per connection: both streams share one decompression context for the whole connection,
and a new connection starts a new stream. ``feed`` returns the complete payload bytes, or None while a
(zlib) message is still incomplete. Corrupt input raises :class:`DecompressionError`; after that the
stream is unusable and the runner must reconnect.
"""

from __future__ import annotations

import zlib
from typing import Final, Protocol

import zstandard

from shardtui.gateway.errors import DecompressionError
from shardtui.gateway.protocol import ZLIB_SUFFIX

#: The zstd output buffer per decompress call. zstandard's default (128 KiB) is sized for files: a
#: gateway message is ~1 KB, and allocating 128 KiB per message to shrink it after cost 2.5-3.5 KiB of
#: RSS per idle shard (bench/memory.py); a larger message just takes more 16 KiB rounds.
ZSTD_WRITE_SIZE: Final = 16 * 1024


class Inflater(Protocol):
    compression: str

    def feed(self, data: bytes) -> bytes | None: ...


class NoInflater:
    """No transport compression: frames are the payloads."""

    compression = "none"
    __slots__ = ()

    def feed(self, data: bytes) -> bytes | None:
        return data


class ZlibStreamInflater:
    """zlib-stream: each gateway message ends with a Z_SYNC_FLUSH (``00 00 FF FF``); a message may be split
    over several frames, so bytes are held until the suffix arrives."""

    compression = "zlib-stream"
    __slots__ = ("_buffer", "_inflater")

    def __init__(self) -> None:
        self._inflater = zlib.decompressobj()
        self._buffer = bytearray()

    def feed(self, data: bytes) -> bytes | None:
        if self._buffer:
            self._buffer += data
            if not self._buffer.endswith(ZLIB_SUFFIX):
                return None
            chunk: bytes | bytearray = self._buffer
        elif data.endswith(ZLIB_SUFFIX):
            # The usual case, one frame = one message: inflate the frame itself, no copy into the buffer.
            chunk = data
        else:
            self._buffer += data
            return None
        try:
            out = self._inflater.decompress(chunk)
        except zlib.error as exc:
            raise DecompressionError(self.compression, str(exc)) from None
        finally:
            if chunk is self._buffer:
                self._buffer.clear()
        return out


class ZstdStreamInflater:
    """zstd-stream: Discord sends one zstd frame for the life of the connection, flushed after every
    message; each frame of the WebSocket holds exactly one gateway message.

    Other gateways (Spacebar, Litecord) end a zstd frame after every message instead. The context reads
    across frame boundaries so both work; on Discord's single long frame that costs nothing.
    """

    compression = "zstd-stream"
    __slots__ = ("_inflater", "decompress")

    def __init__(self) -> None:
        self._inflater = zstandard.ZstdDecompressor().decompressobj(
            read_across_frames=True, write_size=ZSTD_WRITE_SIZE
        )
        #: The context's own method, for the runner's hot path: returns b"" instead of None for an
        #: incomplete message and raises ``zstandard.ZstdError`` instead of DecompressionError.
        self.decompress = self._inflater.decompress

    def feed(self, data: bytes) -> bytes | None:
        try:
            out = self._inflater.decompress(data)
        except zstandard.ZstdError as exc:
            raise DecompressionError(self.compression, str(exc)) from None
        return out or None


def make_inflater(compression: str) -> Inflater:
    """A fresh inflater for one connection using ``compression``."""
    if compression == "zstd-stream":
        return ZstdStreamInflater()
    if compression == "zlib-stream":
        return ZlibStreamInflater()
    if compression == "none":
        return NoInflater()
    raise ValueError(f"unknown gateway compression {compression!r} (use zstd-stream, zlib-stream or none)")
