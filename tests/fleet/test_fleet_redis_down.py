"""While Redis is down a member still acts on its own shards (directly, no Redis), and a command for
another process's shard comes back at once as one clear "not sent: Redis unreachable" result."""

from __future__ import annotations

from support.fleet import start_member, stop_member
from support.waiting import wait_until

from shardtui.fleet import CommandStatus
from shardtui.gateway.models import Activity, ConnectionStage, Presence, ShardId
from shardtui.gateway.protocol import ActivityType, Status


async def test_local_shards_obey_without_redis_and_remote_ones_say_redis_is_unreachable(
    sandbox_factory, private_redis, cluster_name: str
):
    sandbox = await sandbox_factory(shards=4, max_concurrency=2, identify_window=0.05)
    members = [
        await start_member(
            private_redis.url, cluster_name, name, shard_range, sandbox.rest_url, sandbox.token, 4
        )
        for name, shard_range in (("alpha", (0, 1)), ("beta", (2, 3)))
    ]
    (alpha, alpha_manager), (_, beta_manager) = members
    try:
        for _, manager in members:
            assert await manager.wait_until_connected(10)
        handled_by_beta = len(members[1][0].listener.handled)
        private_redis.stop()
        await wait_until(lambda: alpha.publisher.problem is not None, what="alpha noticing Redis is gone")
        assert alpha.control.is_local(0) and alpha.control.is_local(1)
        assert not alpha.control.is_local(2)

        # Restart of its own shard: done directly, the shard resumes.
        resumes = sandbox.stats()["shards"]["0"]["resumes"]
        result = await alpha.control.restart(0)
        assert result.status is CommandStatus.OK, result.message
        assert result.process == "alpha"
        assert result.message == "restart of shard 0: done by this process (alpha)"
        await wait_until(lambda: sandbox.stats()["shards"]["0"]["resumes"] == resumes + 1, what="the resume")
        assert await alpha_manager.wait_until_connected(10)

        # Presence, and a shutdown that keeps the session followed by a boot that resumes it: no
        # identify is needed, so none waits for the Redis gate.
        presence = Presence(status=Status.DND, activity=Activity("maintenance", ActivityType.WATCHING))
        result = await alpha.control.set_presence(1, presence)
        assert result.ok, result.message
        # Done once handed to the runner, which records it when its op 3 is sent (a moment later).
        await wait_until(
            lambda: alpha_manager.runners[ShardId(1)].presence == presence, what="the presence sent"
        )
        result = await alpha.control.shutdown(1, code=4000)
        assert result.ok, result.message
        assert alpha_manager.runners[ShardId(1)].stage is ConnectionStage.DISCONNECTED
        # A refusal by this process's manager is reported as one, like an owner's refusal.
        refused = await alpha.control.set_presence(1, presence)
        assert refused.status is CommandStatus.FAILED
        assert refused.message.startswith("presence of shard 1 refused by this process (alpha): ")
        assert "not running" in refused.message
        resumes = sandbox.stats()["shards"]["1"]["resumes"]
        result = await alpha.control.boot(1)
        assert result.ok, result.message
        assert await alpha_manager.wait_until_connected(10)
        assert sandbox.stats()["shards"]["1"]["resumes"] == resumes + 1

        # Another process's shard cannot be reached without Redis: one clear result, nothing sent.
        result = await alpha.control.restart(2)
        assert result.status is CommandStatus.UNREACHABLE
        assert result.process is None
        assert result.reason.startswith(f"Redis at {private_redis.url} unreachable (")
        assert result.message == f"restart of shard 2 not sent: {result.reason}"
        assert len(members[1][0].listener.handled) == handled_by_beta
        assert beta_manager.runners[ShardId(2)].resumes == 0

        # Redis back: the same command reaches the other process.
        private_redis.start()
        await wait_until(lambda: members[1][0].problem is None, within=15, what="beta reading commands again")
        result = await alpha.control.restart(2)
        assert result.status is CommandStatus.OK, result.message
        assert result.message == "restart of shard 2: done by process beta"
    finally:
        for node, manager in members:
            await stop_member(node, manager)
