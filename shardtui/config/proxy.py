"""``[proxy]`` (issue #16): the gateway proxy bots connect to. Its dataclass, key table and checks."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from yarl import URL

from shardtui.config.errors import ConfigError, describe
from shardtui.config.parsers import (
    KeyContext,
    Parser,
    parse_bool,
    parse_float,
    parse_listen_address,
    parse_optional_str,
    ranged_int,
)

if TYPE_CHECKING:
    from shardtui.config.model import Config


@dataclass(slots=True)
class ProxyConfig:
    #: "HOST:PORT" where bots connect (gateway WebSocket + REST); None = no proxy.
    listen: str | None = None
    #: Allow a non-loopback ``listen`` (bots on other hosts; anyone who can reach it may try tokens).
    allow_remote: bool = False
    #: The ws:// or wss:// URL bots are told to connect to (a TLS front end, a DNS name); None: the
    #: bound address, or for a wildcard listen the Host each bot's request named.
    public_url: str | None = None
    #: Name of an environment variable holding a separate client token bot code uses instead of the real one.
    client_token_env: str | None = None
    #: Per client: unsent events / bytes before it is cut with a resumable close; also its replay buffer.
    max_backlog_events: int = 10_000
    max_backlog_bytes: int = 32 * 1024 * 1024
    #: Seconds a client session without a socket stays resumable.
    resume_window: float = 120.0
    #: Client sessions kept at most (the oldest detached ones are dropped first).
    max_sessions: int = 1_000
    #: Keep members / presences in the cache a late client's GUILD_CREATEs are built from.
    cache_members: bool = True
    cache_presences: bool = True
    #: Hold each client's heartbeat ACK for its upstream shard's measured latency, so a bot's own
    #: latency figure is the shard's real one instead of the loopback hop to the proxy.
    hold_heartbeat_ack: bool = False


PROXY_SCHEMA: dict[str, Parser] = {
    "listen": parse_listen_address,
    "allow_remote": parse_bool,
    "public_url": lambda v, c: parse_public_url(v, c),
    "client_token_env": parse_optional_str,
    "max_backlog_events": ranged_int(1, 10_000_000),
    "max_backlog_bytes": ranged_int(1024, 1 << 34),
    "resume_window": lambda v, c: parse_float(v, c, lo=1.0, hi=86_400.0),
    "max_sessions": ranged_int(1, 1_000_000),
    "cache_members": parse_bool,
    "cache_presences": parse_bool,
    "hold_heartbeat_ack": parse_bool,
}


def parse_public_url(value: object, ctx: KeyContext) -> str | None:
    """A ws:// or wss:// URL with a host and no query (clients append their own ``?v=10&...``)."""
    text = parse_optional_str(value, ctx)
    if text is None:
        return None
    text = text.strip()
    try:
        url = URL(text)
    except ValueError:
        url = None
    if url is None or url.scheme not in ("ws", "wss") or not url.host or url.query_string or url.fragment:
        raise ctx.error('a ws:// or wss:// URL without a query (e.g. "wss://gateway.example.com")', value)
    return text


def is_loopback_host(host: str) -> bool:
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host == "localhost" or host.startswith("127.") or host == "::1"


def validate_proxy(config: Config, environ: Mapping[str, str], where: Callable[..., str]) -> None:
    """A non-loopback ``listen`` needs ``allow_remote``; a named client token variable must be set."""
    proxy = config.proxy
    if proxy.listen is None:
        return
    if not proxy.allow_remote and not is_loopback_host(proxy.listen.rpartition(":")[0]):
        raise ConfigError(
            where("proxy.listen"),
            "proxy.listen",
            "a loopback address (127.0.0.1, ::1) unless proxy.allow_remote = true",
            describe(proxy.listen),
            hint="bots on other hosts can reach a non-loopback proxy; set allow_remote to allow it",
        )
    name = proxy.client_token_env
    if name is not None and not environ.get(name, "").strip():
        raise ConfigError(
            where("proxy.client_token_env"),
            "proxy.client_token_env",
            f"the client token in environment variable {name}",
            f"{name} {'empty' if name in environ else 'unset'}",
        )


def proxy_client_token(config: Config, environ: Mapping[str, str] | None = None) -> str | None:
    """The client token ``[proxy] client_token_env`` names, or None."""
    name = config.proxy.client_token_env
    if name is None:
        return None
    value = (os.environ if environ is None else environ).get(name, "").strip()
    return value or None
