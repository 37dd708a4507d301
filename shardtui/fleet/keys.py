"""Redis key names of one fleet, and the connection errors that mean "Redis is not there".

Every key carries the fleet name as a hash tag (``{name}``) so a Redis Cluster keeps a fleet's
keys in one slot, which the identify script needs (it touches a bucket key and the budget key).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: Errors that say Redis cannot be reached right now (as opposed to Redis refusing a command).
UNREACHABLE_ERRORS: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)


def describe_redis_error(exc: BaseException) -> str:
    """One short line about a Redis failure (never the URL's password: redis-py does not put it there)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True, slots=True)
class FleetKeys:
    cluster: str

    @property
    def base(self) -> str:
        return f"shardtui:{{{self.cluster}}}"

    def bucket(self, bucket: int) -> str:
        """Set for one identify window after a grant (PX expiry: a crashed holder frees it by itself)."""
        return f"{self.base}:gate:bucket:{bucket}"

    @property
    def budget(self) -> str:
        """Hash: remaining, total, reset_at (ms since the epoch, Redis clock)."""
        return f"{self.base}:gate:budget"

    @property
    def processes(self) -> str:
        """Hash: process name -> JSON facts about the process (pid, host, range, started_at)."""
        return f"{self.base}:procs"

    def heartbeat(self, process: str) -> str:
        """The process's liveness: exists while it keeps refreshing it (PX = heartbeat ttl)."""
        return f"{self.base}:hb:{process}"

    def shards(self, process: str) -> str:
        """Hash: shard id -> JSON ``ShardRunnerInfo.to_dict()`` as the process last published it."""
        return f"{self.base}:shards:{process}"

    def commands(self, process: str) -> str:
        """Stream of commands for the process."""
        return f"{self.base}:cmd:{process}"

    def ack(self, command_id: str) -> str:
        """List the owner pushes its acknowledgement onto; the sender BLPOPs it."""
        return f"{self.base}:ack:{command_id}"
