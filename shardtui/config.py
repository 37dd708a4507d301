"""shards.toml: typed configuration.

The dataclasses below are the contract other modules read. Loading, validation and CLI overrides
live in this module too (owned by the foundation work).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["sandbox", "discord"]
Compression = Literal["zstd-stream", "zlib-stream", "none"]


@dataclass(slots=True)
class BotConfig:
    #: Name of the environment variable holding the token (the token itself is never in the file).
    token_env: str = "DISCORD_TOKEN"
    #: Intent names, or ["default"].
    intents: list[str] = field(default_factory=lambda: ["default"])
    #: Optional "module:callable" receiving every Dispatch.
    event_handler: str | None = None


@dataclass(slots=True)
class GatewayConfig:
    mode: Mode = "sandbox"
    #: Total shard count, or None for "auto" (from /gateway/bot).
    shards: int | None = None
    #: This process's shard range, first..last inclusive; None = all shards.
    shard_range: tuple[int, int] | None = None
    compression: Compression = "zstd-stream"
    large_threshold: int = 250
    #: REST base for mode = "discord"; for mode = "sandbox", a running sandbox's REST url or None to embed one.
    rest_url: str | None = None
    #: Persisted sessions for zero-downtime restarts; None = off.
    state_file: str | None = None


@dataclass(slots=True)
class PresenceConfig:
    status: str = "online"
    #: "playing" | "streaming" | "listening" | "watching" | "custom" | "competing" | None
    activity_type: str | None = "watching"
    activity_name: str | None = "the shards"
    activity_state: str | None = None
    activity_url: str | None = None


@dataclass(slots=True)
class FaultRule:
    """A scheduled sandbox fault: ``kind`` every ``every`` seconds (on a random shard unless ``shard``)."""

    kind: str
    every: float
    shard: int | None = None


@dataclass(slots=True)
class SandboxConfig:
    guilds: int = 100
    #: Shard count /gateway/bot recommends.
    shards: int = 4
    max_concurrency: int = 1
    identify_window: float = 5.0
    heartbeat_interval_ms: int = 41_250
    #: Seconds a dropped session stays resumable.
    resume_window: float = 180.0
    #: Dispatches per second across all shards (0 = none after the guild burst).
    event_rate: float = 5.0
    session_start_total: int = 1000
    #: Privileged intents the sandbox's "developer portal" has enabled.
    privileged_intents: list[str] = field(default_factory=list)
    #: A fixed token; None = generate one at start.
    token: str | None = None
    faults: list[FaultRule] = field(default_factory=list)


@dataclass(slots=True)
class UiConfig:
    theme: str = "shardtui-dark"
    #: Seconds between table flushes.
    refresh_interval: float = 1.0


@dataclass(slots=True)
class Config:
    bot: BotConfig = field(default_factory=BotConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    ui: UiConfig = field(default_factory=UiConfig)
    #: Where the config came from (a path, or "<defaults>").
    source: str = "<defaults>"
