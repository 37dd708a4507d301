"""The runner's per-event cost without networking: the real ``GatewaySocket`` parsing server frames
handed to its ``data_received`` in 64 KiB reads (as the event loop would), its fast path into
``ShardRunner._run_connection``'s taker (inflate, the Shard reading the frame's head and its seq
decision, ``Dispatch`` with ``d`` still bytes, the info counters, the manager's hand-off and a handler
that counts names), next to the decode floor (inflate + ``orjson.loads`` of the same frames). The
difference is what our WebSocket framing and protocol layer cost per event; ``bench/dispatch.py`` adds
the socket and the kernel on top.

``--calls`` also counts the Python-level and C-level calls per event (``sys.setprofile``): unlike the
timings, a count that does not depend on how busy the machine is.

    python3 bench/dispatch_loop.py [--events 20000] [--compression zstd-stream|zlib-stream] [--calls]
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys
import time
import zlib
from typing import Any

import orjson
import zstandard
from common import machine
from dispatch import MIX, frames

from shardtui.gateway.models import Dispatch, ShardId, ShardRunnerInfo
from shardtui.gateway.protocol import GatewayIntents
from shardtui.gateway.runner import ShardRunner, ShardRunnerOptions
from shardtui.gateway.shard import SessionState
from shardtui.gateway.websocket import GatewaySocket

READ_SIZE = 64 * 1024


class NullTransport:
    """What the socket asks of its transport, with nowhere to send to."""

    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    abort = close

    def pause_reading(self) -> None:
        pass

    resume_reading = pause_reading


def server_stream(blobs: list[bytes]) -> list[bytes]:
    """The blobs as unmasked binary WebSocket frames, cut into reads of READ_SIZE bytes."""
    out = bytearray()
    for blob in blobs:
        n = len(blob)
        if n < 126:
            out += bytes((0x82, n))
        elif n < 65536:
            out += bytes((0x82, 126)) + struct.pack("!H", n)
        else:
            out += bytes((0x82, 127)) + struct.pack("!Q", n)
        out += blob
    data = bytes(out)
    return [data[i : i + READ_SIZE] for i in range(0, len(data), READ_SIZE)]


class Counter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, dispatch: Dispatch) -> None:
        if dispatch.name in MIX:
            self.count += 1


class CallCounter:
    """A ``sys.setprofile`` hook counting Python function calls and C calls."""

    def __init__(self) -> None:
        self.python = 0
        self.c = 0

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            self.python += 1
        elif event == "c_call":
            self.c += 1


async def runner_loop(
    reads: list[bytes], events: int, compression: str, counter: Counter, calls: CallCounter | None = None
) -> float:
    """CPU microseconds per event for the socket and the runner taking in ``reads`` (with ``calls``, the
    calls are counted instead and the time means nothing)."""
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
    socket = GatewaySocket("bench-key", 0.1)
    socket._handshaking = False
    socket.handshake.set_result(None)
    socket.connection_made(NullTransport())  # type: ignore[arg-type]
    reader = asyncio.create_task(runner._run_connection(socket))
    await asyncio.sleep(0)  # the runner now waits in receive(): the fast path is open
    if calls is not None:
        sys.setprofile(calls)
    started = time.process_time()
    for chunk in reads:
        socket.data_received(chunk)
    elapsed = time.process_time() - started
    sys.setprofile(None)
    socket.connection_lost(None)
    await reader
    return elapsed / events * 1e6


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
    parser.add_argument("--calls", action="store_true", help="also count calls per event")
    args = parser.parse_args()
    print(f"dispatch loop bench: {args.events} events, best of 5; {machine()}")
    layers = []
    for compression in [args.compression] if args.compression else ["zstd-stream", "zlib-stream"]:
        blobs, _ = frames(args.events, compression)
        reads = server_stream(blobs)
        counter = Counter()
        ours = min([await runner_loop(reads, len(blobs), compression, counter) for _ in range(5)])
        floor = min(decode_floor(blobs, compression) for _ in range(5))
        if counter.count != 5 * args.events:
            raise SystemExit(f"dispatch_loop: the handler saw {counter.count} of {5 * args.events} events")
        print(
            f"  {compression}: runner loop {ours:.2f} us/event, decode floor {floor:.2f} us/event, "
            f"protocol layer {ours - floor:.2f} us/event ({floor / ours:.2f} of the floor)"
        )
        layers.append(f"{compression} {ours - floor:.2f}")
        if args.calls:
            calls = CallCounter()
            await runner_loop(reads, len(blobs), compression, Counter(), calls)
            print(
                f"  {compression}: {calls.python / len(blobs):.2f} Python calls and "
                f"{calls.c / len(blobs):.2f} C calls per event (socket + runner + handler)"
            )
    print(f"SUMMARY dispatch_loop: protocol layer us/event {', '.join(layers)} (diagnostic, no target)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
