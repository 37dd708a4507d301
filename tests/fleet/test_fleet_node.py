"""Two fleet members in one event loop over one sandbox: shared state, commands, loss, clean exit."""

from __future__ import annotations

import dataclasses

import pytest
from redis.asyncio import Redis
from support.fleet import member_options, start_member, stop_member, wait_for_snapshot
from support.waiting import wait_until

from shardtui.fleet import (
    LOST,
    ClusterConfig,
    CommandStatus,
    FleetNode,
    NameInUseError,
    ProcessState,
    ShardRangeConflictError,
)
from shardtui.gateway.models import Activity, ConnectionStage, Presence, ShardHealth, ShardId
from shardtui.gateway.protocol import ActivityType, Status


@pytest.fixture
async def two_members(sandbox_factory, redis_url: str, redis: Redis, cluster_name: str):
    sandbox = await sandbox_factory(shards=4, max_concurrency=2, identify_window=0.1)
    members = []
    for name, shard_range in (("alpha", (0, 1)), ("beta", (2, 3))):
        members.append(
            await start_member(redis_url, cluster_name, name, shard_range, sandbox.rest_url, sandbox.token, 4)
        )
    try:
        for _, manager in members:
            assert await manager.wait_until_connected(10)
        yield sandbox, members
    finally:
        for node, manager in members:
            await stop_member(node, manager)


async def test_every_shard_of_every_process_is_listed_with_its_owner(two_members):
    _, [_, (beta, _)] = two_members
    snapshot = await wait_for_snapshot(
        beta.view, lambda s: s.stage_counts() == {"connected": 4} and len(s.processes) == 2
    )
    assert [(s.shard_id, s.process) for s in snapshot.shards] == [
        (0, "alpha"),
        (1, "alpha"),
        (2, "beta"),
        (3, "beta"),
    ]
    assert all(p.state is ProcessState.ALIVE for p in snapshot.processes)
    assert snapshot.process("alpha").shard_range == (0, 1)
    assert snapshot.process("beta").stages == {"connected": 2}
    assert snapshot.shard(2).info["total"] == 4
    assert snapshot.problem is None
    assert snapshot.owners() == {0: "alpha", 1: "alpha", 2: "beta", 3: "beta"}
    # Console code written for ShardManager.runners can read the fleet: the infos round-trip.
    infos = snapshot.runner_infos()
    assert sorted(int(i) for i in infos) == [0, 1, 2, 3]
    for shard in snapshot.shards:
        rebuilt = infos[ShardId(shard.shard_id)].to_dict()
        assert {k: v for k, v in rebuilt.items() if k != "presence"} == {
            k: v for k, v in shard.info.items() if k != "presence"
        }


async def test_a_command_from_one_process_restarts_a_shard_of_another(two_members):
    sandbox, [(alpha, _), (_, beta_manager)] = two_members
    resumes_before = sandbox.stats()["shards"]["3"]["resumes"]
    result = await alpha.control.restart(3)
    assert result.status is CommandStatus.OK, result.message
    assert result.process == "beta"
    assert result.message == "restart of shard 3: done by process beta"
    await wait_until(
        lambda: sandbox.stats()["shards"]["3"]["resumes"] == resumes_before + 1, what="the resume"
    )
    # The sandbox counts the RESUME before the runner has read the RESUMED answering it.
    await wait_until(lambda: beta_manager.runners[ShardId(3)].resumes == 1, what="the runner's resume")
    assert await beta_manager.wait_until_connected(10)


async def test_presence_shutdown_and_boot_travel_to_the_owner(two_members):
    sandbox, [(alpha, _), (_, beta_manager)] = two_members
    presence = Presence(Status.DND, Activity("the fleet", ActivityType.WATCHING))
    result = await alpha.control.set_presence(2, presence)
    assert result.ok, result.message
    await wait_until(lambda: (sandbox.presence(2) or {}).get("status") == "dnd", what="the presence")
    assert sandbox.presence(2)["activities"][0]["name"] == "the fleet"

    result = await alpha.control.shutdown(2)
    assert result.ok, result.message
    assert beta_manager.runners[ShardId(2)].running is False
    await wait_for_snapshot(alpha.view, lambda s: s.shard(2).info["running"] is False)
    # A stopped shard has no connection whose presence could change: the owner says so.
    refused = await alpha.control.set_presence(2, presence)
    assert refused.status is CommandStatus.FAILED
    assert refused.message == (
        "presence of shard 2 refused by process beta: shard 2 is not running, so its presence cannot be set"
    )
    result = await alpha.control.boot(2)
    assert result.ok, result.message
    assert await beta_manager.wait_until_connected(10)


async def test_commands_nobody_answers_are_reported_not_dropped(two_members):
    _, [(alpha, _), (beta, _)] = two_members
    missing = await alpha.control.restart(17)
    assert missing.status is CommandStatus.NO_OWNER
    assert missing.message == "restart of shard 17 not sent: no process of the fleet runs shard 17"
    # beta still publishes its heartbeat but stops reading commands (a wedged event loop, say).
    await beta.listener.close()
    result = await alpha.control.send("restart", 3, {"force_identify": True}, ack_timeout=0.5)
    assert result.status is CommandStatus.UNACKNOWLEDGED
    assert result.message == (
        "restart (fresh identify) of shard 3 sent to process beta: no acknowledgement within 0.5 s "
        "(the process may be dead, partitioned from Redis or overloaded); it may or may not have run"
    )


async def test_a_process_that_stops_beating_shows_its_shards_as_lost(two_members):
    _, [(alpha, _), (beta, beta_manager)] = two_members
    await wait_for_snapshot(alpha.view, lambda s: s.stage_counts() == {"connected": 4})
    # Stop beta's heartbeat without a goodbye (as a crash would); its shards really are still up.
    await beta.publisher.close(forget=False)
    snapshot = await wait_for_snapshot(alpha.view, lambda s: s.stage_counts().get(LOST) == 2, within=5)
    assert [s.shard_id for s in snapshot.shards if s.stage == LOST] == [2, 3]
    assert snapshot.process("beta").state is ProcessState.LOST
    assert snapshot.process("beta").stages == {LOST: 2}
    assert snapshot.process("alpha").state is ProcessState.ALIVE
    lost_info = snapshot.runner_infos()[ShardId(3)]
    assert (lost_info.stage, lost_info.health, lost_info.running) == (
        ConnectionStage.DISCONNECTED,
        ShardHealth.FAILED,
        False,
    )
    assert lost_info.health_reason == "process beta lost (no heartbeat)"
    result = await alpha.control.restart(3)
    assert result.status is CommandStatus.NO_OWNER
    assert (
        result.message
        == "restart of shard 3 not sent: shard 3's process beta is lost (its heartbeat expired)"
    )
    assert beta_manager.runners[ShardId(3)].stage is ConnectionStage.CONNECTED


async def test_a_clean_stop_leaves_the_fleet_instead_of_showing_lost(two_members):
    _, [(alpha, _), (beta, beta_manager)] = two_members
    await beta_manager.shutdown_all()
    await beta.close()
    snapshot = await wait_for_snapshot(alpha.view, lambda s: len(s.processes) == 1)
    assert [s.shard_id for s in snapshot.shards] == [0, 1]
    assert LOST not in snapshot.stage_counts()


async def test_view_and_commands_say_when_redis_is_unreachable(cluster_name: str):
    # Port 1 on loopback: nothing listens there, so every connection is refused at once.
    node = FleetNode(
        ClusterConfig(redis_url="redis://:hunter2@127.0.0.1:1/0", name="lonely", cluster=cluster_name)
    )
    try:
        snapshot = await node.view.snapshot()
        result = await node.control.restart(0)
    finally:
        await node.close()
    assert snapshot.shards == ()
    assert snapshot.problem is not None
    assert snapshot.problem.startswith("Redis at redis://127.0.0.1:1/0 unreachable (")
    assert result.status is CommandStatus.UNREACHABLE
    assert result.message.startswith(
        "restart of shard 0 not sent: Redis at redis://127.0.0.1:1/0 unreachable ("
    )
    assert "hunter2" not in snapshot.problem + result.message + repr(node.config)


async def test_a_second_live_process_cannot_take_a_name_in_use(
    two_members, redis_url: str, cluster_name: str
):
    sandbox, _ = two_members
    impostor = FleetNode(
        ClusterConfig(
            redis_url=redis_url, name="beta", cluster=cluster_name, heartbeat_interval=0.2, heartbeat_ttl=1.0
        )
    )
    impostor.build_manager(member_options(sandbox.rest_url, sandbox.token, 4))
    try:
        with pytest.raises(NameInUseError) as caught:
            await impostor.start()
    finally:
        await impostor.close(forget=False)
    assert str(caught.value).startswith("process name 'beta' is in use by a live process (host ")
    assert str(caught.value).endswith("give this process another [cluster] name")


async def test_a_restarted_process_takes_over_its_name_and_forgets_old_shards(
    two_members, redis_url: str, cluster_name: str
):
    sandbox, [(alpha, _), (beta, beta_manager)] = two_members
    # beta "crashes" (no goodbye) and comes back running only shard 3.
    await beta.publisher.close(forget=False)
    await beta_manager.shutdown_all()
    reborn, reborn_manager = await start_member(
        redis_url, cluster_name, "beta", (3, 3), sandbox.rest_url, sandbox.token, 4
    )
    try:
        assert await reborn_manager.wait_until_connected(10)
        snapshot = await wait_for_snapshot(alpha.view, lambda s: s.stage_counts() == {"connected": 3})
        assert snapshot.owners() == {0: "alpha", 1: "alpha", 3: "beta"}
    finally:
        await stop_member(reborn, reborn_manager)


async def test_forgetting_a_lost_process(two_members):
    _, [(alpha, _), (beta, _)] = two_members
    with pytest.raises(ValueError, match="process beta is alive"):
        await alpha.view.forget("beta")
    await beta.publisher.close(forget=False)
    # The heartbeat TTL here is 5 s: a wait of exactly 5 s raced it under load.
    await wait_for_snapshot(alpha.view, lambda s: s.stage_counts().get(LOST) == 2, within=15)
    assert await alpha.view.forget("beta") is True
    snapshot = await alpha.view.snapshot()
    assert [p.name for p in snapshot.processes] == ["alpha"]
    assert snapshot.owners() == {0: "alpha", 1: "alpha"}


async def test_a_process_may_not_run_shards_a_live_process_runs(
    two_members, redis_url: str, cluster_name: str
):
    sandbox, _ = two_members
    for shard_range, message in (
        ((1, 2), "process gamma would run shards 1-2, but live process alpha runs shards 0-1"),
        (None, "process gamma would run all shards, but live process alpha runs shards 0-1"),
    ):
        gamma = FleetNode(ClusterConfig(redis_url=redis_url, name="gamma", cluster=cluster_name))
        options = member_options(sandbox.rest_url, sandbox.token, 4)
        gamma.build_manager(dataclasses.replace(options, shard_range=shard_range))
        try:
            with pytest.raises(ShardRangeConflictError) as caught:
                await gamma.start()
        finally:
            await gamma.close(forget=False)
        assert str(caught.value) == f"{message}: give each process its own [cluster] shard_range"
    # A range nobody runs is fine.
    delta = FleetNode(
        ClusterConfig(redis_url=redis_url, name="delta", cluster=cluster_name, shard_range=(4, 4))
    )
    delta.build_manager(member_options(sandbox.rest_url, sandbox.token, 5))
    try:
        await delta.start()
    finally:
        await delta.close()
