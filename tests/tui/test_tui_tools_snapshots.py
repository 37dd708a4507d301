"""SVG snapshots at 80x24 of the chart view, the log view while searching and the column chooser.

Update after an intended visual change with ``--snapshot-update`` and look at the SVGs first.
"""

from __future__ import annotations

from support.fixed_fleet import FROZEN_NOW
from test_tui_snapshots import make_app, settle, utc  # noqa: F401  (utc: the autouse TZ fixture)
from textual.pilot import Pilot
from textual.widgets import Input

from shardtui.tui.app import ShardTUI
from shardtui.tui.model import FleetSample


def test_chart_view_at_80x24(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        app = pilot.app
        assert isinstance(app, ShardTUI)
        # Ten minutes of a fleet that lost a third of its events for a while as latency climbed.
        # No tick adds a sample of its own: the picture must not depend on how fast the run was.
        app.model.fleet_sample_interval = 1e9
        samples = app.model.fleet_samples
        samples.clear()
        for index in range(300):
            dip = 100 <= index < 160
            samples.append(
                FleetSample(
                    at=FROZEN_NOW - (300 - index) * 2.0,
                    events_per_second=12.0 + (index % 7) - (5.0 if dip else 0.0),
                    mean_latency=0.045 + (0.060 if dip else 0.0) + (index % 5) * 0.002,
                    max_latency=0.070 + (0.200 if dip else 0.0) + (index % 3) * 0.004,
                )
            )
        await pilot.press("c")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=run_before)


def test_log_view_searching_at_80x24(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        app = pilot.app
        assert isinstance(app, ShardTUI)
        for sid in range(6):
            app.model.note("stage connected → resuming (close 4000)", shard_id=sid)
            app.model.note("heartbeat ACK late", shard_id=sid)
        app.model.note("operator: restart of shards 2, 3")
        await pilot.pause()
        await pilot.press("L", "slash")
        app.screen.query_one("#logview-search", Input).cursor_blink = False
        await pilot.press(*"resum")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=run_before)


def test_column_chooser_at_80x24(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("C", "down", "down", "down", "space")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=run_before)
