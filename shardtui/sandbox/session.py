"""A gateway session: seq, replay buffer and the accounting of every dispatch it was given."""

from __future__ import annotations

import secrets
from collections import Counter, deque
from typing import Any

from shardtui.gateway.protocol import shard_for_guild

from .accounting import EVENT_ID_KEY, SentEvent, ShardStats
from .transport import Connection


class Session:
    def __init__(
        self,
        *,
        shard_id: int,
        num_shards: int,
        intents: int,
        version: int,
        large_threshold: int,
        stats: ShardStats,
        buffer_size: int,
    ) -> None:
        self.id = secrets.token_hex(16)
        self.shard_id = shard_id
        self.num_shards = num_shards
        self.intents = intents
        self.version = version
        self.large_threshold = large_threshold
        self.stats = stats
        self.seq = 0
        self.buffer: deque[dict[str, Any]] = deque(maxlen=buffer_size)
        self.sent: list[SentEvent] = []
        self.connection: Connection | None = None
        self.alive = True
        self.end_reason: str | None = None
        #: Loop time the connection went away (None while attached).
        self.detached_at: float | None = None
        #: Highest seq the client proved it had (heartbeat ``d`` or RESUME ``seq``).
        self.confirmed_seq = 0
        self.resumes = 0
        #: Close codes that ended this session's connections, in order ("server 4000", "client 1006"...).
        self.closes: list[str] = []
        self.faults: Counter[str] = Counter()
        self.presence: dict[str, Any] | None = None

    def covers_guild(self, guild_id: int) -> bool:
        return shard_for_guild(guild_id, self.num_shards) == self.shard_id

    def dispatch(self, name: str, data: dict[str, Any], event_id: int) -> int:
        """Give the dispatch the next seq, keep it for replay and send it if the link is healthy."""
        if not self.alive:
            return 0
        self.seq += 1
        if EVENT_ID_KEY not in data or data[EVENT_ID_KEY] != event_id:
            data = {**data, EVENT_ID_KEY: event_id}
        payload = {"t": name, "s": self.seq, "op": 0, "d": data}
        self.buffer.append(payload)
        record = SentEvent(
            event_id=event_id, seq=self.seq, name=name, session_id=self.id, shard_id=self.shard_id
        )
        self.sent.append(record)
        self.stats.sent.append(record)
        conn = self.connection
        if conn is not None and not conn.holds_dispatches:
            conn.send(payload)
            conn.last_dispatch_seq = self.seq
        return self.seq

    def confirm(self, seq: object) -> None:
        if isinstance(seq, int) and not isinstance(seq, bool) and self.confirmed_seq < seq <= self.seq:
            self.confirmed_seq = seq

    def can_resume_from(self, seq: int) -> bool:
        if seq > self.seq or seq < 0:
            return False
        first = self.buffer[0]["s"] if self.buffer else self.seq + 1
        return seq >= first - 1

    def replay_after(self, seq: int) -> list[dict[str, Any]]:
        return [p for p in self.buffer if p["s"] > seq]

    def release_held(self) -> int:
        """Send what the current socket held back (after a wedge or zombie heals); returns the count."""
        conn = self.connection
        if conn is None or conn.holds_dispatches:
            return 0
        held = self.replay_after(conn.last_dispatch_seq)
        for payload in held:
            conn.send(payload)
        conn.last_dispatch_seq = self.seq
        return len(held)

    def kill(self, reason: str) -> None:
        """End the session; what the client never confirmed is marked as not replayable."""
        if not self.alive:
            return
        self.alive = False
        self.end_reason = reason
        for record in reversed(self.sent):
            if record.seq <= self.confirmed_seq:
                break
            record.replayable = False
            record.lost_reason = reason
        self.buffer.clear()
        self.connection = None

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "session_id": self.id,
            "shard": [self.shard_id, self.num_shards],
            "intents": self.intents,
            "seq": self.seq,
            "confirmed_seq": self.confirmed_seq,
            "dispatches_sent": len(self.sent),
            "resumes": self.resumes,
            "closes": list(self.closes),
            "faults": dict(sorted(self.faults.items())),
            "alive": self.alive,
            "connected": self.connection is not None,
            "held": self.seq - self.connection.last_dispatch_seq if self.connection is not None else 0,
            "detached_for": None if self.detached_at is None else round(now - self.detached_at, 3),
            "end_reason": self.end_reason,
            "presence": self.presence,
        }
