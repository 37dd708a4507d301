"""``[health] restart_wedged``: a shard the sandbox wedges (heartbeats ACKed, no dispatches) is seen
wedged, alerted once, restarted by itself with a RESUME, and flows again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from support.manager import options_for
from support.waiting import eventually

from shardtui.config import load_config
from shardtui.gateway.healing import WedgedHealer
from shardtui.gateway.health import HealthPolicy
from shardtui.gateway.manager import ShardManager
from shardtui.gateway.models import (
    AlertClearedEvent,
    AlertEvent,
    AlertKind,
    ConnectionStage,
    ShardHealth,
    ShardId,
    ShardLogEvent,
    ShardRunnerInfo,
)
from shardtui.runtime import Runtime
from shardtui.sandbox import Sandbox

SandboxFactory = Callable[..., Awaitable[Sandbox]]

#: A short silence threshold for tests: a wedged shard is found within a couple of seconds.
FAST_POLICY = HealthPolicy(min_quiet_seconds=0.5, min_wedged_seconds=1.5, wedged_after_gaps=10.0)


async def _wedge_run(
    sandbox_factory: SandboxFactory, *, restart_wedged: bool
) -> tuple[ShardManager, list[Any]]:
    sandbox = await sandbox_factory(
        guilds=9, shards=3, max_concurrency=3, heartbeat_interval_ms=300, event_rate=90.0
    )
    manager = ShardManager(
        options_for(sandbox, health_interval=0.2, health_policy=FAST_POLICY, restart_wedged=restart_wedged)
    )
    events: list[Any] = []
    manager.subscribe(events.append)
    await manager.initialize()
    assert await manager.wait_until_connected(10.0)
    await eventually(lambda: all(i.events_received > 5 for i in manager.runners.values()))
    assert sandbox.inject("wedge", 1) == 1
    return manager, events


def _alerts(events: list[Any]) -> list[tuple[str, AlertKind, int | None]]:
    return [
        (
            "alert" if isinstance(e, AlertEvent) else "cleared",
            e.kind,
            None if e.shard_id is None else int(e.shard_id),
        )
        for e in events
        if isinstance(e, AlertEvent | AlertClearedEvent)
    ]


async def test_a_wedged_shard_is_alerted_restarted_with_a_resume_and_flows_again(
    sandbox_factory: SandboxFactory,
) -> None:
    manager, events = await _wedge_run(sandbox_factory, restart_wedged=True)
    info = manager.runners[ShardId(1)]
    try:
        await eventually(lambda: ("alert", AlertKind.WEDGED, 1) in _alerts(events), within=20.0)
        await eventually(lambda: ("cleared", AlertKind.WEDGED, 1) in _alerts(events), within=20.0)
        assert info.wedged_restarts == 1
        # Healed by a RESUME: no session start spent on it.
        assert info.resumes == 1 and info.identifies == 1
        flowing = info.events_received
        await eventually(lambda: info.events_received > flowing + 5)
        assert info.stage is ConnectionStage.CONNECTED and info.health is ShardHealth.OK
        assert _alerts(events) == [("alert", AlertKind.WEDGED, 1), ("cleared", AlertKind.WEDGED, 1)]
        restarts = [
            e for e in events if isinstance(e, ShardLogEvent) and e.message.startswith("wedged: restarting")
        ]
        assert len(restarts) == 1
    finally:
        await manager.shutdown_all()


async def test_without_restart_wedged_the_shard_stays_wedged_and_alerted_once(
    sandbox_factory: SandboxFactory,
) -> None:
    manager, events = await _wedge_run(sandbox_factory, restart_wedged=False)
    info = manager.runners[ShardId(1)]
    try:
        await eventually(lambda: info.health is ShardHealth.WEDGED, within=20.0)
        checks = 0

        def count(_event: Any) -> None:
            nonlocal checks
            checks += 1

        manager.subscribe(count)
        await eventually(lambda: checks > 50)  # many more info updates and health checks
        assert info.health is ShardHealth.WEDGED and info.wedged_restarts == 0 and info.resumes == 0
        assert _alerts(events) == [("alert", AlertKind.WEDGED, 1)]
    finally:
        await manager.shutdown_all()


def _wedged(shard: int) -> ShardRunnerInfo:
    return ShardRunnerInfo(
        ShardId(shard), 2, stage=ConnectionStage.CONNECTED, running=True, health=ShardHealth.WEDGED
    )


def test_restarts_back_off_and_wait_for_the_identify_budget() -> None:
    healer = WedgedHealer(base_backoff=10.0, max_backoff=40.0)
    info = _wedged(0)
    restarted: list[ShardId] = []
    logs: list[str] = []

    def check(now: float, budget: int | None = 100) -> None:
        healer.check(
            [info], now, restart=restarted.append, budget=budget, log=lambda _s, _l, m: logs.append(m)
        )

    for now in (0.0, 5.0, 10.0, 25.0, 30.0, 69.0, 70.0, 109.0, 110.0):
        check(now)
    # 10 s, then 20 s, then 40 s (the cap), then 40 s again.
    assert restarted == [ShardId(0)] * 5
    assert info.wedged_restarts == 5
    check(150.0, budget=0)
    check(160.0, budget=0)
    assert info.wedged_restarts == 5
    assert sum("identify budget is spent" in m for m in logs) == 1
    check(170.0, budget=3)
    assert info.wedged_restarts == 6


async def test_health_keys_reach_the_manager(tmp_path: Path) -> None:
    path = tmp_path / "shards.toml"
    path.write_text("[sandbox]\nshards = 1\n[health]\nwedged_after = 12.5\nrestart_wedged = true\n")
    config = load_config(str(path), {}, environ={})
    async with Runtime(config) as runtime:
        options = runtime.manager.options
        assert options.restart_wedged is True
        assert options.health_policy.min_wedged_seconds == 12.5
    default = load_config(None, {}, environ={"SHARDTUI_HEALTH_RESTART_WEDGED": "yes"}, check_token=False)
    assert default.health.restart_wedged is True and default.health.wedged_after is None
