"""The identify gate counts a bucket's window from READY when READY comes sooner than the margin.

READY for an IDENTIFY can only leave the server after it processed that IDENTIFY, so the next
IDENTIFY of the bucket one window after READY can never land inside the server's window. This
takes the per-slot margin out of start-up on a quick gateway (bench/startup.py: 256 shards at
max_concurrency 1 went from 3x the rate-limit floor to within a few percent of it).
"""

from __future__ import annotations

import asyncio

from shardtui.gateway.gate import InMemoryIdentifyGate
from shardtui.gateway.manager import ShardManager, ShardManagerOptions
from shardtui.gateway.models import ShardId
from shardtui.gateway.protocol import GatewayIntents

try:
    from fakeclock import FakeClock
except ImportError:  # pragma: no cover - when tests/gateway is a package
    from .fakeclock import FakeClock


def admitted_at(gate: InMemoryIdentifyGate) -> dict[int, float]:
    return {shard.id: at for shard, at in gate.admitted}


async def test_a_waiter_goes_one_window_after_ready_without_the_margin() -> None:
    clock = FakeClock()
    gate = InMemoryIdentifyGate(max_concurrency=1, window=5.0, clock=clock)
    first = asyncio.create_task(gate.acquire(ShardId(0)))
    second = asyncio.create_task(gate.acquire(ShardId(1)))
    await clock.settle()
    await first
    await clock.advance(0.02)
    gate.identified(ShardId(0))
    await clock.advance(5.0)
    await second
    assert admitted_at(gate)[1] == 5.02
    assert 5.02 < gate.window + gate.margin


async def test_without_ready_the_margin_still_applies() -> None:
    clock = FakeClock()
    gate = InMemoryIdentifyGate(max_concurrency=1, window=5.0, clock=clock)
    await gate.acquire(ShardId(0))
    second = asyncio.create_task(gate.acquire(ShardId(1)))
    await clock.advance(5.0)
    assert not second.done()
    await clock.advance(gate.margin)
    await second
    assert admitted_at(gate)[1] == 5.0 + gate.margin


async def test_a_slow_ready_never_delays_the_slot_past_the_margin() -> None:
    clock = FakeClock()
    gate = InMemoryIdentifyGate(max_concurrency=1, window=5.0, clock=clock)
    await gate.acquire(ShardId(0))
    second = asyncio.create_task(gate.acquire(ShardId(1)))
    await clock.advance(1.0)
    gate.identified(ShardId(0))  # READY after a second: window + margin is sooner
    await clock.advance(4.0 + gate.margin)
    await second
    assert admitted_at(gate)[1] == 5.0 + gate.margin


async def test_ready_of_an_older_identify_does_not_move_the_bucket() -> None:
    clock = FakeClock()
    gate = InMemoryIdentifyGate(max_concurrency=2, window=5.0, clock=clock)
    await gate.acquire(ShardId(0))
    await clock.advance(6.0)
    await gate.acquire(ShardId(2))  # same bucket as 0, admitted later
    third = asyncio.create_task(gate.acquire(ShardId(4)))
    await clock.advance(0.01)
    gate.identified(ShardId(0))  # a late READY for the earlier identify says nothing about shard 2's
    gate.identified(ShardId(1))  # another bucket's shard that never identified
    await clock.advance(5.0)
    assert not third.done()
    await clock.advance(gate.margin)
    await third
    assert admitted_at(gate)[4] == 6.0 + 5.0 + gate.margin


async def test_a_fleet_paced_from_ready_breaks_no_identify_limit(sandbox_factory) -> None:
    sandbox = await sandbox_factory(guilds=8, shards=8, max_concurrency=2, identify_window=0.1)
    gate = InMemoryIdentifyGate(max_concurrency=2, window=0.1)
    manager = ShardManager(
        ShardManagerOptions(
            token=sandbox.token,
            intents=GatewayIntents.default(),
            rest_url=sandbox.rest_url,
            shard_total=8,
            max_concurrency=2,
            identify_window=0.1,
            health_interval=0.0,
        ),
        gate=gate,
    )
    try:
        await manager.initialize()
        assert await manager.wait_until_connected(timeout=20)
    finally:
        await manager.shutdown_all()
    stats = sandbox.stats()
    assert stats["identify_violations"] == 0
    assert sorted(shard.id for shard, _ in gate.admitted) == list(range(8))
    # Every bucket's latest admission was answered by READY, so its slot was counted from it.
    assert sorted(gate._answered) == [0, 1]


async def test_a_send_later_than_the_grant_moves_the_window_with_it() -> None:
    # A loop stall between the grant and the write: the server counts from when IDENTIFY arrives.
    clock = FakeClock()
    gate = InMemoryIdentifyGate(max_concurrency=1, window=5.0, clock=clock)
    await gate.acquire(ShardId(0))
    second = asyncio.create_task(gate.acquire(ShardId(1)))
    await clock.advance(0.3)
    gate.sent(ShardId(0))
    await clock.advance(5.0 + gate.margin - 0.3)
    assert not second.done()  # the grant-based slot has passed, the send-based one has not
    await clock.advance(0.3)
    await second
    assert admitted_at(gate)[1] == 0.3 + 5.0 + gate.margin


async def test_a_send_report_for_another_shard_or_after_ready_changes_nothing() -> None:
    clock = FakeClock()
    gate = InMemoryIdentifyGate(max_concurrency=1, window=5.0, clock=clock)
    await gate.acquire(ShardId(0))
    await clock.advance(0.3)
    gate.sent(ShardId(1))  # not the shard the bucket's slot was granted to
    assert gate.next_free_monotonic(0) == 5.0 + gate.margin
    gate.identified(ShardId(0))
    await clock.advance(0.1)
    gate.sent(ShardId(0))  # READY already answered: a late send report moves nothing
    assert gate.next_free_monotonic(0) == 5.0 + gate.margin
