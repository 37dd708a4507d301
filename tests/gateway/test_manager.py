"""ShardManager against the real sandbox and the real runner: boot pacing, restarts, shutdowns,
the session start budget, fatal errors, events, and a clean exit."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest
from support.manager import options_for
from support.waiting import eventually

from shardtui.gateway.errors import FatalGatewayError, GatewayError
from shardtui.gateway.gate import InMemoryIdentifyGate
from shardtui.gateway.health import HealthPolicy
from shardtui.gateway.manager import ShardManager, ShardManagerOptions
from shardtui.gateway.messages import ShardManagerMessage
from shardtui.gateway.models import (
    ConnectionStage,
    FatalErrorEvent,
    ShardHealth,
    ShardId,
    ShardInfoUpdateEvent,
    ShardLogEvent,
    ShardStageUpdateEvent,
)
from shardtui.gateway.protocol import GatewayIntents


def leftover_tasks(before: set[asyncio.Task]) -> set[asyncio.Task]:
    """Tasks started since ``before`` that are still alive, except the sandbox server's own
    per-connection handlers (the server side, which ends when it notices the client is gone)."""
    return {
        task
        for task in asyncio.all_tasks() - before
        if not task.get_coro().__qualname__.startswith(("RequestHandler.", "WebSocketResponse."))
    }


class Recorder:
    def __init__(self) -> None:
        self.events: list[object] = []

    def __call__(self, event: object) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
async def managers():
    made: list[ShardManager] = []

    def make(options: ShardManagerOptions) -> ShardManager:
        manager = ShardManager(options)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        await manager.shutdown_all()


def shard_stats(sandbox, shard: int) -> dict:
    return sandbox.stats()["shards"][str(shard)]


@pytest.mark.parametrize(("shards", "max_concurrency"), [(4, 1), (8, 4)])
async def test_fleet_boots_within_identify_limits(sandbox_factory, managers, shards, max_concurrency) -> None:
    sandbox = await sandbox_factory(shards=shards, max_concurrency=max_concurrency, guilds=2 * shards)
    manager = managers(options_for(sandbox))
    recorder = Recorder()
    manager.subscribe(recorder)
    await manager.initialize()
    assert await manager.wait_until_connected(20.0)
    stats = sandbox.stats()
    admitted = [(shard.id, round(at, 3)) for shard, at in manager._gate.admitted]
    per_shard = {
        k: (v["identifies"], v["identify_violations"], v["connections"]) for k, v in stats["shards"].items()
    }
    assert stats["identify_violations"] == 0, (
        f"admitted {admitted}; identifies/violations/connections {per_shard}"
    )
    assert [shard_stats(sandbox, i)["identifies"] for i in range(shards)] == [1] * shards
    assert manager.shard_total == shards
    # One HTTP session for every shard, with no connection cap (a capped pool stalls shard 101 forever).
    assert manager._session is not None and manager._session.connector.limit == 0
    assert manager.max_concurrency == max_concurrency
    assert manager.shards_instantiated() == [ShardId(i) for i in range(shards)]
    assert manager.bot_user is not None and int(manager.bot_user["id"]) == sandbox.bot_user_id
    assert sum(info.guilds for info in manager.runners.values()) == 2 * shards
    assert manager._queuer is not None
    assert manager._queuer.spawn_order == [ShardId(i) for i in range(shards)]

    # Stage events per shard form one unbroken chain from DISCONNECTED through IDENTIFYING to CONNECTED.
    for i in range(shards):
        chain = [e for e in recorder.of(ShardStageUpdateEvent) if e.shard_id == ShardId(i)]
        assert chain[0].old is ConnectionStage.DISCONNECTED
        assert all(a.new is b.old for a, b in itertools.pairwise(chain))
        news = [e.new for e in chain]
        assert ConnectionStage.IDENTIFYING in news
        assert news.index(ConnectionStage.IDENTIFYING) < news.index(ConnectionStage.CONNECTED)
        assert chain[-1].new is ConnectionStage.CONNECTED


async def test_a_shard_range_runs_only_those_shards(sandbox_factory, managers) -> None:
    sandbox = await sandbox_factory(shards=4, guilds=8)
    manager = managers(options_for(sandbox, shard_range=(1, 2)))
    await manager.initialize()
    assert sorted(manager.runners) == [ShardId(1), ShardId(2)]
    assert await manager.wait_until_connected(10.0)
    assert sorted(sandbox.stats()["shards"]) == ["1", "2"]
    assert all(info.total == 4 for info in manager.runners.values())
    with pytest.raises(ValueError, match=r"shard 0 is not run by this process \(it runs shards 1, 2\)"):
        await manager.restart(ShardId(0))


async def test_set_shards_and_a_range_beyond_the_total(sandbox_factory, managers) -> None:
    sandbox = await sandbox_factory(shards=2)
    manager = managers(options_for(sandbox))
    manager.set_shards(2, 2, 4)
    await manager.initialize()
    assert sorted(manager.runners) == [ShardId(2), ShardId(3)]
    assert await manager.wait_until_connected(10.0)
    with pytest.raises(RuntimeError, match="before initialize"):
        manager.set_shards(0, 1, 4)

    too_far = managers(options_for(sandbox, shard_range=(1, 5)))
    with pytest.raises(GatewayError, match=r"shard range 1..5 does not fit in the 2 shards"):
        await too_far.initialize()


def test_options_refuse_bad_values_with_a_reason() -> None:
    base = {"token": "t", "intents": GatewayIntents.default(), "rest_url": "http://x/api/v10"}
    with pytest.raises(ValueError, match="compression"):
        ShardManagerOptions(**base, compression="gzip")
    with pytest.raises(ValueError, match="large_threshold"):
        ShardManagerOptions(**base, large_threshold=10)
    with pytest.raises(ValueError, match="does not fit"):
        ShardManagerOptions(**base, shard_total=2, shard_range=(0, 2))
    with pytest.raises(ValueError, match="token"):
        ShardManagerOptions(**{**base, "token": " "})
    assert "t'" not in repr(ShardManagerOptions(**base))


async def test_runners_hold_every_shard_from_the_moment_it_is_queued(sandbox_factory, managers) -> None:
    sandbox = await sandbox_factory(shards=3, identify_window=0.3)
    manager = managers(options_for(sandbox))
    await manager.initialize()
    # Right after initialize() every shard is known, running, and truthfully not connected yet.
    assert sorted(manager.runners) == [ShardId(0), ShardId(1), ShardId(2)]
    assert all(info.running for info in manager.runners.values())
    assert all(info.stage is not ConnectionStage.CONNECTED for info in manager.runners.values())
    status = manager.queue_status()
    assert set(status.queued) | set(status.identifying) == {ShardId(0), ShardId(1), ShardId(2)}
    # A fresh identify now would queue behind the three shards of the one bucket.
    plan = manager.plan("restart_identify", [ShardId(0)])
    assert plan.identifies == 1
    assert plan.seconds >= 3 * 0.3
    assert await manager.wait_until_connected(20.0)
    assert manager.queue_status().queued == ()


async def test_restart_resumes_and_force_identify_identifies(sandbox_factory, managers) -> None:
    sandbox = await sandbox_factory(shards=2)
    manager = managers(options_for(sandbox))
    await manager.initialize()
    assert await manager.wait_until_connected(10.0)
    info = manager.runners[ShardId(1)]
    session = info.session_id

    plan = manager.plan("restart", [ShardId(1)])
    assert (plan.resumes, plan.identifies) == (1, 0)

    await manager.restart(ShardId(1))
    await eventually(lambda: info.resumes == 1 and info.stage is ConnectionStage.CONNECTED)
    assert shard_stats(sandbox, 1)["resumes"] == 1
    assert shard_stats(sandbox, 1)["identifies"] == 1
    assert info.session_id == session

    await manager.restart(ShardId(1), force_identify=True)
    await eventually(lambda: info.identifies == 2 and info.stage is ConnectionStage.CONNECTED)
    assert shard_stats(sandbox, 1)["identifies"] == 2
    assert info.session_id != session
    assert sandbox.stats()["identify_violations"] == 0
    assert shard_stats(sandbox, 0)["identifies"] == 1


async def test_wait_until_connected_after_a_restart_waits_for_the_reconnect(
    sandbox_factory, managers
) -> None:
    sandbox = await sandbox_factory(shards=2)
    manager = managers(options_for(sandbox))
    await manager.initialize()
    assert await manager.wait_until_connected(10.0)
    info = manager.runners[ShardId(1)]
    for round_no in (1, 2, 3):
        # restart() only asks the runner; right after it the shard still shows its old connection.
        await manager.restart(ShardId(1))
        assert await manager.wait_until_connected(10.0)
        assert info.resumes == round_no and info.stage is ConnectionStage.CONNECTED
    await manager.restart(ShardId(1), force_identify=True)
    assert await manager.wait_until_connected(10.0)
    assert info.identifies == 2
    assert sandbox.stats()["identify_violations"] == 0


async def test_re_identifies_after_a_session_timeout_keep_the_identify_limit(
    sandbox_factory, managers
) -> None:
    sandbox = await sandbox_factory(shards=4, max_concurrency=2)
    manager = managers(options_for(sandbox))
    await manager.initialize()
    assert await manager.wait_until_connected(10.0)
    # Every session dies at once: all four shards must identify again, two buckets, paced by the gate.
    assert sandbox.inject("close", None, code=4009) == 4
    await eventually(lambda: all(i.identifies == 2 for i in manager.runners.values()))
    assert await manager.wait_until_connected(10.0)
    assert sandbox.stats()["identify_violations"] == 0
    assert [shard_stats(sandbox, i)["identifies"] for i in range(4)] == [2, 2, 2, 2]


async def test_shutdown_and_boot_one_shard(sandbox_factory, managers) -> None:
    sandbox = await sandbox_factory(shards=3)
    manager = managers(options_for(sandbox))
    await manager.initialize()
    assert await manager.wait_until_connected(10.0)

    await manager.shutdown(ShardId(1))
    info = manager.runners[ShardId(1)]
    assert not manager.has(ShardId(1))
    assert not info.running
    assert info.stage is ConnectionStage.DISCONNECTED
    assert shard_stats(sandbox, 1)["client_closes"] == {"1000": 1}
    assert manager.shards_instantiated() == [ShardId(0), ShardId(2)]
    assert manager.runners[ShardId(0)].stage is ConnectionStage.CONNECTED

    plan = manager.plan("boot", [ShardId(1)])
    assert plan.identifies == 1
    await manager.boot(ShardId(1))
    assert await manager.wait_until_connected(10.0)
    assert shard_stats(sandbox, 1)["identifies"] == 2
    assert sandbox.stats()["identify_violations"] == 0


async def test_shutdown_with_a_resumable_code_keeps_the_session_for_boot(sandbox_factory, managers) -> None:
    sandbox = await sandbox_factory(shards=2)
    manager = managers(options_for(sandbox))
    await manager.initialize()
    assert await manager.wait_until_connected(10.0)
    await manager.shutdown(ShardId(0), 4000)
    assert not manager.has(ShardId(0))
    await manager.boot(ShardId(0))
    assert await manager.wait_until_connected(10.0)
    assert shard_stats(sandbox, 0)["resumes"] == 1
    assert shard_stats(sandbox, 0)["identifies"] == 1


async def test_exhausted_session_budget_waits_and_says_so(sandbox_factory, managers) -> None:
    sandbox = await sandbox_factory(shards=3, session_start_total=2)
    manager = managers(options_for(sandbox))
    recorder = Recorder()
    manager.subscribe(recorder)
    await manager.initialize()
    await eventually(
        lambda: (
            manager.runners[ShardId(0)].stage is ConnectionStage.CONNECTED
            and manager.runners[ShardId(1)].stage is ConnectionStage.CONNECTED
        )
    )
    await eventually(lambda: manager.queue_status().waiting_reason is not None)
    status = manager.queue_status()
    assert status.queued == (ShardId(2),)
    assert status.budget_remaining == 0
    assert "session start limit" in status.waiting_reason
    assert "shard 2 wait" in status.waiting_reason
    logs = [e.message for e in recorder.of(ShardLogEvent) if e.shard_id is None]
    assert any("only 2 session starts left" in line for line in logs)
    assert any("session start limit" in line for line in logs)
    # Shard 2 never opened a socket it could not identify on, and nothing was refused.
    assert "2" not in sandbox.stats()["shards"]
    assert sandbox.stats()["session_starts_used"] == 2
    assert manager.runners[ShardId(2)].stage is ConnectionStage.DISCONNECTED
    plan = manager.plan("restart_identify", [ShardId(0)])
    assert plan.over_budget == 1
    assert "over the budget wait for the reset" in plan.text


async def test_fatal_close_stops_every_shard_and_is_reported_once(sandbox_factory, managers) -> None:
    sandbox = await sandbox_factory(shards=3)
    manager = managers(options_for(sandbox, health_interval=0.05))
    recorder = Recorder()
    manager.subscribe(recorder)
    await manager.initialize()
    assert await manager.wait_until_connected(10.0)
    connections = sandbox.stats()["connections_total"]
    assert sandbox.inject("close", 0, code=4004) == 1
    await eventually(lambda: not any(info.running for info in manager.runners.values()))
    await eventually(lambda: len(recorder.of(FatalErrorEvent)) >= 1)
    await asyncio.sleep(0.3)  # room for a second report, which must not come
    fatal = recorder.of(FatalErrorEvent)
    assert len(fatal) == 1
    assert fatal[0].kind == "authentication"
    assert fatal[0].close_code == 4004
    assert "token" in fatal[0].message
    assert manager.fatal_error == fatal[0]
    assert manager.shards_instantiated() == []
    # Health checks run meanwhile and must not hide why shards stopped.
    await eventually(lambda: all(info.health is ShardHealth.FAILED for info in manager.runners.values()))
    await asyncio.sleep(0.2)
    assert all(info.health is ShardHealth.FAILED for info in manager.runners.values())
    assert manager.runners[ShardId(2)].health_reason.startswith("stopped: ")
    assert manager.runners[ShardId(0)].fatal_error is not None
    assert manager.runners[ShardId(2)].fatal_error is None
    # No retry loop: nobody reconnected after the fatal close.
    assert sandbox.stats()["connections_total"] == connections
    assert not await manager.wait_until_connected(0.1)

    # An explicit boot is the operator trying again: it clears the error and may work this time.
    await manager.boot(ShardId(0))
    assert manager.fatal_error is None
    await eventually(lambda: manager.runners[ShardId(0)].stage is ConnectionStage.CONNECTED)
    assert manager.runners[ShardId(0)].health is ShardHealth.OK


async def test_fatal_close_of_one_shard_stops_only_that_shard(sandbox_factory, managers) -> None:
    sandbox = await sandbox_factory(shards=2)
    manager = managers(options_for(sandbox))
    recorder = Recorder()
    manager.subscribe(recorder)
    await manager.initialize()
    assert await manager.wait_until_connected(10.0)
    sandbox.inject("close", 1, code=4011)
    info = manager.runners[ShardId(1)]
    await eventually(lambda: not info.running)
    fatal = recorder.of(FatalErrorEvent)
    assert [(e.kind, e.shard_ids) for e in fatal] == [("sharding_required", (ShardId(1),))]
    assert manager.fatal_error is None
    assert info.health is ShardHealth.FAILED
    assert "2500 guilds" in info.health_reason
    assert manager.runners[ShardId(0)].stage is ConnectionStage.CONNECTED
    assert not await manager.wait_until_connected(5.0)  # at once: shard 1 cannot connect by itself


async def test_rejected_token_fails_initialize_with_a_clear_error(sandbox_factory) -> None:
    sandbox = await sandbox_factory(shards=2)
    before = asyncio.all_tasks()
    manager = ShardManager(options_for(sandbox, token="bm90LWEtdG9rZW4.wrong.token"))
    with pytest.raises(FatalGatewayError, match="token was rejected") as caught:
        await manager.initialize()
    assert "wrong.token" not in str(caught.value)
    assert manager.fatal_error is not None and manager.fatal_error.kind == "authentication"
    assert manager.runners == {}
    await manager.shutdown_all()
    assert leftover_tasks(before) == set()
    assert sandbox.stats()["connections_total"] == 0


async def test_shutdown_all_is_parallel_bounded_and_leaves_no_task(sandbox_factory) -> None:
    sandbox = await sandbox_factory(shards=4, max_concurrency=4)
    before = asyncio.all_tasks()
    manager = ShardManager(options_for(sandbox, health_interval=0.05))
    recorder = Recorder()
    manager.subscribe(recorder)
    await manager.initialize()
    assert await manager.wait_until_connected(10.0)
    await manager.shutdown_all()
    await manager.shutdown_all()  # idempotent
    assert leftover_tasks(before) == set()
    assert manager._session is None
    assert all(not info.running for info in manager.runners.values())
    assert all(info.stage is ConnectionStage.DISCONNECTED for info in manager.runners.values())
    assert all(shard_stats(sandbox, i)["client_closes"] == {"1000": 1} for i in range(4))


async def test_shutdown_all_cancels_a_shard_that_will_not_close(sandbox_factory) -> None:
    sandbox = await sandbox_factory(shards=2)
    release = asyncio.Event()

    async def stuck_handler(dispatch) -> None:
        # Shard 1's handler never finishes, so its runner keeps draining long past the timeout.
        if dispatch.shard_id == ShardId(1):
            await release.wait()

    before = asyncio.all_tasks()
    manager = ShardManager(options_for(sandbox, shutdown_timeout=0.3, event_handler=stuck_handler))
    recorder = Recorder()
    manager.subscribe(recorder)
    await manager.initialize()
    assert await manager.wait_until_connected(10.0)
    await manager.shutdown_all()
    assert leftover_tasks(before) == set()
    assert any("did not close within" in e.message for e in recorder.of(ShardLogEvent))
    assert all(not info.running for info in manager.runners.values())
    assert shard_stats(sandbox, 0)["client_closes"] == {"1000": 1}


async def test_shutdown_of_a_stuck_shard_is_bounded_and_final(sandbox_factory, managers) -> None:
    sandbox = await sandbox_factory(shards=2)
    release = asyncio.Event()

    async def stuck_handler(dispatch) -> None:
        if dispatch.shard_id == ShardId(1):
            await release.wait()

    manager = managers(options_for(sandbox, shutdown_timeout=0.3, event_handler=stuck_handler))
    await manager.initialize()
    assert await manager.wait_until_connected(10.0)
    await manager.shutdown(ShardId(1))
    assert not manager.has(ShardId(1))
    await asyncio.sleep(0.3)
    # Both the cancelled runner's own acknowledgement and the manager's are in: still stopped.
    assert not manager.runners[ShardId(1)].running
    assert shard_stats(sandbox, 1)["connections"] == 1
    assert manager.runners[ShardId(0)].stage is ConnectionStage.CONNECTED


async def test_manager_messages_drive_restart_shutdown_and_shutdown_all(sandbox_factory) -> None:
    # The monitor's inbox is where runners (and anything speaking ShardManagerMessage) talk to it.
    sandbox = await sandbox_factory(shards=2)
    before = asyncio.all_tasks()
    manager = ShardManager(options_for(sandbox))
    await manager.initialize()
    assert await manager.wait_until_connected(10.0)
    inbox = manager._manager_tx
    inbox.put_nowait(ShardManagerMessage.Restart(ShardId(0)))
    await eventually(lambda: manager.runners[ShardId(0)].resumes == 1)
    inbox.put_nowait(ShardManagerMessage.Shutdown(ShardId(1), 1000))
    await eventually(lambda: not manager.has(ShardId(1)))
    inbox.put_nowait(ShardManagerMessage.ShutdownAll())
    await eventually(lambda: manager._closed)
    await manager.shutdown_all()
    assert leftover_tasks(before) == set()
    assert shard_stats(sandbox, 0)["client_closes"] == {"4000": 1, "1000": 1}


async def test_a_failing_subscriber_never_breaks_the_manager(sandbox_factory, managers, caplog) -> None:
    sandbox = await sandbox_factory(shards=2)
    manager = managers(options_for(sandbox))

    def broken(event: object) -> None:
        raise RuntimeError("subscriber bug")

    manager.subscribe(broken)
    recorder = Recorder()
    unsubscribe = manager.subscribe(recorder)
    with caplog.at_level(logging.ERROR, logger="shardtui.gateway.manager"):
        await manager.initialize()
        assert await manager.wait_until_connected(10.0)
    assert recorder.of(ShardStageUpdateEvent)
    assert any("subscriber" in r.getMessage() for r in caplog.records)
    unsubscribe()
    count = len(recorder.events)
    await manager.restart(ShardId(0))
    await eventually(lambda: manager.runners[ShardId(0)].resumes == 1)
    assert len(recorder.events) == count


async def test_user_handler_sees_dispatches_and_ready_user_is_captured(sandbox_factory, managers) -> None:
    sandbox = await sandbox_factory(shards=2, guilds=4)
    seen: list[tuple[int, str]] = []

    async def handler(dispatch) -> None:
        seen.append((dispatch.shard_id.id, dispatch.name))

    manager = managers(options_for(sandbox, event_handler=handler))
    await manager.initialize()
    assert await manager.wait_until_connected(10.0)
    await eventually(lambda: sum(1 for _, name in seen if name == "GUILD_CREATE") == 4)
    assert {(0, "READY"), (1, "READY")} <= set(seen)
    assert manager.bot_user is not None and manager.bot_user.get("bot") is True


async def test_wedged_shard_is_flagged_and_a_restart_resumes_it(sandbox_factory, managers) -> None:
    sandbox = await sandbox_factory(shards=3, guilds=6, event_rate=60.0)
    policy = HealthPolicy(
        quiet_after_gaps=5, wedged_after_gaps=10, min_quiet_seconds=0.3, min_wedged_seconds=0.8
    )
    manager = managers(options_for(sandbox, health_interval=0.1, health_policy=policy))
    recorder = Recorder()
    manager.subscribe(recorder)
    await manager.initialize()
    assert await manager.wait_until_connected(10.0)
    await asyncio.sleep(0.5)  # let the rate tracker see traffic
    assert all(info.health is ShardHealth.OK for info in manager.runners.values())

    assert sandbox.inject("wedge", 1) == 1
    info = manager.runners[ShardId(1)]
    await eventually(lambda: info.health is ShardHealth.WEDGED, within=10.0)
    assert "heartbeats are ACKed" in info.health_reason
    assert manager.runners[ShardId(0)].health is ShardHealth.OK
    assert any(isinstance(e, ShardInfoUpdateEvent) and e.shard_id == ShardId(1) for e in recorder.events)
    assert any(isinstance(e, ShardLogEvent) and "wedged" in e.message for e in recorder.events)

    plan = manager.plan("restart", [ShardId(1)])
    assert (plan.resumes, plan.identifies) == (1, 0)
    await manager.restart(ShardId(1))
    await eventually(lambda: info.resumes == 1 and info.stage is ConnectionStage.CONNECTED)
    await eventually(lambda: info.health is ShardHealth.OK, within=5.0)
    assert shard_stats(sandbox, 1)["identifies"] == 1
    assert shard_stats(sandbox, 1)["resumes"] == 1


class StallingGate(InMemoryIdentifyGate):
    """The in-memory gate, with a loop stall between each grant and the runner's send (what a busy
    event loop does), recording when the runner reports the IDENTIFY written."""

    def __init__(self, stall: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stall = stall
        self.sent_at: list[tuple[ShardId, float]] = []

    async def acquire(self, shard_id: ShardId) -> None:
        await super().acquire(shard_id)
        await asyncio.sleep(self.stall)

    def sent(self, shard_id: ShardId) -> None:
        self.sent_at.append((ShardId(int(shard_id)), self.clock.monotonic()))
        super().sent(shard_id)


async def test_a_buckets_window_counts_from_the_identifys_send(sandbox_factory) -> None:
    # Discord counts the window from when an IDENTIFY arrives: a grant that sat in a stalled loop
    # for 0.3 s must push the bucket's next identify 0.3 s later, or the sandbox sees two
    # identifies of bucket 0 closer than its window.
    window = 0.8
    sandbox = await sandbox_factory(shards=2, max_concurrency=1, guilds=4, identify_window=window)
    gate = StallingGate(0.3, max_concurrency=1, window=window)
    manager = ShardManager(options_for(sandbox, identify_window=window), gate=gate)
    try:
        await manager.initialize()
        assert await manager.wait_until_connected(20.0)
    finally:
        await manager.shutdown_all()
    assert [sid for sid, _ in gate.sent_at] == [sid for sid, _ in gate.admitted] == [ShardId(0), ShardId(1)]
    first_sent = gate.sent_at[0][1]
    second_admitted = gate.admitted[1][1]
    assert second_admitted >= first_sent + window
    assert sandbox.stats()["identify_violations"] == 0
