"""SVG snapshots at 80x24 of the filter box while typing (with a bad field) and of a sorted header.

Update after an intended visual change with ``--snapshot-update`` and look at the SVGs first.
"""

from __future__ import annotations

from test_tui_snapshots import make_app, settle, utc  # noqa: F401  (utc: the autouse TZ fixture)
from textual.pilot import Pilot
from textual.widgets import Input

from shardtui.tui.app import ShardTUI
from shardtui.tui.filter_bar import FilterBar


def test_bad_filter_error_at_80x24(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        app = pilot.app
        assert isinstance(app, ShardTUI)
        await pilot.press("greater_than_sign")
        # The "Sorted by" toast expires after 2 s of real time, which a slow run can spend before the
        # snapshot: take it off, so the picture does not depend on how fast the run was.
        app.clear_notifications()
        await pilot.press("slash")
        app.query_one("#filter", Input).cursor_blink = False
        # Applied once, as a whole, below: a slow run must not apply a prefix between two keys.
        app.filter_debounce = 3600.0
        await pilot.press(*"colour:red")
        app.query_one(FilterBar).typing_paused()
        await pilot.pause()
        await pilot.pause()
        assert app.query_one("#filter-error").display

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=run_before)


def test_stage_filter_typed_and_sorted_by_health_at_80x24(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        app = pilot.app
        assert isinstance(app, ShardTUI)
        await pilot.press("greater_than_sign", "greater_than_sign")
        # The "Sorted by" toast expires after 2 s of real time, which a slow run can spend before the
        # snapshot: take it off, so the picture does not depend on how fast the run was.
        app.clear_notifications()
        await pilot.press("slash")
        app.query_one("#filter", Input).cursor_blink = False
        # Applied once, as a whole, below: a slow run must not apply a prefix between two keys.
        app.filter_debounce = 3600.0
        await pilot.press(*"stage:conn")
        app.query_one(FilterBar).typing_paused()
        await pilot.pause()
        await pilot.pause()
        assert app.table.row_count == 5

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=run_before)
