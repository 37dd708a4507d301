"""A fixed fleet for SVG snapshots: deterministic infos behind the manager surface the console reads.

Snapshots must not depend on timing, so they use this frozen fleet instead of a live sandbox; every
behaviour test runs against the real embedded sandbox instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from shardtui.config import Config
from shardtui.gateway.alerts import AlertTracker
from shardtui.gateway.gate import SessionStartLimit
from shardtui.gateway.messenger import ShardMessenger
from shardtui.gateway.models import (
    Activity,
    ConnectionStage,
    Presence,
    ShardHealth,
    ShardId,
    ShardRunnerInfo,
)
from shardtui.gateway.protocol import ActivityType, Status
from shardtui.gateway.queuer import QueueStatus
from shardtui.gateway.reshard import ReshardResult
from shardtui.gateway.rolling import RollingRestartStatus
from shardtui.tui.app import ShardTUI

FROZEN_NOW = 1_800_000_000.0


@dataclass
class FixedPlan:
    text: str


class FixedManager:
    """Holds infos and answers the read-only questions; refuses every action so a snapshot cannot move.
    A ``shardtui.tui.ports.ConsoleManager`` (tests/tui/test_tui_ports.py checks it stays one)."""

    #: A frozen fleet has no live reshard to offer.
    can_reshard = False

    def __init__(self, infos: Iterable[ShardRunnerInfo], queue: QueueStatus | None = None) -> None:
        self.runners = {info.shard_id: info for info in infos}
        self.bot_user = {"username": "shardbot", "discriminator": "0", "id": "1"}
        self.session_start_limit = SessionStartLimit(
            total=1000, remaining=988, reset_at=FROZEN_NOW + 5400, max_concurrency=1
        )
        self._queue = queue or QueueStatus(queued=(), identifying=())
        self.fatal_error = None
        self.identifies_saved = 0
        self.shard_total: int | None = len(self.runners)
        self.rolling_status: RollingRestartStatus | None = None
        self.alerts = AlertTracker(lambda _event: None, lambda: FROZEN_NOW)

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        return lambda: None

    def queue_status(self) -> QueueStatus:
        return self._queue

    def messenger(self, shard_id: ShardId) -> ShardMessenger | None:
        return None  # no runner behind a frozen row: presence is "not running"

    def plan(self, action: str, shard_ids: Iterable[ShardId]) -> FixedPlan:
        ids = ", ".join(str(s) for s in shard_ids)
        return FixedPlan(f"{action} shards {ids}: 0 resumes, 0 identifies (988 left today), about 0.0 s")

    async def initialize(self) -> None:
        return None

    async def shutdown_all(self) -> None:
        for info in self.runners.values():
            info.running = False

    # Every action is refused, as the console reports any failed command.

    async def restart(self, shard_id: ShardId, *, force_identify: bool = False) -> None:
        raise RuntimeError("a fixed fleet does not restart")

    async def shutdown(self, shard_id: ShardId) -> None:
        raise RuntimeError("a fixed fleet does not shut down")

    async def boot(self, shard_id: ShardId) -> None:
        raise RuntimeError("a fixed fleet does not boot")

    async def rolling_restart(
        self, *, force_identify: bool = False, shard_ids: Iterable[ShardId] | None = None
    ) -> RollingRestartStatus:
        raise RuntimeError("a fixed fleet does not restart")

    def abort_rolling_restart(self) -> bool:
        return False

    async def reshard(self, new_total: int) -> ReshardResult:
        raise RuntimeError("a fixed fleet does not reshard")


class FixedRuntime:
    mode = "sandbox"
    sandbox = None
    proxy = None

    def __init__(self, manager: FixedManager, start_error: Exception | None = None) -> None:
        self.manager = manager
        self.start_error = start_error

    async def __aenter__(self) -> FixedRuntime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.manager.shutdown_all()

    async def start(self) -> None:
        if self.start_error is not None:
            raise self.start_error
        await self.manager.initialize()


def fixed_fleet(total: int = 8) -> list[ShardRunnerInfo]:
    """A fleet showing every interesting state: connected, resuming, queued, wedged, failed, stopped."""
    infos: list[ShardRunnerInfo] = []
    for sid in range(total):
        info = ShardRunnerInfo(
            ShardId(sid),
            total,
            stage=ConnectionStage.CONNECTED,
            latency=0.040 + sid * 0.003,
            guilds=10 + sid,
            events_received=1000 * (sid + 1),
            events_per_second=1.5 + sid / 4,
            last_seq=1000 * (sid + 1) + 7,
            resumes=sid % 3,
            reconnects=sid % 2,
            identifies=1,
            last_dispatch_at=FROZEN_NOW - 1 - sid,
            last_ack_at=FROZEN_NOW - 3 - sid,
            presence=Presence(Status.ONLINE, Activity("the shards", ActivityType.WATCHING)),
            running=True,
            session_id=f"session-{sid:04d}",
            last_start="identify",
        )
        infos.append(info)
    if total > 2:
        infos[2].stage = ConnectionStage.RESUMING
        infos[2].last_close_code = 4000
        infos[2].last_close_reason = "unknown error"
    if total > 3:
        infos[3].health = ShardHealth.WEDGED
        infos[3].health_reason = "no dispatch for 95 s while peers get 2/s"
        infos[3].last_dispatch_at = FROZEN_NOW - 95
    if total > 5:
        infos[5].stage = ConnectionStage.DISCONNECTED
        infos[5].running = False
        infos[5].fatal_error = "shard 5 stopped: close 4010 (invalid shard)"
        infos[5].last_close_code = 4010
        infos[5].latency = None
    if total > 6:
        infos[6].stage = ConnectionStage.DISCONNECTED
        infos[6].running = False
        infos[6].latency = None
    return infos


def fixed_app(config: Config | None = None, count: int = 8, **kwargs: Any) -> tuple[ShardTUI, FixedManager]:
    """A console over ``count`` fixed shards with the clock frozen at ``FROZEN_NOW`` (``kwargs`` go to
    ``ShardTUI``), and the manager behind it."""
    manager = FixedManager(fixed_fleet(count))
    app = ShardTUI(
        config or Config(),
        runtime_factory=lambda _c: FixedRuntime(manager),
        clock=lambda: FROZEN_NOW,
        **kwargs,
    )
    return app, manager
