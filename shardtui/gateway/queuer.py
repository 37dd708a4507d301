"""The shard queuer: boots shards in identify-bucket order without wasting sockets or session starts.

Serenity's shape: one task reads ``ShardQueuerMessage``s from an ``asyncio.Queue``. A Start goes to
its bucket's line (bucket = shard_id % max_concurrency). Each bucket keeps at most one shard "in
flight" — spawned but not yet past its IDENTIFY — so a fleet boot never holds hundreds of sockets
open un-identified; the next shard of a bucket is spawned shortly before the bucket's next slot.
The identify gate still decides the exact moment of every IDENTIFY (including re-identifies after
op 9 or 4009), so the queuer only paces spawning. It also refuses to spawn more shards than the
session start budget has left, and says why while it waits for the reset.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from shardtui.gateway.aio import cancel_and_wait
from shardtui.gateway.gate import (
    SYSTEM_CLOCK,
    AcquireOnly,
    Clock,
    IdentifyGate,
    SessionStartLimit,
    as_identify_gate,
    describe_duration,
    describe_wall_time,
)
from shardtui.gateway.messages import ShardQueuerMessage, ShardQueuerMessageT
from shardtui.gateway.models import ShardId
from shardtui.gateway.planner import format_shard_ids
from shardtui.gateway.protocol import bucket_for_shard

log = logging.getLogger("shardtui.gateway.queuer")

#: Spawn a bucket's next shard this long before its identify slot opens (connect + HELLO time).
SPAWN_LEAD_SECONDS = 1.0
#: A shard still not past IDENTIFY after this long stops holding up its bucket.
SLOT_TIMEOUT_SECONDS = 30.0
#: Pause before retrying a start that failed.
RETRY_DELAY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """What the queuer is doing, for the console and the planner."""

    #: Shards waiting in the queuer, not yet spawned, in the order they will start.
    queued: tuple[ShardId, ...]
    #: Spawned shards not yet past IDENTIFY (including re-identifies waiting at the gate).
    identifying: tuple[ShardId, ...]
    #: Bucket -> wall-clock time of its next identify slot.
    next_slots: dict[int, float] = field(default_factory=dict)
    #: Why starts are being held back, or None.
    waiting_reason: str | None = None
    budget_remaining: int | None = None

    def queued_per_bucket(self, max_concurrency: int) -> dict[int, int]:
        counts: dict[int, int] = {}
        for shard in (*self.queued, *self.identifying):
            bucket = bucket_for_shard(shard.id, max_concurrency)
            counts[bucket] = counts.get(bucket, 0) + 1
        return counts


@dataclass(frozen=True, slots=True)
class _Progressed:
    """A spawned shard got past its IDENTIFY (or resumed without one)."""

    shard_id: ShardId


@dataclass(frozen=True, slots=True)
class _Finished:
    """A spawned shard's runner ended; ``retry`` when it ended before its session ever started."""

    shard_id: ShardId
    retry: bool


@dataclass(frozen=True, slots=True)
class _Tick:
    pass


#: Spawn a runner for ``start`` whose IDENTIFYs go through ``gate``. Raising means the start failed.
SpawnRunner = Callable[[ShardQueuerMessage.Start, IdentifyGate], None]
#: Stop a running shard with a close code.
StopRunner = Callable[[ShardId, int], None]


class _TrackingGate:
    """The gate as one spawned runner sees it: tells the queuer when that runner got its slot, and
    passes everything else through to the real gate (the runner's ``sent`` / ``identified`` move
    that gate's windows)."""

    def __init__(self, queuer: ShardQueuer, inner: IdentifyGate) -> None:
        self._queuer = queuer
        self._inner = inner

    async def acquire(self, shard_id: ShardId) -> None:
        shard_id = ShardId(int(shard_id))
        self._queuer._at_gate.add(shard_id)
        try:
            await self._inner.acquire(shard_id)
        finally:
            self._queuer._at_gate.discard(shard_id)
        self._queuer._post(_Progressed(shard_id))

    def sent(self, shard_id: ShardId) -> None:
        self._inner.sent(shard_id)

    def identified(self, shard_id: ShardId) -> None:
        self._inner.identified(shard_id)

    @property
    def window(self) -> float:
        return self._inner.window

    @property
    def margin(self) -> float:
        return self._inner.margin

    @property
    def limit(self) -> SessionStartLimit | None:
        return self._inner.limit

    @property
    def waiting_reason(self) -> str | None:
        return self._inner.waiting_reason

    @property
    def on_waiting_change(self) -> Callable[[str | None], None] | None:
        return self._inner.on_waiting_change

    def next_free_monotonic(self, bucket: int) -> float | None:
        return self._inner.next_free_monotonic(bucket)

    def next_slots(self) -> dict[int, float]:
        return self._inner.next_slots()

    def waiting(self, bucket: int | None = None) -> int | None:
        return self._inner.waiting(bucket)

    def budget_remaining(self) -> int | None:
        return self._inner.budget_remaining()


class ShardQueuer:
    def __init__(
        self,
        gate: IdentifyGate | AcquireOnly,
        spawn: SpawnRunner,
        stop: StopRunner,
        *,
        max_concurrency: int,
        clock: Clock = SYSTEM_CLOCK,
        on_dequeued: Callable[[ShardId], None] | None = None,
        on_waiting_change: Callable[[str | None], None] | None = None,
        costs_identify: Callable[[ShardQueuerMessage.Start], bool] | None = None,
        spawn_lead: float = SPAWN_LEAD_SECONDS,
        slot_timeout: float = SLOT_TIMEOUT_SECONDS,
        retry_delay: float = RETRY_DELAY_SECONDS,
    ) -> None:
        self.gate = as_identify_gate(gate)
        self.max_concurrency = max(1, int(max_concurrency))
        self.clock = clock
        self._spawn = spawn
        self._stop = stop
        self._on_dequeued = on_dequeued
        self._on_waiting_change = on_waiting_change
        #: False for a start that will RESUME a saved session: it needs no session start budget.
        self._costs_identify = costs_identify
        self._spawn_lead = spawn_lead
        self._slot_timeout = slot_timeout
        self._retry_delay = retry_delay
        self._rx: asyncio.Queue[ShardQueuerMessageT | _Progressed | _Finished | _Tick] = asyncio.Queue()
        self._pending: dict[int, deque[ShardQueuerMessage.Start]] = {}
        #: bucket -> (shard in flight, monotonic time it was spawned)
        self._in_flight: dict[int, tuple[ShardId, float]] = {}
        self._spawned: set[ShardId] = set()
        #: Starts sent but not yet read by the task (counted as queued already), and the ids in
        #: the bucket lines: kept as counters/sets so a fleet of thousands stays O(1) per check.
        self._unread_starts: Counter[ShardId] = Counter()
        self._pending_ids: set[ShardId] = set()
        self._starts: dict[ShardId, ShardQueuerMessage.Start] = {}
        self._at_gate: set[ShardId] = set()
        self._not_before: dict[int, float] = {}
        self._timer: asyncio.Task[None] | None = None
        self._timer_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.waiting_reason: str | None = None
        #: Shards spawned so far, in order (the console's boot log and tests read it).
        self.spawn_order: list[ShardId] = []

    # -- the manager's side ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the queuer's task (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="shardtui-queuer")

    def send(self, message: ShardQueuerMessageT) -> None:
        """Queue a ``ShardQueuerMessage``; never blocks."""
        if self._closed:
            log.debug("queuer closed; dropping %r", message)
            return
        if isinstance(message, ShardQueuerMessage.Start):
            # Counted as queued from now on, not only once the task has read it.
            self._unread_starts[message.shard_id] += 1
        self._rx.put_nowait(message)

    def notify_progress(self, shard_id: ShardId) -> None:
        """The shard's session started (READY or RESUMED): its bucket may start the next shard."""
        self._post(_Progressed(ShardId(int(shard_id))))

    def notify_finished(self, shard_id: ShardId, *, retry: bool = False) -> None:
        """The shard's runner ended; ``retry`` puts it back at the front of its bucket."""
        self._post(_Finished(ShardId(int(shard_id)), retry))

    def is_queued(self, shard_id: ShardId) -> bool:
        return self._unread_starts[shard_id] > 0 or shard_id in self._pending_ids

    def rebind(
        self,
        *,
        spawn: SpawnRunner,
        stop: StopRunner,
        on_dequeued: Callable[[ShardId], None] | None,
        on_waiting_change: Callable[[str | None], None] | None,
    ) -> None:
        """Report to a new owner from now on (a reshard's manager adopting this queuer's shards)."""
        self._spawn = spawn
        self._stop = stop
        self._on_dequeued = on_dequeued
        self._on_waiting_change = on_waiting_change

    def bucket_of(self, shard_id: ShardId | int) -> int:
        return bucket_for_shard(int(shard_id), self.max_concurrency)

    def status(self) -> QueueStatus:
        queued = {shard for shard, count in self._unread_starts.items() if count > 0} | self._pending_ids
        identifying = {shard for shard, _ in self._in_flight.values()} | self._at_gate
        return QueueStatus(
            queued=tuple(sorted(queued)),
            identifying=tuple(sorted(identifying)),
            next_slots=self.gate.next_slots(),
            waiting_reason=self.waiting_reason or self.gate.waiting_reason,
            budget_remaining=self.gate.budget_remaining(),
        )

    async def close(self) -> None:
        """Stop the queuer: queued shards are dropped, spawned runners are left to the manager."""
        if self._task is None:
            self._closed = True
            return
        if not self._task.done():
            self._rx.put_nowait(ShardQueuerMessage.Shutdown())
            self._closed = True
            try:
                await self._task
            except asyncio.CancelledError:
                if not self._task.cancelled():
                    raise
        self._closed = True
        await self._cancel_timer()

    # -- the loop -------------------------------------------------------------------------------

    def _post(self, message: _Progressed | _Finished | _Tick) -> None:
        if not self._closed:
            self._rx.put_nowait(message)

    async def _run(self) -> None:
        try:
            while True:
                message = await self._rx.get()
                if isinstance(message, ShardQueuerMessage.Shutdown):
                    self._drop_all_pending()
                    return
                try:
                    self._handle(message)
                    self._pump()
                except Exception:
                    log.exception("queuer failed handling %r", message)
        finally:
            self._closed = True
            self._cancel_timer_nowait()

    def _handle(self, message: ShardQueuerMessageT | _Progressed | _Finished | _Tick) -> None:
        if isinstance(message, ShardQueuerMessage.Start):
            self._unread_starts[message.shard_id] -= 1
            if self._unread_starts[message.shard_id] <= 0:
                del self._unread_starts[message.shard_id]
            self._enqueue(message, front=False)
        elif isinstance(message, ShardQueuerMessage.ShutdownShard):
            self._shutdown_shard(message.shard_id, message.code)
        elif isinstance(message, _Progressed):
            self._release(message.shard_id)
        elif isinstance(message, _Finished):
            self._spawned.discard(message.shard_id)
            self._release(message.shard_id)
            if message.retry:
                log.warning("shard %s ended before its session started: retrying it first", message.shard_id)
                bucket = self.bucket_of(message.shard_id)
                self._not_before[bucket] = self.clock.monotonic() + self._retry_delay
                start = self._starts.get(message.shard_id)
                if start is not None:
                    self._enqueue(start, front=True)
        # _Tick: nothing to do but pump

    def _enqueue(self, start: ShardQueuerMessage.Start, *, front: bool) -> None:
        if self.is_queued(start.shard_id) or start.shard_id in self._spawned:
            log.debug("shard %s is already queued or running; ignoring a second start", start.shard_id)
            return
        self._starts[start.shard_id] = start
        line = self._pending.setdefault(self.bucket_of(start.shard_id), deque())
        self._pending_ids.add(start.shard_id)
        if front:
            line.appendleft(start)
        else:
            line.append(start)

    def _shutdown_shard(self, shard_id: ShardId, code: int) -> None:
        line = self._pending.get(self.bucket_of(shard_id))
        if line is not None:
            for start in list(line):
                if start.shard_id == shard_id:
                    line.remove(start)
                    self._pending_ids.discard(shard_id)
                    log.info("shard %s removed from the start queue", shard_id)
                    self._dequeued(shard_id)
                    return
        if shard_id in self._spawned:
            self._stop(shard_id, code)

    def _release(self, shard_id: ShardId) -> None:
        bucket = self.bucket_of(shard_id)
        current = self._in_flight.get(bucket)
        if current is not None and current[0] == shard_id:
            del self._in_flight[bucket]

    def _drop_all_pending(self) -> None:
        for shard_id in list(self._unread_starts):
            self._dequeued(shard_id)
        self._unread_starts.clear()
        for line in self._pending.values():
            while line:
                shard_id = line.popleft().shard_id
                self._pending_ids.discard(shard_id)
                self._dequeued(shard_id)

    def _dequeued(self, shard_id: ShardId) -> None:
        if self._on_dequeued is not None:
            try:
                self._on_dequeued(shard_id)
            except Exception:
                log.exception("queuer dequeue listener failed")

    # -- scheduling -----------------------------------------------------------------------------

    def _budget_left(self) -> int | None:
        remaining = self.gate.budget_remaining()
        if remaining is None:
            return None
        # Shards already spawned but not yet identified will each take one.
        return remaining - len(self._in_flight)

    def _set_waiting(self, reason: str | None) -> None:
        if reason == self.waiting_reason:
            return
        first = self.waiting_reason is None
        self.waiting_reason = reason
        if reason is not None and first:
            log.warning("%s", reason)
        if self._on_waiting_change is not None:
            try:
                self._on_waiting_change(reason)
            except Exception:
                log.exception("queuer waiting listener failed")

    def _pump(self) -> None:
        now = self.clock.monotonic()
        wake_at: float | None = None

        def wake(at: float) -> None:
            nonlocal wake_at
            wake_at = at if wake_at is None else min(wake_at, at)

        for bucket, (shard, since) in list(self._in_flight.items()):
            if now - since >= self._slot_timeout:
                log.warning(
                    "shard %s is not past IDENTIFY after %s; starting the next shard of bucket %d",
                    shard,
                    describe_duration(now - since),
                    bucket,
                )
                del self._in_flight[bucket]
            else:
                wake(since + self._slot_timeout)

        budget_blocked = False
        for bucket in sorted(self._pending):
            line = self._pending[bucket]
            if not line or bucket in self._in_flight:
                continue
            not_before = self._not_before.get(bucket, 0.0)
            next_free = self.gate.next_free_monotonic(bucket)
            if next_free is not None:
                not_before = max(not_before, next_free - self._spawn_lead)
            if not_before > now:
                wake(not_before)
                continue
            budget = self._budget_left()
            if budget is not None and budget <= 0 and self._start_costs_identify(line[0]):
                budget_blocked = True
                continue
            start = line.popleft()
            self._pending_ids.discard(start.shard_id)
            try:
                self._spawn(start, _TrackingGate(self, self.gate))
            except Exception as exc:
                log.warning("starting shard %s failed (%s); retrying it first", start.shard_id, exc)
                line.appendleft(start)
                self._pending_ids.add(start.shard_id)
                self._not_before[bucket] = now + self._retry_delay
                wake(now + self._retry_delay)
                continue
            self._spawned.add(start.shard_id)
            self._in_flight[bucket] = (start.shard_id, now)
            self.spawn_order.append(start.shard_id)
            wake(now + self._slot_timeout)

        if budget_blocked:
            self._set_waiting(self._budget_reason())
            # Look again regularly: a refreshed budget or the reset lets shards go.
            wake(now + min(60.0, max(0.05, self._seconds_to_reset())))
        else:
            self._set_waiting(None)
        self._arm_timer(wake_at)

    def _start_costs_identify(self, start: ShardQueuerMessage.Start) -> bool:
        if self._costs_identify is None:
            return True
        try:
            return self._costs_identify(start)
        except Exception:
            log.exception("queuer identify-cost check failed")
            return True

    def _seconds_to_reset(self) -> float:
        limit = self.gate.limit
        if limit is None:
            return 60.0
        return max(0.0, limit.reset_at - self.clock.wall())

    def _budget_reason(self) -> str:
        waiting = [start.shard_id for line in self._pending.values() for start in line]
        limit = self.gate.limit
        total = None if limit is None else limit.total
        reset_at = None if limit is None else limit.reset_at
        text = f"session start limit reached ({'0' if total is None else f'0 of {total}'} identifies left): "
        text += f"{format_shard_ids(waiting)} wait"
        if reset_at is not None:
            # No countdown: the reason is re-evaluated on every message and should change only
            # when the situation does (the console shows the time left from the reset time).
            text += f" for the reset at {describe_wall_time(reset_at)}"
        else:
            text += " for the reset"
        return text

    def _arm_timer(self, at: float | None) -> None:
        if at == self._timer_at and self._timer is not None and not self._timer.done():
            return
        self._cancel_timer_nowait()
        if at is None:
            return
        self._timer_at = at
        self._timer = asyncio.create_task(self._wake_at(at), name="shardtui-queuer-timer")

    async def _wake_at(self, at: float) -> None:
        await self.clock.sleep(at - self.clock.monotonic())
        self._timer_at = None
        self._post(_Tick())

    def _cancel_timer_nowait(self) -> None:
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
        self._timer_at = None

    async def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        self._timer_at = None
        if timer is not None:
            await cancel_and_wait(timer)
