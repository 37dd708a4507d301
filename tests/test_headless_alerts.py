"""Headless mode prints incidents as JSON lines: one ``alert`` when it begins, one ``alert_cleared`` when
it ends (here: the embedded sandbox drops every connection and refuses new ones for a moment)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from support.headless import sandbox_config

from shardtui.cli import main
from shardtui.sandbox.tokens import make_token

TOKEN = make_token(1234567890123456789)


def _config(tmp_path: Path) -> Path:
    return sandbox_config(
        tmp_path,
        TOKEN,
        """[health]
outage_after = 0.1
[[sandbox.faults]]
kind = "outage"
every = 2.0
seconds = 0.3
""",
    )


def test_an_outage_prints_one_alert_line_and_one_cleared_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["--config", str(_config(tmp_path)), "run", "--headless", "--duration", "5"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    lines: list[dict[str, Any]] = [json.loads(line) for line in captured.out.splitlines() if line.strip()]
    alerts = [line for line in lines if line["event"] in ("alert", "alert_cleared")]
    outage = [line for line in alerts if line["kind"] == "outage"]
    assert outage, captured.out
    # Alternating, starting with an alert: one line per incident, not one per shard or per check.
    assert [line["event"] for line in outage][:2] == ["alert", "alert_cleared"]
    assert all(a["event"] != b["event"] for a, b in itertools.pairwise(outage))
    first, cleared = outage[0], outage[1]
    assert set(first) == {"ts", "event", "kind", "shard", "message"} and first["shard"] is None
    assert "all 2 running shards" in first["message"]
    assert cleared["shard"] is None and cleared["duration_s"] > 0
    # Every shard reconnected between the two lines.
    between = [
        line for line in lines if first["ts"] <= line["ts"] <= cleared["ts"] and line["event"] == "stage"
    ]
    assert {line["shard"] for line in between if line["new"] == "connected"} == {0, 1}
