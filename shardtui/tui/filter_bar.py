"""``FilterBar``: the filter box. It checks what is typed and tells the app when to apply it.

Typing applies once it pauses (a 5,000-row table rebuilds per pause, not per key); enter keeps the
filter, escape undoes the edit. A filter the console cannot apply is never applied: the box stays
open with it, and ``FilterBar.Typed`` carries the reason to show under it.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message
from textual.timer import Timer
from textual.widgets import Input

from shardtui.tui.filtering import check_filter

#: The filter applies once typing pauses this long (seconds), not on every key.
FILTER_DEBOUNCE = 0.15


def filter_problem(text: str) -> str | None:
    """Why ``text`` cannot be applied (shown under the box), or None."""
    return check_filter(text)


class FilterBar(Input):
    """The filter input; posts :class:`FilterBar.Typed` (typing paused) and :class:`FilterBar.Chosen`
    (enter). ``before`` is the filter in force before this edit: what escape goes back to."""

    @dataclass
    class Typed(Message):
        """Typing paused on ``text``; ``problem`` says why it cannot be applied (None: it can)."""

        text: str
        problem: str | None

    @dataclass
    class Chosen(Message):
        """Enter on ``text``; ``problem`` as for Typed (the box then stays open)."""

        text: str
        problem: str | None

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            placeholder="filter: id, stage:conn, latency>200ms, text · enter keeps · esc undoes",
            id=id,
        )
        #: Seconds typing must pause before the filter applies (a test may lengthen it).
        self.debounce = FILTER_DEBOUNCE
        self.before = ""
        self._timer: Timer | None = None

    def edit(self, current: str) -> None:
        """Open the box on the filter in force, which escape goes back to."""
        self.before = current
        self.display = True
        self.value = current
        self.focus()

    def show(self, text: str) -> None:
        """The filter in force is ``text``: the box shows it, open only when there is one."""
        self.stop_timer()
        self.before = text
        self.display = bool(text)
        self.value = text

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input is not self:
            return
        event.stop()
        self.stop_timer()
        if self.has_focus:
            self._timer = self.set_timer(self.debounce, self.typing_paused)

    def typing_paused(self) -> None:
        """Apply what is typed now (the debounce timer calls this; a test may call it directly)."""
        self.stop_timer()
        self.post_message(self.Typed(self.value, filter_problem(self.value)))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input is not self:
            return
        event.stop()
        self.stop_timer()
        self.post_message(self.Chosen(event.value, filter_problem(event.value)))


__all__ = ["FILTER_DEBOUNCE", "FilterBar", "filter_problem"]
