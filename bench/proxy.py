"""The gateway proxy end to end: events/s it forwards to 1 and to 8 raw clients of a shard, and the
latency it adds at a fixed rate, next to the same clients connected directly to the sandbox.

Three processes, so that on a 2-core machine each side's CPU is its own as far as it can be:

* this process: a real ``ShardManager`` connected to the sandbox and the ``Proxy`` in front of it;
* a sandbox child (``sandbox_child.py``);
* a clients child (this script with ``--clients-child``): raw WebSocket clients that decompress every
  message (zlib-stream or zstd-stream) and count, or parse and timestamp, what they receive.

**Throughput**: the shard is connected and READY is cached; then MESSAGE_CREATE dispatches (~650 B of
JSON, ``d`` still bytes) go into ``proxy.on_dispatch`` exactly as the manager hands them over, as fast as
the clients take them (the proxy's bounded backlog is what paces it). The figure is events published / time
until every client received every event. The upstream's own decode is not in it (bench/dispatch.py).
**Latency**: the sandbox generates 2,000 events/s; one client reads them directly from the sandbox,
one through the proxy, both in the clients child; per event (matched by the sandbox's event id) the
added latency is the proxy client's arrival minus the direct client's.

    python3 bench/proxy.py [--events 100000] [--seconds 5] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
import zlib
from typing import Any

import aiohttp
import orjson
import zstandard
from common import SandboxProcess, machine, percentile, sandbox_manager, table

from shardtui.gateway.models import Dispatch, ShardId
from shardtui.proxy.server import Proxy, ProxySettings
from shardtui.proxy.session import SessionLimits

TARGET_ONE = 40_000  # events/s to one client
TARGET_EIGHT = 60_000  # deliveries/s in total with 8 clients on a shard
TARGET_P99_MS = 5.0  # added latency at 2k events/s
RATE = 2_000
COMPRESSIONS = ("zlib-stream", "zstd-stream")
EVENT_ID = "_sandbox_event_id"
ZLIB_SUFFIX = b"\x00\x00\xff\xff"
#: Events in flight (published, not yet written to every client) before the publisher yields.
IN_FLIGHT = 2_000


# -- the clients child ----------------------------------------------------------------------------


class Reader:
    """One raw gateway client: decompresses every message; counts them, or times dispatches by id."""

    def __init__(self, http: aiohttp.ClientSession, url: str, compress: str) -> None:
        self.http, self.url, self.compress = http, url, compress
        self.count = 0
        self.arrivals: dict[int, float] | None = None
        self.ready = asyncio.Event()
        self._identify = ""
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self, token: str, shard: list[int]) -> None:
        ws = await self.http.ws_connect(
            f"{self.url}?v=10&encoding=json&compress={self.compress}", max_msg_size=0
        )
        identify = {"token": token, "intents": 513, "shard": shard, "properties": {"browser": "bench"}}
        self._identify = orjson.dumps({"op": 2, "d": identify}).decode()
        await ws.send_str(self._identify)
        self.ws = ws
        self.task = asyncio.create_task(self._read(ws))
        await asyncio.wait_for(self.ready.wait(), 30)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        inflate = zlib.decompressobj() if self.compress == "zlib-stream" else None
        zstd = zstandard.ZstdDecompressor().decompressobj() if self.compress == "zstd-stream" else None
        buffer = b""
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                break
            if inflate is not None:
                buffer += msg.data
                if not buffer.endswith(ZLIB_SUFFIX):
                    continue
                data, buffer = inflate.decompress(buffer), b""
            else:
                assert zstd is not None
                data = zstd.decompress(msg.data)
            self.count += 1
            arrivals = self.arrivals
            if arrivals is not None:
                payload = orjson.loads(data)
                d = payload.get("d")
                if type(d) is dict and EVENT_ID in d:
                    arrivals[d[EVENT_ID]] = time.perf_counter()
            elif not self.ready.is_set():
                if b'"READY"' in data:
                    self.ready.set()
                elif b'"op":9' in data:
                    # The sandbox's identify window: the manager's shard identified just before us.
                    await asyncio.sleep(0.5)
                    await ws.send_str(self._identify)


async def clients_child() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    groups: dict[str, list[Reader]] = {}

    def answer(value: Any) -> None:
        sys.stdout.buffer.write(orjson.dumps(value) + b"\n")
        sys.stdout.flush()

    async with aiohttp.ClientSession() as http:
        while line := await reader.readline():
            request = orjson.loads(line)
            op = request["op"]
            if op == "connect":
                readers = [Reader(http, request["url"], request["compress"]) for _ in range(request["n"])]
                await asyncio.gather(*(r.start(request["token"], request["shard"]) for r in readers))
                groups[request["tag"]] = readers
                answer({"ok": True})
            elif op == "reset":
                for r in groups[request["tag"]]:
                    r.count = 0
                answer({"ok": True})
            elif op == "until":
                readers = groups[request["tag"]]
                while any(r.count < request["count"] for r in readers):  # noqa: ASYNC110
                    await asyncio.sleep(0.001)
                answer({"at": time.perf_counter()})
            elif op == "time":
                for tag in request["tags"]:
                    for r in groups[tag]:
                        r.arrivals = {}
                await asyncio.sleep(request["seconds"])
                direct, proxied = (groups[t][0].arrivals or {} for t in request["tags"])
                added = [(proxied[i] - direct[i]) * 1000 for i in direct if i in proxied]
                answer({"added_ms": added, "direct": len(direct), "proxied": len(proxied)})
            elif op == "close":
                for readers in groups.values():
                    for r in readers:
                        if r.task is not None:
                            r.task.cancel()
                        if r.ws is not None:
                            with contextlib.suppress(Exception):
                                await asyncio.wait_for(r.ws.close(), 2)
                groups.clear()
                answer({"ok": True})
            elif op == "quit":
                break


class ClientsProcess:
    async def __aenter__(self) -> ClientsProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--clients-child",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 26,
        )
        return self

    async def call(self, op: str, **fields: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(orjson.dumps({"op": op, **fields}) + b"\n")
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the clients child ended early (see its stderr)")
        return orjson.loads(line)

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.write(b'{"op": "quit"}\n')
            await self.proc.stdin.drain()
            await asyncio.wait_for(self.proc.wait(), 10)
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


# -- this process: manager + proxy ----------------------------------------------------------------


def message_events(count: int) -> list[bytes]:
    """``d`` of each event, as the bytes the upstream sends: the dispatch itself is made per event in the
    timed loop, as the manager does (a list of dispatches kept whole would keep every decoded ``d`` alive,
    and the garbage collector's full passes over them would be charged to the proxy)."""
    rng = random.Random(7)
    out = []
    for _ in range(count):
        author = {
            "id": str(rng.getrandbits(60)),
            "username": f"user{rng.randrange(10_000)}",
            "avatar": "a" * 32,
        }
        data = {
            "type": 0,
            "tts": False,
            "timestamp": "2026-12-03T07:00:00.000000+00:00",
            "pinned": False,
            "nonce": str(rng.getrandbits(60)),
            "mentions": [],
            "mention_roles": [],
            "mention_everyone": False,
            "id": str(rng.getrandbits(60)),
            "flags": 0,
            "embeds": [],
            "edited_timestamp": None,
            "content": "x" * rng.randrange(40, 200),
            "components": [],
            "channel_id": str(rng.getrandbits(60)),
            "author": author,
            "attachments": [],
            "guild_id": str(rng.getrandbits(60)),
            "member": {"roles": [], "joined_at": "2025-01-01T00:00:00+00:00", "deaf": False, "mute": False},
        }
        out.append(orjson.dumps(data))
    return out


async def running_proxy(sandbox: SandboxProcess, compression: str) -> tuple[Any, Proxy]:
    manager = sandbox_manager(sandbox, 1, 1, 0.05, compression=compression)
    limits = SessionLimits(outbox_max_events=1_000_000, replay_max_events=1_000_000)
    proxy = Proxy(
        manager, token=sandbox.token, rest_upstream=sandbox.rest_url, settings=ProxySettings(limits=limits)
    )
    manager.options.event_handler = proxy.on_dispatch
    await proxy.start()
    await manager.initialize()
    if not await manager.wait_until_connected(timeout=30):
        raise RuntimeError("the shard did not connect to the sandbox")
    return manager, proxy


async def stop(manager: Any, proxy: Proxy) -> None:
    await proxy.stop()
    await manager.shutdown_all()


async def throughput(
    clients: ClientsProcess, events: list[bytes], compress: str, n: int
) -> tuple[float, float]:
    """(events/s by the wall clock, events per CPU-second of this process: the proxy's own cost)."""
    async with SandboxProcess(guilds=2, shards=1, identify_window=0.05, event_rate=0.0) as sandbox:
        manager, proxy = await running_proxy(sandbox, compress)
        try:
            tag = f"tp-{compress}-{n}"
            await clients.call(
                "connect",
                url=proxy.ws_url,
                token=sandbox.token,
                shard=[0, 1],
                compress=compress,
                n=n,
                tag=tag,
            )
            await asyncio.sleep(0.2)  # READY and the GUILD_CREATEs are read
            await clients.call("reset", tag=tag)
            hub = proxy.hubs[0]
            sessions = hub.sessions()
            started = time.perf_counter()
            cpu = time.process_time()
            from_wire, shard = Dispatch.from_wire, ShardId(0)
            for index, raw in enumerate(events):
                proxy.on_dispatch(from_wire(shard, "MESSAGE_CREATE", index + 1, raw))
                if index % 64 == 63:
                    await asyncio.sleep(0)
                    while max(s.backlog_events for s in sessions) > IN_FLIGHT:  # noqa: ASYNC110
                        await asyncio.sleep(0.0005)
            done = await clients.call("until", tag=tag, count=len(events))
            seconds = done["at"] - started
            cpu_seconds = time.process_time() - cpu
            await clients.call("close")
        finally:
            await stop(manager, proxy)
    return len(events) / seconds, len(events) / cpu_seconds


async def latency(clients: ClientsProcess, compress: str, seconds: float) -> list[float]:
    """Per event seen by both clients: the proxied client's arrival minus the direct one's, in ms."""
    async with SandboxProcess(guilds=8, shards=1, identify_window=0.05, event_rate=RATE) as sandbox:
        manager, proxy = await running_proxy(sandbox, compress)
        try:
            common = {"token": sandbox.token, "shard": [0, 1], "compress": compress, "n": 1}
            await clients.call("connect", url=sandbox.gateway_url, tag="direct", **common)
            await clients.call("connect", url=proxy.ws_url, tag="proxied", **common)
            result = await clients.call("time", tags=["direct", "proxied"], seconds=seconds)
            await clients.call("close")
        finally:
            await stop(manager, proxy)
    return result["added_ms"]


async def main(args: argparse.Namespace) -> int:
    count = 5_000 if args.quick else args.events
    seconds = 0.5 if args.quick else args.seconds
    events = message_events(count)
    print(f"# proxy bench: {machine()}; {count} events per throughput run, {seconds:.1f} s at {RATE}/s")
    rows: list[list[Any]] = []
    one: dict[str, float] = {}
    eight: dict[str, float] = {}
    p99s: dict[str, float] = {}
    async with ClientsProcess() as clients:
        for compress in COMPRESSIONS:
            wall_one, cpu_one = await throughput(clients, events, compress, 1)
            wall_eight, cpu_eight = await throughput(clients, events, compress, 8)
            one[compress], eight[compress] = cpu_one, cpu_eight * 8
            added = await latency(clients, compress, seconds)
            p50 = percentile(added, 50) if added else float("nan")
            p99 = p99s[compress] = percentile(added, 99) if added else float("nan")
            rows.append(
                [
                    compress,
                    f"{cpu_one:,.0f}",
                    f"{wall_one:,.0f}",
                    f"{cpu_eight * 8:,.0f}",
                    f"{wall_eight * 8:,.0f}",
                    f"{p50:.2f}",
                    f"{p99:.2f}",
                    f"{len(added)}",
                ]
            )
    headers = [
        "compression",
        "1 client: events/CPU-s",
        "events/s wall",
        "8 clients: deliveries/CPU-s",
        "deliveries/s wall",
        "added p50 ms",
        "added p99 ms",
        "events timed",
    ]
    print(table(headers, rows))
    ok = (
        min(one.values()) >= TARGET_ONE
        and min(eight.values()) >= TARGET_EIGHT
        and max(p99s.values()) < TARGET_P99_MS
    )
    print(
        f"SUMMARY proxy: {min(one.values()):,.0f} events per proxy CPU-second to 1 client (target "
        f"{TARGET_ONE:,}), {min(eight.values()):,.0f} deliveries per CPU-second to 8 "
        f"(target {TARGET_EIGHT:,}), "
        f"p99 added {max(p99s.values()):.2f} ms at {RATE}/s (target < {TARGET_P99_MS} ms): "
        f"{'OK' if ok else 'MISSED'}"
    )
    return 0


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--clients-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients_child:
        asyncio.run(clients_child())
        return 0
    return asyncio.run(main(args))


if __name__ == "__main__":
    sys.exit(cli())
