"""The console's tools, driven with Textual's pilot against the real embedded sandbox: comparisons and
checked values in the filter with the header's match count, mark all / mark filtered / clear marks,
reverse sort, ``:`` jump, the column chooser, the help legend, the full-screen log with search, the
export to CSV/JSON and the fleet charts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.tui import fast_config, wait_until
from textual.widgets import Input, RichLog, SelectionList, Sparkline, Static

from shardtui.tui.app import ShardTUI
from shardtui.tui.charts import ChartScreen
from shardtui.tui.columns_screen import ColumnsScreen
from shardtui.tui.export import ExportScreen
from shardtui.tui.filter_bar import FilterBar
from shardtui.tui.jump import JumpScreen
from shardtui.tui.log_screen import LogScreen
from shardtui.tui.screens import HelpScreen

pytest.importorskip("shardtui.gateway.manager", reason="the ShardManager has not landed yet")

SIZE = (120, 30)


def shown(app: ShardTUI) -> list[int]:
    return [int(row.key.value) for row in app.table.ordered_rows]


def header(app: ShardTUI) -> str:
    return str(app.query_one("#fleet").render())


async def connected(pilot, count: int = 3) -> ShardTUI:
    app = pilot.app
    await wait_until(
        pilot,
        lambda: (
            app.table.row_count == count
            and all(row.info.latency is not None for row in app.model.rows.values())
        ),
        f"{count} shards connected with a latency",
    )
    return app


async def apply_filter(pilot, text: str) -> None:
    """Type ``text`` into the filter box and apply it once, as a whole (no prefix applies on a slow run)."""
    app = pilot.app
    app.filter_debounce = 3600.0
    await pilot.press("slash")
    box = app.query_one(FilterBar)
    box.value = ""
    await pilot.press(*text)
    box.typing_paused()
    await pilot.pause()
    await pilot.pause()


async def test_comparisons_count_matches_and_a_bad_value_keeps_the_last_good_filter() -> None:
    app = ShardTUI(fast_config())
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        await apply_filter(pilot, "latency<5")
        assert shown(app) == [0, 1, 2]
        assert "3 of 3 match" in header(app)

        await apply_filter(pilot, "latency>5")
        assert shown(app) == [] and app.model.filter_text == "latency>5"
        assert "0 of 3 match" in header(app)

        await apply_filter(pilot, "id>=1")
        assert shown(app) == [1, 2] and "2 of 3 match" in header(app)

        await apply_filter(pilot, "stage:bogus")
        problem = app.query_one("#filter-error")
        assert problem.display
        text = str(problem.render())
        assert "bogus" in text and "connected" in text and "stopped" in text
        # Not applied: the table and the header keep the last good filter.
        assert app.model.filter_text == "id>=1" and shown(app) == [1, 2]
        assert "2 of 3 match" in header(app)

        await pilot.press("escape")
        assert shown(app) == [0, 1, 2] and "match" not in header(app)


async def test_mark_all_mark_filtered_clear_marks_and_reverse_sort() -> None:
    app = ShardTUI(fast_config(4))
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, 4)
        await apply_filter(pilot, "id>=2")
        await pilot.press("enter")
        assert shown(app) == [2, 3]
        await pilot.press("M")
        assert app.model.marked == {2, 3} and "2 marked" in header(app)
        assert app.table.get_cell("2", "id").text.plain.startswith("*")

        await pilot.press("ctrl+a")
        assert app.model.marked == {0, 1, 2, 3} and "4 marked" in header(app)

        await pilot.press("U")
        assert app.model.marked == set() and "marked" not in header(app)

        await pilot.press("escape")
        assert shown(app) == [0, 1, 2, 3]
        await pilot.press("I")
        assert shown(app) == [3, 2, 1, 0]
        assert app.table.header_labels()[0] == "shard\u25bc" and "reversed" in header(app)
        await pilot.press("I")
        assert shown(app) == [0, 1, 2, 3] and app.table.header_labels()[0] == "shard\u25b2"


async def test_colon_jumps_to_a_shard_and_names_an_unknown_one() -> None:
    app = ShardTUI(fast_config(4))
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, 4)
        await pilot.press("colon")
        assert isinstance(app.screen, JumpScreen)
        await pilot.press("9", "9", "enter")
        error = app.screen.query_one("#jump-error", Static)
        assert isinstance(app.screen, JumpScreen) and error.display
        assert "no shard 99" in str(error.render())

        app.screen.query_one("#jump-id", Input).value = ""
        await pilot.press("3", "enter")
        assert not isinstance(app.screen, JumpScreen)
        assert app.table.selected_shard == 3

        await apply_filter(pilot, "id:1")
        await pilot.press("enter", "colon", "2", "enter")
        assert "hidden by the filter" in str(app.screen.query_one("#jump-error", Static).render())
        await pilot.press("escape")
        assert not isinstance(app.screen, JumpScreen) and app.table.selected_shard == 1


async def test_column_chooser_hides_columns_for_the_session_but_not_id_or_stage() -> None:
    app = ShardTUI(fast_config())
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        keys = [c.key for c in app.table.shown_columns]
        assert "latency" in keys
        await pilot.press("C")
        assert isinstance(app.screen, ColumnsScreen)
        choices = app.screen.query_one(SelectionList)
        assert choices.get_option("id").disabled and choices.get_option("stage").disabled
        choices.deselect("latency")
        choices.deselect("id")  # refused: the id column always shows
        await pilot.pause()
        assert "latency" not in [c.key for c in app.table.shown_columns]
        assert app.model.hidden_columns == {"latency"}
        await pilot.press("escape")

        await pilot.resize_terminal(160, 30)
        await pilot.pause()
        keys = [c.key for c in app.table.shown_columns]
        assert keys[:2] == ["id", "stage"] and "latency" not in keys
        await pilot.press("C")
        assert "latency" not in app.screen.query_one(SelectionList).selected
        app.screen.query_one(SelectionList).select("latency")
        await pilot.pause()
        assert "latency" in [c.key for c in app.table.shown_columns]


async def test_help_has_a_legend_of_columns_and_filter_syntax() -> None:
    app = ShardTUI(fast_config())
    async with app.run_test(size=(100, 40)) as pilot:
        await connected(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = str(app.screen.query_one("#help-body").render())
        for binding_id in ("mark_all", "mark_filtered", "clear_marks", "reverse_sort", "jump", "columns"):
            assert binding_id in keys
        legend = str(app.screen.query_one("#help-legend").render())
        for needle in ("WEDGED", "dispatch", "latency>200ms", "stage:conn", "seq>=100", "identifying"):
            assert needle in legend


async def test_log_view_searches_as_it_is_typed_and_escape_goes_back() -> None:
    app = ShardTUI(fast_config())
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        # Still waiting for the tick that writes it to the log pane when the view opens: shown once.
        app.model.note("just before the log view", shard_id=1)
        await pilot.press("L")
        screen = app.screen
        assert isinstance(screen, LogScreen)
        total = len(screen.lines)
        assert total > 0 and any("shard 1" in line for line in screen.lines)
        await pilot.press("slash", *"shard 1:")
        assert screen.query_text == "shard 1:"
        assert 0 < screen.shown < total
        pane = screen.query_one("#logview", RichLog)
        assert len(pane.lines) == screen.shown
        assert "match 'shard 1:'" in str(screen.query_one("#logview-status").render())
        # New lines while it is open arrive, filtered the same way.
        app.model.note("restart of shard 1 asked", shard_id=1)
        app.model.note("unrelated fleet line")
        await wait_until(
            pilot, lambda: any("restart of shard 1" in line for line in screen.lines), "new lines"
        )
        await pilot.pause()
        assert len(pane.lines) == screen.shown and screen.shown == sum(
            "shard 1:" in line.lower() for line in screen.lines
        )
        assert sum("just before the log view" in line for line in screen.lines) == 1
        await pilot.press("enter")
        assert app.focused is pane
        # The table's keys do nothing here: no shutdown of a shard the operator cannot see.
        await pilot.press("s", "r")
        assert app.screen is screen
        await pilot.press("escape")
        assert not isinstance(app.screen, LogScreen)


async def test_export_writes_the_shown_rows_and_an_unwritable_path_is_a_message(tmp_path: Path) -> None:
    app = ShardTUI(fast_config(4))
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, 4)
        await apply_filter(pilot, "id<=2")
        await pilot.press("enter", "I", "x")
        assert isinstance(app.screen, ExportScreen)
        box = app.screen.query_one("#export-path", Input)
        assert box.value.startswith("./shardtui-export-") and box.value.endswith(".csv")

        box.value = str(tmp_path / "no-such-dir" / "fleet.json")
        await pilot.press("enter")
        error = app.screen.query_one("#export-error", Static)
        assert isinstance(app.screen, ExportScreen) and error.display
        assert "cannot write" in str(error.render())

        target = tmp_path / "fleet.json"
        box.value = str(target)
        await pilot.press("enter")
        assert not isinstance(app.screen, ExportScreen)
        rows = json.loads(target.read_text())
        assert [r["shard"] for r in rows] == [2, 1, 0]
        assert {"stage", "health", "latency_ms", "events", "seq", "presence"} <= set(rows[0])


async def test_chart_view_draws_fleet_events_and_latency_from_the_ticks() -> None:
    app = ShardTUI(fast_config())
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot)
        app.model.fleet_sample_interval = 0.0
        await wait_until(
            pilot,
            lambda: (
                len(app.model.fleet_samples) >= 5
                and any(s.events_per_second > 0 for s in app.model.fleet_samples)
            ),
            "fleet samples with events",
        )
        await pilot.press("c")
        screen = app.screen
        assert isinstance(screen, ChartScreen)
        before = len(app.model.fleet_samples)
        await wait_until(
            pilot, lambda: len(screen.query_one("#chart-eps", Sparkline).data) > before, "a tick"
        )
        for key in ("eps", "mean", "max"):
            chart = screen.query_one(f"#chart-{key}", Sparkline)
            assert chart.display and len(chart.data) > 0
        assert "now" in str(screen.query_one("#chart-max-label").render())
        await pilot.press("escape")
        assert not isinstance(app.screen, ChartScreen)


async def test_at_80x24_essential_columns_and_the_footer_stay_with_the_filter_and_log_open() -> None:
    from textual.widgets import Footer

    app = ShardTUI(fast_config())
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot)
        await pilot.press("l")
        await apply_filter(pilot, "stage:bogus")
        keys = [c.key for c in app.table.shown_columns]
        assert keys[:3] == ["id", "stage", "health"] and "latency" in keys
        table = app.table.region
        assert table.height >= 4  # header and three shards
        footer = app.query_one(Footer).region
        assert footer.bottom == 24 and footer.height == 1 and table.bottom <= footer.y


async def test_at_80_columns_the_header_keeps_match_count_marks_and_read_only_in_its_three_lines() -> None:
    app = ShardTUI(fast_config(), readonly=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot)
        await apply_filter(pilot, "stage:connected")
        await pilot.press("enter", "ctrl+a")
        lines = header(app).splitlines()
        width = app.query_one("#fleet").content_region.width
        assert len(lines) == 3 and all(len(line) <= width for line in lines)
        assert "3 of 3 match" in lines[2] and "3 marked" in lines[2] and "READ-ONLY" in lines[2]
