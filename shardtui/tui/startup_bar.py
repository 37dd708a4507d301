"""``StartupBar``: start-up progress (queued → identifying → ready, with an ETA) until every
running shard has been connected once; then it hides for good."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from shardtui.gateway.models import ConnectionStage
from shardtui.tui.model import ConsoleModel


class StartupBar(Horizontal):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        #: Every running shard has been connected once: the bar stays hidden from now on.
        self.over = False

    def compose(self) -> ComposeResult:
        yield Label(id="startup-label")
        yield ProgressBar(total=1, show_eta=False, id="startup-bar")

    def on_mount(self) -> None:
        self._label = self.query_one("#startup-label", Label)
        self._bar = self.query_one("#startup-bar", ProgressBar)

    def show_progress(self, model: ConsoleModel, *, stopping: bool) -> None:
        """Show where start-up is; hidden once it is over, while shutting down or after a fatal error."""
        if self.over or stopping or model.fatal is not None:
            self.display = False
            return
        # Both walk every row: only worth it while the bar can still show (bench/console.py).
        progress = model.startup()
        pending = any(
            row.info.running and row.info.stage is not ConnectionStage.CONNECTED
            for row in model.rows.values()
        )
        if progress.total and not pending:
            self.over = True
            self.display = False
            return
        self.display = True
        self._label.update(progress.label())
        self._bar.update(total=max(1, progress.total), progress=progress.ready)
