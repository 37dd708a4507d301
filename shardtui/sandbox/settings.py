"""Settings of the embedded gateway sandbox.

Every timing Discord fixes (heartbeat interval, identify window, how long a dropped session stays
resumable) is a setting here, so tests can run the same rules in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from shardtui.gateway.protocol import (
    COMMAND_WINDOW_SECONDS,
    COMMANDS_PER_WINDOW,
    DEFAULT_HEARTBEAT_INTERVAL_MS,
    IDENTIFY_WINDOW_SECONDS,
    MAX_GUILDS_PER_SHARD,
)

#: Fault kind -> what it does (shown by the control API and in error messages); the kinds a
#: ``ScheduledFault`` may name. Here rather than in faults.py so reading settings (config does)
#: imports none of the server.
FAULT_KINDS: dict[str, str] = {
    "drop": "drop the TCP connection without a close frame (session stays resumable)",
    "zombie": "stop answering: no ACKs, no dispatches, the socket stays open",
    "wedge": "keep ACKing heartbeats but stop sending dispatches (they wait in the replay buffer)",
    "reconnect": "send op 7 Reconnect",
    "invalid_session": "send op 9; params: resumable (bool, default false; false ends the session)",
    "close": "close with a code; params: code (default 4000), reason",
    "malformed": "send a frame that is not JSON (through the compression stream)",
    "truncated": "send a compressed frame cut in half (breaks the compression stream)",
    "split": "zlib-stream: send the next payload as two WebSocket frames (valid; clients must buffer)",
    "oversized": "send a valid dispatch of several MB; params: size (bytes, default 2 MiB)",
    "heartbeat_request": "send op 1, asking the client to heartbeat now",
    "latency": "answer heartbeats late, as a slow link would; params: seconds (default 0.25; 0 ends it)",
    "delay_hello": "delay HELLO on the next new connections; params: seconds (default 2), count (default 1)",
    "refuse": "refuse new connections (HTTP 503); params: seconds (default 2)",
    "outage": "drop every connection and refuse new ones; params: seconds (default 1)",
}

#: Relative weights of the generated traffic.
DEFAULT_EVENT_MIX: dict[str, float] = {
    "MESSAGE_CREATE": 5.0,
    "PRESENCE_UPDATE": 3.0,
    "TYPING_START": 2.0,
    "MESSAGE_REACTION_ADD": 1.5,
    "GUILD_MEMBER_ADD": 0.5,
    "DM_MESSAGE_CREATE": 0.5,
    # Guild state changes, a few percent of the traffic together (as on Discord, where member updates
    # are the common ones and channel/role/guild edits are rare).
    "GUILD_MEMBER_UPDATE": 0.2,
    "GUILD_MEMBER_REMOVE": 0.15,
    "CHANNEL_CREATE": 0.04,
    "CHANNEL_UPDATE": 0.05,
    "CHANNEL_DELETE": 0.03,
    "GUILD_ROLE_CREATE": 0.03,
    "GUILD_ROLE_UPDATE": 0.04,
    "GUILD_ROLE_DELETE": 0.02,
    "GUILD_UPDATE": 0.02,
}


@dataclass(slots=True)
class ScheduledFault:
    """A fault fired every ``every`` seconds, on ``shard`` or on a random live shard when None.

    ``kind`` is one of :data:`FAULT_KINDS`, or ``"random"`` to pick one of
    ``choices`` (or of all transient kinds) each time.
    """

    kind: str
    every: float
    shard: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    choices: tuple[str, ...] = ()


@dataclass(slots=True)
class SandboxSettings:
    guilds: int = 100
    #: Shard count /gateway/bot recommends.
    shards: int = 4
    max_concurrency: int = 1
    #: Seconds one identify bucket stays used (Discord: 5 s).
    identify_window: float = IDENTIFY_WINDOW_SECONDS
    heartbeat_interval_ms: int = DEFAULT_HEARTBEAT_INTERVAL_MS
    #: Seconds a session survives after its connection went away without a 1000/1001 close.
    resume_window: float = 180.0
    #: Generated dispatches per second across all shards (0 = none after the guild burst).
    event_rate: float = 5.0
    session_start_total: int = 1000
    #: Privileged intent names the "developer portal" has enabled (e.g. ["guild_members"]).
    privileged_intents: list[str] = field(default_factory=list)
    #: A fixed bot token; None = generate one at start.
    token: str | None = field(default=None, repr=False)
    faults: list[ScheduledFault] = field(default_factory=list)
    #: Seed of the world (guild ids, names, members) and of the traffic; None = random.
    seed: int | None = None
    #: Seconds to wait before sending HELLO on every new connection.
    hello_delay: float = 0.0
    event_mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_MIX))
    #: Users in each generated guild besides the bot.
    members_per_guild: int = 12
    #: Discord's large-bot rule: the shard count must be a multiple of this (None = any count).
    shard_multiple: int | None = None
    max_guilds_per_shard: int = MAX_GUILDS_PER_SHARD
    commands_per_window: int = COMMANDS_PER_WINDOW
    command_window: float = COMMAND_WINDOW_SECONDS
    #: A session whose client misses heartbeats for this many intervals is closed with 4000
    #: (resumable); None disables the check.
    heartbeat_timeout_factor: float | None = 2.0
    #: Seconds between server-sent op 1 requests (None = never).
    server_heartbeat_request_every: float | None = None
    #: Like Discord, drop a connection that is still open this many seconds after op 7 (None = never).
    reconnect_drop_after: float | None = 5.0
    #: Seconds between two all-member op 8 requests for the same guild (else RATE_LIMITED).
    member_request_cooldown: float = 30.0
    #: Dispatches kept per session for RESUME; older ones make a resume from before them fail (4007).
    replay_buffer_size: int = 50_000
    #: Close timeout when the sandbox closes a socket itself.
    close_timeout: float = 1.0

    def __post_init__(self) -> None:
        problems = []
        if self.guilds < 0:
            problems.append(f"guilds must be >= 0, got {self.guilds}")
        if self.shards < 1:
            problems.append(f"shards must be >= 1, got {self.shards}")
        if self.max_concurrency < 1:
            problems.append(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.identify_window < 0:
            problems.append(f"identify_window must be >= 0, got {self.identify_window}")
        if self.heartbeat_interval_ms < 1:
            problems.append(f"heartbeat_interval_ms must be >= 1, got {self.heartbeat_interval_ms}")
        if self.event_rate < 0:
            problems.append(f"event_rate must be >= 0, got {self.event_rate}")
        if self.session_start_total < 0:
            problems.append(f"session_start_total must be >= 0, got {self.session_start_total}")
        if self.resume_window < 0:
            problems.append(f"resume_window must be >= 0, got {self.resume_window}")
        if problems:
            raise ValueError("invalid sandbox settings: " + "; ".join(problems))

    @classmethod
    def from_config(cls, cfg: SandboxSettings, **overrides: Any) -> SandboxSettings:
        """A copy of ``cfg`` (``Config.sandbox``, the ``[sandbox]`` section) with ``overrides``; the
        copy's lists and fault rules are its own, so the running sandbox never shares them with config."""
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown sandbox setting(s): {', '.join(sorted(unknown))}")
        copies: dict[str, Any] = {
            "privileged_intents": list(cfg.privileged_intents),
            "faults": [replace(rule, params=dict(rule.params)) for rule in cfg.faults],
            "event_mix": dict(cfg.event_mix),
        }
        return replace(cfg, **{**copies, **overrides})
