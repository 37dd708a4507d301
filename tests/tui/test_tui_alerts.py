"""Alerts in the console, from real sandbox shards: each incident is one toast, one log-pane line and (with
``[ui] bell``) one terminal bell; its end is a quieter toast and a line. An outage (the sandbox stopped,
then started again on the same port) shows a banner in the header until every shard is back."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from support.tui import fast_config, wait_until
from textual.widgets import RichLog

from shardtui.gateway.models import AlertKind, ConnectionStage, ShardHealth, ShardId
from shardtui.sandbox import Sandbox, SandboxSettings
from shardtui.sandbox.tokens import make_token
from shardtui.tui.app import ShardTUI

pytest.importorskip("shardtui.gateway.manager", reason="the ShardManager has not landed yet")

SIZE = (140, 30)


def notes(app: ShardTUI, prefix: str) -> list[tuple[str, str]]:
    return [(n.title, n.severity) for n in app._notifications if n.title.startswith(prefix)]


def log_text(app: ShardTUI) -> str:
    return "\n".join(strip.text for strip in app.query_one("#log", RichLog).lines)


def connected(app: ShardTUI, count: int) -> bool:
    rows = app.model.rows
    return len(rows) == count and all(r.info.stage is ConnectionStage.CONNECTED for r in rows.values())


@pytest.mark.parametrize("bell", [True, False])
async def test_a_zombie_connection_is_one_toast_one_line_one_bell_and_its_clearing_is_quieter(
    bell: bool,
) -> None:
    config = fast_config()
    config.ui.bell = bell
    app = ShardTUI(config)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: connected(app, 3), "all shards connected")
        if not app.query_one("#log").display:
            await pilot.press("l")
        assert app.runtime.sandbox.inject("zombie", 1) == 1
        await wait_until(pilot, lambda: notes(app, "Cleared: zombie"), "the zombie alert to clear")
        await pilot.pause()
        assert notes(app, "Alert:") == [("Alert: zombie · shard 1", "warning")]
        assert notes(app, "Cleared:") and notes(app, "Cleared:")[0][1] == "information"
        assert app.bells == (1 if bell else 0)  # raised rings, cleared does not
        text = log_text(app)
        assert text.count("ALERT zombie: shard 1: heartbeats went unacknowledged") == 1
        assert text.count("cleared zombie after") == 1
        assert not app.query_one("#outage-banner").display


async def test_an_outage_shows_a_banner_until_every_shard_is_back() -> None:
    settings = SandboxSettings(
        guilds=6, shards=3, max_concurrency=3, identify_window=0.05, heartbeat_interval_ms=1000,
        event_rate=20.0, seed=7, close_timeout=0.5, token=make_token(987654321987654321),
    )  # fmt: skip
    first = Sandbox(settings)
    await first.start(host="127.0.0.1", port=0)
    port = int(first.rest_url.split(":")[2].split("/")[0])
    second: Sandbox | None = None
    config = fast_config()
    config.gateway.rest_url = first.rest_url
    config.sandbox.token = settings.token
    config.health.outage_after = 0.3
    app = ShardTUI(config)
    banner = None
    try:
        async with app.run_test(size=SIZE) as pilot:
            banner = app.query_one("#outage-banner")
            await wait_until(pilot, lambda: connected(app, 3), "all shards connected")
            await pilot.press("l")
            assert not banner.display
            await first.stop()
            await wait_until(pilot, lambda: banner.display, "the outage banner")
            await wait_until(pilot, lambda: notes(app, "Alert: outage"), "the outage toast")
            assert "OUTAGE since" in str(banner.render()) and "all 3 running shards" in str(banner.render())
            assert notes(app, "Alert: outage") == [("Alert: outage", "error")]
            second = Sandbox(settings)
            await second.start(host="127.0.0.1", port=port)
            await wait_until(pilot, lambda: not banner.display, "the banner to go once every shard is back")
            assert connected(app, 3)
            assert notes(app, "Alert: outage") == [("Alert: outage", "error")]  # one incident, one toast
            await wait_until(pilot, lambda: notes(app, "Cleared: outage"), "the outage's cleared toast")
            assert notes(app, "Cleared: outage")[0][1] == "information"
            assert (AlertKind.OUTAGE, None, None) not in app.model.open_alerts
            assert "ALERT outage:" in log_text(app) and "cleared outage after" in log_text(app)
    finally:
        for sandbox in (first, second):
            if sandbox is not None and sandbox.running:
                await sandbox.stop()


async def test_a_wedged_shard_reads_wedged_alerts_once_and_heals_by_itself() -> None:
    """The sandbox keeps ACKing shard 1's heartbeats but stops its dispatches while its peers receive:
    its row reads WEDGED, one toast and one log line say so, ``[health] restart_wedged`` resumes it,
    and the buffered events arriving clear the incident. The health check is run between pilot cycles
    instead of waiting for its 5 s timer; everything else is the running console's own path."""
    # Thirty guilds, so each shard has some (a shard without guilds hears nothing and is never wedged).
    config = fast_config(event_rate=150.0, guilds=30)
    config.health.wedged_after = 0.5
    config.health.restart_wedged = True
    app = ShardTUI(config)

    def health(shard: int) -> ShardHealth:
        return app.model.rows[shard].info.health

    def checked(condition: Callable[[], bool]) -> Callable[[], bool]:
        def poll() -> bool:
            app.runtime.manager.check_health()
            return condition()

        return poll

    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: connected(app, 3), "all shards connected")
        if not app.query_one("#log").display:
            await pilot.press("l")
        for _ in range(20):  # the health check's rates need a little history of the busy peers
            app.runtime.manager.check_health()
            await pilot.pause(0.05)
        assert app.runtime.sandbox.inject("wedge", 1) == 1
        await wait_until(pilot, checked(lambda: notes(app, "Alert: wedged")), "the wedged alert")
        assert notes(app, "Alert:") == [("Alert: wedged · shard 1", "warning")]
        assert "ALERT wedged: shard 1 is wedged" in log_text(app)
        await wait_until(pilot, checked(lambda: notes(app, "Cleared: wedged")), "the wedged shard to heal")
        assert health(1) in (ShardHealth.OK, ShardHealth.QUIET)
        assert app.runtime.manager.runners[ShardId(1)].wedged_restarts >= 1
        assert notes(app, "Alert:") == [("Alert: wedged · shard 1", "warning")]  # one incident, one toast
        assert log_text(app).count("cleared wedged after") == 1
        assert all(health(shard) is not ShardHealth.WEDGED for shard in (0, 2))
