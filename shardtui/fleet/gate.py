"""The identify gate shared by every process of a fleet, kept in Redis.

One Lua script per attempt decides atomically, on Redis's clock, whether a shard may IDENTIFY: its
bucket (``shard_id % max_concurrency``) must have had no grant within the window (a key with PX
expiry, so nothing a crashed process held can block a bucket), and the shared session start budget
must have a start left (taken in the same script). While Redis cannot be reached no identify is
granted — waiting is always safe, guessing is not — and ``waiting_reason`` says why.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shardtui.fleet.keys import UNREACHABLE_ERRORS, FleetKeys, describe_redis_error
from shardtui.gateway.gate import (
    SYSTEM_CLOCK,
    Clock,
    IdentifyGateDefaults,
    SessionStartLimit,
    describe_duration,
    describe_wall_time,
    identify_margin,
    update_waiting_reason,
)
from shardtui.gateway.models import ShardId
from shardtui.gateway.protocol import IDENTIFY_WINDOW_SECONDS, bucket_for_shard

log = logging.getLogger("shardtui.fleet.gate")

# KEYS[1] bucket key, KEYS[2] budget hash.
# ARGV[1] holder, ARGV[2] window ms, ARGV[3..5] seed remaining / total / reset_at ms ("" = no seed),
# ARGV[6] "1" when the seed is a fresh reading (it may lower a budget Redis already keeps).
# ARGV[7] this process's max_concurrency, kept with the budget for readers that run no shard.
# Returns {granted 0|1, kind, wait_ms, remaining, total, reset_at_ms, now_ms}; -1 = budget untracked.
_GRANT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[2], 'remaining', 'total', 'reset_at')
local remaining, total, reset_at = tonumber(b[1]), tonumber(b[2]), tonumber(b[3])
if ARGV[3] ~= '' then
  local s_rem, s_total, s_reset = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  if remaining == nil or total == nil or reset_at == nil or (now >= reset_at and s_reset > now) then
    -- Redis keeps no budget (first grant, or Redis lost its data), or a reading newer than the
    -- kept reset: take this process's reading.
    remaining, total, reset_at = s_rem, s_total, s_reset
    redis.call('HSET', KEYS[2], 'remaining', remaining, 'total', total, 'reset_at', reset_at)
  elseif ARGV[6] == '1' and s_reset > now and s_rem < remaining then
    -- A fresh /gateway/bot reading of the current period knows of starts we did not count
    -- (another tool, an earlier fleet): believe the lower count. A reading whose reset has
    -- passed is about an earlier period and lowers nothing.
    remaining = s_rem
    redis.call('HSET', KEYS[2], 'remaining', remaining)
  end
end
if remaining ~= nil and total ~= nil and reset_at ~= nil then
  if now >= reset_at then
    remaining = total
    reset_at = now + 86400000
    redis.call('HSET', KEYS[2], 'remaining', remaining, 'reset_at', reset_at)
  end
  redis.call('HSET', KEYS[2], 'max_concurrency', ARGV[7])
  redis.call('PEXPIREAT', KEYS[2], reset_at + 86400000)
  if remaining <= 0 then
    return {0, 'budget', reset_at - now, remaining, total, reset_at, now}
  end
else
  remaining, total, reset_at = nil, nil, nil
end
local pttl = redis.call('PTTL', KEYS[1])
if pttl > 0 then
  return {0, 'bucket', pttl, remaining or -1, total or -1, reset_at or -1, now}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', window)
if remaining ~= nil then
  remaining = redis.call('HINCRBY', KEYS[2], 'remaining', -1)
end
return {1, 'granted', window, remaining or -1, total or -1, reset_at or -1, now}
"""


# KEYS[1] bucket key; ARGV[1] holder of the grant READY answered, ARGV[2] window ms.
# Shortens the bucket's hold to one window from now when that is sooner (the grant is still ours).
_ANSWERED_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl > tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
  end
end
return 0
"""


class GateSource(Protocol):
    """Where the gate learns the bot's identify facts: a ``ShardManager`` after ``initialize()``."""

    max_concurrency: int | None
    session_start_limit: SessionStartLimit | None


class RedisIdentifyGate(IdentifyGateDefaults):
    """``IdentifyGate`` over Redis: every process of the fleet shares the buckets and the budget.

    ``max_concurrency`` and the session start limit come from ``source`` (the manager, which reads
    ``/gateway/bot``) unless given; the first grant seeds the shared budget with this process's
    reading (never raising a lower count another process already keeps).
    """

    def __init__(
        self,
        redis: Redis,
        keys: FleetKeys,
        *,
        window: float = IDENTIFY_WINDOW_SECONDS,
        max_concurrency: int | None = None,
        source: GateSource | None = None,
        holder: str | None = None,
        redis_description: str = "Redis",
        retry_interval: float = 0.5,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if window < 0:
            raise ValueError(f"identify window must not be negative, got {window}")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.redis = redis
        self.keys = keys
        self.window = float(window)
        self.max_concurrency_override = max_concurrency
        self.source = source
        self.holder = holder or f"{socket.gethostname()}-{os.getpid()}"
        self.redis_description = redis_description
        self.retry_interval = retry_interval
        self.clock = clock
        #: Why identifies are held back right now (None when they are not); read by the queuer/console.
        self.waiting_reason: str | None = None
        #: Called with the new ``waiting_reason`` whenever it changes.
        self.on_waiting_change: Callable[[str | None], None] | None = None
        #: Grants this process received, in order: (shard id, Redis time in seconds).
        self.admitted: list[tuple[ShardId, float]] = []
        #: The shared budget as the last script reply showed it (None before one / when untracked).
        self.limit: SessionStartLimit | None = None
        self._script = redis.register_script(_GRANT_SCRIPT)
        self._answered_script = redis.register_script(_ANSWERED_SCRIPT)
        self._wakers: dict[int, asyncio.Event] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._locks: dict[int, asyncio.Lock] = {}
        self._reading_of: SessionStartLimit | None = None
        self._reading: tuple[int, int, float] = (0, 0, 0.0)
        self._admitted_at_reading = 0
        self._fresh = False
        self._unreachable = False

    # -- the window as the in-memory gate defines it --------------------------------------------

    @property
    def margin(self) -> float:
        return identify_margin(self.window)

    @property
    def max_concurrency(self) -> int:
        if self.max_concurrency_override is not None:
            return self.max_concurrency_override
        value = None if self.source is None else self.source.max_concurrency
        return int(value) if value else 1

    @property
    def unreachable(self) -> bool:
        """True while the last attempt could not reach Redis (``waiting_reason`` says how)."""
        return self._unreachable

    def bucket_of(self, shard_id: ShardId | int) -> int:
        return bucket_for_shard(int(shard_id), self.max_concurrency)

    def budget_remaining(self) -> int | None:
        """Session starts left fleet-wide as last seen, or None when unknown or untracked."""
        limit = self.limit
        if limit is None:
            return None
        if self.clock.wall() >= limit.reset_at:
            return limit.total
        return limit.remaining

    def identified(self, shard_id: ShardId) -> None:
        """READY answered ``shard_id``'s IDENTIFY, so the server has processed it: its bucket may
        go again one window from now when that is sooner than window + margin; a failure only
        means the full hold runs out."""
        if self.window <= 0:
            return
        bucket = self.bucket_of(shard_id)
        task = asyncio.get_running_loop().create_task(
            self._shorten(bucket, self._holder_of(shard_id)),
            name=f"shardtui-fleet-gate-ready-{int(shard_id)}",
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def flush(self) -> None:
        """Wait until the READY updates already sent to Redis are done."""
        await asyncio.gather(*list(self._background), return_exceptions=True)

    async def _shorten(self, bucket: int, holder: str) -> None:
        try:
            shortened = await self._answered_script(
                keys=[self.keys.bucket(bucket)], args=[holder, max(1, round(self.window * 1000))]
            )
        except (RedisError, OSError) as exc:
            log.debug("identify gate: could not shorten bucket %d after READY (%s)", bucket, exc)
            return
        if shortened:
            waker = self._wakers.get(bucket)
            if waker is not None:
                waker.set()

    def _holder_of(self, shard_id: ShardId | int) -> str:
        return f"{self.holder}:{int(shard_id)}"

    # -- acquire --------------------------------------------------------------------------------

    async def acquire(self, shard_id: ShardId) -> None:
        bucket = self.bucket_of(shard_id)
        lock = self._locks.setdefault(bucket, asyncio.Lock())
        # One local waiter per bucket asks Redis at a time; the others queue behind it in order.
        async with lock:
            while True:
                reply = await self._attempt(shard_id, bucket)
                if reply is None:
                    await self.clock.sleep(self.retry_interval)
                    continue
                granted, kind, wait_ms, now_ms = reply
                if granted:
                    if self.waiting_reason is not None and self._budget_reason_active():
                        self._set_waiting_reason(None)
                    self.admitted.append((ShardId(int(shard_id)), now_ms / 1000.0))
                    return
                if kind == "budget":
                    self._set_waiting_reason(self._budget_reason(wait_ms / 1000.0))
                    # Wake at least once a minute: a budget refreshed elsewhere is noticed.
                    await self.clock.sleep(min(wait_ms / 1000.0, 60.0))
                else:
                    if self._budget_reason_active():
                        self._set_waiting_reason(None)
                    await self._sleep_or_wake(bucket, max(wait_ms, 1) / 1000.0)

    async def _sleep_or_wake(self, bucket: int, seconds: float) -> None:
        """Sleep ``seconds``, or less when READY shortened the bucket's hold meanwhile (this
        process's waiters only; other processes find the shorter hold when they next ask)."""
        waker = self._wakers.setdefault(bucket, asyncio.Event())
        waker.clear()
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        woken = asyncio.ensure_future(waker.wait())
        try:
            await asyncio.wait((sleeper, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            woken.cancel()
            await asyncio.gather(sleeper, woken, return_exceptions=True)

    async def _attempt(self, shard_id: ShardId, bucket: int) -> tuple[bool, str, int, int] | None:
        window_ms = max(1, round((self.window + self.margin) * 1000)) if self.window > 0 else 1
        seed = self._seed_args()
        try:
            raw: Any = await self._script(
                keys=[self.keys.bucket(bucket), self.keys.budget],
                args=[self._holder_of(shard_id), window_ms, *seed, self.max_concurrency],
            )
        except UNREACHABLE_ERRORS as exc:
            self._unreachable = True
            self._set_waiting_reason(
                f"{self.redis_description} unreachable ({describe_redis_error(exc)}): "
                "identifies wait until it is back (running shards are not affected)"
            )
            return None
        except RedisError as exc:
            self._unreachable = True
            self._set_waiting_reason(
                f"{self.redis_description} refused the identify script ({describe_redis_error(exc)}): "
                "identifies wait"
            )
            return None
        if self._unreachable:
            self._unreachable = False
            log.info("identify gate: %s reachable again", self.redis_description)
            self._set_waiting_reason(None)
        if seed[0] != "":
            self._fresh = False
        granted, kind, wait_ms, remaining, total, reset_at, now_ms = raw
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if int(total) >= 0:
            mc = self.max_concurrency
            offset = self.clock.wall() - int(now_ms) / 1000.0
            self.limit = SessionStartLimit(
                total=int(total),
                remaining=int(remaining),
                reset_at=int(reset_at) / 1000.0 + offset,
                max_concurrency=mc,
            )
            shown = None if self.source is None else self.source.session_start_limit
            if shown is not None and shown is self._reading_of:
                # The manager's (and console's) session_start_limit shows the fleet's count.
                shown.remaining = self.limit.remaining
                shown.reset_at = self.limit.reset_at
        return bool(int(granted)), kind, int(wait_ms), int(now_ms)

    def _seed_args(self) -> list[str]:
        """This process's view of the budget, used when Redis keeps none (first grant of the fleet,
        or Redis came back empty): the /gateway/bot reading minus the grants made here since."""
        limit = None if self.source is None else self.source.session_start_limit
        if limit is None:
            return ["", "", "", ""]
        if limit is not self._reading_of:
            # A new reading (the first, or the manager read /gateway/bot again). The gate writes
            # the fleet's count into this object later, so keep the numbers as read.
            self._reading_of = limit
            self._reading = (int(limit.remaining), int(limit.total), float(limit.reset_at))
            self._admitted_at_reading = len(self.admitted)
            self._fresh = True
        remaining, total, reset_at = self._reading
        remaining -= len(self.admitted) - self._admitted_at_reading
        fresh = "1" if self._fresh else "0"
        return [str(max(0, remaining)), str(total), str(int(reset_at * 1000)), fresh]

    # -- reasons --------------------------------------------------------------------------------

    def _budget_reason(self, wait: float) -> str:
        limit = self.limit
        total = "?" if limit is None else str(limit.total)
        reset = "" if limit is None else f" at {describe_wall_time(limit.reset_at)}"
        return (
            f"fleet session start limit used up (0 of {total} identifies left): "
            f"waiting {describe_duration(wait)} for the reset{reset}"
        )

    def _budget_reason_active(self) -> bool:
        return self.waiting_reason is not None and self.waiting_reason.startswith("fleet session start")

    def _set_waiting_reason(self, reason: str | None) -> None:
        update_waiting_reason(self, reason, "identifies may go again", log)
