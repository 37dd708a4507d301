"""The column chooser: a checkbox per column; id and stage stay. The choice holds for the session."""

from __future__ import annotations

from collections.abc import Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, SelectionList
from textual.widgets.selection_list import Selection

from shardtui.tui.columns import ESSENTIAL_COLUMNS, Column
from shardtui.tui.legend import column_meaning


class ColumnsScreen(ModalScreen[None]):
    """Toggling a box applies at once (``on_change`` gets the hidden columns); esc closes."""

    BINDINGS = [Binding("escape,C", "close", "Close", id="columns.close")]

    def __init__(
        self, columns: tuple[Column, ...], hidden: set[str], on_change: Callable[[set[str]], None]
    ) -> None:
        super().__init__(classes="dialog-screen")
        self.all_columns = columns
        self.hidden = set(hidden)
        self.on_change = on_change

    def compose(self) -> ComposeResult:
        choices = [
            Selection(
                f"{column.label:<10} "
                + ("always shown · " if column.key in ESSENTIAL_COLUMNS else "")
                + column_meaning(column),
                column.key,
                column.key not in self.hidden,
                id=column.key,
                disabled=column.key in ESSENTIAL_COLUMNS,
            )
            for column in self.all_columns
        ]
        with Vertical(id="columns", classes="dialog"):
            yield Label("Columns (space toggles · esc closes)", classes="dialog-title")
            yield SelectionList[str](*choices, id="columns-list")
            yield Label(
                "A shown column still needs room: narrow terminals drop the least important first.",
                classes="dialog-hint",
            )

    def on_mount(self) -> None:
        self.query_one(SelectionList).focus()

    @on(SelectionList.SelectedChanged)
    def _changed(self, event: SelectionList.SelectedChanged) -> None:
        selected = set(event.selection_list.selected)
        hidden = {c.key for c in self.all_columns if c.key not in selected and c.key not in ESSENTIAL_COLUMNS}
        if hidden != self.hidden:
            self.hidden = hidden
            self.on_change(set(hidden))

    def action_close(self) -> None:
        self.dismiss(None)
