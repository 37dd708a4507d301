"""The console's shard actions: restart, shutdown, boot, rolling restart, reshard and presence.

Written once for every console: each picks its shards (marked, else the selected one), asks when
asked to stop something, then hands the shards to the app's ``control`` (a ``ShardControl``), which
knows whether they run here or elsewhere in the fleet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from textual import work
from textual.app import App

from shardtui.gateway.models import Presence
from shardtui.tui.control import ShardControl, is_running
from shardtui.tui.formatting import shard_ids_phrase
from shardtui.tui.model import ConsoleModel
from shardtui.tui.screens import ConfirmScreen, PresenceRequest, PresenceScreen

if TYPE_CHECKING:
    from shardtui.tui.table import ShardTable


class ShardActions(App[int]):
    """The shard actions of ``ShardTUI`` (a base class of it, kept apart so the app shell stays small)."""

    control: ShardControl
    model: ConsoleModel

    if TYPE_CHECKING:

        @property
        def table(self) -> ShardTable: ...

        def _need_manager(self) -> bool: ...

        def _plan_text(self, action: str, ids: list[int]) -> str: ...

    def _targets(self) -> list[int]:
        return self.model.targets(self.table.selected_shard)

    def _is_running(self, sid: int) -> bool:
        return is_running(self.model, sid)

    @work(group="actions", exit_on_error=False)
    async def _send(self, command: Callable[[], Awaitable[None]]) -> None:
        # The control reports what became of its commands; the worker only keeps the UI free.
        await command()

    def action_restart(self) -> None:
        if not self._need_manager():
            return
        ids = self._targets()
        if not ids:
            self.notify("No shard selected.", severity="warning")
            return
        self._send(lambda: self.control.restart(ids))

    def action_shutdown(self) -> None:
        if not self._need_manager():
            return
        ids = [i for i in self._targets() if self._is_running(i)]
        if not ids:
            self.notify("No running shard selected.", severity="warning")
            return
        body = f"Shut down {shard_ids_phrase(ids)}?\n\n{self._plan_text('shutdown', ids)}"

        def done(answer: bool | None) -> None:
            if answer:
                self._send(lambda: self.control.shutdown(ids))

        title = self.control.shutdown_title(len(ids))
        self.push_screen(ConfirmScreen(title, body, yes="Shut down"), done)

    def action_boot(self) -> None:
        if not self._need_manager():
            return
        ids = [i for i in self._targets() if self.control.bootable(i, self._is_running(i))]
        if not ids:
            self.notify(self.control.no_boot_target, severity="warning")
            return
        self._send(lambda: self.control.boot(ids))

    def action_rolling_restart(self) -> None:
        if not self._need_manager():
            return
        control = self.control
        progress = control.rolling_progress()
        if progress is not None:
            # R again while one runs: offer to stop it before its next round.
            def abort(answer: bool | None) -> None:
                if answer and control.abort_rolling_restart():
                    self.model.note("rolling restart abort requested")

            body = f"{progress.describe()}\n\nStop it before the next round?"
            self.push_screen(ConfirmScreen("Abort rolling restart", body, yes="Abort"), abort)
            return
        ids = control.rolling_targets()
        if not ids:
            self.notify("No shards to restart.", severity="warning")
            return

        def done(answer: bool | None) -> None:
            if answer:
                self._rolling_restart(ids)

        body = control.rolling_question(ids)
        self.push_screen(ConfirmScreen("Rolling restart", body, yes="Restart all"), done)

    @work(group="actions", exit_on_error=False, exclusive=True)
    async def _rolling_restart(self, ids: list[int]) -> None:
        await self.control.rolling_restart(ids)

    def action_reshard(self) -> None:
        from shardtui.tui.reshard_screen import ReshardScreen

        if not self._need_manager():
            return
        control = self.control
        problem = control.reshard_unavailable()
        if problem is not None:
            self.notify(problem, title="Reshard", severity="warning", timeout=10)
            return

        def done(total: int | None) -> None:
            if total is not None:
                self._reshard(total)

        self.push_screen(ReshardScreen(control.shard_total(), control.reshard_plan), done)

    @work(group="reshard", exit_on_error=False, exclusive=True)
    async def _reshard(self, total: int) -> None:
        await self.control.reshard(total)

    def action_presence(self) -> None:
        if not self._need_manager():
            return
        selected = self.table.selected_shard
        scopes: list[tuple[str, str]] = []
        if self.model.marked:
            scopes.append(("marked", f"the {len(self.model.marked)} marked shards"))
        if selected is not None:
            scopes.append(("selected", f"shard {selected}"))
        scopes.append(("all", f"all {len(self.model.rows)} shards"))
        initial = self.model.rows[selected].presence if selected in self.model.rows else None

        def done(request: PresenceRequest | None) -> None:
            if request is not None:
                self._apply_presence(request.presence, self._scope_ids(request.scope, selected))

        self.push_screen(PresenceScreen(initial=initial, scopes=scopes), done)

    def _scope_ids(self, scope: str, selected: int | None) -> list[int]:
        if scope == "marked":
            return sorted(self.model.marked)
        if scope == "selected":
            return [] if selected is None else [selected]
        return sorted(self.model.rows)

    def _apply_presence(self, presence: Presence, ids: list[int]) -> None:
        self._send(lambda: self.control.set_presence(ids, presence))


__all__ = ["ShardActions"]
