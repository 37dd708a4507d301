"""Persisted sessions against the real sandbox: a process restart RESUMEs every shard from the
state file (no identify, nothing lost while down); stale, rejected or unreadable saved sessions
fall back to identifying through the gate."""

from __future__ import annotations

import asyncio
import logging
import os
import stat

import orjson
from support.manager import options_for
from support.waiting import eventually
from support.zero_downtime import IDENTIFIED_MIX, Recorder

from shardtui.gateway.manager import ShardManager
from shardtui.gateway.models import ShardId, ShardLogEvent


async def test_process_restart_resumes_every_shard_and_loses_nothing(sandbox_factory, tmp_path):
    sandbox = await sandbox_factory(
        guilds=16, shards=4, max_concurrency=2, event_rate=60.0, event_mix=IDENTIFIED_MIX
    )
    state_file = tmp_path / "sessions.json"
    first = Recorder()
    manager_a = ShardManager(options_for(sandbox, event_handler=first, state_file=str(state_file)))
    await manager_a.initialize()
    assert await manager_a.wait_until_connected(10)
    await eventually(lambda: len(first.ids) > 40)

    await manager_a.shutdown_all(keep_sessions=True)
    assert stat.S_IMODE(os.stat(state_file).st_mode) == 0o600
    raw = state_file.read_bytes()
    assert sandbox.token.encode() not in raw
    saved = orjson.loads(raw)["sessions"]
    assert sorted(s["shard_id"] for s in saved) == [0, 1, 2, 3]
    assert all(s["total"] == 4 and s["session_id"] and s["seq"] for s in saved)
    server_closes = sandbox.stats()["shards"]
    assert all(server_closes[str(s)]["client_closes"].get("1000", 0) == 0 for s in range(4))

    # Traffic goes on while no process is connected: the next one must replay it.
    sent_before = sandbox.stats()["dispatches_sent"]
    await eventually(lambda: sandbox.stats()["dispatches_sent"] > sent_before + 20)

    second = Recorder()
    manager_b = ShardManager(options_for(sandbox, event_handler=second, state_file=str(state_file)))
    try:
        await manager_b.initialize()
        assert await manager_b.wait_until_connected(10)
        await eventually(lambda: len(second.ids) > 60)
        sandbox.quiesce()
        stats = sandbox.stats()

        def all_delivered() -> bool:
            return all(
                sandbox.delivery_report(s, first.by_shard.get(s, []) + second.by_shard.get(s, [])).ok
                and not sandbox.delivery_report(
                    s, first.by_shard.get(s, []) + second.by_shard.get(s, [])
                ).not_replayable
                for s in range(4)
            )

        await eventually(all_delivered)
        stats = sandbox.stats()
        for shard in range(4):
            shard_stats = stats["shards"][str(shard)]
            assert shard_stats["identifies"] == 1  # manager A's only
            assert shard_stats["resumes"] == 1
            assert manager_b.runners[ShardId(shard)].last_start == "resume"
            # READY is not seen again on RESUME: the guild count comes from the state file.
            assert manager_b.runners[ShardId(shard)].guilds == len(sandbox.guild_ids_for_shard(shard, 4))
        assert manager_b.identifies_saved == 4
        assert manager_b.session_restore.summary()["resumed"] == [0, 1, 2, 3]
        assert stats["identify_violations"] == 0
        assert not second.duplicates() and not first.duplicates()
        assert not state_file.exists()  # consumed: a crash now must not resume from old seqs
    finally:
        await manager_b.shutdown_all(keep_sessions=False)
    assert not state_file.exists()


async def test_expired_sessions_fall_back_to_identify(sandbox_factory, tmp_path):
    # Two buckets: both rejected RESUMEs wait out the runner's random op 9 delay at the same time.
    sandbox = await sandbox_factory(guilds=4, shards=2, max_concurrency=2, resume_window=0.3, event_rate=0.0)
    state_file = tmp_path / "sessions.json"
    manager_a = ShardManager(options_for(sandbox, state_file=str(state_file)))
    await manager_a.initialize()
    assert await manager_a.wait_until_connected(10)
    await manager_a.shutdown_all()  # state_file set: keeps sessions by default
    assert len(orjson.loads(state_file.read_bytes())["sessions"]) == 2
    await eventually(lambda: not any(s["alive"] for s in sandbox.stats()["sessions"]), within=5)

    manager_b = ShardManager(options_for(sandbox, state_file=str(state_file)))
    try:
        await manager_b.initialize()
        assert await manager_b.wait_until_connected(15)
        await eventually(lambda: len(manager_b.session_restore.outcome) == 2)
        stats = sandbox.stats()
        assert manager_b.identifies_saved == 0
        assert manager_b.session_restore.rejected == [ShardId(0), ShardId(1)]
        assert [manager_b.runners[ShardId(s)].last_start for s in (0, 1)] == ["identify", "identify"]
        assert all(stats["shards"][str(s)]["identifies"] == 2 for s in (0, 1))
        assert stats["identify_violations"] == 0
    finally:
        await manager_b.shutdown_all(keep_sessions=False)


async def test_stale_or_other_total_sessions_identify_without_trying(sandbox_factory, tmp_path):
    sandbox = await sandbox_factory(guilds=4, shards=2)
    state_file = tmp_path / "sessions.json"
    manager_a = ShardManager(options_for(sandbox, state_file=str(state_file)))
    await manager_a.initialize()
    assert await manager_a.wait_until_connected(10)
    await manager_a.shutdown_all()
    saved = state_file.read_bytes()
    # A new process comes up after the old one's identify window (as any real restart does).
    await asyncio.sleep(sandbox.settings.identify_window)

    manager_b = ShardManager(options_for(sandbox, state_file=str(state_file), state_max_age=0.0))
    try:
        await manager_b.initialize()
        assert await manager_b.wait_until_connected(10)
        assert manager_b.session_restore.loaded.stale == [0, 1]
    finally:
        await manager_b.shutdown_all(keep_sessions=False)

    state_file.write_bytes(saved)
    await asyncio.sleep(sandbox.settings.identify_window)
    manager_c = ShardManager(options_for(sandbox, state_file=str(state_file), shard_total=4))
    try:
        await manager_c.initialize()
        assert await manager_c.wait_until_connected(10)
        assert manager_c.session_restore.loaded.other_total == [0, 1]
    finally:
        await manager_c.shutdown_all(keep_sessions=False)
    stats = sandbox.stats()
    assert all(stats["shards"][str(s)]["resumes"] == 0 for s in (0, 1))
    assert manager_b.identifies_saved == 0 and manager_c.identifies_saved == 0
    assert stats["identify_violations"] == 0


async def test_corrupt_state_file_warns_once_and_identifies(sandbox, tmp_path):
    state_file = tmp_path / "sessions.json"
    state_file.write_bytes(b'{"version": 1, "sessions": [{"shard_id": "zero"}]}')
    manager = ShardManager(options_for(sandbox, state_file=str(state_file)))
    logs: list[ShardLogEvent] = []
    manager.subscribe(lambda e: logs.append(e) if isinstance(e, ShardLogEvent) else None)
    try:
        await manager.initialize()
        assert await manager.wait_until_connected(10)
        warnings = [e for e in logs if e.level == logging.WARNING and "state file" in e.message]
        assert len(warnings) == 1
        assert str(state_file) in warnings[0].message and "every shard identifies" in warnings[0].message
        assert [manager.runners[ShardId(s)].last_start for s in (0, 1)] == ["identify", "identify"]
    finally:
        await manager.shutdown_all(keep_sessions=False)


async def test_unwritable_state_file_is_reported_not_raised(sandbox, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    manager = ShardManager(options_for(sandbox, state_file=str(blocker / "sessions.json")))
    logs: list[ShardLogEvent] = []
    manager.subscribe(lambda e: logs.append(e) if isinstance(e, ShardLogEvent) else None)
    await manager.initialize()
    assert await manager.wait_until_connected(10)
    await asyncio.wait_for(manager.shutdown_all(), 10)
    assert any(e.level == logging.ERROR and "could not save sessions" in e.message for e in logs)


async def test_saved_sessions_resume_even_when_the_daily_budget_is_spent(sandbox_factory, tmp_path):
    # Two session starts a day, both used by the first process: only RESUMEs can bring the bot back.
    sandbox = await sandbox_factory(guilds=4, shards=2, max_concurrency=2, session_start_total=2)
    state_file = tmp_path / "sessions.json"
    manager_a = ShardManager(options_for(sandbox, state_file=str(state_file)))
    await manager_a.initialize()
    assert await manager_a.wait_until_connected(10)
    await manager_a.shutdown_all()
    assert sandbox.stats()["session_start_limit"]["remaining"] == 0

    manager_b = ShardManager(options_for(sandbox, state_file=str(state_file)))
    try:
        await manager_b.initialize()
        assert await manager_b.wait_until_connected(10)
        assert manager_b.identifies_saved == 2
        assert not sandbox.stats()["token_reset"]
    finally:
        await manager_b.shutdown_all(keep_sessions=False)
