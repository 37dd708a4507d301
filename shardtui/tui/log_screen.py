"""``L`` — the console log full screen, with a search that filters the lines as it is typed."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Input, Label, RichLog

from shardtui.tui.model import LogLine


class LogScreen(ModalScreen[None]):
    """Every console log line (newest at the bottom); ``/`` searches, enter goes back to the lines,
    esc leaves. New lines arrive through :meth:`add_lines` while it is open.

    Modal although it fills the terminal: the table's keys (r, s, b ...) must not act on a shard
    the operator cannot see from here."""

    BINDINGS = [
        Binding("escape", "close", "Back", id="logview.close"),
        Binding("slash", "search", "Search", id="logview.search", key_display="/"),
    ]

    def __init__(self, lines: Iterable[LogLine]) -> None:
        super().__init__()
        self.lines: list[str] = [line.format() for line in lines]
        self.query_text = ""
        #: How many lines the search shows (what the status line says).
        self.shown = 0

    def compose(self) -> ComposeResult:
        yield Label("", id="logview-status")
        yield Input(
            placeholder="/ search the log · enter back to the lines · esc leaves", id="logview-search"
        )
        yield RichLog(id="logview", max_lines=None, wrap=False, markup=False, highlight=False)

    def on_mount(self) -> None:
        self._render_all()
        self.query_one("#logview", RichLog).focus()

    def _matches(self, line: str) -> bool:
        return not self.query_text or self.query_text in line.lower()

    def _styled(self, line: str) -> Text:
        text = Text(line)
        if self.query_text:
            text.highlight_words([self.query_text], style="reverse", case_sensitive=False)
        return text

    def _render_all(self) -> None:
        pane = self.query_one("#logview", RichLog)
        pane.clear()
        self.shown = 0
        for line in self.lines:
            if self._matches(line):
                pane.write(self._styled(line))
                self.shown += 1
        self._status()

    def _status(self) -> None:
        total = len(self.lines)
        if self.query_text:
            status = f"log · {self.shown:,} of {total:,} lines match {self.query_text!r}"
        elif total:
            status = f"log · {total:,} lines"
        else:
            status = "log · no lines yet (stage changes, closes and operator actions land here)"
        self.query_one("#logview-status", Label).update(Text(status))

    def add_lines(self, lines: Iterable[LogLine]) -> None:
        pane = self.query_one("#logview", RichLog)
        for entry in lines:
            line = entry.format()
            self.lines.append(line)
            if self._matches(line):
                pane.write(self._styled(line))
                self.shown += 1
        self._status()

    @on(Input.Changed, "#logview-search")
    def _typed(self, event: Input.Changed) -> None:
        event.stop()
        self.query_text = event.value.strip().lower()
        self._render_all()

    @on(Input.Submitted, "#logview-search")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one("#logview", RichLog).focus()

    def action_search(self) -> None:
        self.query_one("#logview-search", Input).focus()

    def action_close(self) -> None:
        self.dismiss(None)
