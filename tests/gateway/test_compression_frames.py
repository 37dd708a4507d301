"""zstd-stream from gateways that end a zstd frame after every message (Spacebar, Litecord).

Discord keeps one zstd frame open for the whole connection; these servers close one per message. The
inflater must read across frame boundaries, or the second message raises and the shard reconnects
(and identifies) for ever.
"""

from __future__ import annotations

import orjson
import zstandard

from shardtui.gateway.compression import ZstdStreamInflater, make_inflater
from tests.gateway.test_compression import PAYLOADS, zstd_frames


def frame_per_message() -> list[bytes]:
    """What Spacebar and Litecord send: every message a complete zstd frame of its own."""
    compressor = zstandard.ZstdCompressor()
    return [compressor.compress(orjson.dumps(p)) for p in PAYLOADS]


def frame_per_message_streamed() -> list[bytes]:
    """The same from a streaming compressor ended (FLUSH_FRAME) per message, no content size."""
    compressor = zstandard.ZstdCompressor().compressobj()
    out = []
    for payload in PAYLOADS:
        data = orjson.dumps(payload)
        out.append(compressor.compress(data) + compressor.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH))
        compressor = zstandard.ZstdCompressor().compressobj()
    return out


def test_every_message_in_its_own_zstd_frame_decodes() -> None:
    inflater = make_inflater("zstd-stream")
    frames = frame_per_message()
    assert all(f.startswith(b"\x28\xb5\x2f\xfd") for f in frames)
    assert [orjson.loads(inflater.feed(f)) for f in frames] == PAYLOADS


def test_streamed_frame_per_message_decodes_through_the_runner_fast_path() -> None:
    # The runner calls the context's own decompress (b"" = incomplete) instead of feed.
    inflater = ZstdStreamInflater()
    assert [orjson.loads(inflater.decompress(f)) for f in frame_per_message_streamed()] == PAYLOADS


def test_discords_single_long_frame_still_decodes_after_the_change() -> None:
    inflater = ZstdStreamInflater()
    assert [orjson.loads(inflater.feed(f)) for f in zstd_frames()] == PAYLOADS
