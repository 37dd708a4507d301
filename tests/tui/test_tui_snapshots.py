"""SVG snapshots of the main screens: fixed fleet, frozen clock, fixed size, no cursor blink.

Update after an intended visual change with ``pytest tests/tui/test_tui_snapshots.py --snapshot-update``
and look at the SVGs before committing them.
"""

from __future__ import annotations

import logging
import time

import pytest
from support.fixed_fleet import FROZEN_NOW, FixedManager, FixedRuntime, fixed_app, fixed_fleet
from textual.pilot import Pilot
from textual.widgets import Input

from shardtui.config import Config
from shardtui.gateway.models import ConnectionStage, ShardId, ShardLogEvent, ShardStageUpdateEvent
from shardtui.tui.app import ShardTUI


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    # Log lines show local time; pin it so the pictures do not depend on the machine.
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def make_app(theme: str = "shardtui-dark") -> ShardTUI:
    config = Config()
    config.ui.theme = theme
    return fixed_app(config)[0]


async def settle(pilot: Pilot) -> None:
    app = pilot.app
    assert isinstance(app, ShardTUI)
    for _ in range(200):
        if app.manager is not None and app.table.row_count == 8:
            break
        await pilot.pause()
    assert app.table.row_count == 8
    for widget in app.screen.query(Input):
        widget.cursor_blink = False
    await pilot.pause()


def test_main_table_80x24(snap_compare) -> None:
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=settle)


def test_wide_table_with_marks_and_log(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        app = pilot.app
        assert isinstance(app, ShardTUI)
        stage = ShardStageUpdateEvent(ShardId(2), ConnectionStage.CONNECTED, ConnectionStage.RESUMING)
        app.model.apply(stage)
        app.model.apply(ShardLogEvent(ShardId(2), logging.WARNING, "closed 4000 (unknown error)", FROZEN_NOW))
        await pilot.press("down", "space", "space", "l")
        app._tick()
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(170, 30), run_before=run_before)


def test_details_of_wedged_shard(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("down", "down", "down", "enter")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(100, 30), run_before=run_before)


def test_presence_editor_shows_invalid_input(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("p")
        await pilot.pause()
        app = pilot.app
        for widget in app.screen.query(Input):
            widget.cursor_blink = False
        app.screen.query_one("#kind").value = "streaming"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=run_before)


def test_shutdown_confirmation_light_theme(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("s")
        await pilot.pause()

    assert snap_compare(make_app("shardtui-light"), terminal_size=(80, 24), run_before=run_before)


def test_high_contrast_theme(snap_compare) -> None:
    assert snap_compare(make_app("shardtui-high-contrast"), terminal_size=(120, 24), run_before=settle)


def test_fatal_authentication_screen(snap_compare) -> None:
    from shardtui.gateway.errors import FatalGatewayError

    error = FatalGatewayError(
        "authentication",
        4004,
        "close 4004 (authentication failed): the bot token was rejected; check the token (it may have "
        "been reset) and restart",
    )
    manager = FixedManager(fixed_fleet(4))
    app = ShardTUI(
        Config(), runtime_factory=lambda _c: FixedRuntime(manager, error), clock=lambda: FROZEN_NOW
    )

    async def run_before(pilot: Pilot) -> None:
        from shardtui.tui.screens import FatalScreen

        for _ in range(200):
            if isinstance(pilot.app.screen, FatalScreen):
                break
            await pilot.pause()
        assert isinstance(pilot.app.screen, FatalScreen)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
