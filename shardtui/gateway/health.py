"""Wedged-shard detection: a connected shard that stopped receiving dispatches while its peers did not.

A wedged shard looks healthy to every other check: its socket is open and its heartbeats are
ACKed, so no zombie detection fires. What gives it away is silence measured against the rest of
the fleet: if peers in this process receive several events a second and this shard has had none
for far longer than its expected gap between events, something upstream lost it. The verdict is a
pure function of the shards' infos, their event rates and the time, so it is tested without sockets.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shardtui.gateway.gate import describe_duration
from shardtui.gateway.models import ConnectionStage, ShardHealth, ShardId, ShardRunnerInfo


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """Thresholds for the verdicts. A "gap" is the expected time between two events for this shard."""

    #: Silence longer than this many expected gaps (and ``min_quiet_seconds``) reads "quiet".
    quiet_after_gaps: float = 10.0
    #: Silence longer than this many expected gaps (and ``min_wedged_seconds``) reads "wedged".
    wedged_after_gaps: float = 40.0
    min_quiet_seconds: float = 15.0
    #: ``[health] wedged_after``: the least silence that reads "wedged", however busy the peers.
    min_wedged_seconds: float = 60.0
    #: Peers slower than this (events/s) say nothing about a shard's silence.
    min_peer_rate: float = 0.05


@dataclass(frozen=True, slots=True)
class HealthVerdict:
    health: ShardHealth
    reason: str = ""


OK = HealthVerdict(ShardHealth.OK)
DOWN = HealthVerdict(ShardHealth.DOWN)


def connection_verdict(info: ShardRunnerInfo) -> HealthVerdict | None:
    """The verdict a shard's connection alone decides: failed on a fatal error, down while not
    connected (a shard that is not connected is never "ok"); None when connected."""
    if info.fatal_error is not None:
        return HealthVerdict(ShardHealth.FAILED, info.fatal_error)
    if info.stage is ConnectionStage.CONNECTED:
        return None
    if info.health is ShardHealth.FAILED:
        # Stopped by a bot-wide fatal error another shard heard: it says why until booted again.
        return HealthVerdict(ShardHealth.FAILED, info.health_reason)
    # No reason text: the stage already says which way it is down, and a reason of its own (a queued
    # shard's "waiting for identify bucket 1") must not be hidden behind a repeat of it.
    return DOWN


class _Fleet:
    """Totals over the connected shards, so each shard's expectation costs O(log n), not O(n)."""

    def __init__(self, connected: list[ShardRunnerInfo], rates: Mapping[ShardId, float]) -> None:
        self.rates = {i.shard_id: rates.get(i.shard_id, 0.0) for i in connected}
        self.total_rate = sum(self.rates.values())
        self.total_guilds = sum(i.guilds for i in connected)
        self.sorted_rates = sorted(self.rates.values())
        # The two latest dispatches, so each shard finds its peers' latest without a pass of its own.
        dispatched = [(i.last_dispatch_at, i.shard_id) for i in connected if i.last_dispatch_at is not None]
        self._latest = sorted(dispatched, reverse=True)[:2]

    def peers_latest_dispatch(self, info: ShardRunnerInfo) -> float | None:
        """When any other connected shard last received a dispatch (None if none has)."""
        for at, shard_id in self._latest:
            if shard_id != info.shard_id:
                return at
        return None

    def _median_without(self, value: float) -> float:
        ordered = self.sorted_rates
        skip = bisect.bisect_left(ordered, value)
        size = len(ordered) - 1

        def at(index: int) -> float:
            return ordered[index if index < skip else index + 1]

        return (at((size - 1) // 2) + at(size // 2)) / 2.0

    def expected_rate(self, info: ShardRunnerInfo) -> float:
        """Events/s this shard should see, judged from its peers (scaled by guild count when known)."""
        own = self.rates[info.shard_id]
        peer_guilds = self.total_guilds - info.guilds
        if peer_guilds > 0:
            # Guild counts are known (READY told them): a shard with none hears no guild events,
            # however busy its peers are, and its silence is no sign of a wedge.
            return (self.total_rate - own) / peer_guilds * info.guilds
        return self._median_without(own)


def assess_health(
    infos: Iterable[ShardRunnerInfo],
    now: float,
    rates: Mapping[ShardId, float] | None = None,
    policy: HealthPolicy = HealthPolicy(),
) -> dict[ShardId, HealthVerdict]:
    """A verdict for every shard. ``now`` is wall time like the infos' timestamps; ``rates`` are
    events/s per shard (default: each info's ``events_per_second``)."""
    infos = list(infos)
    if rates is None:
        rates = {info.shard_id: info.events_per_second for info in infos}
    connected = [i for i in infos if i.stage is ConnectionStage.CONNECTED and i.fatal_error is None]
    connected_ids = {i.shard_id for i in connected}
    fleet = _Fleet(connected, rates)
    verdicts: dict[ShardId, HealthVerdict] = {}
    for info in infos:
        by_connection = connection_verdict(info)
        if by_connection is not None:
            verdicts[info.shard_id] = by_connection
            continue
        if info.shard_id not in connected_ids or len(connected) < 2:
            # No peer to compare with.
            verdicts[info.shard_id] = OK
            continue
        expected = fleet.expected_rate(info)
        if expected < policy.min_peer_rate:
            verdicts[info.shard_id] = OK
            continue
        starts = [t for t in (info.last_dispatch_at, info.connected_since) if t is not None]
        if not starts:
            verdicts[info.shard_id] = OK
            continue
        silent_since = max(starts)
        # Silence counts only while the peers kept receiving: when the whole process stalled (a
        # blocked event loop, a paused VM) every shard went quiet together and none is wedged.
        peers_latest = fleet.peers_latest_dispatch(info)
        silence = (now if peers_latest is None else min(now, peers_latest)) - silent_since
        gap = 1.0 / expected
        wedged_after = max(policy.min_wedged_seconds, policy.wedged_after_gaps * gap)
        # A short wedged_after must not hide behind the quiet threshold.
        quiet_after = min(wedged_after, max(policy.min_quiet_seconds, policy.quiet_after_gaps * gap))
        if silence < quiet_after:
            verdicts[info.shard_id] = OK
            continue
        peer_text = f"its peers' traffic implies {expected:.2g} events/s here"
        acked = info.last_ack_at is not None and info.last_ack_at > silent_since
        if silence >= wedged_after and acked:
            verdicts[info.shard_id] = HealthVerdict(
                ShardHealth.WEDGED,
                f"no dispatch for {describe_duration(silence)} while heartbeats are ACKed and {peer_text}; "
                "restart it (it resumes first)",
            )
        elif silence >= wedged_after:
            verdicts[info.shard_id] = HealthVerdict(
                ShardHealth.QUIET,
                f"no dispatch and no heartbeat ACK for {describe_duration(silence)} ({peer_text}); "
                "the connection may be a zombie",
            )
        else:
            verdicts[info.shard_id] = HealthVerdict(
                ShardHealth.QUIET, f"no dispatch for {describe_duration(silence)} ({peer_text})"
            )
    return verdicts


@dataclass(slots=True)
class _Sample:
    at: float
    count: int
    rate: float | None = None


@dataclass(slots=True)
class RateTracker:
    """Events/s per shard from the ``events_received`` counters, smoothed over ``tau`` seconds."""

    tau: float = 30.0
    _samples: dict[ShardId, _Sample] = field(default_factory=dict)

    def update(self, infos: Iterable[ShardRunnerInfo], now: float) -> dict[ShardId, float]:
        rates: dict[ShardId, float] = {}
        for info in infos:
            sample = self._samples.get(info.shard_id)
            count = info.events_received
            if sample is None or count < sample.count:
                # First look, or the counter went back (a reset info): start measuring again.
                self._samples[info.shard_id] = _Sample(now, count)
                rates[info.shard_id] = 0.0
                continue
            if now <= sample.at:
                rates[info.shard_id] = sample.rate or 0.0
                continue
            elapsed = now - sample.at
            instant = (count - sample.count) / elapsed
            alpha = 1.0 - math.exp(-elapsed / self.tau)
            rate = instant if sample.rate is None else sample.rate + alpha * (instant - sample.rate)
            self._samples[info.shard_id] = _Sample(now, count, rate)
            rates[info.shard_id] = rate
        return rates

    def forget(self, shard_id: ShardId) -> None:
        self._samples.pop(shard_id, None)
