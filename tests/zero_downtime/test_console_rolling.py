"""The console's R uses ShardManager.rolling_restart (its plan shows the rounds), and R while one
runs offers to abort it; the header counts shards that resumed saved sessions."""

from __future__ import annotations

import asyncio

from support.tui import wait_until

from shardtui.config import Config
from shardtui.tui.app import ShardTUI
from shardtui.tui.model import OverviewStats
from shardtui.tui.screens import ConfirmScreen

SIZE = (160, 30)


def config(shards: int) -> Config:
    cfg = Config()
    cfg.gateway.mode = "sandbox"
    cfg.gateway.shards = shards
    cfg.sandbox.shards = shards
    cfg.sandbox.guilds = 8
    # Long enough windows that a forced-identify rolling restart is still running when R is pressed
    # (the abort must land within 3 windows; a loaded run took up to ~0.9 s to get there).
    cfg.sandbox.identify_window = 1.0
    cfg.sandbox.heartbeat_interval_ms = 500
    cfg.sandbox.event_rate = 5.0
    cfg.ui.refresh_interval = 0.05
    return cfg


def body(app: ShardTUI) -> str:
    return str(app.screen.query_one("#confirm-body").render())


async def test_R_runs_the_managers_rolling_restart_and_R_again_aborts_it() -> None:
    app = ShardTUI(config(4))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(
            pilot,
            lambda: app.manager is not None and len(app.model.rows) == 4 and app.model.stats().ready == 4,
            "4 shards connected",
        )
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
        assert "4 rounds" in body(app) and "R again" in body(app)
        # Start a forced-identify rolling restart directly so it takes several identify windows.
        task = asyncio.ensure_future(app.manager.rolling_restart(force_identify=True))
        await pilot.press("n")
        await wait_until(pilot, lambda: app.manager.rolling_status is not None, "the rolling restart")
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the abort question")
        assert "Stop it before the next round?" in body(app)
        await pilot.press("y")
        status = await task
        assert status.state.value == "aborted"
        assert len(status.done) < 4
        assert any("abort requested" in line.message for line in app.model.console_log)
        assert app.runtime.sandbox.stats()["identify_violations"] == 0


def test_header_counts_resumed_saved_sessions() -> None:
    stats = OverviewStats(
        mode="discord",
        bot_user="bot",
        ready=4,
        total=4,
        queued=0,
        identifying=0,
        p50=None,
        p95=None,
        events_per_second=0.0,
        next_slot_in=None,
        starts_remaining=990,
        starts_total=1000,
        starts_reset_in=3600.0,
        max_concurrency=1,
    )
    assert "saved sessions" not in stats.header_lines()[1]
    resumed = OverviewStats(
        **{**{f: getattr(stats, f) for f in stats.__dataclass_fields__}, "identifies_saved": 4}
    )
    assert "resumed 4 saved sessions" in resumed.header_lines()[1]
