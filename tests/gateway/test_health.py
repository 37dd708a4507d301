"""Wedged-shard detection: verdicts from infos, rates and a clock (no sockets)."""

from __future__ import annotations

from shardtui.gateway.health import HealthPolicy, RateTracker, assess_health
from shardtui.gateway.models import ConnectionStage, ShardHealth, ShardId, ShardRunnerInfo

NOW = 10_000.0


def shard(i: int, *, silent_for: float = 0.5, acked_ago: float = 1.0, guilds: int = 10) -> ShardRunnerInfo:
    info = ShardRunnerInfo(ShardId(i), 4)
    info.stage = ConnectionStage.CONNECTED
    info.running = True
    info.connected_since = NOW - 3600
    info.last_dispatch_at = NOW - silent_for
    info.last_ack_at = NOW - acked_ago
    info.guilds = guilds
    info.events_per_second = 5.0
    return info


def verdict(infos: list[ShardRunnerInfo], i: int, **kwargs):
    return assess_health(infos, NOW, **kwargs)[ShardId(i)]


def test_a_busy_fleet_is_ok() -> None:
    infos = [shard(i) for i in range(4)]
    assert {v.health for v in assess_health(infos, NOW).values()} == {ShardHealth.OK}


def test_silent_shard_with_acked_heartbeats_among_busy_peers_is_wedged() -> None:
    infos = [shard(0), shard(1), shard(2, silent_for=300.0, acked_ago=2.0), shard(3)]
    infos[2].events_per_second = 0.0
    result = verdict(infos, 2)
    assert result.health is ShardHealth.WEDGED
    assert "no dispatch for 5 min" in result.reason
    assert "heartbeats are ACKed" in result.reason
    assert "resumes first" in result.reason
    assert verdict(infos, 0).health is ShardHealth.OK


def test_a_shard_without_guilds_among_busy_peers_is_not_wedged() -> None:
    # More shards than the bot needs: shard 3's READY listed no guild, so no guild event is due.
    infos = [shard(0), shard(1), shard(2), shard(3, silent_for=3600.0, guilds=0)]
    assert verdict(infos, 3).health is ShardHealth.OK
    assert verdict(infos, 0).health is ShardHealth.OK


def test_a_stall_every_shard_shared_is_no_wedge() -> None:
    # The event loop was blocked for 5 minutes: no shard received anything, so none is singled out.
    infos = [shard(i, silent_for=300.0 + i) for i in range(4)]
    assert {v.health for v in assess_health(infos, NOW).values()} == {ShardHealth.OK}
    # Once the peers receive again, the one that still hears nothing is silent up to their latest dispatch.
    for i in (0, 1, 3):
        infos[i].last_dispatch_at = NOW - 0.5
    result = verdict(infos, 2)
    assert result.health is ShardHealth.WEDGED and "no dispatch for 5 min" in result.reason


def test_short_silence_is_quiet_before_it_is_wedged() -> None:
    infos = [shard(0), shard(1, silent_for=20.0)]
    result = verdict(infos, 1)
    assert result.health is ShardHealth.QUIET
    assert "no dispatch for 20 s" in result.reason


def test_silence_is_judged_against_peer_rates() -> None:
    # Peers see one event a minute: five silent minutes is ordinary for them.
    slow = [shard(i, silent_for=30.0) for i in range(3)] + [shard(3, silent_for=300.0)]
    for info in slow:
        info.events_per_second = 1 / 60
    assert verdict(slow, 3).health is ShardHealth.OK


def test_a_shard_with_few_guilds_is_expected_to_be_quieter() -> None:
    infos = [shard(0, guilds=1000), shard(1, guilds=1000), shard(2, guilds=1, silent_for=100.0)]
    infos[0].events_per_second = infos[1].events_per_second = 1.0
    # Expected rate for shard 2 is 0.001 events/s: below what peers can say anything about.
    assert verdict(infos, 2).health is ShardHealth.OK


def test_no_ack_since_the_silence_began_is_not_called_wedged() -> None:
    infos = [shard(0), shard(1, silent_for=300.0, acked_ago=400.0)]
    result = verdict(infos, 1)
    assert result.health is ShardHealth.QUIET
    assert "zombie" in result.reason


def test_fatal_shard_is_failed_with_its_reason() -> None:
    infos = [shard(0), shard(1)]
    infos[1].fatal_error = "4011 sharding required: raise the shard count"
    infos[1].stage = ConnectionStage.DISCONNECTED
    result = verdict(infos, 1)
    assert result.health is ShardHealth.FAILED
    assert result.reason == "4011 sharding required: raise the shard count"


def test_a_lone_shard_is_not_judged_by_silence() -> None:
    alone = [shard(0, silent_for=9999.0)]
    assert verdict(alone, 0).health is ShardHealth.OK


def test_a_shard_that_is_not_connected_is_never_ok() -> None:
    infos = [shard(0), shard(1, silent_for=9999.0), shard(2)]
    infos[1].stage = ConnectionStage.RESUMING
    infos[2].stage = ConnectionStage.DISCONNECTED
    infos[2].running = False
    resuming, stopped = verdict(infos, 1), verdict(infos, 2)
    assert (resuming.health, resuming.reason) == (ShardHealth.DOWN, "")
    assert (stopped.health, stopped.reason) == (ShardHealth.DOWN, "")
    assert verdict(infos, 0).health is ShardHealth.OK


def test_a_short_wedged_after_is_not_hidden_by_the_quiet_threshold() -> None:
    infos = [shard(0), shard(1, silent_for=5.0)]
    policy = HealthPolicy(min_wedged_seconds=3.0, wedged_after_gaps=0.0)
    assert verdict(infos, 1, policy=policy).health is ShardHealth.WEDGED


def test_policy_thresholds_are_honoured() -> None:
    infos = [shard(0), shard(1, silent_for=5.0)]
    strict = HealthPolicy(min_quiet_seconds=1.0, min_wedged_seconds=4.0, wedged_after_gaps=2.0)
    assert verdict(infos, 1).health is ShardHealth.OK
    assert verdict(infos, 1, policy=strict).health is ShardHealth.WEDGED


def test_rate_tracker_follows_counters_and_restarts() -> None:
    tracker = RateTracker(tau=1.0)
    info = shard(0)
    info.events_received = 0
    assert tracker.update([info], 0.0)[ShardId(0)] == 0.0
    info.events_received = 100
    assert tracker.update([info], 10.0)[ShardId(0)] == 10.0
    info.events_received = 100
    later = tracker.update([info], 20.0)[ShardId(0)]
    assert 0.0 <= later < 1.0
    info.events_received = 3  # a counter that went back starts a fresh measurement
    assert tracker.update([info], 21.0)[ShardId(0)] == 0.0


def test_without_guild_counts_the_peers_median_rate_is_the_yardstick() -> None:
    infos = [shard(i, guilds=0) for i in range(4)]
    infos[3].last_dispatch_at = NOW - 300.0
    busy = {ShardId(0): 5.0, ShardId(1): 5.0, ShardId(2): 5.0, ShardId(3): 0.0}
    assert verdict(infos, 3, rates=busy).health is ShardHealth.WEDGED
    # One chatty peer among idle ones does not make silence suspicious: the median is what counts.
    mostly_idle = {ShardId(0): 10.0, ShardId(1): 0.01, ShardId(2): 0.01, ShardId(3): 0.0}
    assert verdict(infos, 3, rates=mostly_idle).health is ShardHealth.OK


def test_a_large_fleet_is_judged_in_one_pass() -> None:
    infos = [shard(i) for i in range(5000)]
    infos[1234].last_dispatch_at = NOW - 600.0
    result = assess_health(infos, NOW)
    wedged = [sid.id for sid, v in result.items() if v.health is ShardHealth.WEDGED]
    assert wedged == [1234]
