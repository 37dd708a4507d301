"""The console's "Live reshard" command: the dialog shows the plan for the typed total, refuses a
bad one with the reason, and a confirmed reshard ends with the table showing the new set."""

from __future__ import annotations

import pytest
from support.tui import wait_until
from test_console_rolling import SIZE, config

from shardtui.gateway.models import ConnectionStage
from shardtui.tui.app import ShardTUI
from shardtui.tui.reshard_screen import ReshardScreen, parse_total


def test_parse_total_names_the_problem():
    assert parse_total(" 8 ", 4) == 8
    with pytest.raises(ValueError, match="already runs 4"):
        parse_total("4", 4)
    with pytest.raises(ValueError, match="whole number"):
        parse_total("eight", 4)
    with pytest.raises(ValueError, match="whole number"):
        parse_total("0", 4)


async def test_reshard_dialog_shows_the_cost_and_moves_the_table_to_the_new_set() -> None:
    cfg = config(2)
    cfg.sandbox.identify_window = 0.05
    app = ShardTUI(cfg)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(
            pilot,
            lambda: app.manager is not None and app.model.stats().ready == 2,
            "2 shards connected",
        )
        await app.run_action("reshard")
        await wait_until(pilot, lambda: isinstance(app.screen, ReshardScreen), "the reshard dialog")
        plan = app.screen._plan
        # Twice the current total is suggested, with its cost.
        await wait_until(pilot, lambda: "from 2 to 4 shards: 4 identifies" in str(plan.render()), "the plan")
        await pilot.press("backspace", "2")
        await wait_until(pilot, lambda: "already runs 2" in str(plan.render()), "the refusal")
        await pilot.press("enter")
        assert isinstance(app.screen, ReshardScreen)  # a bad total is not submitted
        await pilot.press("backspace", "3", "enter")
        await wait_until(
            pilot,
            lambda: (
                app.manager.shard_total == 3
                and len(app.model.rows) == 3
                and all(r.info.stage is ConnectionStage.CONNECTED for r in app.model.rows.values())
            ),
            "the table to show the 3 new shards connected",
        )
        assert all(r.info.total == 3 for r in app.model.rows.values())
        assert any("reshard to 3 shards finished" in line.message for line in app.model.console_log)
        assert app.runtime.sandbox.stats()["identify_violations"] == 0
