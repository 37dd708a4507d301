"""The identify gate: the one place that decides when a shard may send IDENTIFY.

Every IDENTIFY — first start, re-identify after op 9 or 4009, forced restart — waits on the gate, so
Discord's rule (one identify per bucket ``shard_id % max_concurrency`` per window, and no more session
starts than ``session_start_limit.remaining``) is kept in one place. Implementations are swappable:
in-memory for one process, Redis for a fleet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from shardtui.gateway.models import ShardId


@dataclass(slots=True)
class SessionStartLimit:
    """Discord's daily session start budget, as last read from ``/gateway/bot`` and counted since."""

    total: int
    remaining: int
    #: Wall-clock time (``time.time()``) when ``remaining`` refills to ``total``.
    reset_at: float
    max_concurrency: int


@runtime_checkable
class IdentifyGate(Protocol):
    async def acquire(self, shard_id: ShardId) -> None:
        """Return when ``shard_id`` may send IDENTIFY right now; consumes one session start."""
        ...
