"""InMemoryIdentifyGate: bucket spacing, FIFO order, parallel buckets, the daily budget."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from shardtui.gateway.gate import SYSTEM_CLOCK, IdentifyGate, InMemoryIdentifyGate, SessionStartLimit
from shardtui.gateway.models import ShardId

try:
    from fakeclock import FakeClock
except ImportError:  # pragma: no cover - when tests/gateway is a package
    from .fakeclock import FakeClock


def admitted_ids(gate: InMemoryIdentifyGate) -> list[int]:
    return [shard.id for shard, _ in gate.admitted]


def admitted_at(gate: InMemoryIdentifyGate) -> dict[int, float]:
    return {shard.id: at for shard, at in gate.admitted}


def start_all(gate: InMemoryIdentifyGate, ids: list[int]) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(gate.acquire(ShardId(i))) for i in ids]


def test_gate_satisfies_the_protocol() -> None:
    assert isinstance(InMemoryIdentifyGate(), IdentifyGate)


async def test_one_identify_per_bucket_per_window() -> None:
    clock = FakeClock()
    gate = InMemoryIdentifyGate(max_concurrency=1, window=5.0, clock=clock)
    tasks = start_all(gate, [0, 1, 2, 3])
    await clock.settle()
    # The first shard goes at once; the rest wait for their slot.
    assert admitted_ids(gate) == [0]
    await clock.advance(4.9)
    assert admitted_ids(gate) == [0]
    # The window plus a small margin for send-time jitter (the server times arrivals).
    assert 0 < gate.margin <= 0.25
    await clock.advance(0.1 + gate.margin)
    assert admitted_ids(gate) == [0, 1]
    await clock.advance(20.0)
    await asyncio.gather(*tasks)
    times = [at for _, at in gate.admitted]
    assert all(later - earlier >= 5.0 for earlier, later in itertools.pairwise(times))


async def test_waiters_of_a_bucket_are_served_in_arrival_order() -> None:
    clock = FakeClock()
    gate = InMemoryIdentifyGate(max_concurrency=1, window=1.0, clock=clock)
    order = [5, 2, 9, 0, 7]
    tasks = []
    for shard in order:
        tasks.append(asyncio.create_task(gate.acquire(ShardId(shard))))
        await clock.settle()
    await clock.advance(10.0)
    await asyncio.gather(*tasks)
    assert admitted_ids(gate) == order


async def test_buckets_proceed_in_parallel() -> None:
    clock = FakeClock()
    gate = InMemoryIdentifyGate(max_concurrency=4, window=5.0, clock=clock)
    tasks = start_all(gate, list(range(8)))
    await clock.settle()
    # Shards 0..3 are in four different buckets: all identify together.
    assert sorted(admitted_ids(gate)) == [0, 1, 2, 3]
    await clock.advance(5.0 + gate.margin)
    await asyncio.gather(*tasks)
    at = admitted_at(gate)
    for shard in range(4, 8):
        assert at[shard] - at[shard - 4] >= 5.0
    assert len({at[s] for s in range(4, 8)}) == 1


async def test_next_free_slot_is_reported_per_bucket_in_wall_time() -> None:
    clock = FakeClock(wall_start=1_000.0)
    gate = InMemoryIdentifyGate(max_concurrency=2, window=5.0, clock=clock)
    await gate.acquire(ShardId(1))
    slots = gate.next_slots()
    assert slots[0] == 1_000.0  # untouched bucket: free now
    assert slots[1] == 1_005.0 + gate.margin
    await clock.advance(6.0)
    assert gate.next_free_at(1) == clock.wall()


async def test_each_identify_takes_one_session_start() -> None:
    clock = FakeClock()
    limit = SessionStartLimit(total=10, remaining=10, reset_at=clock.wall() + 3600, max_concurrency=2)
    gate = InMemoryIdentifyGate(max_concurrency=2, window=1.0, limit=limit, clock=clock)
    tasks = start_all(gate, [0, 1, 2])
    await clock.advance(2.0)
    await asyncio.gather(*tasks)
    assert limit.remaining == 7
    assert gate.budget_remaining() == 7


async def test_exhausted_budget_waits_for_the_reset_and_says_so() -> None:
    clock = FakeClock()
    reasons: list[str | None] = []
    limit = SessionStartLimit(total=5, remaining=1, reset_at=clock.wall() + 600.0, max_concurrency=1)
    gate = InMemoryIdentifyGate(max_concurrency=1, window=1.0, limit=limit, clock=clock)
    gate.on_waiting_change = reasons.append
    tasks = start_all(gate, [0, 1, 2])
    await clock.advance(5.0)
    assert admitted_ids(gate) == [0]
    assert gate.waiting_reason is not None
    assert "session start limit" in gate.waiting_reason
    assert "0 of 5" in gate.waiting_reason
    await clock.advance(590.0)
    assert admitted_ids(gate) == [0]
    await clock.advance(10.0)
    await asyncio.gather(*tasks)
    assert admitted_ids(gate) == [0, 1, 2]
    assert limit.remaining == 3  # refilled to 5, two spent since
    assert gate.waiting_reason is None
    assert len(reasons) == 2 and reasons[0] is not None and reasons[1] is None


async def test_cancelled_waiter_consumes_nothing() -> None:
    clock = FakeClock()
    limit = SessionStartLimit(total=5, remaining=5, reset_at=clock.wall() + 3600, max_concurrency=1)
    gate = InMemoryIdentifyGate(max_concurrency=1, window=5.0, limit=limit, clock=clock)
    await gate.acquire(ShardId(0))
    waiter = asyncio.create_task(gate.acquire(ShardId(1)))
    await clock.settle()
    assert gate.waiting(0) == 1
    waiter.cancel()
    await clock.settle()
    assert gate.waiting(0) == 0
    assert limit.remaining == 4
    await clock.advance(6.0)
    await gate.acquire(ShardId(2))
    assert admitted_ids(gate) == [0, 2]


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        InMemoryIdentifyGate(max_concurrency=0)
    with pytest.raises(ValueError, match="window"):
        InMemoryIdentifyGate(window=-1)


async def test_reason_clears_when_the_last_budget_waiter_gives_up() -> None:
    clock = FakeClock()
    limit = SessionStartLimit(total=5, remaining=0, reset_at=clock.wall() + 3600.0, max_concurrency=1)
    gate = InMemoryIdentifyGate(max_concurrency=1, window=1.0, limit=limit, clock=clock)
    waiter = asyncio.create_task(gate.acquire(ShardId(0)))
    await clock.advance(1.0)
    assert gate.waiting_reason is not None
    waiter.cancel()
    await clock.settle()
    assert gate.waiting_reason is None
    assert gate.admitted == []


async def test_the_system_clock_never_wakes_before_the_deadline() -> None:
    # It waits the last millisecond by yielding instead of by a timer; it must still never be early.
    clock = SYSTEM_CLOCK
    for seconds in (0.0, 0.0004, 0.001, 0.0015, 0.012):
        before = clock.monotonic()
        await clock.sleep(seconds)
        assert clock.monotonic() - before >= seconds


async def test_real_clock_admissions_of_a_bucket_are_never_closer_than_the_window() -> None:
    gate = InMemoryIdentifyGate(max_concurrency=1, window=0.02)
    for shard in range(6):
        await gate.acquire(ShardId(shard))
        gate.sent(ShardId(shard))
        gate.identified(ShardId(shard))  # READY at once: the next slot is counted from here
    times = [at for _, at in gate.admitted]
    assert len(times) == 6
    assert all(b - a >= 0.02 for a, b in itertools.pairwise(times))
