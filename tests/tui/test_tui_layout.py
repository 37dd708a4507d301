"""Layout behaviour on a fixed fleet: columns per width, cursor kept by shard, theme fallback, diffs."""

from __future__ import annotations

import shutil
from pathlib import Path

from support.fixed_fleet import FROZEN_NOW, FixedManager, FixedRuntime, fixed_fleet
from support.fixed_fleet import fixed_app as make_app
from textual.pilot import Pilot

from shardtui.config import Config
from shardtui.gateway.models import ShardId, ShardInfoUpdateEvent
from shardtui.tui.app import ShardTUI
from shardtui.tui.themes import DEFAULT_THEME, THEMES_DIR


async def loaded(pilot: Pilot, count: int = 8) -> ShardTUI:
    app = pilot.app
    assert isinstance(app, ShardTUI)
    for _ in range(300):
        if app.table.row_count == count:
            break
        await pilot.pause()
    assert app.table.row_count == count
    return app


async def test_resize_changes_columns_and_keeps_the_cursor_on_its_shard() -> None:
    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        narrow = len(app.table.shown_columns)
        await pilot.press("down", "down", "down")
        assert app.table.selected_shard == 3
        await pilot.resize_terminal(180, 30)
        await pilot.pause()
        assert len(app.table.shown_columns) > narrow
        assert "presence" in {c.key for c in app.table.shown_columns}
        assert app.table.selected_shard == 3
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert len(app.table.shown_columns) == narrow
        assert app.table.selected_shard == 3


async def test_sorting_keeps_the_cursor_on_the_same_shard() -> None:
    app, _ = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await loaded(pilot)
        await pilot.press("down", "down")
        assert app.table.selected_shard == 2
        for _ in range(3):
            await pilot.press("greater_than_sign")
            assert app.table.selected_shard == 2
        # Sorted by latency (slowest first), shard 7 leads and failed/stopped shards trail.
        order = [int(row.key.value) for row in app.table.ordered_rows]
        assert app.model.sort_key.value == "latency"
        assert order[0] == 7 and set(order[-2:]) == {5, 6}


async def test_updates_touch_only_changed_cells() -> None:
    app, manager = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await loaded(pilot)
        app._tick()
        before_updates = app.table.cell_updates
        rebuilds = app.table.rebuilds
        info = manager.runners[ShardId(4)]
        info.events_received += 1
        info.last_seq += 1
        app.model.apply(ShardInfoUpdateEvent(ShardId(4)))
        app._tick()
        assert app.table.cell_updates - before_updates == 2
        assert app.table.rebuilds == rebuilds
        assert app.table.get_cell("4", "events").plain == "5001"


async def test_broken_theme_file_one_notification_and_default(tmp_path: Path) -> None:
    for path in THEMES_DIR.glob("*.toml"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "shardtui-light.toml").write_text('name = "shardtui-light"\nprimary = 12\n')
    config = Config()
    config.ui.theme = "shardtui-light"
    app, _ = make_app(config, themes_dir=tmp_path)
    async with app.run_test(size=(100, 24)) as pilot:
        await loaded(pilot)
        assert app.theme == DEFAULT_THEME
        notes = [n for n in app._notifications if n.title == "Theme problem"]
        assert len(notes) == 1
        assert "shardtui-light.toml" in notes[0].message and "primary" in notes[0].message
        await pilot.press("t")
        assert app.theme != DEFAULT_THEME and app.theme != "shardtui-light"


async def test_theme_switch_recolours_stage_cells() -> None:
    app, _ = make_app()
    async with app.run_test(size=(100, 24)) as pilot:
        await loaded(pilot)
        dark = app.table.get_cell("0", "stage").style.color
        while app.theme != "shardtui-high-contrast":
            await pilot.press("t")
            await pilot.pause()
        await pilot.pause()
        contrast = app.table.get_cell("0", "stage").style.color
        assert dark != contrast
        assert contrast.triplet.hex == app.current_theme.variables["stage-connected"].lower()


async def test_ages_tick_on_screen_without_events_and_spare_hidden_rows() -> None:
    now = [FROZEN_NOW]
    manager = FixedManager(fixed_fleet(60))
    app = ShardTUI(Config(), runtime_factory=lambda _c: FixedRuntime(manager), clock=lambda: now[0])
    async with app.run_test(size=(100, 24)) as pilot:
        await loaded(pilot, 60)
        app._tick()
        assert app.table.get_cell("0", "dispatch_age").plain == "1s"
        visible = app.table.on_screen()
        assert 0 in visible and 59 not in visible and len(visible) < 30
        hidden_before = app.table.get_cell("59", "dispatch_age").plain
        now[0] += 120
        before = app.table.cell_updates
        app._tick()
        assert app.table.get_cell("0", "dispatch_age").plain == "2m"
        assert app.table.get_cell("59", "dispatch_age").plain == hidden_before
        assert app.table.cell_updates - before <= len(visible)


async def test_a_busy_fleet_writes_rows_on_screen_and_the_rest_as_they_scroll_in() -> None:
    manager = FixedManager(fixed_fleet(60))
    app = ShardTUI(Config(), runtime_factory=lambda _c: FixedRuntime(manager), clock=lambda: FROZEN_NOW)
    async with app.run_test(size=(100, 24)) as pilot:
        await loaded(pilot, 60)
        app._tick()
        table = app.table
        old = {sid: table.get_cell(str(sid), "events").plain for sid in (0, 59)}
        # Every shard takes an event: every row changes in one tick.
        for sid, info in manager.runners.items():
            info.events_received += 1
            app.model.apply(ShardInfoUpdateEvent(sid))
        visible = table.on_screen()
        assert 0 in visible and 59 not in visible
        before = table.cell_updates
        app._tick()
        assert table.cell_updates - before <= 2 * len(visible) < 60
        assert table.get_cell("0", "events").plain == str(int(old[0]) + 1)
        assert table.get_cell("59", "events").plain == old[59]
        assert 59 in table.stale and 0 not in table.stale

        # Scrolling to the last shard shows its current figures, without waiting for the next tick.
        await pilot.press("pagedown", "pagedown", "pagedown")
        await pilot.pause()
        assert 59 in table.on_screen()
        assert table.get_cell("59", "events").plain == str(int(old[59]) + 1)
        assert 59 not in table.stale

        # A taller terminal writes the rows that came into view.
        await pilot.resize_terminal(100, 80)
        await pilot.pause()
        assert not table.stale
        for sid, info in manager.runners.items():
            assert table.get_cell(str(sid), "events").plain == str(info.events_received)


async def test_home_end_and_g_jump_to_the_first_and_last_shard() -> None:
    manager = FixedManager(fixed_fleet(60))
    app = ShardTUI(Config(), runtime_factory=lambda _c: FixedRuntime(manager), clock=lambda: FROZEN_NOW)
    async with app.run_test(size=(100, 24)) as pilot:
        await loaded(pilot, 60)
        await pilot.press("end")
        assert app.table.selected_shard == 59 and 59 in app.table.on_screen()
        await pilot.press("home")
        assert app.table.selected_shard == 0 and 0 in app.table.on_screen()
        await pilot.press("G")
        assert app.table.selected_shard == 59
        await pilot.press("g")
        assert app.table.selected_shard == 0
        await pilot.press("question_mark")
        await pilot.pause()
        help_text = str(app.screen.query_one("#help-body").render())
        assert "first_row" in help_text and "last_row" in help_text


async def test_footer_at_80_columns_shows_quit_whole() -> None:
    # At 80 columns "q Quit" was cut to "q Qui" under the palette hint.
    from textual.widgets._footer import FooterKey

    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        await pilot.pause()
        keys = list(app.screen.query(FooterKey))
        palette = next(k for k in keys if k.has_class("-command-palette"))
        shown = {k.key for k in keys if k is not palette and k.region.right <= palette.region.x}
        assert {"r", "s", "q"} <= shown


async def test_filter_hint_fits_80_columns() -> None:
    # The hint was cut at 80 columns to "... (enter to apply, esc to", losing how to leave the filter.
    from textual.widgets import Input

    app, _ = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        await pilot.press("slash")
        await pilot.pause()
        box = app.query_one("#filter", Input)
        assert "esc" in box.placeholder
        assert len(box.placeholder) <= box.content_region.width


async def test_details_of_a_shard_without_latency_samples_says_so() -> None:
    # An empty sparkline drew a flat baseline, which read as a steady 0 ms.
    from shardtui.tui.screens import DetailsScreen

    app, _ = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        sid = next(s for s, row in app.model.rows.items() if not row.latencies)
        app.push_screen(DetailsScreen(app.model, sid))
        await pilot.pause()
        assert "no heartbeat ACK yet" in str(app.screen.query_one("#details-latency-label").render())
        assert not app.screen.query_one("#details-latency").display
