"""The console's reshard dialog: type the new shard total, see what it costs, confirm."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

#: Turns a proposed total into the plan's sentence (or raises ValueError saying what is wrong).
PlanText = Callable[[int], str]


def parse_total(text: str, current: int | None) -> int:
    """The new shard total typed by the operator; ValueError says what is wrong with it."""
    value = text.strip()
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"the new shard total must be a whole number of at least 1, not {value!r}")
    total = int(value)
    if current is not None and total == current:
        raise ValueError(f"the bot already runs {current} shards")
    return total


class ReshardScreen(ModalScreen[int | None]):
    """Asks for the new total and shows ``plan("reshard", ...)`` for it before anything starts."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="reshard.cancel")]

    def __init__(self, current: int | None, plan_text: PlanText) -> None:
        super().__init__(classes="dialog-screen")
        self.current = current
        self.plan_text = plan_text
        suggestion = "" if current is None else str(current * 2)
        self._total = Input(value=suggestion, placeholder="new shard total", id="reshard-total")
        self._plan = Static("", id="reshard-plan")

    def compose(self) -> ComposeResult:
        with Vertical(id="reshard", classes="dialog"):
            yield Label("Live reshard", classes="dialog-title")
            yield Static(
                Text(
                    f"Now {self.current or '?'} shards. A complete new set starts alongside the old one; "
                    "events keep flowing from the old set until every new shard is connected."
                ),
                classes="dialog-hint",
            )
            yield self._total
            yield self._plan
            with Horizontal(classes="dialog-buttons"):
                yield Button("Reshard (enter)", id="yes", variant="error", compact=True)
                yield Button("Cancel (esc)", id="no", variant="primary", compact=True)

    def on_mount(self) -> None:
        self._total.focus()
        self._show(self._total.value)

    def _show(self, text: str) -> int | None:
        plan = self._plan
        try:
            total = parse_total(text, self.current)
            plan.update(Text(self.plan_text(total)))
        except ValueError as exc:
            plan.update(Text(str(exc)))
            return None
        return total

    @on(Input.Changed, "#reshard-total")
    def _changed(self, event: Input.Changed) -> None:
        self._show(event.value)

    @on(Input.Submitted, "#reshard-total")
    def _submitted(self, event: Input.Submitted) -> None:
        self._submit()

    def _submit(self) -> None:
        total = self._show(self._total.value)
        if total is not None:
            self.dismiss(total)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "yes":
            self._submit()
        else:
            self.dismiss(None)
