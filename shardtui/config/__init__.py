"""shards.toml: typed configuration.

    model     the dataclasses other modules read (``Config`` and its sections)
    errors    ``ConfigError`` and how problems are worded
    parsers   one value to its typed form (durations, addresses, shard ranges, intents...)
    schema    the key table: every section and key with its parser, ``[cluster]`` included
    faults    ``[[sandbox.faults]]`` tables
    cluster   ``ClusterConfig``: a process's place in a Redis fleet (no redis import here)
    sources   defaults < file < ``SHARDTUI_*`` variables < flags, with provenance; ``load_config``
    validate  rules across keys
    render    ``--print-config``

Layering: config imports the gateway's protocol and value types and the sandbox's settings; the fleet
imports config, never the reverse. Loading a config imports neither redis nor the sandbox's server.
"""

from __future__ import annotations

from typing import Any

from shardtui.config.cluster import ClusterConfig, default_process_name, describe_redis_url
from shardtui.config.errors import ConfigError, describe, did_you_mean, where_of
from shardtui.config.model import (
    DEFAULT_SOURCE,
    DISCORD_REST_URL,
    BotConfig,
    Config,
    FaultRule,
    GatewayConfig,
    HealthConfig,
    MetricsConfig,
    PresenceConfig,
    SandboxConfig,
    UiConfig,
)
from shardtui.config.proxy import ProxyConfig, proxy_client_token
from shardtui.config.render import format_config
from shardtui.config.schema import (
    ACTIVITY_TYPES,
    CLUSTER_KEYS,
    COMPRESSIONS,
    KEYS,
    LARGE_THRESHOLD_RANGE,
    MODES,
    SECTIONS,
    STATUSES,
    Compression,
    Mode,
    parse_cluster_config,
)
from shardtui.config.sources import (
    ENV_PREFIX,
    env_var_for,
    find_default_config,
    load_config,
    read_toml,
    unknown_environment,
)
from shardtui.sandbox.settings import SandboxSettings, ScheduledFault

__all__ = [
    "ACTIVITY_TYPES",
    "CLUSTER_KEYS",
    "COMPRESSIONS",
    "DEFAULT_SOURCE",
    "DISCORD_REST_URL",
    "ENV_PREFIX",
    "KEYS",
    "LARGE_THRESHOLD_RANGE",
    "MODES",
    "SECTIONS",
    "STATUSES",
    "BotConfig",
    "ClusterConfig",
    "Compression",
    "Config",
    "ConfigError",
    "FaultRule",
    "GatewayConfig",
    "HealthConfig",
    "MetricsConfig",
    "Mode",
    "PresenceConfig",
    "ProxyConfig",
    "SandboxConfig",
    "SandboxSettings",
    "ScheduledFault",
    "UiConfig",
    "default_process_name",
    "describe",
    "describe_redis_url",
    "did_you_mean",
    "env_var_for",
    "find_default_config",
    "format_config",
    "load_config",
    "parse_cluster_config",
    "proxy_client_token",
    "read_toml",
    "unknown_environment",
    "where_of",
]


def __getattr__(name: str) -> Any:
    # resolve_token moved to shardtui.credentials (which imports this package, so it cannot be
    # imported here eagerly); the old spelling keeps working for code written against it.
    if name == "resolve_token":
        from shardtui.credentials import resolve_token

        return resolve_token
    raise AttributeError(f"module 'shardtui.config' has no attribute {name!r}")
