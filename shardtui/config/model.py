"""The typed configuration: one dataclass per section of shards.toml, the contract other modules read.

``[sandbox]`` is the sandbox's own ``SandboxSettings`` (its defaults are the config's defaults) and
``[cluster]`` a ``ClusterConfig``; the other sections are defined here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shardtui.config.cluster import ClusterConfig
from shardtui.config.faults import fault_as_table
from shardtui.config.proxy import ProxyConfig
from shardtui.config.schema import SCHEMA, SECTIONS, Compression, Mode
from shardtui.gateway.models import Presence
from shardtui.gateway.protocol import GatewayIntents
from shardtui.sandbox.settings import SandboxSettings, ScheduledFault

DISCORD_REST_URL = "https://discord.com/api/v10"
#: The provenance of a value nobody set.
DEFAULT_SOURCE = "default"

#: Names the sandbox section's types had while config kept copies of them.
SandboxConfig = SandboxSettings
FaultRule = ScheduledFault


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
    #: REST base for mode = "discord"; for mode = "sandbox", a running sandbox's REST url, None = embed one.
    rest_url: str | None = None
    #: Persisted sessions for zero-downtime restarts; None = off.
    state_file: str | None = None
    #: Saved sessions older than this many seconds identify instead of resuming; None = the library's default.
    state_max_age: float | None = None
    #: Seconds per identify bucket slot; None = Discord's 5 s (or the embedded sandbox's own window).
    identify_window: float | None = None
    #: PEM file of CA certificates to trust for https:// REST and wss:// gateway; None = the system store.
    ca_file: str | None = None


@dataclass(slots=True)
class PresenceConfig:
    status: str = "online"
    #: "playing" | "streaming" | "listening" | "watching" | "custom" | "competing" | None
    activity_type: str | None = "watching"
    activity_name: str | None = "the shards"
    activity_state: str | None = None
    activity_url: str | None = None


@dataclass(slots=True)
class UiConfig:
    theme: str = "shardtui-dark"
    #: Seconds between table flushes.
    refresh_interval: float = 1.0
    #: Hide every mutating action (restart, shutdown, boot, presence).
    readonly: bool = False
    #: Fleet console: watch every shard of every ``[cluster]`` process through Redis, run none here.
    fleet: bool = False
    #: Ring the terminal bell when an alert is raised (not when it clears).
    bell: bool = False


@dataclass(slots=True)
class MetricsConfig:
    #: "HOST:PORT" serving Prometheus text on /metrics; None = no metrics endpoint.
    listen: str | None = None


@dataclass(slots=True)
class HealthConfig:
    #: Seconds of silence (while peers receive) before a connected shard reads "wedged"; None = 60.
    wedged_after: float | None = None
    #: Restart a wedged shard by itself (resume first, with backoff, within the identify budget).
    restart_wedged: bool = False
    #: Seconds every running shard must stay down before it is an outage alert (0 = at once).
    outage_after: float = 10.0


@dataclass(slots=True)
class Config:
    bot: BotConfig = field(default_factory=BotConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    ui: UiConfig = field(default_factory=UiConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    #: Where the config came from (a path, or "<defaults>").
    source: str = "<defaults>"
    #: Dotted key -> where its value came from: "default", a file path, "--flag" or "env NAME".
    provenance: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    #: ``[cluster]`` (a multi-process fleet), or None: one process.
    cluster: ClusterConfig | None = None

    def intents(self) -> GatewayIntents:
        return GatewayIntents.from_names(self.bot.intents)

    def initial_presence(self) -> Presence:
        """``[presence]`` as the library's ``Presence`` (a method named ``presence`` would shadow the
        ``presence`` section field)."""
        p = self.presence
        return Presence.build(
            p.status, p.activity_type, p.activity_name or "", p.activity_state, p.activity_url
        )

    def shard_total(self) -> int | None:
        """The shard total this config leads to, when known before connecting: explicit, else the
        embedded sandbox's recommendation, else None (``/gateway/bot`` decides)."""
        if self.gateway.shards is not None:
            return self.gateway.shards
        if self.embeds_sandbox():
            return self.sandbox.shards
        return None

    def embeds_sandbox(self) -> bool:
        return self.gateway.mode == "sandbox" and self.gateway.rest_url is None

    def values(self) -> dict[str, Any]:
        """Every leaf value by dotted key (secrets shown as set/unset, never their value)."""
        out: dict[str, Any] = {}
        for section in SECTIONS:
            obj = getattr(self, section)
            for key in SCHEMA[section]:
                value = getattr(obj, key)
                if (section, key) == ("sandbox", "token"):
                    value = None if value is None else "<set>"
                elif key == "faults":
                    value = [fault_as_table(rule) for rule in value]
                out[f"{section}.{key}"] = value
        return out
