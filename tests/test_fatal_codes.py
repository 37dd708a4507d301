"""Fatal close codes (4004, 4010-4014): the shard stops, says why, never retries; bot-wide ones stop all.

Each code is tried twice where the sandbox can produce it: injected as a close on a live shard, and
caused for real (privileged intent not enabled, invalid intent bits, too many guilds per shard, a
shard count that is not the required multiple). Headless runs exit non-zero on every one of them.
"""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path

import pytest
from support import waiting
from support.headless import sandbox_config

from shardtui.cli import main
from shardtui.gateway.manager import ShardManager, ShardManagerOptions
from shardtui.gateway.models import ConnectionStage, FatalErrorEvent, ShardHealth, ShardId
from shardtui.gateway.protocol import GatewayIntents
from shardtui.sandbox.tokens import make_token

BOT_WIDE = {4004: "authentication", 4013: "invalid_intents", 4014: "disallowed_intents"}
PER_SHARD = {4010: "invalid_shard", 4011: "sharding_required", 4012: "invalid_api_version"}
#: Long enough for several identify windows, heartbeats and the first reconnect backoff to pass: a
#: retry loop would have opened new connections by then.
QUIET_PERIOD = 1.5


#: These waits cover whole-fleet stops and fatal closes, so they allow 15 s rather than 10.
eventually = functools.partial(waiting.eventually, within=15.0)


@pytest.fixture
async def make_manager():
    made: list[ShardManager] = []

    def make(sandbox, **overrides) -> tuple[ShardManager, list[FatalErrorEvent]]:
        values = {
            "token": sandbox.token,
            "intents": GatewayIntents.default(),
            "rest_url": sandbox.rest_url,
            "identify_window": 0.05,
            "compression": "zlib-stream",
            "health_interval": 0.05,
            "shutdown_timeout": 3.0,
        }
        values.update(overrides)
        manager = ShardManager(ShardManagerOptions(**values))
        fatal: list[FatalErrorEvent] = []
        manager.subscribe(lambda e: fatal.append(e) if isinstance(e, FatalErrorEvent) else None)
        made.append(manager)
        return manager, fatal

    yield make
    for manager in made:
        await manager.shutdown_all()


def _connections(sandbox) -> int:
    return sandbox.stats()["connections_total"]


@pytest.mark.parametrize("code", sorted(BOT_WIDE))
async def test_bot_wide_fatal_close_stops_every_shard_with_one_event(sandbox_factory, make_manager, code):
    sandbox = await sandbox_factory(shards=3, max_concurrency=3, heartbeat_interval_ms=300)
    manager, fatal = make_manager(sandbox)
    await manager.initialize()
    assert await manager.wait_until_connected(15)
    assert sandbox.inject("close", 0, code=code) == 1
    await eventually(lambda: not any(info.running for info in manager.runners.values()))
    before = _connections(sandbox)
    await asyncio.sleep(QUIET_PERIOD)

    assert _connections(sandbox) == before, "a stopped shard reconnected"
    assert sandbox.stats()["connections_open"] == 0
    assert len(fatal) == 1, fatal
    assert fatal[0].kind == BOT_WIDE[code] and fatal[0].close_code == code
    assert manager.fatal_error == fatal[0]
    failed = manager.runners[ShardId(0)]
    assert failed.last_close_code == code
    assert failed.fatal_error and str(code) in failed.fatal_error
    assert failed.stage is ConnectionStage.DISCONNECTED
    for info in manager.runners.values():
        assert not info.running and info.stage is ConnectionStage.DISCONNECTED
        assert info.health is ShardHealth.FAILED and info.health_reason
    assert not await manager.wait_until_connected(0.2)


@pytest.mark.parametrize("code", sorted(PER_SHARD))
async def test_shard_fatal_close_stops_only_that_shard(sandbox_factory, make_manager, code):
    sandbox = await sandbox_factory(shards=3, max_concurrency=3, heartbeat_interval_ms=300)
    manager, fatal = make_manager(sandbox)
    await manager.initialize()
    assert await manager.wait_until_connected(15)
    assert sandbox.inject("close", 1, code=code) == 1
    failed = manager.runners[ShardId(1)]
    await eventually(lambda: not failed.running)
    before = _connections(sandbox)
    await asyncio.sleep(QUIET_PERIOD)

    assert _connections(sandbox) == before, "the stopped shard reconnected"
    assert [(e.kind, e.shard_ids, e.close_code) for e in fatal] == [(PER_SHARD[code], (ShardId(1),), code)]
    assert manager.fatal_error is None
    assert failed.last_close_code == code
    assert failed.fatal_error and str(code) in failed.fatal_error
    assert failed.stage is ConnectionStage.DISCONNECTED
    assert failed.health is ShardHealth.FAILED
    for other in (ShardId(0), ShardId(2)):
        assert manager.runners[other].stage is ConnectionStage.CONNECTED
        assert manager.runners[other].fatal_error is None


async def test_privileged_intent_not_enabled_is_one_event_for_the_whole_fleet(sandbox_factory, make_manager):
    """The real 4014: every shard's IDENTIFY is refused, yet the operator hears it once."""
    sandbox = await sandbox_factory(shards=4, max_concurrency=4, privileged_intents=[])
    manager, fatal = make_manager(sandbox, intents=GatewayIntents.default() | GatewayIntents.GUILD_MEMBERS)
    await manager.initialize()
    assert not await manager.wait_until_connected(15)
    await eventually(lambda: not any(info.running for info in manager.runners.values()))
    before = _connections(sandbox)
    await asyncio.sleep(QUIET_PERIOD)

    assert _connections(sandbox) == before <= 4
    assert len(fatal) == 1 and fatal[0].kind == "disallowed_intents" and fatal[0].close_code == 4014
    assert "Developer Portal" in fatal[0].message
    assert sandbox.stats()["session_starts_used"] == 0
    assert any(info.last_close_code == 4014 for info in manager.runners.values())


async def test_invalid_intent_bits_stop_the_fleet(sandbox_factory, make_manager):
    """The real 4013: an intents value with a bit Discord does not define."""
    sandbox = await sandbox_factory(shards=2, max_concurrency=2)
    manager, fatal = make_manager(sandbox, intents=GatewayIntents(1 << 29) | GatewayIntents.GUILDS)
    await manager.initialize()
    await eventually(lambda: manager.fatal_error is not None)
    await eventually(lambda: not any(info.running for info in manager.runners.values()))
    before = _connections(sandbox)
    await asyncio.sleep(QUIET_PERIOD)
    assert _connections(sandbox) == before <= 2
    assert [(e.kind, e.close_code) for e in fatal] == [("invalid_intents", 4013)]


@pytest.mark.parametrize(
    ("sandbox_settings", "shard_total", "code"),
    [
        # Too many guilds for one shard when the operator forces a single shard.
        ({"guilds": 12, "max_guilds_per_shard": 4}, 1, 4011),
        # A large bot must run a multiple of 4 shards; 2 is refused.
        ({"shard_multiple": 4}, 2, 4010),
    ],
)
async def test_real_per_shard_refusals_stop_each_shard_without_retrying(
    sandbox_factory, make_manager, sandbox_settings, shard_total, code
):
    sandbox = await sandbox_factory(shards=4, max_concurrency=4, **sandbox_settings)
    manager, fatal = make_manager(sandbox, shard_total=shard_total)
    await manager.initialize()
    await eventually(lambda: len(manager.runners) == shard_total)
    await eventually(lambda: not any(info.running for info in manager.runners.values()))
    before = _connections(sandbox)
    await asyncio.sleep(QUIET_PERIOD)

    assert _connections(sandbox) == before == shard_total  # one attempt per shard, no loop
    assert sorted(int(s) for e in fatal for s in e.shard_ids) == list(range(shard_total))
    assert {e.close_code for e in fatal} == {code}
    for info in manager.runners.values():
        assert info.last_close_code == code and info.fatal_error and str(code) in info.fatal_error
        assert info.health is ShardHealth.FAILED


# -- headless -------------------------------------------------------------------------------------

TOKEN = make_token(9876543210987654321)


def _headless_config(tmp_path: Path, code: int) -> Path:
    return sandbox_config(
        tmp_path,
        TOKEN,
        f"""[[sandbox.faults]]
kind = "close"
every = 0.5
shard = 0
code = {code}
""",
    )


@pytest.mark.parametrize("code", sorted({**BOT_WIDE, **PER_SHARD}))
def test_headless_exits_non_zero_on_every_fatal_code(tmp_path: Path, capsys, code: int) -> None:
    report_path = tmp_path / "report.json"
    status = main(
        ["--config", str(_headless_config(tmp_path, code)),
         "run", "--headless", "--duration", "2.5", "--report", str(report_path)]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert status == 3, captured.err
    lines = [json.loads(line) for line in captured.out.splitlines() if line.strip()]
    fatal = [line for line in lines if line["event"] == "fatal"]
    assert len(fatal) == 1 and fatal[0]["close_code"] == code
    report = json.loads(report_path.read_text())
    assert report["exit_status"] == 3
    shard0 = next(s for s in report["shards"] if s["id"] == 0)
    assert shard0["last_close_code"] == code and shard0["fatal_error"]
    if code in BOT_WIDE:
        assert report["stopped_by"] == "fatal"  # before the duration: nothing is left running
    else:
        shard1 = next(s for s in report["shards"] if s["id"] == 1)
        assert shard1["stage"] == "connected" and shard1["fatal_error"] is None
    assert TOKEN not in captured.out + captured.err + report_path.read_text()
