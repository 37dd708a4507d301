"""``--event-loop`` picks the event loop: asyncio by default, uvloop (the ``fast`` extra) on request."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shardtui.sandbox.tokens import make_token

TOKEN = make_token(1234567890123456789)
#: Runs the CLI with uvloop unimportable, as on a machine without the ``fast`` extra.
NO_UVLOOP = (
    "import sys; sys.modules['uvloop'] = None; from shardtui.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "shards.toml"
    path.write_text(
        f"""
[gateway]
compression = "zstd-stream"
[sandbox]
guilds = 4
shards = 2
max_concurrency = 2
identify_window = 0.05
heartbeat_interval_ms = 300
event_rate = 40.0
token = "{TOKEN}"
"""
    )
    return path


def _headless(tmp_path: Path, *loop: str, uvloop: bool = True) -> subprocess.CompletedProcess[str]:
    start = ["-m", "shardtui"] if uvloop else ["-c", NO_UVLOOP]
    return subprocess.run(
        [sys.executable, *start, "--config", str(_config(tmp_path)), "--log-level", "info", *loop,
         "run", "--headless", "--duration", "1.5"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "uvloop", "expected"),
    [
        ((), True, "asyncio"),
        (("--event-loop", "uvloop"), True, "uvloop"),
        (("--event-loop", "auto"), True, "uvloop"),
        (("--event-loop", "auto"), False, "asyncio"),
    ],
    ids=["default", "uvloop", "auto-installed", "auto-missing"],
)
def test_shards_connect_on_the_chosen_event_loop(
    tmp_path: Path, flags: tuple[str, ...], uvloop: bool, expected: str
) -> None:
    if uvloop and "--event-loop" in flags:
        pytest.importorskip("uvloop")
    result = _headless(tmp_path, *flags, uvloop=uvloop)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"event loop: {expected}" in result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    connected = {e["shard"] for e in events if e["event"] == "stage" and e["new"] == "connected"}
    assert connected == {0, 1}


def test_uvloop_asked_for_but_missing_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _headless(tmp_path, "--event-loop", "uvloop", uvloop=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "shardtui: --event-loop uvloop: uvloop is not installed (pip install 'shardtui[fast]')"
    ]
    assert result.stdout == ""
