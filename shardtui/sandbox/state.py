"""Everything one running sandbox holds: world, sessions, connections, limits and accounting."""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
from collections import deque
from typing import Any

from shardtui.gateway.protocol import GatewayIntents, shard_for_guild

from .accounting import EVENT_ID_KEY, ShardStats, Totals
from .payloads import Generated, filter_for_intents
from .session import Session
from .settings import SandboxSettings
from .tokens import make_token, token_matches, user_id_from_token
from .transport import Connection
from .world import World

DAY_SECONDS = 86_400.0


class SandboxState:
    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        seed = settings.seed if settings.seed is not None else secrets.randbits(64)
        self.seed = seed
        world_rng = random.Random(seed)
        bot_id = user_id_from_token(settings.token) if settings.token else None
        self.world = World(world_rng, settings.guilds, settings.members_per_guild, bot_id)
        self.token = settings.token or make_token(self.world.bot.id)
        #: Discord resets the token of a bot that goes over its daily session starts; from then on
        #: the old one is refused everywhere (the sandbox has to be restarted to get a new one).
        self.token_reset = False
        self.traffic_rng = random.Random(seed ^ 0x5EED)
        self.world.rng = self.traffic_rng
        try:
            self.privileged_allowed = (
                int(GatewayIntents.from_names(settings.privileged_intents))
                if (settings.privileged_intents)
                else 0
            )
        except ValueError as exc:
            raise ValueError(f"invalid sandbox privileged_intents: {exc}") from None
        self.gateway_url = ""
        self.resume_url = ""
        self.sessions: dict[str, Session] = {}
        self.connections: dict[int, Connection] = {}
        self.shard_stats: dict[int, ShardStats] = {}
        self.totals = Totals()
        self.bucket_last: dict[int, float] = {}
        self.session_starts_remaining = settings.session_start_total
        self.started_at = 0.0
        self.member_request_last: dict[int, float] = {}
        self.refuse_until = 0.0
        self.pending_hello_delays: deque[float] = deque()
        self._event_ids = itertools.count(1)

    @staticmethod
    def now() -> float:
        return asyncio.get_running_loop().time()

    def next_event_id(self) -> int:
        return next(self._event_ids)

    def shard(self, shard_id: int) -> ShardStats:
        stats = self.shard_stats.get(shard_id)
        if stats is None:
            stats = self.shard_stats[shard_id] = ShardStats(shard_id)
        return stats

    def guild_ids_for(self, shard_id: int, num_shards: int) -> list[int]:
        return [g.id for g in self.world.guilds if shard_for_guild(g.id, num_shards) == shard_id]

    def accepts_token(self, presented: object) -> bool:
        return not self.token_reset and token_matches(self.token, presented)

    # -- session start limit ----------------------------------------------------------------------

    def _refill(self) -> None:
        now = self.now()
        if now - self.started_at >= DAY_SECONDS:
            self.started_at = now
            self.session_starts_remaining = self.settings.session_start_total

    def session_start_limit(self) -> dict[str, int]:
        self._refill()
        reset_after = max(0, int((self.started_at + DAY_SECONDS - self.now()) * 1000))
        return {
            "total": self.settings.session_start_total,
            "remaining": self.session_starts_remaining,
            "reset_after": reset_after,
            "max_concurrency": self.settings.max_concurrency,
        }

    def take_session_start(self) -> bool:
        self._refill()
        if self.session_starts_remaining <= 0:
            return False
        self.session_starts_remaining -= 1
        return True

    # -- delivery ---------------------------------------------------------------------------------

    def live_sessions(self) -> list[Session]:
        return [s for s in self.sessions.values() if s.alive]

    def deliver(self, event: Generated) -> int:
        """Hand a generated event to every live session that would get it on Discord."""
        event_id = self.next_event_id()
        event.data[EVENT_ID_KEY] = event_id
        delivered = 0
        bot_user_id = str(self.world.bot.id)
        for session in self.live_sessions():
            if event.guild_id is None:
                if session.shard_id != 0:
                    continue
            elif not session.covers_guild(event.guild_id):
                continue
            data = filter_for_intents(event, session.intents, bot_user_id)
            if data is None:
                continue
            session.dispatch(event.name, data, event_id)
            delivered += 1
        return delivered

    def connections_for(self, shard_id: int | None) -> list[Connection]:
        """Connections with a live session on ``shard_id`` (every shard when None)."""
        return [
            c
            for c in self.connections.values()
            if c.session is not None
            and not c.closing
            and (shard_id is None or c.session.shard_id == shard_id)
        ]

    def expire_sessions(self) -> None:
        now = self.now()
        window = self.settings.resume_window
        for session in list(self.sessions.values()):
            if session.alive and session.detached_at is not None and now - session.detached_at > window:
                session.kill("expired")
            if not session.alive and (session.detached_at is None or now - session.detached_at > window):
                # Keep dead sessions around briefly so a late RESUME still gets op 9 rather than nothing.
                self.sessions.pop(session.id, None)

    def stats(self, with_events: bool = False) -> dict[str, Any]:
        now = self.now()
        shards = {str(k): v.as_dict(with_events) for k, v in sorted(self.shard_stats.items())}
        return {
            "rest_url": None,
            "gateway_url": self.gateway_url,
            "guilds": len(self.world.guilds),
            "recommended_shards": self.settings.shards,
            "session_start_limit": self.session_start_limit(),
            "session_starts_used": self.settings.session_start_total - self.session_starts_remaining,
            "token_reset": self.token_reset,
            "connections_open": len(self.connections),
            "connections_total": self.totals.connections,
            "refused_connections": self.totals.refused_connections,
            "connections_by_compression": dict(sorted(self.totals.compressions.items())),
            "identify_violations": self.totals.identify_violations,
            "command_violations": self.totals.command_violations,
            "dispatches_sent": sum(len(s.sent) for s in self.shard_stats.values()),
            "unidentified": {
                "server_closes": {
                    str(k): v for k, v in sorted(self.totals.unidentified_server_closes.items())
                },
                "client_closes": {
                    str(k): v for k, v in sorted(self.totals.unidentified_client_closes.items())
                },
            },
            "faults": dict(sorted(self.totals.faults.items())),
            "shards": shards,
            "sessions": [s.as_dict(now) for s in self.sessions.values()],
        }
