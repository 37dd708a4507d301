"""Client sessions across a restart of the proxy: a stop that keeps them, the saved form, the next
process's hub taking them over, and the sessions file (consumed once, too old restores nothing)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import orjson
from hub_helpers import FakeClock, Upstream, attach, make_hub, names_and_seqs, take
from support.manager import options_for

from shardtui.gateway.manager import ShardManager
from shardtui.proxy import LinkEnd, SessionState
from shardtui.proxy.server import Proxy
from shardtui.proxy.sessions_file import save_sessions, take_sessions


async def test_a_kept_session_survives_the_stop_and_resumes_in_the_next_process() -> None:
    old = make_hub()
    up = Upstream(old)
    link = attach(old, guilds=2)  # READY 1, guilds 2-3
    for n in range(4):
        up.message(n)  # seqs 4-7
    await take(link)
    link.session.confirm(5)  # the client's heartbeat: it has 1..5
    old.release_all(4000, "proxy restarting: resume")
    assert link.end is LinkEnd.CLOSED and link.close_code == 4000
    assert link.session.state is SessionState.DETACHED
    up.message(4)  # after the stop, before the shards went down: seq 8, numbered for it
    form = old.saved_form()
    (saved,) = form["sessions"]
    assert saved["seq"] == 8 and saved["replay_first"] == 6 and len(saved["replay"]) == 3

    clock = FakeClock()
    new = make_hub(clock=clock)
    assert new.restore(orjson.loads(orjson.dumps(form))) == 1
    Upstream(new).message(5)  # the upstream resume's replay: seq 9
    outcome = new.table.resume(saved["session_id"], 5)
    assert outcome.ok
    payloads = await take(outcome.link)
    assert names_and_seqs(payloads) == [("MESSAGE_CREATE", s) for s in (6, 7, 8, 9)] + [("RESUMED", 10)]
    assert [p["d"]["id"] for p in payloads[:-1]] == ["2", "3", "4", "5"]


async def test_a_restored_session_is_never_resumed_lossily() -> None:
    old = make_hub()
    up = Upstream(old)
    link = attach(old, guilds=1)
    for n in range(3):
        up.message(n)
    await take(link)
    link.session.confirm(4)
    old.release_all(4000, "proxy restarting: resume")
    new = make_hub()
    new.restore(old.saved_form())
    session_id = link.session.session_id
    # Older than what the client confirmed: not kept, so op 9 rather than a RESUMED with a gap.
    assert not new.table.resume(session_id, 2).ok
    assert session_id not in new.table


async def test_an_upstream_that_identifies_again_invalidates_restored_sessions() -> None:
    old = make_hub()
    link = attach(old)
    await take(link)
    old.release_all(4000, "proxy restarting: resume")
    new = make_hub()
    new.restore(old.saved_form())
    Upstream(new).ready("a-new-upstream-session")
    assert not new.table.resume(link.session.session_id, link.session.seq).ok
    assert new.stats().invalidated_total == 1


async def test_malformed_saved_sessions_are_skipped() -> None:
    old = make_hub()
    attach(old)
    form = old.saved_form()
    good = form["sessions"][0]
    bad = [{**good, "session_id": "x", "seq": good["seq"] + 5}, {**good, "session_id": 7}, "junk"]
    new = make_hub()
    assert new.restore({**form, "sessions": [*bad, good]}) == 1
    assert [s.session_id for s in new.sessions()] == [good["session_id"]]


async def test_a_session_before_its_ready_is_not_kept() -> None:
    hub = make_hub()
    link = hub.open_session()  # no snapshot yet
    hub.release_all(4000, "proxy restarting: resume")
    assert link.end is LinkEnd.CLOSED and hub.sessions() == []
    assert hub.saved_form()["sessions"] == []


async def test_the_sessions_file_is_read_once_and_an_old_one_restores_nothing(tmp_path: Path, caplog) -> None:
    hub = make_hub()
    attach(hub)
    path = tmp_path / "state.json.clients.json"
    assert save_sessions([hub], path) == 1
    assert path.stat().st_mode & 0o777 == 0o600  # it holds what the bot was sent
    shards = take_sessions(path, max_age=120.0)
    assert [len(s["sessions"]) for s in shards] == [1]
    assert not path.exists() and take_sessions(path, max_age=120.0) == []

    save_sessions([hub], path, now=time.time() - 600)
    assert take_sessions(path, max_age=120.0) == [] and not path.exists()

    path.write_bytes(b"{not json")
    with caplog.at_level(logging.WARNING, logger="shardtui.proxy"):
        assert take_sessions(path, max_age=120.0) == []
    assert "not JSON" in caplog.text and str(path) in caplog.text and not path.exists()


async def test_sessions_saved_under_another_shard_total_are_dropped_at_the_first_dispatch(
    sandbox_factory,
) -> None:
    # The manager learns its total from /gateway/bot (2); the sessions were saved under 3.
    sandbox = await sandbox_factory(shards=2, guilds=4)
    old = make_hub(shard_id=0, total=3)
    link = attach(old)
    await take(link)
    old.release_all(4000, "proxy restarting: resume")
    manager = ShardManager(options_for(sandbox))
    assert manager.shard_total is None
    proxy = Proxy(manager, token=sandbox.token, rest_upstream=sandbox.rest_url)
    manager.options.event_handler = proxy.on_dispatch
    await proxy.start()
    try:
        assert proxy.restore_sessions([old.saved_form()]) == 1
        assert link.session.session_id in proxy.table
        await manager.initialize()
        assert await manager.wait_until_connected(timeout=20)
        assert proxy.hubs[0].shard_total == 2
        assert link.session.session_id not in proxy.table  # a RESUME now gets op 9, never a stream of 3
    finally:
        await proxy.stop()
        await manager.shutdown_all()
