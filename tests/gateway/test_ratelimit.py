"""The per-connection command limiter (120 / 60 s with heartbeat slots reserved) and the size check."""

from __future__ import annotations

import pytest

from shardtui.gateway.errors import PayloadTooLarge
from shardtui.gateway.ratelimit import CommandLimiter, encode_command


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(clock: Clock, interval: float = 41.25) -> CommandLimiter:
    lim = CommandLimiter(clock=clock, sleep=clock.sleep)
    lim.set_heartbeat_interval(interval)
    return lim


def test_commands_stop_at_the_budget_left_after_heartbeat_reservation() -> None:
    clock = Clock()
    lim = limiter(clock)
    # 60 s / 41.25 s -> 2 beats + 1 spare reserved.
    assert lim.reserved == 3
    assert lim.command_budget == 117
    waits = [lim.try_acquire() for _ in range(118)]
    assert waits[:117] == [0.0] * 117
    assert waits[117] > 0
    assert lim.in_window() == 117


def test_heartbeats_always_pass_and_never_push_past_120() -> None:
    clock = Clock()
    lim = limiter(clock)
    for _ in range(117):
        assert lim.try_acquire() == 0.0
        clock.now += 0.01
    # Commands are exhausted, heartbeats still go (and their reservation covers a full window).
    beats = 0
    while clock.now < 1059.0:
        assert lim.try_acquire(heartbeat=True) == 0.0
        beats += 1
        clock.now += 41.25
    assert beats == 2
    assert lim.in_window() <= 120


def test_waiting_command_goes_once_the_oldest_send_leaves_the_window() -> None:
    clock = Clock()
    lim = limiter(clock)
    for _ in range(117):
        lim.try_acquire()
    clock.now += 10.0
    wait = lim.try_acquire()
    assert wait == pytest.approx(50.0)
    clock.now += wait
    assert lim.try_acquire() == 0.0


async def test_acquire_waits_on_the_injected_clock_not_real_time() -> None:
    clock = Clock()
    lim = limiter(clock)
    for _ in range(117):
        await lim.acquire()
    assert clock.slept == []
    await lim.acquire()
    assert clock.slept == [pytest.approx(60.0)]
    assert lim.delayed == 1
    await lim.acquire(heartbeat=True)
    assert len(clock.slept) == 1


def test_reset_gives_a_new_connection_a_full_budget() -> None:
    clock = Clock()
    lim = limiter(clock)
    for _ in range(117):
        lim.try_acquire()
    assert lim.try_acquire() > 0
    lim.reset()
    assert lim.try_acquire() == 0.0


def test_short_heartbeat_interval_never_reserves_more_than_half() -> None:
    clock = Clock()
    lim = limiter(clock, interval=0.05)
    assert lim.reserved == 60
    assert lim.command_budget == 60


def test_oversized_payload_is_refused_with_a_clear_error() -> None:
    ok = encode_command({"op": 3, "d": {"x": "a" * 4000}})
    assert len(ok) <= 4096
    with pytest.raises(PayloadTooLarge) as info:
        encode_command({"op": 8, "d": {"guild_id": "1", "query": "a" * 5000}})
    assert info.value.op == 8
    assert info.value.size > 4096
    assert "4096" in str(info.value) and "op 8" in str(info.value)
    assert "aaaa" not in str(info.value)  # the payload itself (a token, for IDENTIFY) is never echoed


def test_heartbeats_do_not_eat_into_the_command_budget() -> None:
    clock = Clock()
    lim = limiter(clock)
    for _ in range(2):
        assert lim.try_acquire(heartbeat=True) == 0.0
    granted = 0
    while lim.try_acquire() == 0.0:
        granted += 1
    assert granted == 117
    assert lim.in_window() == 119
