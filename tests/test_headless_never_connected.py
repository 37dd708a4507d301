"""Headless runs whose shards never connect: the exit status, the stderr lines and the report say so."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from shardtui.config import load_config
from shardtui.headless import EXIT_NEVER_CONNECTED, _RunState, _say_never_connected, run_headless


def _config(sandbox: Any, shards: int, window: str) -> Any:
    return load_config(
        None,
        {
            "gateway.rest_url": sandbox.rest_url,
            "sandbox.token": sandbox.token,
            "gateway.shards": str(shards),
            "gateway.identify_window": window,
        },
        environ={},
    )


async def test_no_shard_ever_connected_exits_4_naming_the_error_once_per_group(
    sandbox_factory: Any, tmp_path: Path
) -> None:
    sandbox = await sandbox_factory(shards=3, max_concurrency=3, identify_window=0.05)
    # REST answers, every gateway connection is refused: the shards keep failing the same way.
    sandbox.inject("refuse", seconds=10**6)
    out, err = io.StringIO(), io.StringIO()
    report_path = tmp_path / "report.json"
    status = await run_headless(
        _config(sandbox, 3, "0.05"), duration=2.5, report_path=str(report_path), out=out, err=err
    )
    assert status == EXIT_NEVER_CONNECTED == 4
    lines = err.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"shardtui: shards 0-2 never connected to ws://127.0.0.1:{sandbox.port}/: ")
    assert "HTTP 503" in lines[0] and "retrying in" not in lines[0]
    report = json.loads(report_path.read_text())
    assert report["exit_status"] == 4 and report["exit_reason"] == "no shard ever connected"
    (group,) = report["never_connected"]
    assert group["shards"] == [0, 1, 2] and "HTTP 503" in group["error"]
    assert sandbox.token not in err.getvalue() + report_path.read_text() + out.getvalue()


async def test_some_shards_connected_exits_0_and_lists_the_others(
    sandbox_factory: Any, tmp_path: Path
) -> None:
    # One identify per 2 s: shard 0 is READY long before shard 1 may identify.
    sandbox = await sandbox_factory(shards=3, max_concurrency=1, identify_window=2.0, event_rate=0.0)

    class Out(io.StringIO):
        def write(self, text: str) -> int:
            if '"shard":0' in text and '"new":"connected"' in text:
                # Then every connection drops and no new one is let in, for the rest of the run.
                sandbox.inject("outage", seconds=10**6)
            return super().write(text)

    err = io.StringIO()
    report_path = tmp_path / "report.json"
    status = await run_headless(
        _config(sandbox, 3, "2.0"), duration=4.5, report_path=str(report_path), out=Out(), err=err
    )
    assert status == 0, err.getvalue()
    report = json.loads(report_path.read_text())
    assert report["exit_status"] == 0 and report["exit_reason"] is None
    never = report["never_connected"]
    assert [shard for group in never for shard in group["shards"]] == [1, 2]
    # Shard 1 met the refusal; shard 2 may have been refused too, or still waited for its identify slot.
    assert "HTTP 503" in never[0]["error"] and 1 in never[0]["shards"], never
    lines = err.getvalue().splitlines()
    assert len(lines) == len(never)
    assert lines[0].startswith(("shardtui: shards 1-2 never connected", "shardtui: shard 1 never connected"))
    assert "shard 0" not in err.getvalue() and "shards 0" not in err.getvalue()


def test_hundreds_of_shards_are_grouped_and_capped() -> None:
    state = _RunState(out=io.StringIO())
    state.gateway_url = "ws://127.0.0.1:1234/"
    # 256 shards with one error, then 24 shards each with an error of its own; shard 300 connected.
    errors = {i: "handshake refused with HTTP 404" for i in range(256)}
    errors.update({256 + i: f"error number {i}" for i in range(24)})
    state.shards = [{"id": i, "stage": "connecting", "fatal_error": None} for i in [*errors, 299]] + [
        {"id": 300, "stage": "connected", "fatal_error": None}
    ]
    state.last_error = errors
    err = io.StringIO()
    groups = state.never_connected()
    _say_never_connected(groups, state, err)
    lines = err.getvalue().splitlines()
    assert len(groups) == 26  # every group stays in the report
    assert len(lines) == 11
    assert lines[0] == (
        "shardtui: shards 0-255 never connected to ws://127.0.0.1:1234/: handshake refused with HTTP 404"
    )
    assert lines[1] == "shardtui: shard 256 never connected to ws://127.0.0.1:1234/: error number 0"
    assert lines[-1] == "shardtui: 16 more shards never connected, with 16 other errors (see the report)"
    assert groups[-1] == {"shards": [299], "error": "no error reported (last stage: connecting)"}
