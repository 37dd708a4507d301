"""The key table: every section of shards.toml, its keys in file order, and the parser of each value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args

from shardtui.config.cluster import ClusterConfig
from shardtui.config.errors import ConfigError, describe, did_you_mean
from shardtui.config.faults import parse_faults
from shardtui.config.parsers import (
    KeyContext,
    Parser,
    non_negative_float,
    optional_positive_float,
    parse_bool,
    parse_choice,
    parse_env_name,
    parse_float,
    parse_handler_spec,
    parse_http_url,
    parse_intents,
    parse_listen_address,
    parse_optional_choice,
    parse_optional_str,
    parse_positive_seconds,
    parse_privileged_intents,
    parse_shard_count,
    parse_shard_range,
    parse_str,
    parse_trimmed_str,
    positive_float,
    ranged_int,
)
from shardtui.config.proxy import PROXY_SCHEMA

Mode = Literal["sandbox", "discord"]
Compression = Literal["zstd-stream", "zlib-stream", "none"]

MODES: tuple[str, ...] = get_args(Mode)
COMPRESSIONS: tuple[str, ...] = get_args(Compression)
STATUSES: tuple[str, ...] = ("online", "idle", "dnd", "invisible", "offline")
ACTIVITY_TYPES: tuple[str, ...] = ("playing", "streaming", "listening", "watching", "custom", "competing")
LARGE_THRESHOLD_RANGE = (50, 250)

SCHEMA: dict[str, dict[str, Parser]] = {
    "bot": {
        "token_env": parse_env_name,
        "intents": parse_intents,
        "event_handler": parse_handler_spec,
    },
    "gateway": {
        "mode": lambda v, c: parse_choice(v, c, MODES),
        "shards": parse_shard_count,
        "shard_range": parse_shard_range,
        "compression": lambda v, c: parse_choice(v, c, COMPRESSIONS),
        "large_threshold": ranged_int(*LARGE_THRESHOLD_RANGE),
        "rest_url": parse_http_url,
        "state_file": parse_optional_str,
        "state_max_age": optional_positive_float,
        "identify_window": optional_positive_float,
        "ca_file": parse_optional_str,
    },
    "presence": {
        "status": lambda v, c: parse_choice(v, c, STATUSES),
        "activity_type": lambda v, c: parse_optional_choice(v, c, ACTIVITY_TYPES),
        "activity_name": parse_optional_str,
        "activity_state": parse_optional_str,
        "activity_url": parse_optional_str,
    },
    # The keys of shardtui.sandbox.SandboxSettings an operator sets; the rest keep the sandbox's defaults.
    "sandbox": {
        "guilds": ranged_int(0, 1_000_000),
        "shards": ranged_int(1, 100_000),
        "max_concurrency": ranged_int(1, 1024),
        "identify_window": positive_float,
        "heartbeat_interval_ms": ranged_int(1, 3_600_000),
        "resume_window": lambda v, c: parse_float(v, c, lo=0.0),
        "event_rate": lambda v, c: parse_float(v, c, lo=0.0, hi=100_000.0),
        "session_start_total": ranged_int(1, 1_000_000),
        "privileged_intents": parse_privileged_intents,
        "token": parse_optional_str,
        "faults": parse_faults,
    },
    "ui": {
        "theme": parse_str,
        "refresh_interval": positive_float,
        "readonly": parse_bool,
        "fleet": parse_bool,
        "bell": parse_bool,
    },
    "metrics": {
        "listen": parse_listen_address,
    },
    "health": {
        "wedged_after": optional_positive_float,
        "restart_wedged": parse_bool,
        "outage_after": non_negative_float,
    },
    "proxy": PROXY_SCHEMA,
}
#: The sections set key by key (from the file, variables and flags); ``[cluster]`` is set as a whole.
SECTIONS: tuple[str, ...] = tuple(SCHEMA)
KEYS: tuple[str, ...] = tuple(f"{s}.{k}" for s, keys in SCHEMA.items() for k in keys)

#: ``[cluster]``, from the config file only: each fleet process's own flags come from ``[gateway]``.
CLUSTER_SCHEMA: dict[str, Parser] = {
    "redis_url": parse_trimmed_str,
    "name": parse_trimmed_str,
    "cluster": parse_trimmed_str,
    "shard_range": lambda v, c: parse_shard_range(v, c, example="0-7"),
    "heartbeat_interval": parse_positive_seconds,
    "heartbeat_ttl": parse_positive_seconds,
    "command_timeout": parse_positive_seconds,
}
#: Keys ``[cluster]`` accepts, for error messages.
CLUSTER_KEYS: tuple[str, ...] = tuple(CLUSTER_SCHEMA)


def parse_cluster_config(table: Mapping[str, Any] | None, where: str = "<config>") -> ClusterConfig | None:
    """Read a TOML ``[cluster]`` table; None when it is absent. Raises ``ConfigError`` naming the key."""
    if table is None:
        return None
    if not isinstance(table, Mapping):
        raise ConfigError(where, "cluster", "a table", describe(table))
    for key in table:
        if key not in CLUSTER_SCHEMA:
            raise ConfigError(
                where,
                f"cluster.{key}",
                "a key of [cluster] (" + ", ".join(CLUSTER_KEYS) + ")",
                f'unknown key "{key}"',
                hint=did_you_mean(key, CLUSTER_KEYS),
            )
    if "redis_url" not in table:
        raise ConfigError(
            where, "cluster.redis_url", 'a Redis URL such as "redis://127.0.0.1:6379/0"', "none"
        )
    kwargs = {
        key: parse(table[key], KeyContext(where, f"cluster.{key}", False))
        for key, parse in CLUSTER_SCHEMA.items()
        if key in table
    }
    try:
        return ClusterConfig(**kwargs)
    except ValueError as exc:
        raise ConfigError(where, "cluster", message=str(exc)) from None
