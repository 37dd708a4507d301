"""``ShardControl``: how the console drives shards, whatever runs them.

The app's actions (targets, confirmations, the presence editor) exist once and hand the chosen
shards to the app's one ``control``. :class:`LocalControl` drives this process's ``ShardManager``
(its rolling restart is ``gateway.rolling``'s, through ``manager.rolling_restart``);
``shardtui.tui.fleet_control.FleetShardControl`` sends the same commands through the Redis fleet.
Each implementation tells the operator what became of its commands (a log line and a notification).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from shardtui.gateway.models import ConnectionStage, Presence, ShardId
from shardtui.tui.formatting import shard_count, shard_ids_phrase
from shardtui.tui.model import ConsoleModel

if TYPE_CHECKING:
    from textual.notifications import SeverityLevel

    from shardtui.gateway.rolling import RollingRestartStatus
    from shardtui.tui.ports import ConsoleManager


class ControlHost(Protocol):
    """What a control needs from the console: the manager (None until it runs, or in a fleet
    viewer), the model it notes outcomes in, and the notification area."""

    manager: ConsoleManager | None
    model: ConsoleModel

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None: ...


class ShardControl(Protocol):
    """The operations the console offers on shards. ``ids`` are shard ids the operator chose."""

    #: Warning shown when boot finds no target among the chosen shards.
    no_boot_target: str

    def unavailable(self) -> str | None:
        """Why no command can be sent now (shown as a warning), or None."""

    def plan_text(self, action: str, ids: Sequence[int]) -> str:
        """What ``action`` on ``ids`` would cost / where it goes, for confirmation dialogs."""

    def shutdown_title(self, count: int) -> str: ...

    def bootable(self, sid: int, running: bool) -> bool: ...

    async def restart(self, ids: Sequence[int], *, force_identify: bool = False) -> None: ...

    async def shutdown(self, ids: Sequence[int]) -> None: ...

    async def boot(self, ids: Sequence[int]) -> None: ...

    async def set_presence(self, ids: Sequence[int], presence: Presence) -> None: ...

    def rolling_targets(self) -> list[int]:
        """The shards a rolling restart would restart."""

    def rolling_question(self, ids: Sequence[int]) -> str:
        """The rolling-restart confirmation's body."""

    def rolling_progress(self) -> RollingRestartStatus | None:
        """The rolling restart running now (R again offers to abort it), or None."""

    def abort_rolling_restart(self) -> bool: ...

    async def rolling_restart(self, ids: Sequence[int]) -> None: ...

    def reshard_unavailable(self) -> str | None:
        """Why a live reshard cannot be offered, or None."""

    def shard_total(self) -> int | None: ...

    def reshard_plan(self, total: int) -> str:
        """The plan's sentence for resharding to ``total``; raises ValueError saying why not."""

    async def reshard(self, total: int) -> None: ...

    def quit_question(self) -> str | None:
        """What to ask before quitting, or None when quitting stops nothing live."""


def is_running(model: ConsoleModel, sid: int) -> bool:
    row = model.rows.get(sid)
    return row is not None and (row.info.running or row.info.stage is not ConnectionStage.DISCONNECTED)


class LocalControl:
    """Drives this process's ``ShardManager`` and each shard's ``ShardMessenger``."""

    no_boot_target = "Only a stopped shard can be booted; select or mark one."

    def __init__(self, host: ControlHost) -> None:
        self.host = host

    @property
    def manager(self) -> ConsoleManager | None:
        return self.host.manager

    def _running(self) -> ConsoleManager:
        # The actions ask ``unavailable()`` before any command, so a command always has a manager.
        manager = self.host.manager
        if manager is None:
            raise RuntimeError("The shard manager is not running yet.")
        return manager

    def unavailable(self) -> str | None:
        return "The shard manager is not running yet." if self.manager is None else None

    def plan_text(self, action: str, ids: Sequence[int]) -> str:
        try:
            plan = self._running().plan(action, [ShardId(i) for i in ids])
        except Exception as exc:
            return f"(no cost estimate: {exc})"
        return str(plan.text)

    def shutdown_title(self, count: int) -> str:
        return "Shut down shards"

    def bootable(self, sid: int, running: bool) -> bool:
        return not running

    async def restart(self, ids: Sequence[int], *, force_identify: bool = False) -> None:
        model = self.host.model
        model.note(f"restart {shard_ids_phrase(ids)} (resume first): {self.plan_text('restart', ids)}")
        self.host.notify(f"Restarting {shard_ids_phrase(ids)} (resume first)")
        manager = self._running()
        await self._each(
            "restart", ids, lambda sid: manager.restart(ShardId(sid), force_identify=force_identify)
        )

    async def shutdown(self, ids: Sequence[int]) -> None:
        self.host.model.note(f"shut down {shard_ids_phrase(ids)}")
        manager = self._running()
        await self._each("shutdown", ids, lambda sid: manager.shutdown(ShardId(sid)))

    async def boot(self, ids: Sequence[int]) -> None:
        self.host.model.note(f"boot {shard_ids_phrase(ids)}: {self.plan_text('boot', ids)}")
        self.host.notify(f"Booting {shard_ids_phrase(ids)}")
        manager = self._running()
        await self._each("boot", ids, lambda sid: manager.boot(ShardId(sid)))

    async def _each(self, verb: str, ids: Sequence[int], call: Callable[[int], Awaitable[Any]]) -> None:
        failures: list[str] = []
        for sid in ids:
            try:
                await call(sid)
            except Exception as exc:
                failures.append(f"shard {sid}: {exc}")
        if failures:
            self.host.model.note(f"{verb} failed: " + "; ".join(failures), logging.ERROR)
            self.host.notify("\n".join(failures), title=f"{verb} failed", severity="error")

    async def set_presence(self, ids: Sequence[int], presence: Presence) -> None:
        model = self.host.model
        sent: list[int] = []
        skipped: list[int] = []
        manager = self.manager
        for sid in ids:
            messenger = None if manager is None else manager.messenger(ShardId(sid))
            if messenger is None:
                skipped.append(sid)
                continue
            try:
                messenger.set_presence(presence)
            except ValueError as exc:
                self.host.notify(f"Presence not sent: {exc}", severity="error")
                return
            model.record_sent_presence(sid, presence)
            sent.append(sid)
        text = presence.describe()
        if sent:
            model.note(f"presence {text!r} sent to {shard_ids_phrase(sent)}")
            self.host.notify(f"Presence sent to {shard_count(len(sent))}: {text}")
        if skipped:
            self.host.notify(f"Not sent to {shard_ids_phrase(skipped)}: not running", severity="warning")

    def rolling_targets(self) -> list[int]:
        return sorted(self.host.model.rows)

    def rolling_question(self, ids: Sequence[int]) -> str:
        return (
            f"Restart all {len(ids)} shards, a batch at a time, each batch back before the next?\n\n"
            f"{self.plan_text('rolling_restart', ids)}\n\nPress R again while it runs to abort it."
        )

    def rolling_progress(self) -> RollingRestartStatus | None:
        from shardtui.gateway.rolling import RollingState

        manager = self.manager
        status = None if manager is None else manager.rolling_status
        return status if status is not None and status.state is RollingState.RUNNING else None

    def abort_rolling_restart(self) -> bool:
        return self._running().abort_rolling_restart()

    async def rolling_restart(self, ids: Sequence[int]) -> None:
        from shardtui.gateway.rolling import RollingState

        model = self.host.model
        model.note(f"rolling restart of {len(ids)} shards")
        try:
            status = await self._running().rolling_restart(shard_ids=[ShardId(i) for i in ids])
        except Exception as exc:
            model.note(f"rolling restart failed: {exc}", logging.ERROR)
            self.host.notify(str(exc), title="Rolling restart failed", severity="error")
            return
        if status.state is not RollingState.FINISHED:
            model.note(status.describe(), logging.WARNING)
            self.host.notify(status.describe(), title="Rolling restart", severity="warning")
            return
        model.note("rolling restart finished")
        self.host.notify("Rolling restart finished")

    def reshard_unavailable(self) -> str | None:
        manager = self.manager
        if manager is None or not manager.can_reshard:
            return "This shard manager cannot reshard live."
        return None

    def shard_total(self) -> int | None:
        manager = self.manager
        return None if manager is None else manager.shard_total

    def reshard_plan(self, total: int) -> str:
        return str(self._running().plan("reshard", [ShardId(i) for i in range(total)]).text)

    async def reshard(self, total: int) -> None:
        model = self.host.model
        model.note(f"reshard to {total} shards started")
        self.host.notify(f"Resharding to {total} shards")
        try:
            await self._running().reshard(total)
        except Exception as exc:
            model.note(f"reshard failed: {exc}", logging.ERROR)
            self.host.notify(str(exc), title="Reshard failed", severity="error")
            return
        model.note(f"reshard to {total} shards finished")
        self.host.notify(f"Now running {total} shards")

    def quit_question(self) -> str | None:
        model = self.host.model
        if not model.is_live() or self.manager is None:
            return None
        running = sum(1 for sid in model.rows if is_running(model, sid))
        return (
            f"{shard_count(running)} {'is' if running == 1 else 'are'} live. "
            "Quit and shut them all down cleanly (close 1000)?"
        )


def starts(infos: Mapping[ShardId, Any], sid: int) -> int:
    """Sessions the shard has begun (resumes + identifies), -1 when it is unknown."""
    info = infos.get(ShardId(sid))
    return -1 if info is None else info.resumes + info.identifies


__all__ = ["ControlHost", "LocalControl", "ShardControl", "is_running", "starts"]
