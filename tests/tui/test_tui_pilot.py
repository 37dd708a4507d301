"""Every key and dialog of the console, driven with Textual's pilot against the real embedded sandbox."""

from __future__ import annotations

import pytest
from support.tui import fast_config, wait_until
from textual.command import CommandPalette
from textual.widgets import Input, OptionList, RichLog, Select

from shardtui.config import Config
from shardtui.gateway.models import ConnectionStage
from shardtui.tui.app import ShardTUI
from shardtui.tui.screens import ConfirmScreen, DetailsScreen, FatalScreen, HelpScreen, PresenceScreen

pytest.importorskip("shardtui.gateway.manager", reason="the ShardManager has not landed yet")

SIZE = (160, 30)


def cell(app: ShardTUI, sid: int, column: str) -> str:
    value = app.table.get_cell(str(sid), column)
    return getattr(value, "text", value).plain


def all_connected(app: ShardTUI, count: int) -> bool:
    rows = app.model.rows
    return (
        len(rows) == count
        and app.table.row_count == count
        and all(cell(app, sid, "stage") == "connected" for sid in rows)
    )


def shard_stats(app: ShardTUI, sid: int) -> dict:
    return app.runtime.sandbox.stats()["shards"][str(sid)]


async def started(pilot, count: int = 3) -> ShardTUI:
    app = pilot.app
    await wait_until(pilot, lambda: all_connected(app, count), f"all {count} shards connected in the table")
    assert app.refresh_errors == 0
    return app


async def test_start_up_fills_table_and_header() -> None:
    app = ShardTUI(fast_config(identify_window=0.2))
    async with app.run_test(size=SIZE) as pilot:
        label = app.query_one("#startup-label")
        await wait_until(
            pilot,
            lambda: app.query_one("#startup").display and "ready" in str(label.render()),
            "the start-up progress bar",
        )
        assert "queued →" in str(label.render()) and "ETA" in str(label.render())
        await started(pilot)
        header = str(app.query_one("#fleet").render())
        assert "ready 3/3" in header
        assert app.model.bot_user and app.model.bot_user in header
        assert "starts " in header and "starts —" not in header
        await wait_until(pilot, lambda: not app.query_one("#startup").display, "the start-up bar to hide")
        assert [cell(app, sid, "id") for sid in range(3)] == [" 0/3", " 1/3", " 2/3"]
        # The table is updated cell by cell, never rebuilt on a tick.
        rebuilds = app.table.rebuilds
        await wait_until(pilot, lambda: app.table.cell_updates > 0, "some cell updates")
        assert app.table.rebuilds == rebuilds


async def test_r_resumes_the_selected_shard() -> None:
    app = ShardTUI(fast_config())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("down")
        assert app.table.selected_shard == 1
        identifies = shard_stats(app, 1)["identifies"]
        await pilot.press("r")
        # A loopback resume takes a few ms: the stage cell may never leave "connected", so wait
        # for the row to show the resume too (the runner counts it before the next table flush).
        await wait_until(
            pilot,
            lambda: (
                app.model.rows[1].info.resumes == 1
                and cell(app, 1, "stage") == "connected"
                and cell(app, 1, "resumes") == "1"
            ),
            "shard 1 to resume and its row to show it connected again",
        )
        assert shard_stats(app, 1)["resumes"] == 1
        assert shard_stats(app, 1)["identifies"] == identifies
        assert [app.model.rows[sid].info.resumes for sid in (0, 2)] == [0, 0]
        assert any("resuming" in line.message for line in app.model.rows[1].log)
        assert cell(app, 1, "resumes") == "1"


async def test_marked_shards_are_the_targets() -> None:
    app = ShardTUI(fast_config())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("space")  # marks 0, cursor moves to 1
        await pilot.press("down", "space")  # marks 2
        assert app.model.marked == {0, 2}
        assert cell(app, 0, "id") == "*0/3"
        await pilot.press("r")
        await wait_until(
            pilot,
            lambda: all(app.model.rows[s].info.resumes == 1 for s in (0, 2)) and all_connected(app, 3),
            "shards 0 and 2 to resume",
        )
        assert app.model.rows[1].info.resumes == 0
        # With marks, the presence editor offers the marked shards first.
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, PresenceScreen), "the presence editor")
        app.screen.query_one("#status", Select).value = "idle"
        await pilot.press("ctrl+s")
        # The rows show it at the next table flush, which may come after the sandbox has the op 3.
        await wait_until(
            pilot,
            lambda: (
                all(shard_stats(app, sid)["presence_updates"] == 1 for sid in (0, 2))
                and all(cell(app, sid, "presence").startswith("idle") for sid in (0, 2))
            ),
            "op 3 on the marked shards and their rows showing it",
        )
        assert shard_stats(app, 1)["presence_updates"] == 0
        assert cell(app, 1, "presence").startswith("online")
        assert cell(app, 0, "presence").startswith("idle")
        await pilot.press("escape")
        assert app.model.marked == set()


async def test_shutdown_confirms_with_plan_and_boot_brings_it_back() -> None:
    app = ShardTUI(fast_config())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("down", "s")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the shutdown confirmation")
        body = str(app.screen.query_one("#confirm-body").render())
        assert "Shut down shard 1?" in body
        assert app.manager.plan("shutdown", [app.model.rows[1].info.shard_id]).text in body
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen)
        assert app.model.rows[1].info.running
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation again")
        await pilot.press("y")
        await wait_until(pilot, lambda: cell(app, 1, "stage") == "stopped", "shard 1 to show stopped")
        assert shard_stats(app, 1)["client_closes"].get("1000", 0) >= 1
        assert cell(app, 0, "stage") == "connected"
        await pilot.press("b")
        await wait_until(pilot, lambda: cell(app, 1, "stage") == "connected", "shard 1 booted again")


async def test_rolling_restart_restarts_every_shard() -> None:
    app = ShardTUI(fast_config())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("R")
        await wait_until(
            pilot, lambda: isinstance(app.screen, ConfirmScreen), "the rolling-restart confirmation"
        )
        assert "Restart all 3 shards" in str(app.screen.query_one("#confirm-body").render())
        await pilot.press("y")
        await wait_until(
            pilot,
            lambda: (
                all(r.info.resumes + r.info.identifies >= 2 for r in app.model.rows.values())
                and all_connected(app, 3)
            ),
            "every shard restarted and connected",
        )
        await wait_until(
            pilot,
            lambda: any("rolling restart finished" in line.message for line in app.model.console_log),
            "the rolling restart to report it finished",
        )


async def test_presence_editor_sends_to_all_and_rows_show_it() -> None:
    app = ShardTUI(fast_config())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, PresenceScreen), "the presence editor")
        screen = app.screen
        screen.query_one("#status", Select).value = "dnd"
        screen.query_one("#kind", Select).value = "playing"
        name = screen.query_one("#name", Input)
        name.value = ""
        name.focus()
        await pilot.press(*"[deploy] v2")
        scope = screen.query_one("#scope")
        scope.focus()
        await pilot.press("down", "enter")  # from "shard 0" to "all 3 shards"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not isinstance(app.screen, PresenceScreen), "the editor to close")
        await wait_until(
            pilot,
            lambda: all(cell(app, sid, "presence") == "dnd · Playing [deploy] v2" for sid in range(3)),
            "every row to show the new presence",
        )
        await wait_until(
            pilot,
            lambda: all(shard_stats(app, sid)["presence_updates"] >= 1 for sid in range(3)),
            "the sandbox to receive op 3 on every shard",
        )
        presence = shard_stats(app, 2)["presence"]
        assert presence["status"] == "dnd"
        assert presence["activities"][0]["name"] == "[deploy] v2"


async def test_presence_editor_applies_with_enter_from_a_select_and_an_input() -> None:
    app = ShardTUI(fast_config())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, PresenceScreen), "the presence editor")
        screen = app.screen
        status = screen.query_one("#status", Select)
        status.focus()
        await pilot.press("down")  # space and the arrows open a select's list; enter there picks
        await wait_until(pilot, lambda: status.expanded, "the status list to open")
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: not status.expanded, "the status list to close")
        assert status.value == "idle" and isinstance(app.screen, PresenceScreen)
        await pilot.press("enter")  # on the closed select: applies
        await wait_until(pilot, lambda: not isinstance(app.screen, PresenceScreen), "the editor to close")
        await wait_until(pilot, lambda: shard_stats(app, 0)["presence_updates"] >= 1, "op 3 on shard 0")
        assert shard_stats(app, 0)["presence"]["status"] == "idle"
        assert shard_stats(app, 1)["presence_updates"] == 0  # the scope was the selected shard

        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, PresenceScreen), "the presence editor")
        app.screen.query_one("#kind", Select).value = "watching"
        await pilot.press(*"logs")  # the name input has the focus
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, PresenceScreen), "the editor to close")
        await wait_until(
            pilot,
            lambda: shard_stats(app, 0)["presence"]["activities"][:1] == [{"name": "logs", "type": 3}],
            "the activity on shard 0",
        )


async def test_presence_editor_rejects_bad_input_and_sends_nothing() -> None:
    app = ShardTUI(fast_config())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, PresenceScreen), "the presence editor")
        screen = app.screen
        screen.query_one("#kind", Select).value = "streaming"
        url = screen.query_one("#url", Input)
        url.value = "https://example.com/live"
        await pilot.press("ctrl+s")
        error = screen.query_one("#presence-error")
        await wait_until(pilot, lambda: error.has_class("visible"), "the inline error")
        assert "twitch.tv or youtube.com" in str(error.render())
        assert isinstance(app.screen, PresenceScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, PresenceScreen)
        assert all(shard_stats(app, sid)["presence_updates"] == 0 for sid in range(3))
        assert all(app.model.rows[sid].sent_presence is None for sid in range(3))


async def test_view_keys_details_filter_sort_log_theme_refresh_help() -> None:
    config = fast_config()
    # "No shard resumed" below proves the typed 'r' restarted nothing; with 500 ms heartbeats a loaded
    # machine misses an ACK now and then, and that zombie's resume failed the test.
    config.sandbox.heartbeat_interval_ms = 5000
    app = ShardTUI(config)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DetailsScreen), "the details pane")
        assert app.screen.sid == 1
        assert "session" in str(app.screen.query_one("#details-info").render())
        await pilot.press("escape")

        await pilot.press("slash")
        assert app.focused is app.query_one("#filter", Input)
        theme = app.theme
        # Letters that are also keys (r, s, t, p, q...) go into the filter, not to the actions.
        await pilot.press(*"stopped", "enter")
        assert app.table.row_count == 0 and app.theme == theme
        assert not isinstance(app.screen, ConfirmScreen | PresenceScreen)
        assert all(r.info.resumes == 0 and r.info.running for r in app.model.rows.values())
        await pilot.press("escape")
        assert app.table.row_count == 3
        await pilot.press("slash", "2", "enter")
        assert app.table.row_count == 1 and app.table.selected_shard == 2
        await pilot.press("escape")
        assert app.table.row_count == 3
        assert app.table.selected_shard == 2

        sort_before = app.model.sort_key
        await pilot.press("greater_than_sign")
        assert app.model.sort_key is not sort_before
        assert app.table.selected_shard == 2
        await pilot.press("less_than_sign")
        assert app.model.sort_key is sort_before

        log_pane = app.query_one("#log", RichLog)
        assert not log_pane.display
        await pilot.press("l")
        assert log_pane.display
        await wait_until(pilot, lambda: len(log_pane.lines) > 0, "log lines in the pane")

        theme = app.theme
        await pilot.press("t")
        assert app.theme != theme

        interval = app.refresh_interval
        await pilot.press("plus", "plus")
        slower = app.refresh_interval
        assert slower > interval
        assert f"refresh {slower}s" in str(app.query_one("#fleet").render())
        await pilot.press("minus")
        assert app.refresh_interval < slower

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_text = str(app.screen.query_one("#help-body").render())
        assert "rolling_restart" in help_text and "Presence" in help_text
        await pilot.press("escape")

        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert {"Restart shards", "Rolling restart", "Edit presence", "Filter shards"} <= set(titles)
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), "the command palette")
        await pilot.press(*"rolling restart")
        options = app.screen.query_one(OptionList)
        # Each key starts a new search and the list keeps a shorter query's matches until it ends
        # ("ro" also lists Screenshot, which "down" would pick): wait for the whole query's one match.
        await wait_until(
            pilot,
            lambda: (
                options.option_count == 1
                and str(options.get_option_at_index(0).prompt).startswith("Rolling restart")
            ),
            "the palette's match for the whole query",
        )
        await pilot.press("down", "enter")
        await wait_until(
            pilot, lambda: isinstance(app.screen, ConfirmScreen), "the palette's rolling restart"
        )
        await pilot.press("n")
        assert all(r.info.resumes == 0 for r in app.model.rows.values())


async def test_readonly_hides_every_mutating_action() -> None:
    app = ShardTUI(fast_config(), readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        shown = {binding.binding.action for binding in app.active_bindings.values() if binding.enabled}
        assert not shown & {"restart", "shutdown", "boot", "rolling_restart", "presence"}
        await pilot.press("r", "s", "b", "R", "p")
        assert not isinstance(app.screen, ConfirmScreen | PresenceScreen)
        titles = {command.title for command in app.get_system_commands(app.screen)}
        assert "Restart shards" not in titles and "Shard details" in titles
        assert all(r.info.resumes == 0 for r in app.model.rows.values())
        assert "READ-ONLY" in str(app.query_one("#fleet").render())


async def test_quit_asks_while_shards_are_live_then_shuts_down_cleanly() -> None:
    app = ShardTUI(fast_config())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        sandbox = app.runtime.sandbox
        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the quit confirmation")
        assert "3 shards are live" in str(app.screen.query_one("#confirm-body").render())
        await pilot.press("n")
        assert app.return_code is None
        await pilot.press("ctrl+c")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation on ctrl+c")
        await pilot.press("ctrl+c")  # a second ctrl+c answers yes
        await wait_until(pilot, lambda: app.return_code is not None, "the app to exit")
    assert app.return_code == 0
    assert all(s["client_closes"].get("1000", 0) == 1 for s in sandbox.stats()["shards"].values())


async def test_bad_token_shows_one_fatal_screen(sandbox_factory) -> None:
    sandbox = await sandbox_factory(shards=2)
    config: Config = fast_config(shards=2)
    config.gateway.rest_url = sandbox.rest_url
    config.sandbox.token = "not-the-sandbox-token"
    app = ShardTUI(config)
    async with app.run_test(size=SIZE) as pilot:
        # The screen is on the stack a moment before its body is mounted.
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, FatalScreen) and bool(app.screen.query("#fatal-body")),
            "the fatal-error screen",
        )
        text = str(app.screen.query_one("#fatal-body").render())
        assert "token" in text.lower()
        assert "not-the-sandbox-token" not in text
        await pilot.pause()
        assert len(app.screen_stack) == 2  # exactly one fatal screen over the table
        await pilot.press("q")
        await wait_until(pilot, lambda: app.return_code is not None, "the app to exit")
    assert app.return_code == 3  # as in headless mode
    report = app.fatal_report()
    assert report is not None and "token" in report.lower() and "not-the-sandbox-token" not in report


async def test_one_failed_shard_does_not_stop_the_console() -> None:
    app = ShardTUI(fast_config())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert app.runtime.sandbox.inject("close", shard_id=1, code=4010) == 1
        await wait_until(pilot, lambda: cell(app, 1, "stage") == "failed", "shard 1 to show failed")
        assert cell(app, 1, "health") == "failed"
        assert not isinstance(app.screen, FatalScreen)
        assert app.model.rows[0].info.stage is ConnectionStage.CONNECTED
        await pilot.press("r")  # the console still takes keys
        await wait_until(pilot, lambda: app.model.rows[0].info.resumes == 1, "shard 0 to resume")


@pytest.mark.parametrize("code", [4011, 4012])
async def test_a_per_shard_fatal_close_fails_that_shard_and_the_console_runs_on(code: int) -> None:
    # 4011 (sharding required) and 4012 (API version) stop only the shard that got them in the
    # manager; the console must not stop everything (nor exit 1) for them.
    app = ShardTUI(fast_config())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert app.runtime.sandbox.inject("close", shard_id=2, code=code) == 1
        await wait_until(pilot, lambda: cell(app, 2, "stage") == "failed", "shard 2 to show failed")
        await pilot.pause()
        assert not isinstance(app.screen, FatalScreen)
        assert app.model.fatal is None
        assert [app.model.rows[sid].info.stage for sid in (0, 1)] == [ConnectionStage.CONNECTED] * 2
        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the quit question")
        await pilot.press("y")
        await wait_until(pilot, lambda: app.return_code is not None, "the app to exit")
    assert app.return_code == 0


async def test_disallowed_intents_show_one_fatal_screen_with_what_to_do() -> None:
    config = fast_config(shards=2)
    config.bot.intents = ["default", "message_content"]  # privileged, not enabled in the sandbox's portal
    app = ShardTUI(config)
    async with app.run_test(size=SIZE) as pilot:
        # Pushed a frame before its widgets are built: wait for the title, not only the push.
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, FatalScreen) and bool(app.screen.query(".dialog-title")),
            "the fatal-error screen",
        )
        assert "intents" in str(app.screen.query_one(".dialog-title").render()).lower()
        assert "4014" in str(app.screen.query_one("#fatal-body").render())
        await wait_until(pilot, lambda: not app.model.is_live(), "every shard to stop")
        assert sum(isinstance(screen, FatalScreen) for screen in app.screen_stack) == 1
        # Booting again (say, after enabling the intent) reports the failure afresh, on one screen.
        first = app.model.fatal
        await pilot.press("escape", "b")
        await wait_until(
            pilot,
            lambda: app.model.fatal is not first and isinstance(app.screen, FatalScreen),
            "the same failure reported afresh",
        )
        assert sum(isinstance(screen, FatalScreen) for screen in app.screen_stack) == 1
        await wait_until(pilot, lambda: not app.model.is_live(), "every shard to stop again")
        await pilot.press("q")  # nothing is live any more: quits without asking
        await wait_until(pilot, lambda: app.return_code is not None, "the app to exit")
    assert app.return_code == 3
    report = app.fatal_report()
    assert report is not None and report.startswith("fatal disallowed_intents (close code 4014):")


async def test_presence_scope_choice_is_visible_without_colour() -> None:
    # Both scope buttons once drew "▐●▌": only colour told the chosen one apart (lost under NO_COLOR).
    app = ShardTUI(fast_config())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, PresenceScreen), "the presence editor")
        scope = app.screen.query_one("#scope")
        glyphs = lambda: [str(button.render()).split()[0] for button in scope.query("RadioButton")]  # noqa: E731
        chosen, other = glyphs()
        assert chosen != other
        scope.focus()
        await pilot.press("down", "space")  # space picks a scope; enter would pick it and apply
        await pilot.pause()
        assert glyphs() == [other, chosen]


async def test_details_pane_at_80x24_shows_the_shard_log() -> None:
    # At 80x24 the info and an empty sparkline once took every row: the log box had no lines left.
    app = ShardTUI(fast_config())
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DetailsScreen), "the details pane")
        await pilot.pause()
        log_box = app.screen.query_one("#details-log-scroll")
        assert log_box.scrollable_content_region.height >= 3
        assert "connected" in str(app.screen.query_one("#details-log").render())
        info = str(app.screen.query_one("#details-info").render())
        assert "— ago" not in info
