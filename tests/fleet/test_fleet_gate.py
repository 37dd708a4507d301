"""The Redis identify gate: buckets and the session budget are shared by every gate (= process)."""

from __future__ import annotations

import asyncio
import itertools
import time

from redis.asyncio import Redis

from shardtui.fleet.gate import RedisIdentifyGate
from shardtui.fleet.keys import FleetKeys
from shardtui.fleet.state import FleetView
from shardtui.gateway.gate import IdentifyGate, SessionStartLimit, SystemClock
from shardtui.gateway.models import ShardId

WINDOW = 0.1


class Source:
    """Stands in for a ShardManager after initialize(): what /gateway/bot said."""

    def __init__(
        self, max_concurrency: int, remaining: int = 1000, total: int = 1000, reset_in: float = 3600.0
    ):
        self.max_concurrency = max_concurrency
        self.session_start_limit = SessionStartLimit(
            total, remaining, time.time() + reset_in, max_concurrency
        )


async def hold_ms(redis: Redis, key: str, granted_at: float) -> int | None:
    """How long after its grant (``granted_at``, Redis's clock in seconds) the bucket key expires,
    read on Redis's clock so the answer does not depend on how long the test took to ask; None once
    the key is gone (it expired)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.time()
        pipe.pttl(key)
        (seconds, micros), pttl = await pipe.execute()
    if pttl == -2:
        return None
    assert pttl > 0, f"{key} has no expiry (PTTL {pttl})"
    return seconds * 1000 + micros // 1000 + pttl - round(granted_at * 1000)


def make_gates(clients: list[Redis], cluster: str, source: Source) -> list[RedisIdentifyGate]:
    return [
        RedisIdentifyGate(client, FleetKeys(cluster), window=WINDOW, source=source, holder=f"proc{i}")
        for i, client in enumerate(clients)
    ]


async def test_one_identify_per_bucket_per_window_across_processes(
    redis_url: str, redis: Redis, cluster_name: str
):
    # Three clients with their own connections stand for three processes; 24 shards race for 4 buckets.
    clients = [Redis.from_url(redis_url) for _ in range(3)]
    try:
        gates = make_gates(clients, cluster_name, Source(max_concurrency=4))
        assert all(isinstance(gate, IdentifyGate) for gate in gates)
        await asyncio.gather(*(gates[shard % 3].acquire(ShardId(shard)) for shard in range(24)))
    finally:
        for client in clients:
            await client.aclose()
    grants = sorted((at, int(shard)) for gate in gates for shard, at in gate.admitted)
    assert sorted(shard for _, shard in grants) == list(range(24))
    for bucket in range(4):
        times = [at for at, shard in grants if shard % 4 == bucket]
        assert len(times) == 6
        # Grant times are Redis's own clock (the clock the script enforces the window on).
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert min(gaps) >= WINDOW - 0.001, (bucket, gaps)
    # Buckets are independent: the first round takes all four buckets, not one.
    assert {shard % 4 for _, shard in grants[:4]} == {0, 1, 2, 3}


class PollingClock(SystemClock):
    """Real time, but no sleep longer than 20 ms: a gate waiting for the daily reset looks again
    soon, so the test can move the reset instead of waiting for it."""

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(min(max(0.0, seconds), 0.02))


async def test_session_budget_is_shared_and_refills_at_the_reset(
    redis_url: str, redis: Redis, cluster_name: str
):
    keys = FleetKeys(cluster_name)
    clients = [Redis.from_url(redis_url) for _ in range(3)]
    try:
        source = Source(max_concurrency=8, remaining=5, total=5, reset_in=3600.0)
        gates = [
            RedisIdentifyGate(
                client, keys, window=WINDOW, source=source, holder=f"proc{i}", clock=PollingClock()
            )
            for i, client in enumerate(clients)
        ]
        tasks = [asyncio.create_task(gates[shard % 3].acquire(ShardId(shard))) for shard in range(8)]
        # Five starts remain fleet-wide: five shards go, three wait, and say why.
        for _ in range(500):
            if sum(len(g.admitted) for g in gates) == 5 and all(
                g.waiting_reason for g in gates if any(not t.done() for t in tasks[gates.index(g) :: 3])
            ):
                break
            await asyncio.sleep(0.01)
        assert sum(len(g.admitted) for g in gates) == 5
        assert sum(1 for task in tasks if not task.done()) == 3
        assert int(await redis.hget(keys.budget, "remaining")) == 0
        for index, gate in enumerate(gates):
            if any(not task.done() for task in tasks[index::3]):
                assert gate.waiting_reason is not None
                assert gate.waiting_reason.startswith(
                    "fleet session start limit used up (0 of 5 identifies left)"
                )
        await asyncio.sleep(0.1)
        assert sum(len(g.admitted) for g in gates) == 5
        # The manager shows the fleet's count, not its own reading.
        assert source.session_start_limit.remaining == 0
        # The reset comes (moved to now, in Redis and in the processes' reading): the budget
        # refills for everyone and the three shards go.
        source.session_start_limit = SessionStartLimit(5, 0, time.time() - 1, 8)
        await redis.hset(keys.budget, "reset_at", 0)
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    finally:
        for client in clients:
            await client.aclose()
    assert sorted(int(s) for g in gates for s, _ in g.admitted) == list(range(8))
    assert int(await redis.hget(keys.budget, "remaining")) == 2
    assert all(g.waiting_reason is None for g in gates)
    # A viewer, which runs no shard and has no /gateway/bot reading, reads the identify buckets too.
    budget = await FleetView(redis, keys).session_budget()
    assert budget is not None and (budget.remaining, budget.total, budget.max_concurrency) == (2, 5, 8)


async def test_a_lower_fresh_reading_lowers_the_shared_budget(redis: Redis, cluster_name: str):
    first = RedisIdentifyGate(
        redis, FleetKeys(cluster_name), window=0, source=Source(1, remaining=100, total=100)
    )
    await first.acquire(ShardId(0))
    assert first.budget_remaining() == 99
    # A process starting later read /gateway/bot after other tools spent starts: 10 left.
    later = RedisIdentifyGate(
        redis, FleetKeys(cluster_name), window=0, source=Source(1, remaining=10, total=100)
    )
    await later.acquire(ShardId(1))
    assert later.budget_remaining() == 9
    # ...and a stale higher reading never raises it again.
    await first.acquire(ShardId(2))
    assert first.budget_remaining() == 8


async def test_a_crashed_holder_never_blocks_its_bucket(redis_url: str, redis: Redis, cluster_name: str):
    keys = FleetKeys(cluster_name)
    crashed_client = Redis.from_url(redis_url)
    crashed = RedisIdentifyGate(crashed_client, keys, window=WINDOW, source=Source(4), holder="crashed")
    await crashed.acquire(ShardId(1))
    [(_, granted_at)] = crashed.admitted
    # The process dies right after its grant, never to come back.
    await crashed_client.aclose()
    del crashed
    # Held for window + margin from the grant, whenever we look (gone already on a slow run).
    hold = await hold_ms(redis, keys.bucket(1), granted_at)
    assert hold is None or 0 < hold <= round((WINDOW + 0.1) * 1000)
    # The survivor's own window is long only so that its hold is still there to read below.
    survivor = RedisIdentifyGate(redis, keys, window=30.0, source=Source(4), holder="survivor")
    await asyncio.wait_for(survivor.acquire(ShardId(5)), 5)  # same bucket (5 % 4 == 1)
    assert [int(s) for s, _ in survivor.admitted] == [5]
    assert await redis.get(keys.bucket(1)) == b"survivor:5"


async def test_redis_down_holds_identifies_and_says_why_until_it_is_back(private_redis):
    client = Redis.from_url(private_redis.url, socket_timeout=1, socket_connect_timeout=0.5)
    reasons: list[str | None] = []
    try:
        gate = RedisIdentifyGate(
            client,
            FleetKeys("outage"),
            window=WINDOW,
            source=Source(2),
            redis_description="Redis at redis://127.0.0.1",
            retry_interval=0.05,
        )
        gate.on_waiting_change = reasons.append
        await gate.acquire(ShardId(0))
        private_redis.stop()
        waiting = asyncio.create_task(gate.acquire(ShardId(1)))
        for _ in range(300):
            if gate.waiting_reason is not None:
                break
            await asyncio.sleep(0.01)
        assert gate.waiting_reason is not None
        assert gate.waiting_reason.startswith("Redis at redis://127.0.0.1 unreachable (")
        assert "identifies wait until it is back" in gate.waiting_reason
        assert gate.unreachable
        await asyncio.sleep(0.3)
        assert not waiting.done(), "an identify was granted while Redis was down"
        private_redis.start()
        await asyncio.wait_for(waiting, 10)
    finally:
        await client.aclose()
    assert [int(s) for s, _ in gate.admitted] == [0, 1]
    assert gate.waiting_reason is None and not gate.unreachable
    assert reasons[-1] is None and any(r and "unreachable" in r for r in reasons)


async def test_a_budget_redis_lost_is_reseeded_from_the_reading_minus_grants_made_since(
    redis: Redis, cluster_name: str
):
    keys = FleetKeys(cluster_name)
    gate = RedisIdentifyGate(redis, keys, window=0, source=Source(1, remaining=10, total=10))
    for shard in range(3):
        await gate.acquire(ShardId(shard))
    assert gate.budget_remaining() == 7
    await redis.delete(keys.budget)  # Redis restarted without persistence
    await gate.acquire(ShardId(3))
    assert gate.budget_remaining() == 6
    assert int(await redis.hget(keys.budget, "remaining")) == 6


async def test_ready_shortens_the_hold_to_one_window_only_for_the_grant_it_answers(
    redis: Redis, cluster_name: str
):
    keys = FleetKeys(cluster_name)
    gate = RedisIdentifyGate(redis, keys, window=2.0, source=Source(4), holder="proc")
    await gate.acquire(ShardId(1))
    [(_, granted_at)] = gate.admitted
    # Window + margin from the grant while READY is not seen, on Redis's clock: the margin is only
    # 100 ms, which a loaded run can spend before a plain PTTL gets read.
    hold = await hold_ms(redis, keys.bucket(1), granted_at)
    assert hold is not None and hold > 2000
    gate.identified(ShardId(5))  # same bucket, but not the shard holding it: a stale READY
    await gate.flush()
    after = await hold_ms(redis, keys.bucket(1), granted_at)
    assert after is not None and abs(after - hold) <= 2  # not shortened (2 ms: PTTL's rounding)
    gate.identified(ShardId(1))
    await gate.flush()
    assert 0 < await redis.pttl(keys.bucket(1)) <= 2000
