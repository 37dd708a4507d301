"""ShardQueuer: bucket order, one un-identified socket per bucket, retries, budget, shutdown."""

from __future__ import annotations

import asyncio
import itertools

from shardtui.gateway.gate import InMemoryIdentifyGate, SessionStartLimit
from shardtui.gateway.messages import ShardQueuerMessage
from shardtui.gateway.models import ShardId
from shardtui.gateway.queuer import ShardQueuer

try:
    from fakeclock import FakeClock
except ImportError:  # pragma: no cover - when tests/gateway is a package
    from .fakeclock import FakeClock


class FakeFleet:
    """Stands in for the manager: spawns pretend runners that connect, then identify through the gate."""

    def __init__(self, clock: FakeClock, connect_seconds: float = 0.01) -> None:
        self.clock = clock
        self.connect_seconds = connect_seconds
        self.tasks: dict[ShardId, asyncio.Task[None]] = {}
        self.identified: list[ShardId] = []
        self.stopped: list[tuple[ShardId, int]] = []
        self.dequeued: list[ShardId] = []
        self.fail_next: set[ShardId] = set()
        self.never_identify: set[ShardId] = set()
        self.max_unidentified_per_bucket = 0
        self.queuer: ShardQueuer | None = None

    def spawn(self, start: ShardQueuerMessage.Start, gate) -> None:
        if start.shard_id in self.fail_next:
            self.fail_next.discard(start.shard_id)
            raise OSError("simulated start failure")
        self.tasks[start.shard_id] = asyncio.create_task(self._runner(start.shard_id, gate))
        self._measure()

    def _measure(self) -> None:
        assert self.queuer is not None
        per_bucket: dict[int, int] = {}
        for shard, task in self.tasks.items():
            if not task.done() and shard not in self.identified:
                bucket = self.queuer.bucket_of(shard)
                per_bucket[bucket] = per_bucket.get(bucket, 0) + 1
        self.max_unidentified_per_bucket = max(self.max_unidentified_per_bucket, *per_bucket.values(), 0)

    async def _runner(self, shard: ShardId, gate) -> None:
        await self.clock.sleep(self.connect_seconds)
        if shard in self.never_identify:
            await asyncio.Event().wait()
        await gate.acquire(shard)
        self.identified.append(shard)
        await asyncio.Event().wait()

    def stop(self, shard: ShardId, code: int) -> None:
        self.stopped.append((shard, code))

    async def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


def make(clock: FakeClock, *, mc: int = 1, window: float = 5.0, limit: SessionStartLimit | None = None, **kw):
    gate = InMemoryIdentifyGate(max_concurrency=mc, window=window, limit=limit, clock=clock)
    fleet = FakeFleet(clock)
    queuer = ShardQueuer(
        gate,
        fleet.spawn,
        fleet.stop,
        max_concurrency=mc,
        clock=clock,
        on_dequeued=fleet.dequeued.append,
        **kw,
    )
    fleet.queuer = queuer
    queuer.start()
    return gate, fleet, queuer


def start_shards(queuer: ShardQueuer, ids, total: int) -> None:
    for i in ids:
        queuer.send(ShardQueuerMessage.Start(ShardId(i), total))


async def finish(queuer: ShardQueuer, fleet: FakeFleet) -> None:
    await queuer.close()
    await fleet.close()


async def test_single_bucket_boots_in_order_one_socket_at_a_time() -> None:
    clock = FakeClock()
    gate, fleet, queuer = make(clock, mc=1, window=5.0)
    start_shards(queuer, range(5), 5)
    await clock.run_until(lambda: len(fleet.identified) == 5, step=0.25)
    assert queuer.spawn_order == [ShardId(i) for i in range(5)]
    assert fleet.identified == [ShardId(i) for i in range(5)]
    assert fleet.max_unidentified_per_bucket == 1
    times = [at for _, at in gate.admitted]
    assert all(b - a >= 5.0 - 1e-9 for a, b in itertools.pairwise(times)), times
    assert queuer.status().queued == ()
    await finish(queuer, fleet)


async def test_buckets_start_in_parallel_in_id_order() -> None:
    clock = FakeClock()
    gate, fleet, queuer = make(clock, mc=4, window=5.0)
    start_shards(queuer, range(12), 12)
    await clock.settle()
    await clock.advance(0.1)
    assert sorted(fleet.identified) == [ShardId(i) for i in range(4)]
    await clock.run_until(lambda: len(fleet.identified) == 12, step=0.25)
    at = {shard.id: t for shard, t in gate.admitted}
    # Rounds: 0-3 together, then 4-7 a window later, then 8-11.
    assert {at[i] for i in range(4)} == {at[0]}
    assert all(at[i] - at[i - 4] >= 5.0 - 1e-9 for i in range(4, 12))
    assert fleet.max_unidentified_per_bucket == 1
    await finish(queuer, fleet)


async def test_next_shard_is_spawned_only_shortly_before_its_slot() -> None:
    clock = FakeClock()
    _gate, fleet, queuer = make(clock, mc=1, window=5.0, spawn_lead=1.0)
    start_shards(queuer, range(2), 2)
    await clock.advance(3.0)
    assert queuer.spawn_order == [ShardId(0)]
    status = queuer.status()
    assert status.queued == (ShardId(1),)
    await clock.advance(1.5)
    assert queuer.spawn_order == [ShardId(0), ShardId(1)]
    await finish(queuer, fleet)


async def test_failed_start_is_retried_at_the_front_of_its_bucket() -> None:
    clock = FakeClock()
    _gate, fleet, queuer = make(clock, mc=1, window=0.1, retry_delay=0.5)
    fleet.fail_next.add(ShardId(1))
    start_shards(queuer, range(3), 3)
    await clock.run_until(lambda: len(fleet.identified) == 3, step=0.05)
    assert fleet.identified == [ShardId(0), ShardId(1), ShardId(2)]
    await finish(queuer, fleet)


async def test_runner_that_ended_before_its_session_is_started_again_first() -> None:
    clock = FakeClock()
    _gate, fleet, queuer = make(clock, mc=1, window=1.0, spawn_lead=0.0, retry_delay=0.1)
    fleet.never_identify.add(ShardId(0))
    start_shards(queuer, range(2), 2)
    await clock.advance(0.5)
    assert queuer.spawn_order == [ShardId(0)]
    fleet.never_identify.clear()
    fleet.tasks[ShardId(0)].cancel()
    queuer.notify_finished(ShardId(0), retry=True)
    await clock.run_until(lambda: len(fleet.identified) == 2, step=0.05)
    assert queuer.spawn_order == [ShardId(0), ShardId(0), ShardId(1)]
    assert fleet.identified == [ShardId(0), ShardId(1)]
    await finish(queuer, fleet)


async def test_a_shard_stuck_before_identify_stops_holding_its_bucket() -> None:
    clock = FakeClock()
    _gate, fleet, queuer = make(clock, mc=1, window=0.1, slot_timeout=10.0)
    fleet.never_identify.add(ShardId(0))
    start_shards(queuer, range(2), 2)
    await clock.advance(9.0)
    assert queuer.spawn_order == [ShardId(0)]
    assert queuer.status().identifying == (ShardId(0),)
    await clock.advance(2.0)
    await clock.run_until(lambda: ShardId(1) in fleet.identified, step=0.05)
    assert queuer.spawn_order == [ShardId(0), ShardId(1)]
    await finish(queuer, fleet)


async def test_starts_beyond_the_session_budget_wait_for_the_reset_and_say_so() -> None:
    clock = FakeClock()
    limit = SessionStartLimit(total=10, remaining=2, reset_at=clock.wall() + 120.0, max_concurrency=1)
    reasons: list[str | None] = []
    _gate, fleet, queuer = make(clock, mc=1, window=0.1, limit=limit, on_waiting_change=reasons.append)
    start_shards(queuer, range(4), 4)
    await clock.advance(5.0)
    assert fleet.identified == [ShardId(0), ShardId(1)]
    # No socket is opened for shards that could not identify anyway.
    assert queuer.spawn_order == [ShardId(0), ShardId(1)]
    status = queuer.status()
    assert status.queued == (ShardId(2), ShardId(3))
    assert status.budget_remaining == 0
    assert status.waiting_reason is not None
    assert "session start limit reached" in status.waiting_reason
    assert "shards 2, 3 wait" in status.waiting_reason
    await clock.run_until(lambda: len(fleet.identified) == 4, step=1.0)
    assert fleet.identified == [ShardId(i) for i in range(4)]
    assert queuer.status().waiting_reason is None
    # Said once when the wait began and once when it ended, not on every look at the queue.
    assert len(reasons) == 2 and reasons[0] is not None and reasons[1] is None
    assert limit.remaining == 8
    await finish(queuer, fleet)


async def test_shutdown_shard_dequeues_or_stops() -> None:
    clock = FakeClock()
    _gate, fleet, queuer = make(clock, mc=1, window=5.0)
    start_shards(queuer, range(3), 3)
    await clock.advance(0.5)
    queuer.send(ShardQueuerMessage.ShutdownShard(ShardId(2), 1000))
    queuer.send(ShardQueuerMessage.ShutdownShard(ShardId(0), 4000))
    await clock.advance(0.1)
    assert fleet.dequeued == [ShardId(2)]
    assert fleet.stopped == [(ShardId(0), 4000)]
    assert queuer.status().queued == (ShardId(1),)
    await finish(queuer, fleet)


async def test_duplicate_starts_are_ignored() -> None:
    clock = FakeClock()
    _gate, fleet, queuer = make(clock, mc=1, window=0.1)
    start_shards(queuer, [0, 0, 1], 2)
    await clock.run_until(lambda: len(fleet.identified) == 2, step=0.05)
    start_shards(queuer, [1], 2)
    await clock.advance(1.0)
    assert queuer.spawn_order == [ShardId(0), ShardId(1)]
    await finish(queuer, fleet)


async def test_shutdown_drops_the_queue_and_leaves_no_task() -> None:
    clock = FakeClock()
    before = asyncio.all_tasks()
    _gate, fleet, queuer = make(clock, mc=1, window=5.0)
    start_shards(queuer, range(3), 3)
    await clock.advance(0.5)
    await finish(queuer, fleet)
    await clock.settle()
    assert fleet.dequeued == [ShardId(1), ShardId(2)]
    assert asyncio.all_tasks() == before
    # A closed queuer ignores further messages instead of growing a queue nobody reads.
    queuer.send(ShardQueuerMessage.Start(ShardId(5), 6))
    assert queuer.status().queued == ()
