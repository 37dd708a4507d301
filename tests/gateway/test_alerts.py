"""Alerts: one AlertEvent per incident and one AlertClearedEvent when it ends, from the tracker's rules
(no sockets) and from real sandbox shards: a zombie connection, and a whole outage (the sandbox
stopped and started again on the same port) where every shard comes back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support.manager import options_for
from support.waiting import eventually

from shardtui.gateway.alerts import ZOMBIE_REASON, AlertTracker
from shardtui.gateway.manager import ShardManager
from shardtui.gateway.models import (
    AlertClearedEvent,
    AlertEvent,
    AlertKind,
    ConnectionStage,
    FatalErrorEvent,
    ManagerEvent,
    ShardHealth,
    ShardId,
    ShardInfoUpdateEvent,
    ShardRunnerInfo,
    ShardStageUpdateEvent,
)
from shardtui.sandbox import Sandbox, SandboxSettings
from shardtui.sandbox.tokens import make_token

C, D, R = ConnectionStage.CONNECTED, ConnectionStage.DISCONNECTED, ConnectionStage.RESUMING


class Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def __call__(self, event: ManagerEvent) -> None:
        self.events.append(event)

    def alerts(self) -> list[tuple[str, AlertKind, int | None]]:
        return [
            (
                "alert" if isinstance(e, AlertEvent) else "cleared",
                e.kind,
                None if e.shard_id is None else int(e.shard_id),
            )
            for e in self.events
            if isinstance(e, AlertEvent | AlertClearedEvent)
        ]


def fleet(n: int) -> dict[ShardId, ShardRunnerInfo]:
    return {ShardId(i): ShardRunnerInfo(ShardId(i), n, stage=C, running=True) for i in range(n)}


def move(
    tracker: AlertTracker, runners: dict[ShardId, ShardRunnerInfo], shard: int, new: ConnectionStage
) -> None:
    info = runners[ShardId(shard)]
    old, info.stage = info.stage, new
    tracker.observe(ShardStageUpdateEvent(info.shard_id, old, new), runners)


def test_a_wedged_shard_alerts_once_and_clears_only_once_it_receives_again() -> None:
    out = Recorder()
    tracker = AlertTracker(out)
    runners = fleet(2)
    runners[ShardId(1)].health = ShardHealth.WEDGED
    for _ in range(5):  # every health check and info update while it stays wedged
        tracker.observe(ShardInfoUpdateEvent(ShardId(1)), runners)
    assert out.alerts() == [("alert", AlertKind.WEDGED, 1)]
    # The restart's reconnect is not the end of the incident...
    runners[ShardId(1)].health = ShardHealth.DOWN
    move(tracker, runners, 1, R)
    tracker.observe(ShardInfoUpdateEvent(ShardId(1)), runners)
    assert out.alerts() == [("alert", AlertKind.WEDGED, 1)]
    # ...events flowing again is.
    move(tracker, runners, 1, C)
    runners[ShardId(1)].health = ShardHealth.OK
    tracker.observe(ShardInfoUpdateEvent(ShardId(1)), runners)
    tracker.observe(ShardInfoUpdateEvent(ShardId(1)), runners)
    assert out.alerts() == [("alert", AlertKind.WEDGED, 1), ("cleared", AlertKind.WEDGED, 1)]


def test_zombie_fatal_and_outage_rules() -> None:
    out = Recorder()
    tracker = AlertTracker(out)
    runners = fleet(3)
    runners[ShardId(0)].last_close_reason = ZOMBIE_REASON
    move(tracker, runners, 0, R)
    move(tracker, runners, 0, C)
    # A reconnect for another reason is no zombie.
    runners[ShardId(2)].last_close_reason = "op 7 reconnect"
    move(tracker, runners, 2, R)
    move(tracker, runners, 2, C)
    assert out.alerts() == [("alert", AlertKind.ZOMBIE, 0), ("cleared", AlertKind.ZOMBIE, 0)]
    out.events.clear()

    tracker.observe(FatalErrorEvent("authentication", "bad token", (ShardId(0), ShardId(1)), 4004), runners)
    tracker.observe(FatalErrorEvent("authentication", "bad token", (ShardId(0), ShardId(1)), 4004), runners)
    assert out.alerts() == [("alert", AlertKind.FATAL, None)]
    out.events.clear()
    # The shards it stopped going down is what the fatal alert already says: no outage on top.
    runners[ShardId(0)].last_close_reason = "stopped"
    for shard in range(3):
        move(tracker, runners, shard, D)
    assert out.alerts() == []
    # The operator boots again: a shard connecting clears the bot-wide fatal.
    move(tracker, runners, 0, C)
    assert out.alerts() == [("cleared", AlertKind.FATAL, None)]
    for shard in (1, 2):
        move(tracker, runners, shard, C)
    out.events.clear()

    # Every running shard down: one outage, however many shards fall; it clears once all are back.
    runners[ShardId(0)].last_close_reason = "1006 abnormal closure"
    for shard in range(3):
        move(tracker, runners, shard, D)
    move(tracker, runners, 0, C)
    move(tracker, runners, 0, D)
    assert out.alerts() == [("alert", AlertKind.OUTAGE, None)]
    for shard in range(3):
        move(tracker, runners, shard, C)
    assert out.alerts()[-1] == ("cleared", AlertKind.OUTAGE, None)
    assert [a for a in out.alerts() if a[1] is AlertKind.OUTAGE] == [
        ("alert", AlertKind.OUTAGE, None),
        ("cleared", AlertKind.OUTAGE, None),
    ]


def test_no_outage_before_any_shard_connected_or_when_shards_are_stopped_on_purpose() -> None:
    out = Recorder()
    tracker = AlertTracker(out)
    runners = {ShardId(i): ShardRunnerInfo(ShardId(i), 2, running=True) for i in range(2)}
    move(tracker, runners, 0, ConnectionStage.CONNECTING)
    move(tracker, runners, 0, D)
    assert out.alerts() == []
    move(tracker, runners, 0, C)
    move(tracker, runners, 1, C)
    for info in runners.values():
        info.running = False  # the operator stopped them
    move(tracker, runners, 0, D)
    move(tracker, runners, 1, D)
    assert out.alerts() == []


async def test_a_zombie_connection_alerts_and_clears_when_the_shard_is_back(sandbox: Sandbox) -> None:
    manager = ShardManager(options_for(sandbox))
    out = Recorder()
    manager.subscribe(out)
    await manager.initialize()
    try:
        assert await manager.wait_until_connected(10.0)
        assert sandbox.inject("zombie", 1) == 1
        await eventually(lambda: ("cleared", AlertKind.ZOMBIE, 1) in out.alerts(), within=20.0)
        assert out.alerts() == [("alert", AlertKind.ZOMBIE, 1), ("cleared", AlertKind.ZOMBIE, 1)]
    finally:
        await manager.shutdown_all()
    # A clean shutdown takes every shard down: that is no outage.
    assert all(kind is not AlertKind.OUTAGE for _, kind, _ in out.alerts())


async def test_an_outage_alerts_once_and_clears_when_every_shard_is_back() -> None:
    settings = SandboxSettings(
        guilds=6, shards=3, max_concurrency=3, identify_window=0.05, heartbeat_interval_ms=1000,
        event_rate=20.0, seed=99, close_timeout=0.5, token=make_token(987654321987654321),
    )  # fmt: skip
    first = Sandbox(settings)
    await first.start(host="127.0.0.1", port=0)
    port = int(first.rest_url.split(":")[2].split("/")[0])
    manager = ShardManager(options_for(first, outage_grace=0.3))
    out = Recorder()
    manager.subscribe(out)
    second: Sandbox | None = None
    await manager.initialize()
    try:
        assert await manager.wait_until_connected(10.0)
        await first.stop()
        await eventually(lambda: ("alert", AlertKind.OUTAGE, None) in out.alerts(), within=15.0)
        second = Sandbox(settings)
        await second.start(host="127.0.0.1", port=port)
        await eventually(lambda: ("cleared", AlertKind.OUTAGE, None) in out.alerts(), within=60.0)
        assert all(info.stage is ConnectionStage.CONNECTED for info in manager.runners.values())
        outage = [a for a in out.alerts() if a[1] is AlertKind.OUTAGE]
        assert outage == [("alert", AlertKind.OUTAGE, None), ("cleared", AlertKind.OUTAGE, None)]
        cleared = next(e for e in out.events if isinstance(e, AlertClearedEvent))
        assert cleared.duration > 0
    finally:
        await manager.shutdown_all()
        for sandbox in (first, second):
            if sandbox is not None and sandbox.running:
                await sandbox.stop()


class ManualScheduler:
    """``loop.call_later`` with a hand on the clock: the test decides when the grace period ends."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Any, ManualScheduler.Handle]] = []

    class Handle:
        def __init__(self) -> None:
            self.cancelled = False

        def cancel(self) -> None:
            self.cancelled = True

    def __call__(self, delay: float, callback: Any) -> ManualScheduler.Handle:
        handle = ManualScheduler.Handle()
        self.pending.append((delay, callback, handle))
        return handle

    def live(self) -> list[float]:
        return [delay for delay, _, handle in self.pending if not handle.cancelled]

    def fire(self) -> None:
        due, self.pending = self.pending, []
        for _, callback, handle in due:
            if not handle.cancelled:
                callback()


def test_an_outage_waits_out_its_grace_period_and_dates_from_the_fall() -> None:
    """A one-shard bot's routine reconnect takes every shard down for a moment: with a grace period it
    is no incident; a fall that outlasts the grace is one alert, dated from when the last shard fell."""
    out = Recorder()
    clock = [1000.0]
    later = ManualScheduler()
    tracker = AlertTracker(out, lambda: clock[0], outage_grace=10.0, schedule=later)
    runners = fleet(1)
    move(tracker, runners, 0, C)  # the shard has been up: a fall from here on can be an outage
    # Routine reconnect: down and back before the grace ends, no alert, the re-check cancelled.
    move(tracker, runners, 0, R)
    assert later.live() == [10.0]
    clock[0] += 0.2
    move(tracker, runners, 0, C)
    assert later.live() == []
    later.fire()
    assert out.alerts() == []
    # A real fall: nothing until the grace is over, then one alert with the fall's time.
    clock[0] = 2000.0
    move(tracker, runners, 0, D)
    move(tracker, runners, 0, R)  # reconnect attempts in the grace period schedule nothing more
    move(tracker, runners, 0, D)
    assert out.alerts() == [] and later.live() == [10.0]
    clock[0] = 2010.0
    later.fire()
    assert out.alerts() == [("alert", AlertKind.OUTAGE, None)]
    assert out.events[-1].at == 2000.0
    clock[0] = 2030.0
    move(tracker, runners, 0, C)
    assert out.alerts()[-1] == ("cleared", AlertKind.OUTAGE, None)
    assert out.events[-1].duration == 30.0
    # Stopping (or resharding) drops a pending check: no alert from a shard set being closed.
    move(tracker, runners, 0, D)
    tracker.cancel_pending()
    later.fire()
    assert out.alerts()[-1] == ("cleared", AlertKind.OUTAGE, None)


def test_a_grace_period_needs_a_scheduler() -> None:
    try:
        AlertTracker(Recorder(), outage_grace=5.0)
    except ValueError as error:
        assert "scheduler" in str(error)
    else:
        raise AssertionError("a grace period without a scheduler was accepted")


OUTAGE_AND_CLEAR = [("alert", AlertKind.OUTAGE, None), ("cleared", AlertKind.OUTAGE, None)]


@pytest.mark.parametrize(("grace", "expected"), [(0.8, []), (0.0, OUTAGE_AND_CLEAR)])
async def test_a_one_shard_bots_routine_reconnect_is_no_outage_within_the_grace(
    sandbox_factory, grace: float, expected: list[Any]
) -> None:
    """The same through a real manager: the sandbox drops the only shard, it resumes at once, and
    the grace period passes without an alert; with no grace the same drop is an outage."""
    sandbox = await sandbox_factory(shards=1, max_concurrency=1)
    manager = ShardManager(options_for(sandbox, outage_grace=grace))
    out = Recorder()
    manager.subscribe(out)

    def connects() -> int:
        return sum(
            1
            for e in out.events
            if isinstance(e, ShardStageUpdateEvent) and e.new is ConnectionStage.CONNECTED
        )

    await manager.initialize()
    try:
        assert await manager.wait_until_connected(15.0)
        assert sandbox.inject("close", 0, code=4000) == 1
        await eventually(lambda: connects() >= 2, within=15.0)
        if grace:
            await asyncio.sleep(grace * 1.5)  # past the grace: the check ran and found the shard up
        assert out.alerts() == expected
    finally:
        await manager.shutdown_all()


def test_lost_processes_are_separate_incidents_raised_once_each() -> None:
    out = Recorder()
    tracker = AlertTracker(out)
    for _ in range(3):  # a fleet watcher sees the same loss at every refresh
        tracker.raise_alert(AlertKind.LOST_PROCESS, None, "process b lost", process="b")
        tracker.raise_alert(AlertKind.LOST_PROCESS, None, "process c lost", process="c")
    assert tracker.clear_alert(AlertKind.LOST_PROCESS, None, "process b is back", process="b")
    assert not tracker.clear_alert(AlertKind.LOST_PROCESS, None, "process b is back", process="b")
    lines = [(type(e).__name__, e.process) for e in out.events]
    assert lines == [("AlertEvent", "b"), ("AlertEvent", "c"), ("AlertClearedEvent", "b")]
    assert list(tracker.open) == [(AlertKind.LOST_PROCESS, None, "c")]


async def test_a_bot_wide_fatal_is_one_fatal_alert_not_an_outage(sandbox_factory) -> None:
    """4004 on one shard stops every shard on purpose: the operator gets the fatal alert, and the
    shards going down while they are stopped are not also reported as an outage."""
    sandbox = await sandbox_factory(shards=3, max_concurrency=3)
    manager = ShardManager(options_for(sandbox))
    out = Recorder()
    manager.subscribe(out)
    await manager.initialize()
    try:
        assert await manager.wait_until_connected(15.0)
        assert sandbox.inject("close", 0, code=4004) == 1
        await eventually(lambda: not any(info.running for info in manager.runners.values()), within=15.0)
        kinds = [(what, kind) for what, kind, _ in out.alerts()]
        assert kinds == [("alert", AlertKind.FATAL)]
    finally:
        await manager.shutdown_all()
