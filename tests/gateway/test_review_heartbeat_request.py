"""Review: answering a server heartbeat request (op 1) must not make a healthy connection a "zombie".

The zombie rule is judged at each *scheduled* beat: was the previous scheduled beat ACKed? An op 1 that
lands just before a scheduled beat used to restart that wait, so the scheduled beat (one round trip
later, before the ACK could arrive) found "no ACK" and dropped a perfectly healthy connection.
"""

from __future__ import annotations

import random

from shardtui.gateway.models import ConnectionStage
from shardtui.gateway.protocol import GatewayIntents
from shardtui.gateway.shard import HeartbeatAcked, Reconnect, Send, Shard

TOKEN = "MTIz.review-op1.secret-token-value"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def connected(clock: Clock) -> Shard:
    shard = Shard(
        0,
        1,
        token=TOKEN,
        intents=GatewayIntents.GUILDS,
        gateway_url="ws://gateway.test/",
        clock=clock,
        rng=random.Random(5),
    )
    shard.begin_connect()
    shard.connection_opened(clock.now)
    shard.receive({"op": 10, "d": {"heartbeat_interval": 10_000}})
    shard.identify_payload()
    shard.receive({"op": 0, "t": "READY", "s": 1, "d": {"session_id": "s", "guilds": []}})
    assert shard.stage is ConnectionStage.CONNECTED
    return shard


def beat(shard: Shard, clock: Clock) -> None:
    """Run the clock to the next scheduled beat and ACK it after 50 ms."""
    assert shard.next_heartbeat is not None
    clock.now = shard.next_heartbeat
    actions = shard.tick(clock.now)
    assert [a for a in actions if isinstance(a, Send)], actions
    clock.now += 0.05
    assert [a for a in shard.receive({"op": 11, "d": None}) if isinstance(a, HeartbeatAcked)]


def test_op1_just_before_a_scheduled_beat_does_not_drop_a_healthy_connection() -> None:
    clock = Clock()
    shard = connected(clock)
    beat(shard, clock)
    assert shard.next_heartbeat is not None
    # The server asks for a beat 10 ms before ours is due; its ACK is still on the way when ours goes.
    clock.now = shard.next_heartbeat - 0.01
    [request_beat] = [a for a in shard.receive({"op": 1, "d": None}) if isinstance(a, Send)]
    assert request_beat.payload == {"op": 1, "d": 1}
    clock.now = shard.next_heartbeat
    actions = shard.tick(clock.now)
    assert not [a for a in actions if isinstance(a, Reconnect)], "a healthy connection was called a zombie"
    assert [a.payload for a in actions if isinstance(a, Send)] == [{"op": 1, "d": 1}]
    assert shard.stage is ConnectionStage.CONNECTED


def test_zombie_is_still_caught_when_the_server_asked_for_a_beat() -> None:
    clock = Clock()
    shard = connected(clock)
    beat(shard, clock)
    # op 1 arrives, then the server goes silent: no ACK for anything any more.
    clock.now += 1.0
    shard.receive({"op": 1, "d": None})
    for _ in range(3):
        assert shard.next_heartbeat is not None
        clock.now = shard.next_heartbeat
        actions = shard.tick(clock.now)
        if [a for a in actions if isinstance(a, Reconnect)]:
            break
    else:
        raise AssertionError("a silent connection was never detected as a zombie")
    [reconnect] = [a for a in actions if isinstance(a, Reconnect)]
    assert reconnect.resume and reconnect.close_code not in (1000, 1001)


def test_op1_while_a_scheduled_beat_is_unacked_keeps_waiting_for_that_ack() -> None:
    clock = Clock()
    shard = connected(clock)
    assert shard.next_heartbeat is not None
    clock.now = shard.next_heartbeat
    shard.tick(clock.now)  # scheduled beat out, no ACK yet
    clock.now += 0.02
    shard.receive({"op": 1, "d": None})
    clock.now += 0.05
    [acked] = [a for a in shard.receive({"op": 11, "d": None}) if isinstance(a, HeartbeatAcked)]
    assert acked.latency > 0
    assert shard.heartbeat_acked
