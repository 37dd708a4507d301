"""The runner's per-event cost without networking: ``ShardRunner._run_connection`` (the real receive
loop: inflate, loads, the Shard's seq decision, ``Dispatch``, the info counters, the manager's hand-off
and a counting handler) over pre-made frames from a WebSocket stand-in, next to the decode floor
(inflate + ``orjson.loads`` of the same frames). The difference is what our protocol layer costs per
event; ``bench/dispatch.py`` adds aiohttp's receive path and the socket on top.

    python3 bench/dispatch_loop.py [--events 20000] [--compression zstd-stream|zlib-stream]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import zlib
from typing import Any

import orjson
import zstandard
from aiohttp import WSMessage, WSMsgType
from common import machine
from dispatch import MIX, frames

from shardtui.gateway.models import Dispatch, ShardId, ShardRunnerInfo
from shardtui.gateway.protocol import GatewayIntents
from shardtui.gateway.runner import ShardRunner, ShardRunnerOptions
from shardtui.gateway.shard import SessionState

CLOSE = WSMessage(WSMsgType.CLOSE, 1000, "")


class FramesSocket:
    """Enough of ``ClientWebSocketResponse`` for the reader loop: the frames, then a server close."""

    closed = True
    close_code = 1000

    def __init__(self, blobs: list[bytes]) -> None:
        self._messages = iter([WSMessage(WSMsgType.BINARY, blob, None) for blob in blobs])

    async def receive(self) -> WSMessage:
        return next(self._messages, CLOSE)


class Counter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, dispatch: Dispatch) -> None:
        if dispatch.name in MIX:
            self.count += 1


async def runner_loop(blobs: list[bytes], compression: str, counter: Counter) -> float:
    """CPU microseconds per event for one pass of the runner loop over ``blobs``."""
    options = ShardRunnerOptions(
        token="bench",
        gateway_url="ws://bench.invalid/",
        intents=GatewayIntents.default(),
        identify_gate=None,  # type: ignore[arg-type]  # never identifies: the session is resumed
        compression=compression,
        event_handler=counter,
        resume=SessionState("bench", 0, None),
    )
    runner = ShardRunner(ShardId(0), 1, options, ShardRunnerInfo(ShardId(0), 1), asyncio.Queue(), _ignore)
    socket = FramesSocket(blobs)
    started = time.process_time()
    await runner._run_connection(socket)  # type: ignore[arg-type]
    return (time.process_time() - started) / len(blobs) * 1e6


def _ignore(_: Any) -> None:
    pass


def decode_floor(blobs: list[bytes], compression: str) -> float:
    inflate = (
        zlib.decompressobj().decompress
        if compression == "zlib-stream"
        else zstandard.ZstdDecompressor().decompressobj().decompress
    )
    loads = orjson.loads
    started = time.process_time()
    for blob in blobs:
        loads(inflate(blob))
    return (time.process_time() - started) / len(blobs) * 1e6


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--compression", choices=["zstd-stream", "zlib-stream"], default=None)
    args = parser.parse_args()
    print(f"dispatch loop bench: {args.events} events, best of 5; {machine()}")
    layers = []
    for compression in [args.compression] if args.compression else ["zstd-stream", "zlib-stream"]:
        blobs, _ = frames(args.events, compression)
        counter = Counter()
        ours = min([await runner_loop(blobs, compression, counter) for _ in range(5)])
        floor = min(decode_floor(blobs, compression) for _ in range(5))
        if counter.count != 5 * args.events:
            raise SystemExit(f"dispatch_loop: the handler saw {counter.count} of {5 * args.events} events")
        print(
            f"  {compression}: runner loop {ours:.2f} us/event, decode floor {floor:.2f} us/event, "
            f"protocol layer {ours - floor:.2f} us/event ({floor / ours:.2f} of the floor)"
        )
        layers.append(f"{compression} {ours - floor:.2f}")
    print(f"SUMMARY dispatch_loop: protocol layer us/event {', '.join(layers)} (diagnostic, no target)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
