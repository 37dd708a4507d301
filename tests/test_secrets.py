"""The bot token never shows: not in logs, reports, the JSON stream, exceptions, reprs or the console.

Every session here uses one distinctive, Discord-shaped token the sandbox is configured to accept, and
goes through the noisy paths (faults, resumes, re-identifies, a fatal close) so there is plenty of text
to scan. The token's secret last part is searched for on its own too, so a truncated leak is caught.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support import waiting
from support.headless import sandbox_config

from shardtui.config import Config
from shardtui.gateway.errors import FatalGatewayError
from shardtui.gateway.manager import ShardManager, ShardManagerOptions
from shardtui.gateway.models import ConnectionStage, Presence, ShardId, ShardRunnerInfo
from shardtui.gateway.protocol import GatewayIntents, Status
from shardtui.gateway.runner import ShardRunnerOptions
from shardtui.sandbox.tokens import make_token

TOKEN = make_token(1122334455667788990)
SECRET_PART = TOKEN.rsplit(".", 1)[1]
#: A token the sandbox does not accept: an operator's typo is just as secret.
WRONG_TOKEN = make_token(1122334455667788990)


def leaks(text: str, *tokens: str) -> list[str]:
    found = []
    for token in tokens or (TOKEN,):
        for piece in (token, token.rsplit(".", 1)[1]):
            if piece in text:
                at = text.index(piece)
                found.append(text[max(0, at - 80) : at + 20])
    return found


#: These waits cover whole-fleet stops and fatal closes, so they allow 15 s rather than 10.
eventually = functools.partial(waiting.eventually, within=15.0)


async def test_library_logs_events_reprs_and_errors_never_hold_the_token(sandbox_factory, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox = await sandbox_factory(
        shards=2, max_concurrency=2, token=TOKEN, event_rate=40.0, heartbeat_interval_ms=300
    )
    texts: list[str] = [repr(sandbox), json.dumps(sandbox.stats(with_events=True))]
    events: list[object] = []
    options = ShardManagerOptions(
        token=TOKEN,
        intents=GatewayIntents.default(),
        rest_url=sandbox.rest_url,
        compression="zlib-stream",
        identify_window=0.05,
        health_interval=0.05,
        presence=Presence(status=Status.IDLE),
        event_handler=lambda d: None,
    )
    manager = ShardManager(options)
    manager.subscribe(events.append)
    try:
        await manager.initialize()
        assert await manager.wait_until_connected(15)
        # The noisy paths: resumes, re-identifies after a dead session, broken frames, a presence change.
        for kind, params in [
            ("reconnect", {}),
            ("invalid_session", {"resumable": False}),
            ("close", {"code": 4009}),
            ("malformed", {}),
            ("truncated", {}),
            ("drop", {}),
        ]:
            sandbox.inject(kind, 1, **params)
            await asyncio.sleep(0.1)
        messenger = manager.messenger(ShardId(0))
        assert messenger is not None
        messenger.set_presence(Presence(status=Status.DND))
        assert await manager.wait_until_connected(20)
        runners = list(manager._runner_objects.values())
        assert runners, "no runner objects to look at"
        for runner in runners:
            texts += [repr(runner), repr(runner.options), str(runner.options)]
        texts += [repr(options), str(options), repr(manager)]
        # A fatal close: its message, event and the shard's info.
        sandbox.inject("close", 0, code=4004)
        await eventually(lambda: manager.fatal_error is not None)
        texts += [str(manager.fatal_error), repr(manager.fatal_error)]
    finally:
        await manager.shutdown_all()
    for info in manager.runners.values():
        texts += [repr(info), str(info), json.dumps(info.to_dict())]
    texts += [repr(event) for event in events]

    # Exceptions with the token close by: a rejected token, and options refused for another reason.
    rejected = ShardManager(
        ShardManagerOptions(token=WRONG_TOKEN, intents=GatewayIntents.default(), rest_url=sandbox.rest_url)
    )
    with pytest.raises(FatalGatewayError) as caught:
        await rejected.initialize()
    await rejected.shutdown_all()
    texts += [str(caught.value), repr(caught.value), repr(rejected), repr(rejected.fatal_error)]
    for bad in ({"compression": "brotli"}, {"large_threshold": 10}, {"shard_total": 0}):
        with pytest.raises(ValueError) as refused:
            ShardManagerOptions(
                token=TOKEN, intents=GatewayIntents.default(), rest_url=sandbox.rest_url, **bad
            )
        texts += [str(refused.value), repr(refused.value)]
    runner_options = ShardRunnerOptions(
        token=TOKEN, gateway_url=sandbox.gateway_url, intents=GatewayIntents.default(), identify_gate=None
    )
    texts += [repr(runner_options), repr(ShardRunnerInfo(ShardId(0), 1))]

    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    log_lines = [formatter.format(record) for record in caplog.records]
    # The scan is only worth something if the noisy paths really said things (the library reports
    # through ShardLogEvents; headless and the console turn those into log lines).
    messages = [e.message for e in events if getattr(e, "message", None)]
    assert len(messages) > 10 and log_lines
    everything = "\n".join(texts + messages + log_lines)
    assert leaks(everything, TOKEN, WRONG_TOKEN) == []
    # The repr of the options does name the field, just not its value.
    assert manager.runners[ShardId(0)].last_close_code == 4004


def _config_file(tmp_path: Path) -> Path:
    return sandbox_config(
        tmp_path,
        TOKEN,
        """[[sandbox.faults]]
kind = "random"
every = 0.25
choices = ["reconnect", "invalid_session", "close", "malformed", "truncated", "drop", "zombie"]
[[sandbox.faults]]
kind = "close"
# Tried every 2 s: a try that finds shard 0 reconnecting from a random fault does nothing. The first
# try at 2 s leaves ~8 random faults before it (at 1 s a quiet run logged only 19-28 lines).
every = 2.0
shard = 0
code = 4004
""",
        event_rate=30.0,
    )


def test_headless_stream_report_and_stderr_never_hold_the_token(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "shardtui", "--config", str(_config_file(tmp_path)), "--log-level", "debug",
         "run", "--headless", "--duration", "12", "--report", str(report)],
        capture_output=True, text=True, timeout=90, cwd=tmp_path,
    )  # fmt: skip
    # It ran through faults and then the scheduled 4004 stopped it: there is text to scan.
    assert done.returncode == 3, done.stderr[-2000:]
    stream = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert any(e["event"] == "stage" and e["new"] == "connected" for e in stream)
    assert any(e["event"] == "fatal" and e["close_code"] == 4004 for e in stream)
    assert done.stderr.count("\n") > 20 and "DEBUG" in done.stderr
    assert leaks(done.stdout) == []
    assert leaks(done.stderr) == []
    assert leaks(report.read_text()) == []
    assert "Traceback" not in done.stderr


def _console_config(token: str, rest_url: str | None = None) -> Config:
    config = Config()
    config.gateway.mode = "sandbox"
    config.gateway.shards = 2
    config.gateway.compression = "zlib-stream"
    config.sandbox.shards = 2
    config.sandbox.guilds = 6
    config.sandbox.identify_window = 0.05
    config.sandbox.heartbeat_interval_ms = 300
    config.sandbox.event_rate = 20.0
    config.sandbox.token = token
    if rest_url is not None:
        config.gateway.rest_url = rest_url
    config.ui.refresh_interval = 0.05
    return config


async def _wait(pilot, condition: Callable[[], object], what: str, polls: int = 1500) -> None:
    for _ in range(polls):
        if condition():
            return
        await pilot.pause(0.01)
    pytest.fail(f"timed out waiting for {what}")


async def test_console_screens_never_show_the_token() -> None:
    from shardtui.tui.app import ShardTUI
    from shardtui.tui.screens import DetailsScreen, FatalScreen

    app = ShardTUI(_console_config(TOKEN))
    screens: list[str] = []
    async with app.run_test(size=(160, 40)) as pilot:
        await _wait(
            pilot,
            lambda: (
                app.runtime is not None
                and len(app.model.rows) == 2
                and all(r.info.stage is ConnectionStage.CONNECTED for r in app.model.rows.values())
            ),
            "both shards connected",
        )
        sandbox = app.runtime.sandbox
        sandbox.inject("close", 1, code=4009)
        sandbox.inject("reconnect", 0)
        await pilot.press("l")  # the log pane, with the closes and resumes in it
        await _wait(pilot, lambda: app.model.rows[1].info.identifies >= 2, "shard 1 to identify again")
        await pilot.pause(0.2)
        screens.append(app.export_screenshot())
        await pilot.press("enter")
        await _wait(pilot, lambda: isinstance(app.screen, DetailsScreen), "the details pane")
        screens.append(app.export_screenshot())
        await pilot.press("escape")
        sandbox.inject("close", 0, code=4004)
        await _wait(pilot, lambda: isinstance(app.screen, FatalScreen), "the fatal screen")
        screens.append(app.export_screenshot())
        await pilot.press("q")
        await _wait(pilot, lambda: app.return_code is not None, "the app to exit")
    assert app.return_code == 3
    assert all("shard" in screen.lower() for screen in screens)
    for screen in screens:
        assert leaks(screen) == []


async def test_console_fatal_screen_for_a_rejected_token_does_not_show_it(sandbox_factory) -> None:
    from shardtui.tui.app import ShardTUI
    from shardtui.tui.screens import FatalScreen

    sandbox = await sandbox_factory(shards=2, token=TOKEN)
    app = ShardTUI(_console_config(WRONG_TOKEN, rest_url=sandbox.rest_url))
    async with app.run_test(size=(160, 40)) as pilot:
        await _wait(pilot, lambda: isinstance(app.screen, FatalScreen), "the fatal screen")
        # The screen is pushed a frame before it is painted: wait for its words, not just the push.
        await _wait(pilot, lambda: "token" in app.export_screenshot().lower(), "the fatal screen's text", 500)
        screen = app.export_screenshot()
        await pilot.press("q")
        await _wait(pilot, lambda: app.return_code is not None, "the app to exit")
    assert "token" in screen.lower()
    assert leaks(screen, WRONG_TOKEN, TOKEN) == []
