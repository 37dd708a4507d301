"""The identify gate: the one place that decides when a shard may send IDENTIFY.

Every IDENTIFY — first start, re-identify after op 9 or 4009, forced restart — waits on the gate, so
Discord's rule (one identify per bucket ``shard_id % max_concurrency`` per window, and no more session
starts than ``session_start_limit.remaining``) is kept in one place. Implementations are swappable:
in-memory for one process, Redis for a fleet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from shardtui.gateway.models import ShardId
from shardtui.gateway.protocol import IDENTIFY_WINDOW_SECONDS, bucket_for_shard

log = logging.getLogger("shardtui.gateway.gate")


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
    """Everything the runner, queuer, planner and console use of a gate.

    A gate that only knows ``acquire`` (a test's, a user's) is wrapped by :func:`as_identify_gate`
    into one that answers the rest with "unknown"; :class:`IdentifyGateDefaults` gives a real gate
    those answers for the parts it does not track."""

    async def acquire(self, shard_id: ShardId) -> None:
        """Return when ``shard_id`` may send IDENTIFY right now; consumes one session start."""
        ...

    def sent(self, shard_id: ShardId) -> None:
        """The IDENTIFY granted to ``shard_id`` has just been written to the socket."""
        ...

    def identified(self, shard_id: ShardId) -> None:
        """READY answered ``shard_id``'s IDENTIFY (the server has processed it)."""
        ...

    @property
    def window(self) -> float:
        """Seconds between two identifies of one bucket."""
        ...

    @property
    def margin(self) -> float:
        """Extra seconds the gate adds to a window for network and server-side jitter."""
        ...

    @property
    def limit(self) -> SessionStartLimit | None:
        """The daily session start budget as the gate counts it; None when not tracked."""
        ...

    waiting_reason: str | None
    on_waiting_change: Callable[[str | None], None] | None

    def next_free_monotonic(self, bucket: int) -> float | None:
        """Monotonic time at which ``bucket`` may identify again; None when the gate cannot tell."""
        ...

    def next_slots(self) -> dict[int, float]:
        """Bucket -> wall-clock time of its next slot; empty when the gate cannot tell."""
        ...

    def waiting(self, bucket: int | None = None) -> int | None:
        """Shards waiting at the gate in ``bucket`` (or all); None when the gate cannot tell."""
        ...

    def budget_remaining(self) -> int | None:
        """Session starts left before the reset; None when not tracked."""
        ...


class AcquireOnly(Protocol):
    """The least a gate must do: say when a shard may identify."""

    async def acquire(self, shard_id: ShardId) -> None: ...


def identify_margin(window: float) -> float:
    """Seconds every gate adds to an identify window.

    Discord measures the window when it processes an IDENTIFY, not when we let it go: a margin keeps
    send, network and server-side delays (one identify of a round may be handled 50+ ms after the
    others) from turning back-to-back slots into a violation (op 9, and a multi-second retry). At
    least 0.1 s; 0.25 s on Discord's 5 s window; none when there is no window."""
    return 0.0 if window == 0 else min(0.25, max(0.1, window * 0.05))


class IdentifyGateDefaults:
    """What a gate answers for what it does not track: nothing known, nothing to do."""

    waiting_reason: str | None = None
    on_waiting_change: Callable[[str | None], None] | None = None
    margin: float = 0.0
    limit: SessionStartLimit | None = None

    def sent(self, shard_id: ShardId) -> None:
        return None

    def identified(self, shard_id: ShardId) -> None:
        return None

    def next_free_monotonic(self, bucket: int) -> float | None:
        return None

    def next_slots(self) -> dict[int, float]:
        return {}

    def waiting(self, bucket: int | None = None) -> int | None:
        return None

    def budget_remaining(self) -> int | None:
        return None


class _AcquireOnlyGate(IdentifyGateDefaults):
    """An ``acquire``-only gate seen through the full :class:`IdentifyGate` interface."""

    def __init__(self, inner: AcquireOnly, window: float) -> None:
        self._inner = inner
        self._window = window

    @property
    def window(self) -> float:
        return self._window

    async def acquire(self, shard_id: ShardId) -> None:
        await self._inner.acquire(shard_id)


def as_identify_gate(
    gate: IdentifyGate | AcquireOnly, window: float = IDENTIFY_WINDOW_SECONDS
) -> IdentifyGate:
    """``gate`` itself when it implements :class:`IdentifyGate`, else a wrapper that answers the
    optional parts with "unknown" (``window`` is then the one the caller was configured with)."""
    if isinstance(gate, IdentifyGate):
        return gate
    return _AcquireOnlyGate(gate, window)


class Clock(Protocol):
    """Time source for the gate, queuer and health checks; tests pass a virtual clock."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clocks: ``time.monotonic`` for spacing, ``time.time`` for display and resets."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        """Never returns before ``seconds`` have passed, and rarely much after: the event loop's timers
        wake up to a millisecond late (epoll waits in whole milliseconds, rounded up), which the identify
        gate would pay once per slot (+0.25 s over 255 slots of one bucket), so the last millisecond is
        waited by yielding to the loop. The sleeps here are few (identify slots, retries, the health
        tick), so that spin costs nothing measurable."""
        deadline = time.monotonic() + seconds
        if seconds > TIMER_GRAIN:
            await asyncio.sleep(seconds - TIMER_GRAIN)
        else:
            await asyncio.sleep(0)
        while time.monotonic() < deadline:  # noqa: ASYNC110 - polling the clock is the point
            await asyncio.sleep(0)


#: How late an event loop timer may wake up (epoll's resolution).
TIMER_GRAIN: Final = 0.001
SYSTEM_CLOCK = SystemClock()


def describe_wall_time(at: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(at))


def describe_duration(seconds: float) -> str:
    """``0.4 s``, ``12 s``, ``3 min 5 s``, ``2 h 10 min``: short enough for a status line."""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


class InMemoryIdentifyGate(IdentifyGateDefaults):
    """Discord's identify pacing for one process.

    Bucket ``shard_id % max_concurrency`` admits one IDENTIFY per ``window`` seconds; waiters of a
    bucket are served first come, first served, and buckets proceed independently. Each admission
    takes one session start from ``limit.remaining``; when none are left the gate holds every
    waiter until ``limit.reset_at`` and says why in ``waiting_reason``.
    """

    def __init__(
        self,
        max_concurrency: int = 1,
        window: float = IDENTIFY_WINDOW_SECONDS,
        limit: SessionStartLimit | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if window < 0:
            raise ValueError(f"identify window must not be negative, got {window}")
        self.max_concurrency = int(max_concurrency)
        self.window = float(window)
        self.margin = identify_margin(self.window)
        self.limit = limit
        self.clock = clock
        #: Why identifies are being held back right now (None when they are not); for the console.
        self.waiting_reason: str | None = None
        #: Called with the new ``waiting_reason`` whenever it changes (the manager logs it as an event).
        self.on_waiting_change: Callable[[str | None], None] | None = None
        #: Identifies admitted so far, in order: (shard id, monotonic time); the console and tests read it.
        self.admitted: list[tuple[ShardId, float]] = []
        self._last: dict[int, float] = {}
        #: Per bucket: the shard of the latest admission, and when READY answered it (if it has).
        self._last_shard: dict[int, int] = {}
        self._answered: dict[int, float] = {}
        self._answer_events: dict[int, asyncio.Event] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._waiting: dict[int, int] = {}
        self._budget_waiters = 0

    def bucket_of(self, shard_id: ShardId | int) -> int:
        return bucket_for_shard(int(shard_id), self.max_concurrency)

    def next_free_monotonic(self, bucket: int) -> float:
        """Monotonic time at which ``bucket`` may identify again (now or earlier when it is free)."""
        last = self._last.get(bucket)
        now = self.clock.monotonic()
        if last is None:
            return now
        free = last + self.window + self.margin
        answered = self._answered.get(bucket)
        if answered is not None:
            # The server processed that IDENTIFY before its READY reached us, so a window counted
            # from the READY is safe whatever the jitter; the margin is only for a READY not seen.
            free = min(free, answered + self.window)
        return max(free, now)

    def identified(self, shard_id: ShardId) -> None:
        """READY answered ``shard_id``'s IDENTIFY: its bucket may go again one window from now.

        It only ever brings a slot forward when
        the READY came sooner than the margin (loopback, a quiet gateway)."""
        bucket = self.bucket_of(shard_id)
        if self._last_shard.get(bucket) != int(shard_id) or bucket in self._answered:
            return
        self._answered[bucket] = self.clock.monotonic()
        event = self._answer_events.get(bucket)
        if event is not None:
            event.set()

    def sent(self, shard_id: ShardId) -> None:
        """The IDENTIFY granted to ``shard_id`` has just been written to the socket.

        A loop stall between the grant and the
        send would otherwise eat into the next identify's margin: the server counts the window from
        when the IDENTIFY arrives, so the bucket's window is counted from the send when it is later."""
        bucket = self.bucket_of(shard_id)
        if self._last_shard.get(bucket) != int(shard_id) or bucket in self._answered:
            return
        last = self._last.get(bucket)
        now = self.clock.monotonic()
        if last is not None and now > last:
            self._last[bucket] = now

    def next_free_at(self, bucket: int) -> float:
        """Wall-clock time (``time.time()``) at which ``bucket`` may identify again."""
        now = self.clock.monotonic()
        return self.clock.wall() + (self.next_free_monotonic(bucket) - now)

    def next_slots(self) -> dict[int, float]:
        """Every bucket's next free slot, as wall-clock times."""
        return {bucket: self.next_free_at(bucket) for bucket in range(self.max_concurrency)}

    def waiting(self, bucket: int | None = None) -> int:
        """Shards currently waiting in ``bucket`` (or in all buckets)."""
        if bucket is None:
            return sum(self._waiting.values())
        return self._waiting.get(bucket, 0)

    def budget_remaining(self) -> int | None:
        """Session starts left before the reset, or None when the budget is not tracked."""
        if self.limit is None:
            return None
        self._refill_if_due()
        return self.limit.remaining

    def update_limit(self, limit: SessionStartLimit) -> None:
        """Take a freshly read ``session_start_limit`` (after ``GET /gateway/bot``)."""
        self.limit = limit

    async def acquire(self, shard_id: ShardId) -> None:
        bucket = self.bucket_of(shard_id)
        lock = self._locks.setdefault(bucket, asyncio.Lock())
        self._waiting[bucket] = self._waiting.get(bucket, 0) + 1
        try:
            async with lock:
                await self._wait_for_turn(bucket)
                now = self.clock.monotonic()
                self._last[bucket] = now
                self._last_shard[bucket] = int(shard_id)
                self._answered.pop(bucket, None)
                if self.limit is not None:
                    self.limit.remaining -= 1
                self.admitted.append((ShardId(int(shard_id)), now))
        finally:
            self._waiting[bucket] -= 1

    async def _wait_for_turn(self, bucket: int) -> None:
        while True:
            budget_wait = self._budget_wait()
            if budget_wait > 0:
                self._budget_waiters += 1
                try:
                    await self.clock.sleep(budget_wait)
                except asyncio.CancelledError:
                    if self._budget_waiters == 1:
                        self._set_waiting_reason(None)  # nobody is waiting any more
                    raise
                finally:
                    self._budget_waiters -= 1
                continue
            slot_wait = self.next_free_monotonic(bucket) - self.clock.monotonic()
            if slot_wait > 1e-6:  # below a microsecond is float noise, not a wait
                if bucket in self._answered or self.margin == 0:
                    await self.clock.sleep(slot_wait)
                else:
                    await self._sleep_until_answered(bucket, slot_wait)
                continue
            return

    async def _sleep_until_answered(self, bucket: int, seconds: float) -> None:
        """Sleep ``seconds``, or less if READY answers the bucket's last IDENTIFY meanwhile."""
        event = self._answer_events.setdefault(bucket, asyncio.Event())
        event.clear()
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        waker = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
            await asyncio.gather(sleeper, waker, return_exceptions=True)

    def _refill_if_due(self) -> None:
        limit = self.limit
        if limit is not None and self.clock.wall() >= limit.reset_at:
            limit.remaining = limit.total
            # Discord's window is a day; without a fresh read we assume the next reset is a day on.
            limit.reset_at = self.clock.wall() + 86_400.0
            log.info("session start budget refilled: %d identifies available", limit.total)

    def _budget_wait(self) -> float:
        """Seconds to wait for the daily budget to refill; 0 when an identify may go now."""
        self._refill_if_due()
        limit = self.limit
        if limit is None or limit.remaining > 0:
            self._set_waiting_reason(None)
            return 0.0
        wait = max(0.0, limit.reset_at - self.clock.wall())
        # No countdown in the text: it stays the same while waiting, so listeners hear it once.
        self._set_waiting_reason(
            f"session start limit used up (0 of {limit.total} identifies left): "
            f"waiting for the reset at {describe_wall_time(limit.reset_at)}"
        )
        # Wake at least once a minute so a budget refreshed from /gateway/bot is noticed.
        return max(min(wait, 60.0), 0.001)

    def _set_waiting_reason(self, reason: str | None) -> None:
        update_waiting_reason(self, reason, "session start budget available again", log)


def update_waiting_reason(gate: Any, reason: str | None, cleared: str, logger: logging.Logger) -> None:
    """Set ``gate.waiting_reason``; log the first reason and its clearing (``cleared`` says how) once,
    and tell ``gate.on_waiting_change``. Shared by every gate so the console hears them alike."""
    if reason == gate.waiting_reason:
        return
    previous, gate.waiting_reason = gate.waiting_reason, reason
    if reason is not None and previous is None:
        logger.warning("identify gate: %s", reason)
    elif reason is None:
        logger.info("identify gate: %s", cleared)
    if gate.on_waiting_change is not None:
        try:
            gate.on_waiting_change(reason)
        except Exception:
            logger.exception("identify gate waiting listener failed")
