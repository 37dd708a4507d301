"""The proxy hub's per-event cost, no sockets: upstream dispatches (decoded, ~650 B of JSON each, the
flood mix of bench/dispatch.py) published into a ``ShardHub`` with 1 and with 8 attached sessions, each
drained as a transport would (one ``wait_frames()`` batch per wake-up, here every 64 events).

Next to two floors measured in the same run: one ``orjson.dumps`` of each event's data (what the hub
cannot avoid per event for a dispatch built in-process), and per client the frame's %-join with the deque
appends to replay and outbox (what it cannot avoid per client). The design: per event one dumps, per client
one join and the appends. The "d as bytes" rows publish the same events as the manager hands them over from
a socket (``Dispatch.from_wire``): the hub forwards the upstream's bytes of ``d``, no dumps and no decode.

    python3 bench/proxy_hub.py [--events 50000] [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import deque
from typing import Any

import orjson
from common import machine, table

from shardtui.gateway.models import Dispatch, ShardId
from shardtui.proxy import SessionLimits, SessionTable, ShardHub, Snapshot
from shardtui.proxy.frames import FRAME_FORMAT, dispatch_parts

BATCH = 64
#: Target: a further client costs at most this many times the bare work the design allows per client
#: and event (one %-join of the frame and the deque appends, measured in the same run). The issue
#: names no figure; this bounds the Python bookkeeping around that work.
TARGET_PER_CLIENT_X = 3.0
REPLAY = 10_000


def events(count: int, seed: int = 7) -> list[Dispatch]:
    """MESSAGE_CREATE / PRESENCE_UPDATE / TYPING_START (5:3:2), shaped like Discord's, decoded."""
    rng = random.Random(seed)
    shard = ShardId(0)
    out = []
    for seq in range(1, count + 1):
        user = {
            "id": str(rng.getrandbits(60)),
            "username": f"user{rng.randrange(10_000)}",
            "global_name": None,
            "avatar": "a" * 32,
            "discriminator": "0",
            "public_flags": 0,
        }
        kind = rng.choices(("MESSAGE_CREATE", "PRESENCE_UPDATE", "TYPING_START"), (5, 3, 2))[0]
        data: dict[str, Any]
        if kind == "MESSAGE_CREATE":
            data = {
                "type": 0,
                "tts": False,
                "timestamp": "2026-12-03T07:00:00.000000+00:00",
                "pinned": False,
                "nonce": str(rng.getrandbits(60)),
                "mentions": [],
                "mention_roles": [],
                "mention_everyone": False,
                "member": {
                    "roles": [],
                    "mute": False,
                    "joined_at": "2025-01-01T00:00:00.000000+00:00",
                    "flags": 0,
                    "deaf": False,
                },
                "id": str(rng.getrandbits(60)),
                "flags": 0,
                "embeds": [],
                "edited_timestamp": None,
                "content": "x" * rng.randrange(20, 120),
                "components": [],
                "channel_id": "1234567890123",
                "author": user,
                "attachments": [],
                "guild_id": "9876543210987",
            }
        elif kind == "PRESENCE_UPDATE":
            data = {
                "user": {"id": user["id"]},
                "status": "online",
                "guild_id": "9876543210987",
                "client_status": {"desktop": "online"},
                "broadcast": None,
                "activities": [
                    {
                        "type": 0,
                        "name": "a game",
                        "id": "ec0b28a579ecb4bd",
                        "created_at": 1764745200000,
                        "timestamps": {"start": 1764745000000},
                    }
                ],
            }
        else:
            data = {
                "user_id": user["id"],
                "timestamp": 1764745200,
                "channel_id": "1234567890123",
                "guild_id": "9876543210987",
                "member": {
                    "user": user,
                    "roles": [],
                    "mute": False,
                    "joined_at": "2025-01-01T00:00:00.000000+00:00",
                    "flags": 0,
                    "deaf": False,
                },
            }
        out.append(Dispatch(shard, kind, seq, data))
    return out


def floor(stream: list[Dispatch]) -> float:
    dumps = orjson.dumps
    start = time.process_time()
    for d in stream:
        dumps(d.data)
    return time.process_time() - start


def join_floor(stream: list[Dispatch]) -> float:
    """Per client and event, the least the design allows: splice the seq in, append to replay and outbox."""
    parts = [dispatch_parts(d.name, d.data) for d in stream]
    replay: deque[bytes] = deque(maxlen=REPLAY)
    outbox: deque[bytes] = deque()
    form = FRAME_FORMAT
    start = time.process_time()
    for i in range(0, len(parts), BATCH):
        for seq, (head, body) in enumerate(parts[i : i + BATCH], i + 1):
            frame = form % (head, seq, body)
            replay.append(frame)
            outbox.append(frame)
        list(outbox)
        outbox.clear()
    return time.process_time() - start


def off_the_wire(stream: list[Dispatch]) -> list[Dispatch]:
    """The stream as the manager hands it over from a socket: each ``d`` still the bytes it came in."""
    return [Dispatch.from_wire(d.shard_id, d.name, d.seq, orjson.dumps(d.data)) for d in stream]


async def through_hub(stream: list[Dispatch], clients: int) -> tuple[float, int]:
    """CPU seconds to publish the stream to ``clients`` sessions and drain every frame; frames drained."""
    limits = SessionLimits(outbox_max_events=BATCH * 4, replay_max_events=REPLAY)
    hub = ShardHub(0, 1, SessionTable(limits), resume_gateway_url="ws://127.0.0.1:1")
    links = []
    for _ in range(clients):
        link = hub.open_session(address="127.0.0.1:1", library="bench")
        hub.begin(link, Snapshot({"user": {"id": "1"}, "guilds": []}, []))
        links.append(link)
    for link in links:
        await link.wait_frames()  # READY
    publish = hub.publish
    drained = 0
    start = time.process_time()
    for i in range(0, len(stream), BATCH):
        for d in stream[i : i + BATCH]:
            publish(d)
        for link in links:
            drained += len(await link.wait_frames())
    elapsed = time.process_time() - start
    if any(link.end is not None for link in links):
        raise SystemExit("proxy_hub: a session was cut during the bench; the figures would be wrong")
    return elapsed, drained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny run: checks the script, not the figures")
    args = parser.parse_args()
    if args.quick:
        args.events, args.runs = 2_000, 1
    stream = events(args.events)
    mean_bytes = sum(len(orjson.dumps(d.data)) for d in stream) / len(stream)
    print(f"proxy_hub: {args.events} events, mean data {mean_bytes:.0f} B, best of {args.runs}; {machine()}")

    best: dict[str, float] = {}
    for _ in range(args.runs):
        # Side by side in each run, so a noisy neighbour hits all rows alike.
        for name, measure in (
            ("dumps floor", lambda: floor(stream)),
            ("join+append floor", lambda: join_floor(stream)),
            ("hub, 1 client", lambda: asyncio.run(through_hub(stream, 1))[0]),
            ("hub, 8 clients", lambda: asyncio.run(through_hub(stream, 8))[0]),
            ("hub, 1 client, d as bytes", lambda: asyncio.run(through_hub(off_the_wire(stream), 1))[0]),
            ("hub, 8 clients, d as bytes", lambda: asyncio.run(through_hub(off_the_wire(stream), 8))[0]),
        ):
            seconds = measure()
            best[name] = min(best.get(name, seconds), seconds)
    _, drained = asyncio.run(through_hub(stream, 8))
    if drained != 8 * len(stream):
        raise SystemExit(f"proxy_hub: 8 clients drained {drained} frames, expected {8 * len(stream)}")

    n = len(stream)
    rows = []
    for name, seconds in best.items():
        us = seconds / n * 1e6
        rows.append([name, f"{n / seconds:,.0f}", f"{us:.2f}", f"{seconds / best['dumps floor']:.2f}"])
    print(table(["case", "events/s", "us/event", "x dumps floor"], rows))
    per_client = (best["hub, 8 clients"] - best["hub, 1 client"]) / 7
    per_client_x = per_client / best["join+append floor"]
    print(
        f"per further client: {per_client / n * 1e6:.2f} us/event; every frame drained: {drained} = 8 x {n}"
    )
    verdict = "OK" if per_client_x <= TARGET_PER_CLIENT_X else "MISSED"
    print(
        f"SUMMARY proxy_hub: 1 client {n / best['hub, 1 client']:,.0f} events/s, 8 clients "
        f"{n / best['hub, 8 clients']:,.0f} events/s; a further client costs {per_client_x:.2f} x the "
        f"join+append floor (target <= {TARGET_PER_CLIENT_X}): {verdict}"
    )


if __name__ == "__main__":
    sys.exit(main())
