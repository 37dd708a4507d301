"""The hand-run benches still run: each script in its tiniest mode prints its table and one summary.

Figures are not checked (timings are the benches' business, not CI's); the shape of the report
and the facts that must hold whatever the machine (no identify violations, every row present) are.
The six scripts run at once, each against its own sandbox process.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = {
    "startup": ["--quick"],
    "dispatch": ["--quick"],
    "memory": ["--quick"],
    "recovery": ["--quick"],
    "console": ["--quick"],
    "proxy": ["--quick"],
}


@pytest.fixture(scope="module")
def outputs() -> dict[str, subprocess.CompletedProcess[str]]:
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(BENCH / f"{name}.py"), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=BENCH,
        )
        for name, args in SCRIPTS.items()
    }
    done = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=90)
        done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return done


def summary(result: subprocess.CompletedProcess[str], name: str) -> str:
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert len(lines) == 1, result.stdout
    assert lines[0].startswith(f"SUMMARY {name}: ")
    assert re.search(r": (OK|MISSED)\b", lines[0]), lines[0]
    return lines[0]


def table_rows(stdout: str) -> list[list[str]]:
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in stdout.splitlines()
        if line.startswith("| ")
    ]
    return rows[1:]  # without the header


def test_startup_reports_every_combination_without_violations(outputs) -> None:
    result = outputs["startup"]
    line = summary(result, "startup")
    assert "0 identify violations" in line
    rows = table_rows(result.stdout)
    assert [(r[0], r[1]) for r in rows] == [("4", "1"), ("4", "4"), ("8", "1"), ("8", "4")]
    assert all(r[-1] == "0" for r in rows)


def test_dispatch_reports_ours_floors_and_peers(outputs) -> None:
    result = outputs["dispatch"]
    line = summary(result, "dispatch")
    assert "of the decode floor" in line and "of the aiohttp floor" in line
    clients = [r[0] for r in table_rows(result.stdout)]
    for compression in ("zstd-stream", "zlib-stream"):
        for who in ("shardtui", "decode floor", "aiohttp floor"):
            assert f"{who} {compression}" in clients
    assert "discord.py zstd-stream" in clients and "hikari zlib-stream" in clients


def test_memory_reports_both_fleet_sizes(outputs) -> None:
    result = outputs["memory"]
    line = summary(result, "memory")
    assert "KiB RSS per idle shard" in line
    assert [r[0] for r in table_rows(result.stdout)] == ["10", "20"]


def test_recovery_resumes_after_drops_and_zombies(outputs) -> None:
    result = outputs["recovery"]
    summary(result, "recovery")
    rows = table_rows(result.stdout)
    assert [(r[0], r[1]) for r in rows] == [("drop", "4"), ("zombie", "2")]
    assert "0 identify violations" in result.stdout


def test_console_reports_flushes_and_key_delay(outputs) -> None:
    result = outputs["console"]
    line = summary(result, "console")
    assert "key->runner median" in line
    rows = table_rows(result.stdout)
    assert [(r[0], r[1]) for r in rows] == [("100", "1%"), ("100", "100%"), ("200", "1%"), ("200", "100%")]
    # Cells written: only what changed and is on screen, so a tick with every row changed writes one
    # screenful, the same at 100 shards as at 200.
    cells = [int(r[2]) for r in rows]
    assert 0 < cells[0] <= 2 and 0 < cells[2] <= 4
    assert cells[1] == cells[3] and 0 < cells[1] < 200


def test_proxy_reports_both_compressions_and_the_added_latency(outputs) -> None:
    result = outputs["proxy"]
    line = summary(result, "proxy")
    assert "events per proxy CPU-second to 1 client" in line and "p99 added" in line
    rows = table_rows(result.stdout)
    assert [r[0] for r in rows] == ["zlib-stream", "zstd-stream"]
    # Every client received every event (the run waits for it) and events were timed on both paths.
    assert all(int(r[-1]) > 0 for r in rows)
