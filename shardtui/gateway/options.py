"""``ShardManagerOptions``: what a ``ShardManager`` is told (token, intents, range, pacing, files).

Its own module so the manager's helpers (the reshard builds a second set from a copy) can name it
without importing the manager.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shardtui.gateway.health import HealthPolicy
from shardtui.gateway.models import Dispatch, Presence
from shardtui.gateway.protocol import COMPRESSIONS, IDENTIFY_WINDOW_SECONDS, GatewayIntents
from shardtui.gateway.sessions import DEFAULT_MAX_AGE_SECONDS

#: A routine reconnect (op 7, a resume, even an identify after op 9) is back within a few seconds; a
#: whole bot down for longer is worth waking someone.
DEFAULT_OUTAGE_GRACE_SECONDS = 10.0


@dataclass
class ShardManagerOptions:
    token: str = field(repr=False)
    intents: GatewayIntents
    #: "https://discord.com/api/v10" or a sandbox's rest_url; the gateway url comes from /gateway/bot.
    rest_url: str
    #: None = "auto": the count /gateway/bot recommends.
    shard_total: int | None = None
    #: First..last shard id (inclusive) this process runs; None = all.
    shard_range: tuple[int, int] | None = None
    compression: str = "zstd-stream"
    large_threshold: int = 250
    presence: Presence | None = None
    event_handler: Callable[[Dispatch], Any] | None = None
    #: Seconds per identify bucket slot (Discord: 5; sandbox tests shorten it).
    identify_window: float = IDENTIFY_WINDOW_SECONDS
    #: None = what /gateway/bot says.
    max_concurrency: int | None = None
    #: Persisted sessions (zero-downtime restarts).
    state_file: str | None = None
    #: Saved sessions older than this (seconds) identify instead of trying a RESUME.
    state_max_age: float = DEFAULT_MAX_AGE_SECONDS
    #: Seconds between wedged-shard checks (0 disables them).
    health_interval: float = 5.0
    health_policy: HealthPolicy = field(default_factory=HealthPolicy)
    #: Restart a wedged shard by itself (resume first, with backoff, within the identify budget).
    restart_wedged: bool = False
    #: Seconds every running shard must stay down before it is an outage alert (0: at once).
    outage_grace: float = DEFAULT_OUTAGE_GRACE_SECONDS
    #: How long ``shutdown`` / ``shutdown_all`` wait for runners to close before cancelling them.
    shutdown_timeout: float = 5.0
    #: Timeout of the ``GET /gateway/bot`` request.
    request_timeout: float = 10.0
    #: TLS for https:// REST and wss:// gateway alike (e.g. trusting a private CA); None: the system CA store.
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.token, str) or not self.token.strip():
            raise ValueError("a bot token is required")
        if self.compression not in COMPRESSIONS:
            raise ValueError(
                f"compression must be one of {', '.join(COMPRESSIONS)}, got {self.compression!r}"
            )
        if self.outage_grace < 0:
            raise ValueError(f"outage_grace must be 0 or more seconds, got {self.outage_grace!r}")
        if not 50 <= self.large_threshold <= 250:
            raise ValueError(f"large_threshold must be 50..250, got {self.large_threshold}")
        if self.identify_window < 0:
            raise ValueError(f"identify_window must not be negative, got {self.identify_window}")
        if self.shard_total is not None and self.shard_total < 1:
            raise ValueError(f"shard_total must be at least 1, got {self.shard_total}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {self.max_concurrency}")
        if self.shard_range is not None:
            first, last = self.shard_range
            if first < 0 or last < first:
                raise ValueError(
                    f"shard_range must be first..last with 0 <= first <= last, got {self.shard_range}"
                )
            if self.shard_total is not None and last >= self.shard_total:
                raise ValueError(f"shard_range {first}..{last} does not fit in {self.shard_total} shards")
