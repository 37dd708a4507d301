"""The session state file itself: atomic 0600 writes, no leftovers, and every unusable file or
entry answered with a reason instead of an exception at start-up."""

from __future__ import annotations

import os
import stat

import pytest

from shardtui.gateway.models import ShardId
from shardtui.gateway.sessions import (
    SavedSession,
    load_sessions,
    read_sessions,
    save_sessions,
    sessions_to_save,
)
from shardtui.gateway.shard import SessionState


def saved(shard: int, total: int = 2, at: float = 1000.0) -> SavedSession:
    return SavedSession(shard, total, f"sess{shard}", 41 + shard, "wss://resume.example", at, 7)


def test_save_is_atomic_owner_only_and_round_trips(tmp_path):
    path = tmp_path / "state" / "sessions.json"
    old_umask = os.umask(0)
    try:
        assert save_sessions(path, [saved(1), saved(0)]) == 2
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["sessions.json"]  # no temporary file left behind
    assert read_sessions(path) == [saved(0), saved(1)]


def test_load_picks_fresh_sessions_of_the_same_total_and_consumes_the_file(tmp_path):
    path = tmp_path / "sessions.json"
    save_sessions(path, [saved(0, at=990.0), saved(1, at=800.0), saved(2, total=4, at=999.0)])
    loaded = load_sessions(path, total=2, shard_ids=[ShardId(0), ShardId(1)], now=1000.0, max_age=60.0)
    assert loaded.usable == {ShardId(0): SessionState("sess0", 41, "wss://resume.example")}
    assert loaded.guilds == {ShardId(0): 7}
    assert loaded.stale == [1]
    assert loaded.other_total == []  # shard 2 is not ours to run
    assert loaded.warning is None
    assert not path.exists()


def test_saved_in_the_future_counts_as_stale(tmp_path):
    path = tmp_path / "sessions.json"
    save_sessions(path, [saved(0, at=5000.0)])
    loaded = load_sessions(path, total=2, shard_ids=[ShardId(0)], now=1000.0)
    assert loaded.stale == [0] and not loaded.usable


def test_missing_file_is_simply_no_sessions(tmp_path):
    loaded = load_sessions(tmp_path / "none.json", total=2, shard_ids=[ShardId(0)], now=0.0)
    assert not loaded.usable and loaded.warning is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"version": 9, "sessions": []}', "not a version 1"),
        (b'{"version": 1}', "no session list"),
        (b'{"version": 1, "sessions": [{"shard_id": 3, "total": 2}]}', "bad shard id/total"),
        (
            b'{"version": 1, "sessions": [{"shard_id": 0, "total": 2, "session_id": "s", "seq": -1,'
            b' "saved_at": 1}]}',
            "bad seq",
        ),
    ],
)
def test_unusable_files_give_one_warning_with_the_reason(tmp_path, content, reason):
    path = tmp_path / "sessions.json"
    path.write_bytes(content)
    loaded = load_sessions(path, total=2, shard_ids=[ShardId(0)], now=10.0)
    assert not loaded.usable
    assert loaded.warning is not None and reason in loaded.warning and str(path) in loaded.warning
    assert "every shard identifies" in loaded.warning


def test_sessions_to_save_skips_shards_without_a_session():
    states = {ShardId(0): SessionState("a", 3, None), ShardId(1): None}
    out = sessions_to_save(states, 2, 50.0, {ShardId(0): 4})
    assert out == [SavedSession(0, 2, "a", 3, None, 50.0, 4)]
