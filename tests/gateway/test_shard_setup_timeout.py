"""A gateway that ACKs heartbeats but never answers IDENTIFY/RESUME must not hold a shard for ever."""

from __future__ import annotations

from support.shard import RESUME_URL, Clock, connect, dispatch, hello, make_shard, of, ready

from shardtui.gateway.models import ConnectionStage
from shardtui.gateway.shard import Reconnect, Send, SessionState


def run_until_reconnect(shard, clock: Clock, until: float, feed=None) -> tuple[float, Reconnect] | None:
    """Step the clock in 0.25 s steps, ACKing every heartbeat; return when and how it reconnects."""
    while clock.now < until:
        clock.now += 0.25
        if feed is not None:
            for payload in feed(clock.now):
                shard.receive(payload)
        actions = shard.tick(clock.now)
        reconnects = of(actions, Reconnect)
        if reconnects:
            return clock.now, reconnects[0]
        if of(actions, Send):
            shard.receive({"op": 11, "d": None})
    return None


def test_identify_without_ready_reconnects_after_the_setup_timeout() -> None:
    clock = Clock()
    shard = make_shard(clock, setup_timeout=5.0)
    connect(shard, clock.now)
    shard.receive(hello(1000))
    assert shard.identify_payload() is not None
    sent_at = clock.now
    result = run_until_reconnect(shard, clock, sent_at + 20)
    assert result is not None, "a READY that never came held the shard in IDENTIFYING"
    at, reconnect = result
    assert sent_at + 5.0 <= at < sent_at + 6.0
    assert reconnect.failure is True
    assert reconnect.resume is False
    assert shard.stage is ConnectionStage.DISCONNECTED


def test_ready_in_time_keeps_the_connection() -> None:
    clock = Clock()
    shard = make_shard(clock, setup_timeout=5.0)
    connect(shard, clock.now)
    shard.receive(hello(1000))
    shard.identify_payload()
    clock.now += 4.0
    shard.receive(ready())
    assert run_until_reconnect(shard, clock, clock.now + 20) is None
    assert shard.stage is ConnectionStage.CONNECTED


def test_resume_that_keeps_replaying_is_given_time_but_a_silent_one_is_not() -> None:
    clock = Clock()
    shard = make_shard(clock, setup_timeout=5.0, resume=SessionState("saved", 10, RESUME_URL))
    connect(shard, clock.now)
    shard.receive(hello(1000))
    assert shard.stage is ConnectionStage.RESUMING
    start = clock.now
    seq = iter(range(11, 1000))

    def replay(now: float) -> list[dict]:
        # A long replay: one missed dispatch a second for 12 s, then silence.
        if now - start <= 12 and (now * 4) % 4 == 0:
            return [dispatch("MESSAGE_CREATE", next(seq))]
        return []

    result = run_until_reconnect(shard, clock, start + 40, feed=replay)
    assert result is not None, "a RESUMED that never came held the shard in RESUMING"
    at, reconnect = result
    assert at > start + 12  # not while the replay was still arriving
    assert reconnect.resume is True  # the session is still worth resuming
    assert reconnect.failure is True
