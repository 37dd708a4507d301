"""Per-connection compression and the bounded writer."""

from __future__ import annotations

import zlib

import pytest
import zstandard
from aiohttp import web

from shardtui.server import Compressor, QueueLimits, WebSocketWriter

MESSAGES = [
    b'{"op":10,"d":{"heartbeat_interval":41250}}',
    b'{"op":11}',
    b'{"op":0,"t":"X","d":"' + b"y" * 3000 + b'"}',
]


def test_zlib_stream_is_one_context_with_a_sync_flush_after_each_message() -> None:
    compressor = Compressor("zlib-stream")
    inflater = zlib.decompressobj()
    for message in MESSAGES:
        blob = compressor.compress(message)
        assert blob.endswith(b"\x00\x00\xff\xff")
        assert inflater.decompress(blob) == message
    # The context is shared: a repeated message compresses to far less than its first copy.
    assert len(compressor.compress(MESSAGES[2])) < len(MESSAGES[2]) // 10


def test_zstd_stream_is_one_frame_flushed_per_message() -> None:
    compressor = Compressor("zstd-stream")
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    blobs = [compressor.compress(message) for message in MESSAGES]
    # Only the first blob starts a frame: a frame per message breaks real clients.
    assert blobs[0].startswith(b"\x28\xb5\x2f\xfd")
    assert not any(blob.startswith(b"\x28\xb5\x2f\xfd") for blob in blobs[1:])
    for message, blob in zip(MESSAGES, blobs, strict=True):
        assert decompressor.decompress(blob) == message


def test_unknown_compression_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported compression 'gzip'"):
        Compressor("gzip")


async def _noop_close(code: int, reason: str) -> None:
    return None


def writer(limits: QueueLimits, overflows: list[int]) -> WebSocketWriter:
    # Not started: what is put stays queued, as for a client that reads nothing.
    return WebSocketWriter(
        web.WebSocketResponse(),
        None,
        limits=limits,
        close=_noop_close,
        on_overflow=lambda: overflows.append(1),
    )


def test_writer_refuses_past_its_message_bound_and_reports_overflow_once() -> None:
    overflows: list[int] = []
    w = writer(QueueLimits(max_messages=3), overflows)
    assert [w.put(b"{}") for _ in range(5)] == [True, True, True, False, False]
    assert (w.queued_messages, w.queued_bytes, w.overflowed, overflows) == (3, 6, True, [1])


def test_writer_refuses_past_its_byte_bound() -> None:
    overflows: list[int] = []
    w = writer(QueueLimits(max_bytes=100), overflows)
    assert w.put(b"x" * 60)
    assert not w.put(b"x" * 60)
    assert w.queued_bytes == 60 and w.overflowed


def test_unbounded_writer_keeps_everything() -> None:
    w = writer(QueueLimits(), [])
    assert all(w.put(b"{}") for _ in range(10_000))
    assert not w.overflowed
