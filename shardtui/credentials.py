"""The bot token a run connects with, and where it is read from. The token itself is never shown."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Protocol

from shardtui.config.errors import ConfigError, where_of
from shardtui.config.model import Config


class TokenHolder(Protocol):
    """What ``resolve_token`` needs of a running sandbox (``shardtui.sandbox.Sandbox``)."""

    @property
    def token(self) -> str: ...


def resolve_token(
    config: Config, sandbox: TokenHolder | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """The bot token to connect with.

    Embedded sandbox: its token. Sandbox at ``gateway.rest_url``: ``[sandbox] token`` or the token
    variable. Discord: the variable named by ``bot.token_env``. Raises ``ConfigError`` if there is none.
    """
    environ = os.environ if environ is None else environ
    if config.gateway.mode == "sandbox":
        if sandbox is not None:
            return str(sandbox.token)
        if config.sandbox.token:
            return config.sandbox.token
    name = config.bot.token_env
    token = environ.get(name, "").strip()
    if token:
        return token
    where = where_of(config.provenance.get("gateway.rest_url", config.source))
    if config.gateway.mode == "sandbox":
        raise ConfigError(
            where,
            "sandbox.token",
            f"the token of the sandbox at {config.gateway.rest_url} in [sandbox] token or {name}",
            "neither set",
        )
    raise ConfigError(
        where_of(config.provenance.get("gateway.mode", config.source)),
        "bot.token_env",
        f'the bot token in environment variable {name} (gateway.mode = "discord")',
        f"{name} {'empty' if name in environ else 'unset'}",
    )
