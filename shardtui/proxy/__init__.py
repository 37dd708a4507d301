"""The gateway proxy: bots of any library connect to shardtui as they would to Discord.

``hub`` fans each upstream shard's dispatches out to client sessions (``session``: seq, outbox, replay,
resume); ``frames`` builds the bytes they receive. Nothing here opens a socket: a transport drives it.
"""

from __future__ import annotations

from .frames import INVALID_SESSION_FRAME, dispatch_frame, dispatch_parts
from .hub import CacheSnapshots, HubStats, ShardHub, ShardStateView, Snapshot, SnapshotSource, library_of
from .session import (
    ClientSession,
    ClientStats,
    Link,
    LinkEnd,
    ResumeOutcome,
    SessionLimits,
    SessionState,
    SessionTable,
)

__all__ = [
    "INVALID_SESSION_FRAME",
    "CacheSnapshots",
    "ClientSession",
    "ClientStats",
    "HubStats",
    "Link",
    "LinkEnd",
    "ResumeOutcome",
    "SessionLimits",
    "SessionState",
    "SessionTable",
    "ShardHub",
    "ShardStateView",
    "Snapshot",
    "SnapshotSource",
    "dispatch_frame",
    "dispatch_parts",
    "library_of",
]
