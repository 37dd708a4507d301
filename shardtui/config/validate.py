"""Rules that involve more than one key, checked once every source has been applied."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from shardtui.config.errors import ConfigError, describe, where_of
from shardtui.config.model import DEFAULT_SOURCE, Config
from shardtui.config.proxy import validate_proxy
from shardtui.gateway.protocol import IDENTIFY_WINDOW_SECONDS


def validate(config: Config, environ: Mapping[str, str], *, check_token: bool) -> None:
    """Raise the ``ConfigError`` for the first cross-key rule ``config`` breaks."""
    gw = config.gateway

    def where(*keys: str) -> str:
        # Name the first of ``keys`` that was set somewhere, so the error points at a line to edit.
        for key in keys:
            if config.provenance[key] != DEFAULT_SOURCE:
                return where_of(config.provenance[key])
        return config.source

    if gw.shard_range is not None:
        total = config.shard_total()
        if total is not None:
            first, last = gw.shard_range
            if last > total - 1:
                by = "gateway.shards" if gw.shards is not None else "sandbox.shards"
                raise ConfigError(
                    where("gateway.shard_range"),
                    "gateway.shard_range",
                    f"shard ids within 0..{total - 1} ({by} = {total})",
                    f"{first}-{last}",
                )
    cluster_range = config.cluster.shard_range if config.cluster is not None else None
    if cluster_range is not None:
        total = config.shard_total()
        first, last = cluster_range
        if total is not None and last > total - 1:
            by = "gateway.shards" if gw.shards is not None else "sandbox.shards"
            raise ConfigError(
                where_of(config.provenance.get("cluster", config.source)),
                "cluster.shard_range",
                f"shard ids within 0..{total - 1} ({by} = {total})",
                f"{first}-{last}",
            )
    _check_identify_window(config, where)
    _check_theme(config, where)
    if config.ui.fleet and config.cluster is None:
        raise ConfigError(
            where("ui.fleet"),
            "ui.fleet",
            "a [cluster] table with the fleet's redis_url (the fleet console reads it from Redis)",
            "no [cluster]",
        )
    _check_presence(config, where)
    validate_proxy(config, environ, where)
    if check_token and gw.mode == "discord":
        name = config.bot.token_env
        if not environ.get(name, "").strip():
            raise ConfigError(
                where("gateway.mode", "bot.token_env"),
                "bot.token_env",
                f'the bot token in environment variable {name} (gateway.mode = "discord")',
                f"{name} {'empty' if name in environ else 'unset'}",
            )


def _check_presence(config: Config, where: Callable[..., str]) -> None:
    if config.presence.activity_type is None:
        for key in ("activity_state", "activity_url"):
            if getattr(config.presence, key) is not None:
                raise ConfigError(
                    where(f"presence.{key}"),
                    f"presence.{key}",
                    "no value while presence.activity_type is none",
                    describe(getattr(config.presence, key)),
                )
    try:
        config.initial_presence().validate()
    except ValueError as exc:
        message = str(exc)
        key = "activity_name"
        if "url" in message:
            key = "activity_url"
        elif "custom" in message or "state" in message:
            key = "activity_state"
        value = getattr(config.presence, key)
        raise ConfigError(
            where(f"presence.{key}", "presence.activity_type", "presence.activity_name"),
            f"presence.{key}",
            f"a valid presence for a {config.presence.activity_type} activity ({message})",
            "nothing" if value is None else describe(value),
        ) from None


def _check_theme(config: Config, where: Callable[..., str]) -> None:
    """A theme name no theme file declares is a typo, refused like any bad value. A file path is only
    read by the console (a file it cannot use is a notification there, and the default theme)."""
    from shardtui.tui.theme_names import is_theme_path, theme_names

    choice = config.ui.theme.strip()
    if not choice or is_theme_path(choice):
        return
    names = theme_names()
    if choice not in names:
        raise ConfigError(
            where("ui.theme"),
            "ui.theme",
            f"one of {', '.join(sorted(names))} or a path to a theme file",
            repr(choice),
        )


def _check_identify_window(config: Config, where: Callable[..., str]) -> None:
    """The client's identify window against the server's, where the server's is known: a shorter one
    has identifies refused (op 9) and spends session starts from the daily budget on every retry."""
    window = config.gateway.identify_window
    if window is None:
        return
    if config.embeds_sandbox():
        source = config.provenance["sandbox.identify_window"]
        if source == DEFAULT_SOURCE:
            # The embedded sandbox is this run's Discord: it keeps the pace its client is told to keep.
            config.sandbox.identify_window = window
            config.provenance["sandbox.identify_window"] = (
                f"{config.provenance['gateway.identify_window']} (gateway.identify_window)"
            )
        elif window < config.sandbox.identify_window:
            raise ConfigError(
                where("gateway.identify_window"),
                "gateway.identify_window",
                f"at least the embedded sandbox's window, sandbox.identify_window = "
                f"{config.sandbox.identify_window:g} s (from {where_of(source)})",
                f"{window:g} s",
                hint="sooner identifies are refused with op 9; set the two alike, or leave "
                "gateway.identify_window unset to use the sandbox's",
            )
    elif (
        config.gateway.mode == "discord"
        and config.gateway.rest_url is None
        and window < IDENTIFY_WINDOW_SECONDS
    ):
        raise ConfigError(
            where("gateway.identify_window"),
            "gateway.identify_window",
            f"at least Discord's {IDENTIFY_WINDOW_SECONDS:g} s (one IDENTIFY per bucket per window)",
            f"{window:g} s",
            hint="sooner identifies are refused with op 9 and spend session starts; leave it unset",
        )
