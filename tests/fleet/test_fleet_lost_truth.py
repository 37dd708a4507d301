"""A lost fleet process's shards read as they are: nothing flowing (no events/s, no latency, no ACK
age), failed with a reason naming the process — not the last rate their owner published."""

from __future__ import annotations

import time

from shardtui.fleet.state import FleetShard
from shardtui.gateway.models import ConnectionStage, ShardHealth, ShardId, ShardRunnerInfo


def _published(shard: int) -> dict[str, object]:
    info = ShardRunnerInfo(ShardId(shard), 4, stage=ConnectionStage.CONNECTED, running=True, latency=0.04)
    info.events_per_second = 12.5
    info.events_received = 900
    info.last_ack_at = time.time() - 2.0
    return info.to_dict()


def test_a_lost_process_s_shard_shows_no_events_per_second() -> None:
    alive = FleetShard(2, "node-b", _published(2), lost=False).to_info()
    assert alive.events_per_second == 12.5 and alive.health is ShardHealth.OK
    lost = FleetShard(2, "node-b", _published(2), lost=True).to_info()
    assert lost.events_per_second == 0.0
    assert lost.latency is None and lost.last_ack_at is None
    assert lost.stage is ConnectionStage.DISCONNECTED and not lost.running
    assert lost.health is ShardHealth.FAILED and "node-b" in lost.health_reason
    # What it had received stays: a count is history, a rate is a claim about now.
    assert lost.events_received == 900
