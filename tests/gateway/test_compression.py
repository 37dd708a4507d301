"""Transport inflaters: zlib-stream (split messages), zstd-stream (one frame per connection), none."""

from __future__ import annotations

import zlib

import orjson
import pytest
import zstandard

from shardtui.gateway.compression import (
    NoInflater,
    ZlibStreamInflater,
    ZstdStreamInflater,
    make_inflater,
)
from shardtui.gateway.errors import DecompressionError

PAYLOADS = [
    {"t": None, "s": None, "op": 10, "d": {"heartbeat_interval": 41250}},
    {
        "t": "READY",
        "s": 1,
        "op": 0,
        "d": {"session_id": "abc", "guilds": [{"id": str(i)} for i in range(50)]},
    },
    {"t": "MESSAGE_CREATE", "s": 2, "op": 0, "d": {"content": "x" * 5000}},
    {"t": None, "s": None, "op": 11, "d": None},
]


def zlib_frames() -> list[bytes]:
    """What a zlib-stream server sends: one shared context, each message sync-flushed."""
    c = zlib.compressobj()
    return [c.compress(orjson.dumps(p)) + c.flush(zlib.Z_SYNC_FLUSH) for p in PAYLOADS]


def zstd_frames() -> list[bytes]:
    """What a zstd-stream server sends: one never-ending zstd frame, flushed per message."""
    c = zstandard.ZstdCompressor().compressobj()
    return [c.compress(orjson.dumps(p)) + c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK) for p in PAYLOADS]


def test_zlib_stream_one_frame_per_message() -> None:
    inflater = ZlibStreamInflater()
    out = [orjson.loads(inflater.feed(frame)) for frame in zlib_frames()]
    assert out == PAYLOADS


def test_zlib_stream_messages_split_across_frames_are_reassembled() -> None:
    inflater = ZlibStreamInflater()
    decoded = []
    for frame in zlib_frames():
        # Cut every message into three pieces; only the last one (with the 00 00 FF FF suffix) yields.
        cuts = [frame[:5], frame[5 : len(frame) // 2], frame[len(frame) // 2 :]]
        results = [inflater.feed(piece) for piece in cuts]
        assert results[0] is None and results[1] is None
        decoded.append(orjson.loads(results[2]))
    assert decoded == PAYLOADS


def test_zlib_stream_suffix_split_between_frames() -> None:
    inflater = ZlibStreamInflater()
    frame = zlib_frames()[0]
    assert inflater.feed(frame[:-2]) is None
    assert orjson.loads(inflater.feed(frame[-2:])) == PAYLOADS[0]


def test_zstd_stream_decodes_a_never_ending_frame_message_by_message() -> None:
    inflater = ZstdStreamInflater()
    frames = zstd_frames()
    assert frames[0].startswith(b"\x28\xb5\x2f\xfd")
    assert [orjson.loads(inflater.feed(f)) for f in frames] == PAYLOADS


def test_none_passes_frames_through() -> None:
    assert NoInflater().feed(b'{"op":11}') == b'{"op":11}'


@pytest.mark.parametrize("compression", ["zlib-stream", "zstd-stream"])
def test_corrupt_input_raises_a_clear_decompression_error(compression: str) -> None:
    inflater = make_inflater(compression)
    frames = zlib_frames() if compression == "zlib-stream" else zstd_frames()
    inflater.feed(frames[0])
    garbage = b"\x00\x13\x37garbage that is not compressed\x00\x00\xff\xff"
    with pytest.raises(DecompressionError, match=compression):
        inflater.feed(garbage)


def test_zstd_truncated_message_breaks_the_stream_with_a_clear_error() -> None:
    inflater = ZstdStreamInflater()
    frames = zstd_frames()
    inflater.feed(frames[0])
    with pytest.raises(DecompressionError):
        # Half a message then the next one: the stream no longer lines up.
        inflater.feed(frames[1][: len(frames[1]) // 2])
        inflater.feed(frames[2])
        inflater.feed(b"\xff" * 64)


def test_unknown_compression_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown gateway compression"):
        make_inflater("gzip")
