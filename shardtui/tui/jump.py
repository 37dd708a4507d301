"""``:`` — a one-line prompt that moves the cursor to a shard id."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

#: Says why a shard id cannot be jumped to (None: it can).
JumpCheck = Callable[[int], str | None]


class JumpScreen(ModalScreen[int | None]):
    """Dismissed with a shard id the table shows; anything else is named under the box."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="jump.cancel")]

    def __init__(self, check: JumpCheck) -> None:
        super().__init__(classes="dialog-screen")
        self.check = check

    def compose(self) -> ComposeResult:
        with Vertical(id="jump", classes="dialog"):
            yield Label("Go to shard", classes="dialog-title")
            yield Input(placeholder="shard id · enter goes · esc cancels", id="jump-id")
            yield Static("", id="jump-error")

    def on_mount(self) -> None:
        self.query_one("#jump-id", Input).focus()

    def problem(self, text: str) -> tuple[int | None, str | None]:
        text = text.strip()
        if not text.isdigit():
            return None, f"{text!r} is not a shard id" if text else "type a shard id"
        sid = int(text)
        return sid, self.check(sid)

    @on(Input.Submitted, "#jump-id")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        sid, problem = self.problem(event.value)
        if problem is not None or sid is None:
            error = self.query_one("#jump-error", Static)
            error.update(Text(problem or ""))
            error.add_class("visible")
            return
        self.dismiss(sid)

    def action_cancel(self) -> None:
        self.dismiss(None)
