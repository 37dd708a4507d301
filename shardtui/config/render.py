"""``--print-config``: one line per key, its value (TOML-ish) and where it came from."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from shardtui.config.cluster import describe_redis_url
from shardtui.config.model import DEFAULT_SOURCE, Config
from shardtui.config.schema import CLUSTER_KEYS

#: How --print-config shows an unset value where "none" would mislead.
_NONE_WORDS = {"gateway.shards": "auto", "gateway.shard_range": "all", "presence.activity_type": "none"}


def format_config(config: Config, environ: Mapping[str, str] | None = None) -> str:
    """``--print-config``: one line per key, its value (TOML-ish) and where it came from."""
    environ = os.environ if environ is None else environ
    values = config.values()
    if config.cluster is not None:
        # [cluster] is a table like the others: one line per key (the Redis URL without its password).
        for key in CLUSTER_KEYS:
            value = getattr(config.cluster, key)
            values[f"cluster.{key}"] = describe_redis_url(value) if key == "redis_url" else value
    width = max(len(k) for k in values)
    lines = [f"# config: {config.source}"]
    for key, value in values.items():
        if value is None and key in _NONE_WORDS:
            value = _NONE_WORDS[key]
        lines.append(
            f"{key:<{width}} = {_toml_value(value):<28} # {config.provenance.get(key, DEFAULT_SOURCE)}"
        )
    name = config.bot.token_env
    state = "set" if environ.get(name, "").strip() else "unset"
    lines.append(f"# bot token: environment variable {name} is {state} (its value is never shown)")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        return f'"{value[0]}-{value[1]}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)
