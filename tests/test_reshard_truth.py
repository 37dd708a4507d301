"""After a live reshard the shards keep the presence the operator set at runtime (not the one the run
started with), and the manager's session start budget is the one the new set just read."""

from __future__ import annotations

from support.manager import options_for
from support.waiting import eventually

from shardtui.gateway.manager import ShardManager
from shardtui.gateway.models import Activity, Presence, ShardId
from shardtui.gateway.protocol import ActivityType, Status
from shardtui.sandbox import Sandbox

STARTED_WITH = Presence(Status.ONLINE, Activity("the start", ActivityType.WATCHING))
SET_LATER = Presence(Status.DND, Activity("maintenance", ActivityType.PLAYING))


async def test_a_reshard_keeps_the_runtime_presence_and_takes_the_fresh_budget(sandbox: Sandbox) -> None:
    manager = ShardManager(options_for(sandbox, presence=STARTED_WITH))
    await manager.initialize()
    try:
        assert await manager.wait_until_connected(10.0)
        for shard_id in manager.runners:
            messenger = manager.messenger(shard_id)
            assert messenger is not None
            messenger.set_presence(SET_LATER)
        await eventually(
            lambda: all(sandbox.presence(s) and sandbox.presence(s)["status"] == "dnd" for s in (0, 1))
        )
        await eventually(lambda: all(i.presence == SET_LATER for i in manager.runners.values()))

        await manager.reshard(3, dedupe_grace=0.0)

        assert sorted(int(s) for s in manager.runners) == [0, 1, 2]
        for shard in (0, 1, 2):
            presence = sandbox.presence(shard)
            assert presence is not None and presence["status"] == "dnd", presence
            assert [a["name"] for a in presence["activities"]] == ["maintenance"]
            assert manager.runners[ShardId(shard)].presence == SET_LATER
        limit = manager.session_start_limit
        assert limit is not None
        # 2 identifies at start, 3 for the new set: the header counts from what the sandbox says now.
        assert limit.remaining == sandbox.stats()["session_start_limit"]["remaining"]
        assert limit.remaining == limit.total - 5
        assert manager.identify_budget() == limit.remaining
    finally:
        await manager.shutdown_all()
