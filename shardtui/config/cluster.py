"""``[cluster]``: what a process needs to join a fleet coordinated through Redis.

Without a ``[cluster]`` table nothing changes: one process, in-memory coordination, no Redis. This
module is only the settings: ``shardtui.fleet`` reads them (and alone imports the redis package).
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

_NAME_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")


def default_process_name() -> str:
    """``host-pid``: unique on a machine and readable in the console's process column."""
    return f"{socket.gethostname().split('.')[0]}-{os.getpid()}"


def describe_redis_url(url: str) -> str:
    """``redis://host:port/db`` without user or password: safe for logs, banners and errors."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    port = parts.port or 6379
    db = parts.path if parts.path not in ("", "/") else ""
    return f"{parts.scheme}://{host}:{port}{db}"


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """One process's membership in a fleet."""

    #: May carry a password, so it is kept out of the repr; show ``describe_redis_url(...)`` instead.
    redis_url: str = field(repr=False)
    #: This process's name: the owner shown for its shards and the address commands are sent to.
    name: str = field(default_factory=default_process_name)
    #: Fleet name: every Redis key lives under it, so two bots can share one Redis.
    cluster: str = "shardtui"
    #: First..last shard this process runs (inclusive); None = as ``[gateway] shard_range`` says.
    shard_range: tuple[int, int] | None = None
    #: Seconds between state publications (each one refreshes the process heartbeat).
    heartbeat_interval: float = 1.0
    #: Seconds after the last heartbeat before the process and its shards count as lost.
    heartbeat_ttl: float = 5.0
    #: Seconds a sender waits for the owning process to acknowledge a command.
    command_timeout: float = 5.0

    def __post_init__(self) -> None:
        scheme = urlsplit(self.redis_url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                f"redis_url must start with redis://, rediss:// or unix://, got {scheme or 'none'}"
            )
        if not _NAME_RE.match(self.name):
            raise ValueError(f"process name must be 1-64 of A-Z a-z 0-9 _ . : @ -, got {self.name!r}")
        if not _NAME_RE.match(self.cluster):
            raise ValueError(f"cluster name must be 1-64 of A-Z a-z 0-9 _ . : @ -, got {self.cluster!r}")
        if self.shard_range is not None:
            first, last = self.shard_range
            if first < 0 or last < first:
                raise ValueError(
                    f"shard_range must be first..last with 0 <= first <= last, got {self.shard_range}"
                )
        if self.heartbeat_interval <= 0:
            raise ValueError(f"heartbeat_interval must be positive, got {self.heartbeat_interval}")
        if self.heartbeat_ttl <= self.heartbeat_interval:
            raise ValueError(
                f"heartbeat_ttl ({self.heartbeat_ttl}) must be longer than heartbeat_interval "
                f"({self.heartbeat_interval}), or a live process would flicker as lost"
            )
        if self.command_timeout <= 0:
            raise ValueError(f"command_timeout must be positive, got {self.command_timeout}")
