"""Helpers for the hub tests: upstream dispatches, a cache stand-in, and reading what a link received."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from shardtui.gateway.models import Dispatch, ShardId
from shardtui.proxy import Link, SessionLimits, SessionTable, ShardHub, Snapshot

BOT_ID = "1000"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Upstream:
    """Feeds a hub as the manager's event handler would, with upstream seqs of its own."""

    def __init__(self, hub: ShardHub, first_seq: int = 500) -> None:
        self.hub = hub
        self.seq = first_seq

    def send(self, name: str, data: Any) -> None:
        self.seq += 1
        self.hub.publish(Dispatch(ShardId(self.hub.shard_id), name, self.seq, data))

    def message(self, n: int) -> dict[str, Any]:
        data = {"id": str(n), "channel_id": "7", "content": f"message {n}"}
        self.send("MESSAGE_CREATE", data)
        return data

    def ready(self, session_id: str) -> None:
        self.seq = 0
        self.send(
            "READY",
            {
                "v": 10,
                "session_id": session_id,
                "user": {"id": BOT_ID, "username": "bot"},
                "guilds": [{"id": "1", "unavailable": True}],
            },
        )


def make_hub(shard_id: int = 0, total: int = 2, clock: FakeClock | None = None, **limits: Any) -> ShardHub:
    table = SessionTable(SessionLimits(**limits), clock=clock or FakeClock())
    return ShardHub(shard_id, total, table, resume_gateway_url="ws://127.0.0.1:9999", bot_user_id=BOT_ID)


def snapshot(guilds: int = 2) -> Snapshot:
    return Snapshot.of_guilds(
        {
            "user": {"id": BOT_ID, "username": "bot"},
            "guilds": [{"id": str(g), "unavailable": True} for g in range(1, guilds + 1)],
        },
        [{"id": str(g), "name": f"guild {g}", "channels": []} for g in range(1, guilds + 1)],
    )


def attach(hub: ShardHub, guilds: int = 2, library: str = "test") -> Link:
    link = hub.open_session(address="127.0.0.1:5000", library=library)
    hub.begin(link, snapshot(guilds))
    return link


async def take(link: Link) -> list[dict[str, Any]]:
    """Every frame the link has ready now, decoded (never waits when there are none)."""
    if link.end is None and link.session.backlog_events == 0:
        return []
    frames = await asyncio.wait_for(link.wait_frames(), 5)
    return [orjson.loads(f) for f in frames]


def names_and_seqs(payloads: list[dict[str, Any]]) -> list[tuple[str | None, int | None]]:
    return [(p.get("t"), p.get("s")) for p in payloads]
