"""``shardtui run --headless`` against the real embedded sandbox: JSON lines, report, signals, exits."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.headless import sandbox_config

from shardtui.cli import main
from shardtui.config import load_config
from shardtui.headless import run_headless
from shardtui.runtime import Runtime
from shardtui.sandbox.tokens import make_token

TOKEN = make_token(1234567890123456789)
SHARDS = 3


def _config(tmp_path: Path, extra: str = "", *, shards: int = SHARDS) -> Path:
    return sandbox_config(tmp_path, TOKEN, extra, guilds=9, shards=shards, event_rate=40.0)


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_headless_run_reports_every_shard_connected_and_never_the_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path = tmp_path / "report.json"
    status = main(
        ["--config", str(_config(tmp_path)), "--log-level", "debug",
         "run", "--headless", "--duration", "2", "--report", str(report_path)]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert status == 0, captured.err
    events = _lines(captured.out)
    stages = [e for e in events if e["event"] == "stage"]
    assert {e["shard"] for e in stages if e["new"] == "connected"} == set(range(SHARDS))
    assert all(set(e) == {"ts", "event", "shard", "old", "new"} for e in stages)
    assert not [e for e in events if e["event"] == "fatal"]
    report_text = report_path.read_text()
    report = json.loads(report_text)
    assert report["exit_status"] == 0 and report["stopped_by"] == "duration"
    assert report["connected"] == SHARDS and report["shard_total"] == SHARDS
    assert [s["id"] for s in report["shards"]] == list(range(SHARDS))
    for shard in report["shards"]:
        assert shard["stage"] == "connected"
        assert shard["latency_ms"] is not None  # 300 ms heartbeats were ACKed during the run
        assert shard["identifies"] == 1
        assert shard["events_received"] > 0 and shard["last_seq"] is not None
        for key in ("latency_ms", "resumes", "reconnects", "last_close_code"):
            assert key in shard
    for text in (captured.out, captured.err, report_text):
        assert TOKEN not in text
    assert "DEBUG" in captured.err  # logs went to stderr, redacted


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_writes_the_report_and_exits_0(tmp_path: Path, signum: signal.Signals) -> None:
    asyncio.run(_signal_run(tmp_path, signum))


async def _signal_run(tmp_path: Path, signum: signal.Signals) -> None:
    report_path = tmp_path / "report.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shardtui", "--config", str(_config(tmp_path)), "--log-level", "info",
        "run", "--headless", "--report", str(report_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    connected: set[int] = set()
    out: list[str] = []
    try:
        while connected != set(range(SHARDS)):
            raw = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert raw, "headless run ended early"
            out.append(raw.decode())
            event = json.loads(raw)
            if event["event"] == "stage" and event["new"] == "connected":
                connected.add(event["shard"])
    finally:
        proc.send_signal(signum)
        rest, err = await asyncio.wait_for(proc.communicate(), 30)
    out.append(rest.decode())
    assert proc.returncode == 0, err.decode()
    report = json.loads(report_path.read_text())
    assert report["stopped_by"] == f"signal {signum.name}"
    assert report["connected"] == SHARDS
    for text in ("".join(out), err.decode(), report_path.read_text()):
        assert TOKEN not in text
    assert "Traceback" not in err.decode()


def test_disallowed_intents_stop_the_run_with_status_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path = tmp_path / "report.json"
    # The sandbox's "developer portal" enables no privileged intent: asking for one closes with 4014.
    config = _config(tmp_path, shards=2)
    status = main(
        ["--config", str(config), "--intents", "guilds,guild_members",
         "run", "--headless", "--duration", "30", "--report", str(report_path)]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert status == 3, captured.err
    fatal = [e for e in _lines(captured.out) if e["event"] == "fatal"]
    assert fatal and fatal[0]["kind"] == "disallowed_intents"
    assert fatal[0]["close_code"] == 4014
    report = json.loads(report_path.read_text())
    assert report["exit_status"] == 3 and report["stopped_by"] == "fatal"
    assert report["fatal_errors"][0]["kind"] == "disallowed_intents"
    assert report["connected"] == 0
    assert TOKEN not in captured.out + captured.err + report_path.read_text()


def test_event_handler_receives_dispatches_in_seq_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "recorder_bot.py").write_text(
        "SEEN = []\n\n\nasync def on_dispatch(dispatch):\n"
        "    SEEN.append((int(dispatch.shard_id), dispatch.name, dispatch.seq))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "recorder_bot", raising=False)
    status = main(
        ["--config", str(_config(tmp_path, shards=2)), "--event-handler", "recorder_bot:on_dispatch",
         "run", "--headless", "--duration", "1.5"]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    import recorder_bot  # type: ignore[import-not-found]

    for shard in (0, 1):
        seqs = [seq for s, _name, seq in recorder_bot.SEEN if s == shard]
        assert seqs and seqs == sorted(seqs) and len(seqs) == len(set(seqs))
        assert "READY" in {name for s, name, _ in recorder_bot.SEEN if s == shard}


@pytest.mark.parametrize(
    ("spec", "found"),
    [
        ("no_such_module_xyz:handler", "no_such_module_xyz:handler (No module named 'no_such_module_xyz')"),
        ("json:no_such_attr", "json:no_such_attr (no no_such_attr)"),
        ("json:__name__", "json:__name__ is a str"),
    ],
)
def test_bad_event_handler_is_a_config_error(
    spec: str, found: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["--config", str(_config(tmp_path)), "--event-handler", spec, "run", "--headless"])
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("shardtui: command line --event-handler: bot.event_handler: expected ")
    assert err.endswith("found " + found)


async def test_runtime_uses_a_running_sandbox_at_rest_url(sandbox_factory: Any) -> None:
    sandbox = await sandbox_factory(shards=2, max_concurrency=2, identify_window=0.05)
    config = load_config(
        None,
        {
            "gateway.rest_url": sandbox.rest_url,
            "sandbox.token": sandbox.token,
            "gateway.identify_window": "0.05",
        },
        environ={},
    )
    async with Runtime(config) as runtime:
        assert runtime.sandbox is None
        assert runtime.mode == "sandbox"
        stages: list[Any] = []
        runtime.manager.subscribe(stages.append)
        await runtime.start()
        assert await runtime.manager.wait_until_connected(20)
        assert sorted(int(s) for s in runtime.manager.runners) == [0, 1]
    # The shards identified with the external sandbox (once each, no limit broken), and closing the
    # runtime left that sandbox running: it is not the runtime's to stop.
    stats = sandbox.stats()
    assert {k: v["identifies"] for k, v in stats["shards"].items()} == {"0": 1, "1": 1}
    assert stats["identify_violations"] == 0
    assert any(getattr(e, "new", None) is not None for e in stages)
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{sandbox.rest_url}/gateway", headers={"Authorization": f"Bot {sandbox.token}"}
        ) as r:
            assert r.status == 200


async def test_rejected_token_is_fatal_with_status_3(sandbox_factory: Any, tmp_path: Path) -> None:
    import io

    from shardtui.headless import run_headless

    sandbox = await sandbox_factory()
    wrong = make_token(1111111111111111111)
    config = load_config(None, {"gateway.rest_url": sandbox.rest_url, "sandbox.token": wrong}, environ={})
    out = io.StringIO()
    report_path = tmp_path / "report.json"
    status = await run_headless(config, duration=30, report_path=str(report_path), out=out)
    assert status == 3
    fatal = [e for e in _lines(out.getvalue()) if e["event"] == "fatal"]
    assert len(fatal) == 1 and fatal[0]["kind"] == "authentication"
    report = json.loads(report_path.read_text())
    assert report["fatal_errors"][0]["kind"] == "authentication"
    assert wrong not in out.getvalue() + report_path.read_text()


def test_fault_schedule_from_the_config_reaches_the_sandbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    faults = '[[sandbox.faults]]\nkind = "close"\nevery = 0.3\ncode = 4000\n'
    report_path = tmp_path / "report.json"
    status = main(
        ["--config", str(_config(tmp_path, faults, shards=2)),
         "run", "--headless", "--duration", "2", "--report", str(report_path)]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    shards = json.loads(report_path.read_text())["shards"]
    # Scheduled 4000 closes (with the code the config gave) were survived by resuming, not identifying.
    assert sum(s["resumes"] for s in shards) >= 1
    assert 4000 in {s["last_close_code"] for s in shards}
    assert all(s["identifies"] == 1 for s in shards)


@pytest.mark.skipif(not os.path.isdir("/sys"), reason="needs a directory no one can create files in")
async def test_report_that_cannot_be_written_makes_the_exit_status_nonzero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The CLI checks the report's directory first; this is the run's own last line of defence
    # (the disk filled, the directory went away): a script must not read status 0 with no report.
    monkeypatch.chdir(tmp_path)
    config = load_config(str(_config(tmp_path)))
    out = io.StringIO()
    status = await run_headless(config, duration=0.3, report_path="/sys/shardtui-report.json", out=out)
    assert status == 1
    assert any(line["event"] == "stage" for line in _lines(out.getvalue()))
