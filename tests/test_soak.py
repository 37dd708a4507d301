"""The chaos soak: a short seeded run must come out clean, and the accounting must catch what goes wrong."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import asdict

import pytest

from shardtui.gateway.manager import ShardManager, ShardManagerOptions
from shardtui.gateway.protocol import GatewayIntents
from shardtui.sandbox.faults import RANDOM_CLOSE_CODES
from shardtui.soak import (
    SOAK_FAULTS,
    SoakConfig,
    SoakReport,
    _shard_result,
    out_of_order_count,
    run_soak,
)

pytestmark = pytest.mark.timeout(150)


async def test_short_seeded_soak_loses_nothing() -> None:
    """The CI soak: 12 shards, ~20 s of a random fault every ~0.5 s, every issue-listed kind possible."""
    report = await run_soak(
        SoakConfig(shards=12, duration=20.0, fault_interval=0.5, seed=20261128, compression="zlib-stream")
    )
    text = report.render()
    assert report.problems() == [], text
    assert report.ok
    totals = report.totals()
    # The run really was a chaos run with traffic on every shard, not an idle one that passes trivially.
    assert sum(report.faults.values()) >= 15, report.faults
    assert len({label.split()[0] for label in report.faults}) >= 5, report.faults
    assert all(s.sent > 0 for s in report.shards), text
    assert totals["received"] >= totals["sent"] - totals["not_replayable"] > 0
    assert report.settled and report.open_connections == 0 and report.http_session_closed
    assert report.leftover_tasks == [] and report.exceptions == []
    assert report.session_starts_used >= 12
    assert text.rstrip().endswith("PASS")


async def test_zstd_soak_with_only_stream_breaking_faults() -> None:
    """Broken compressed frames on the default transport: each costs a reconnect, never a dispatch."""
    report = await run_soak(
        SoakConfig(
            shards=4,
            duration=4.0,
            fault_interval=0.3,
            seed=7,
            compression="zstd-stream",
            faults=("malformed", "truncated", "oversized"),
        )
    )
    assert report.ok, report.render()
    assert set(report.faults) <= {"malformed", "truncated", "oversized"}
    assert sum(report.faults.values()) >= 5


async def test_accounting_catches_loss_duplicates_reordering_and_strangers(sandbox_factory) -> None:
    """Feed the report what a broken client would have received: every kind of mistake is counted."""
    sandbox = await sandbox_factory(shards=1, guilds=2)
    got: list[int] = []
    manager = ShardManager(
        ShardManagerOptions(
            token=sandbox.token,
            intents=GatewayIntents.default(),
            rest_url=sandbox.rest_url,
            identify_window=0.1,
            compression="none",
            event_handler=lambda d: got.append(d.data["_sandbox_event_id"]),
            health_interval=0,
        )
    )
    await manager.initialize()
    assert await manager.wait_until_connected(10)
    sandbox.emit(20)
    sent = sandbox.event_ids(0)
    for _ in range(200):
        if len(got) >= len(sent):
            break
        await asyncio.sleep(0.02)
    assert got == sent
    stats = sandbox.stats()  # while the session lives: everything it sent is still replayable

    clean = _shard_result(sandbox, stats, 0, got)
    assert clean.ok and clean.lost == clean.duplicated == clean.out_of_order == 0

    broken = got[:3] + got[4:]  # one lost
    broken = [*broken, broken[5]]  # one duplicated (arrives late, so also out of order)
    broken[6], broken[7] = broken[7], broken[6]  # two swapped
    broken.append(10**9)  # one never sent on this shard
    result = _shard_result(sandbox, stats, 0, broken)
    assert (result.lost, result.duplicated, result.unknown) == (1, 1, 1)
    assert result.out_of_order == 2
    assert not result.ok
    assert result.examples["lost"] == [got[3]]
    await manager.shutdown_all()


def test_out_of_order_counts_each_late_arrival() -> None:
    assert out_of_order_count([1, 2, 3, 4], [1, 2, 3, 4]) == 0
    assert out_of_order_count([1, 2, 3, 4], [2, 1, 3, 4]) == 1
    assert out_of_order_count([1, 2, 3, 4], [4, 1, 2, 3]) == 3
    assert out_of_order_count([1, 2, 3], [1, 99, 3]) == 0  # strangers are counted as unknown, not here


def _report(**changes) -> SoakReport:
    base = dict(
        config=asdict(SoakConfig(shards=1, duration=1.0)),
        seconds=1.0,
        faults={"drop": 1},
        shards=[],
        settled=True,
        session_starts_used=1,
        identify_violations=0,
        command_violations=0,
        exceptions=[],
        leftover_tasks=[],
        open_connections=0,
        http_session_closed=True,
    )
    base.update(changes)
    return SoakReport(**base)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"identify_violations": 2}, "2 identify rate-limit violations"),
        ({"command_violations": 1}, "1 command rate-limit violations"),
        ({"exceptions": ["shardtui.gateway.runner: boom"]}, "1 unhandled exceptions"),
        ({"leftover_tasks": ["shardtui-shard-0: run"]}, "1 tasks left running"),
        ({"open_connections": 3}, "3 gateway connections still open"),
        ({"http_session_closed": False}, "HTTP session was not closed"),
        ({"settled": False}, "not every shard was CONNECTED"),
    ],
)
def test_every_non_loss_problem_fails_the_run(changes, words) -> None:
    report = _report(**changes)
    assert not report.ok
    assert any(words in p for p in report.problems()), report.problems()


def test_not_replayable_is_reported_but_is_not_a_failure() -> None:
    from shardtui.soak import ShardResult

    shard = ShardResult(0, 10, 8, 0, 0, 0, 0, 2, 2, 0, 2, 0, 0)
    report = _report(shards=[shard])
    assert report.ok
    assert report.totals()["not_replayable"] == 2
    assert "not replayable by the server  2" in report.render()


def test_cli_json_report_and_exit_status() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shardtui.soak", "--shards", "2", "--duration", "1", "--fault-interval",
         "0.3", "--seed", "5", "--compression", "none", "--faults", "drop,reconnect", "--json", "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["ok"] is True and data["problems"] == []
    assert data["config"]["shards"] == 2 and len(data["shards"]) == 2
    assert set(data["totals"]) >= {"sent", "received", "lost", "duplicated", "out_of_order", "not_replayable"}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--faults", "earthquake"], "unknown fault 'earthquake'"),
        (["--fault-interval", "0"], "must be greater than 0"),
        (["--shards", "0"], "must be at least 1"),
    ],
)
def test_cli_rejects_bad_options_in_one_line(args, words) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "shardtui.soak", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert words in done.stderr
    assert "Traceback" not in done.stderr


def test_default_fault_mix_covers_the_issue_list() -> None:
    wanted = {"drop", "zombie", "reconnect", "invalid_session", "close", "malformed", "truncated",
              "oversized", "delay_hello", "refuse"}  # fmt: skip
    assert wanted <= set(SOAK_FAULTS)
    assert {4000, 4001, 4002, 4003, 4005, 4007, 4008, 4009} <= set(RANDOM_CLOSE_CODES)


def test_error_log_events_from_the_library_fail_the_run_but_warnings_do_not() -> None:
    import logging

    from shardtui.gateway.models import ShardId, ShardLogEvent
    from shardtui.soak import _note_error_event

    found: list[str] = []
    _note_error_event(ShardLogEvent(ShardId(3), logging.WARNING, "closed 4000, resuming"), found)
    _note_error_event(ShardLogEvent(ShardId(3), logging.ERROR, "heartbeat timer failed"), found)
    _note_error_event(ShardLogEvent(None, logging.CRITICAL, "queue gone"), found)
    assert found == ["shard 3: heartbeat timer failed", "manager: queue gone"]
    assert not _report(exceptions=found).ok


def test_heartbeats_too_fast_for_the_command_limit_are_refused_up_front() -> None:
    # 0.4 s heartbeats are 150 a minute: a long run would "violate" the limit by configuration alone.
    with pytest.raises(ValueError, match="heartbeat interval must be >= 600 ms"):
        SoakConfig(heartbeat_interval_ms=400)
