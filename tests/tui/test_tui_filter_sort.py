"""The filter applies as it is typed (escape undoes the edit, a bad field is shown, not applied) and the
sorted column's header carries the arrow. Driven with Textual's pilot against the real embedded sandbox."""

from __future__ import annotations

import pytest
from support.tui import fast_config, wait_until
from textual.widgets import Input, Label

from shardtui.tui.app import ShardTUI
from shardtui.tui.clients import CLIENTS_COLUMN
from shardtui.tui.columns import COLUMNS, SORT_COLUMN, SORT_ORDER, SortKey, columns_for_width, sort_arrow
from shardtui.tui.filtering import FilterError, parse_filter
from shardtui.tui.screens import ConfirmScreen

pytest.importorskip("shardtui.gateway.manager", reason="the ShardManager has not landed yet")

SIZE = (160, 30)


def stage(app: ShardTUI, sid: int) -> str:
    value = app.table.get_cell(str(sid), "stage")
    return getattr(value, "text", value).plain


def shown(app: ShardTUI) -> set[int]:
    return {int(row.key.value) for row in app.table.ordered_rows}


async def type_in_one_burst(pilot, *keys: str) -> None:
    """Press ``keys`` as typing that never pauses: however slow the run, only what the last key
    leaves in the box is applied (a slow CI run can otherwise pause between keys for longer than the
    debounce, and a prefix such as 'colour' is a good plain-text filter that would apply)."""
    app = pilot.app
    debounce = app.filter_debounce
    app.filter_debounce = 3600.0
    try:
        await pilot.press(*keys[:-1])
    finally:
        app.filter_debounce = debounce
    await pilot.press(keys[-1])


async def one_stopped(pilot) -> ShardTUI:
    """Three connected shards, then shard 1 shut down through the console."""
    app = pilot.app
    await wait_until(
        pilot,
        lambda: app.table.row_count == 3 and all(stage(app, sid) == "connected" for sid in range(3)),
        "all 3 shards connected",
    )
    await pilot.press("down", "s")
    await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the shutdown confirmation")
    await pilot.press("y")
    await wait_until(pilot, lambda: stage(app, 1) == "stopped", "shard 1 to show stopped")
    return app


async def test_filter_narrows_while_typing_and_escape_restores_the_previous_filter() -> None:
    app = ShardTUI(fast_config())
    async with app.run_test(size=SIZE) as pilot:
        await one_stopped(pilot)
        box = app.query_one("#filter", Input)

        await pilot.press("slash", *"stage:conn")
        # 'stage:con' already narrows to the same rows: on a slow run its pause can fire before the last key.
        await wait_until(
            pilot,
            lambda: app.model.filter_text == "stage:conn" and shown(app) == {0, 2},
            "the whole typed filter to narrow the table",
        )
        # Not submitted: the box still has the focus and what was typed.
        assert app.focused is box and box.value == "stage:conn"
        assert "filter 'stage:conn'" in str(app.query_one("#fleet").render())
        await pilot.press("escape")
        assert shown(app) == {0, 1, 2}
        assert app.model.filter_text == "" and not box.display
        assert app.focused is app.table

        # Enter keeps it; a later edit that is abandoned goes back to it, not to nothing.
        await pilot.press("slash", *"stage:conn")
        await pilot.press("enter")
        assert shown(app) == {0, 2} and app.focused is app.table and box.display
        await pilot.press("slash", "ctrl+u", *"stopped")
        await wait_until(
            pilot,
            lambda: app.model.filter_text == "stopped" and shown(app) == {1},
            "the edited filter to apply while typing",
        )
        await pilot.press("escape")
        assert shown(app) == {0, 2} and app.model.filter_text == "stage:conn"
        assert box.value == "stage:conn"


async def test_bad_filter_shows_its_error_and_keeps_the_text() -> None:
    app = ShardTUI(fast_config())
    async with app.run_test(size=SIZE) as pilot:
        await one_stopped(pilot)
        box = app.query_one("#filter", Input)
        problem = app.query_one("#filter-error", Label)

        await pilot.press("slash", *"stage:stop", "enter")
        assert shown(app) == {1}
        await type_in_one_burst(pilot, "slash", "ctrl+u", *"colour:red")
        await wait_until(pilot, lambda: problem.display, "the filter's error under the box")
        assert "unknown field 'colour'" in str(problem.render())
        # The last good filter stays in force; the bad one is neither applied nor lost.
        assert shown(app) == {1} and app.model.filter_text == "stage:stop"
        await pilot.press("enter")
        assert app.focused is box and box.value == "colour:red" and problem.display
        assert shown(app) == {1}
        # Fixing it clears the error and applies it.
        await pilot.press("ctrl+u", *"close:abc")
        await wait_until(pilot, lambda: "takes a number" in str(problem.render()), "the close: error")
        await pilot.press("ctrl+u", *"id:2")
        await wait_until(pilot, lambda: shown(app) == {2}, "the fixed filter to apply")
        assert not problem.display
        await pilot.press("escape")
        assert shown(app) == {1} and app.model.filter_text == "stage:stop" and not problem.display


async def test_typing_waits_for_the_pause_before_rebuilding() -> None:
    app = ShardTUI(fast_config())
    async with app.run_test(size=SIZE) as pilot:
        await one_stopped(pilot)
        # A pause longer than the test: every key is typed, but the table is not rebuilt per key.
        app.filter_debounce = 3600.0
        rebuilds = app.table.rebuilds
        await pilot.press("slash", *"stopped")
        for _ in range(5):
            await pilot.pause()
        assert shown(app) == {0, 1, 2} and app.table.rebuilds == rebuilds
        await pilot.press("enter")
        assert shown(app) == {1} and app.table.rebuilds == rebuilds + 1


async def test_sorted_column_header_shows_the_arrow() -> None:
    app = ShardTUI(fast_config())
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.table.row_count == 3, "the table")
        labels = app.table.header_labels()
        assert labels[:3] == ["shard▲", "stage", "health"]
        await pilot.press("greater_than_sign")
        labels = app.table.header_labels()
        assert labels[:3] == ["shard", "stage▼", "health"]
        await pilot.press("greater_than_sign", "greater_than_sign")
        assert app.model.sort_key is SortKey.LATENCY
        labels = app.table.header_labels()
        assert "latency▼" in labels and sum("▲" in label or "▼" in label for label in labels) == 1
        for _ in range(3):
            await pilot.press("less_than_sign")
        assert app.table.header_labels()[:2] == ["shard▲", "stage"]
        # The header row as drawn, not just the column objects.
        assert "shard▲" in app.table.render_line(0).text


def test_every_sortable_column_fits_its_label_and_arrow() -> None:
    widths = {c.key: (c.label, c.width) for c in (*COLUMNS, CLIENTS_COLUMN)}
    for key in SORT_ORDER:
        label, width = widths[SORT_COLUMN[key]]
        assert len(label + sort_arrow(key)) <= width, key


def test_80_columns_still_show_what_they_showed() -> None:
    assert [c.key for c in columns_for_width(80)] == [
        "id",
        "stage",
        "health",
        "latency",
        "guilds",
        "eps",
        "close",
        "dispatch_age",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", (None, "")),
        ("  Stage:Conn ", ("stage", "conn")),
        ("close:4004", ("close", "4004")),
        ("error: session timed out", ("error", "session timed out")),
        ("4004", (None, "4004")),
        ("session timed out: resume", (None, "session timed out: resume")),
    ],
)
def test_parse_filter(text: str, expected: tuple[str | None, str]) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize("text", ["colour:red", "id:one", "close:40x"])
def test_parse_filter_rejects(text: str) -> None:
    with pytest.raises(FilterError):
        parse_filter(text)
