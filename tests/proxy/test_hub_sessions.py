"""Client sessions behind a hub: bounded outbox and slow clients, resume and replay, expiry, the table."""

from __future__ import annotations

import asyncio

import pytest
from hub_helpers import FakeClock, Upstream, attach, make_hub, names_and_seqs, take

from shardtui.proxy import INVALID_SESSION_FRAME, LinkEnd, SessionLimits, SessionState


async def test_a_slow_client_is_cut_resumably_and_misses_nothing() -> None:
    hub = make_hub(outbox_max_events=5)
    up = Upstream(hub)
    slow = attach(hub, guilds=2)
    fast = attach(hub, guilds=2)
    got = await take(slow)  # READY + 2 guilds; then it stops reading
    assert got[-1]["s"] == 3
    await take(fast)
    for n in range(6):
        up.message(n)
        assert len(await take(fast)) == 1  # the other client keeps up and is never held back

    assert slow.end is LinkEnd.CUT_SLOW and slow.close_code == 4000
    assert await slow.wait_frames() == []
    assert hub.stats().cut_slow_total == 1 and slow.session.cuts == 1
    assert slow.session.state is SessionState.DETACHED
    up.message(6)  # still recorded for the resume
    assert fast.end is None

    outcome = hub.table.resume(slow.session.session_id, 3)
    assert outcome.ok and outcome.replayed == 7
    payloads = await take(outcome.link)
    assert names_and_seqs(payloads) == [("MESSAGE_CREATE", s) for s in range(4, 11)] + [("RESUMED", 11)]
    assert [p["d"]["id"] for p in payloads[:-1]] == [str(n) for n in range(7)]
    up.message(7)
    assert names_and_seqs(await take(outcome.link)) == [("MESSAGE_CREATE", 12)]


async def test_the_byte_bound_cuts_too() -> None:
    size = len(b'{"t":"MESSAGE_CREATE","s":2,"op":0,"d":{"id":"0","channel_id":"7","content":"message 0"}}')
    hub = make_hub(outbox_max_bytes=5 * size + size // 2)
    up = Upstream(hub)
    link = attach(hub, guilds=0)
    await take(link)
    for n in range(5):
        up.message(n)
    assert link.end is None and link.session.backlog_bytes == 5 * size
    up.message(5)
    assert link.end is LinkEnd.CUT_SLOW
    assert hub.stats().cut_slow_total == 1


async def test_a_snapshot_bigger_than_the_backlog_bound_is_not_a_slow_client() -> None:
    hub = make_hub(outbox_max_events=3)
    up = Upstream(hub)
    link = attach(hub, guilds=10)
    up.message(1)
    assert link.end is None
    payloads = await take(link)
    assert len(payloads) == 12 and payloads[-1]["s"] == 12
    for n in range(3):
        up.message(n)
    assert link.end is None
    up.message(4)
    assert link.end is LinkEnd.CUT_SLOW


async def test_resume_replays_what_was_missed_with_the_original_seqs_then_resumed() -> None:
    hub = make_hub()
    up = Upstream(hub)
    link = attach(hub, guilds=1)
    up.message(1)
    assert [p["s"] for p in await take(link)] == [1, 2, 3]
    up.message(2)  # numbered 4, written but the client never got it
    await take(link)
    link.detach()
    up.message(3)
    up.message(4)

    outcome = hub.resume(link.session.session_id, 3)
    assert outcome.ok and outcome.replayed == 3
    payloads = await take(outcome.link)
    assert names_and_seqs(payloads) == [
        ("MESSAGE_CREATE", 4),
        ("MESSAGE_CREATE", 5),
        ("MESSAGE_CREATE", 6),
        ("RESUMED", 7),
    ]
    assert [p["d"]["id"] for p in payloads[:3]] == ["2", "3", "4"]
    assert outcome.link.session.state is SessionState.LIVE


async def test_resume_with_nothing_missed_gets_resumed_alone() -> None:
    hub = make_hub()
    link = attach(hub, guilds=1)
    await take(link)
    link.detach()
    outcome = hub.table.resume(link.session.session_id, 2)
    assert names_and_seqs(await take(outcome.link)) == [("RESUMED", 3)]


async def test_resume_past_the_replay_buffer_is_refused_never_lossy() -> None:
    hub = make_hub(replay_max_events=4)
    up = Upstream(hub)
    link = attach(hub, guilds=0)
    await take(link)
    for n in range(3):
        up.message(n)
    await take(link)  # seqs 2..4 written; replay holds 1..4
    link.detach()
    up.message(3)  # 5: replay now 2..5
    outcome = hub.table.resume(link.session.session_id, 0)
    assert not outcome.ok and "replay buffer" in outcome.reason
    # The session is gone: even a resume that would have fitted is refused now.
    assert not hub.table.resume(link.session.session_id, 4).ok
    assert len(hub.table) == 0


async def test_resume_from_a_seq_never_sent_is_refused() -> None:
    hub = make_hub()
    up = Upstream(hub)
    link = attach(hub, guilds=0)
    await take(link)  # READY (1) written
    up.message(1)  # numbered 2 but not written yet
    link.detach()
    outcome = hub.table.resume(link.session.session_id, 2)
    assert not outcome.ok and "only 1 were sent" in outcome.reason


async def test_unknown_session_and_bad_seq_are_refused() -> None:
    hub = make_hub()
    link = attach(hub, guilds=0)
    await take(link)
    assert not hub.table.resume("0" * 32, 1).ok
    assert not hub.resume("0" * 32, 1).ok
    assert not hub.resume(["not", "a", "session id"], 1).ok  # type: ignore[arg-type]
    assert not hub.table.resume(link.session.session_id, None).ok
    assert INVALID_SESSION_FRAME == b'{"t":null,"s":null,"op":9,"d":false}'


async def test_a_resume_on_a_live_session_closes_the_old_socket() -> None:
    hub = make_hub()
    up = Upstream(hub)
    old = attach(hub, guilds=0)
    await take(old)
    outcome = hub.table.resume(old.session.session_id, 1)
    assert outcome.ok
    assert old.end is LinkEnd.REPLACED and old.close_code == 4000
    assert await old.wait_frames() == []
    up.message(1)
    assert names_and_seqs(await take(outcome.link)) == [("RESUMED", 2), ("MESSAGE_CREATE", 3)]
    old.detach()  # the old socket's transport ends later: must not detach the new one
    assert outcome.link.session.link is outcome.link and outcome.link.end is None


async def test_a_detached_session_expires_after_the_resume_window() -> None:
    clock = FakeClock()
    hub = make_hub(clock=clock, resume_window=30.0)
    a = attach(hub, guilds=0)
    b = attach(hub, guilds=0)
    await take(a)
    await take(b)
    a.detach()
    clock.now += 20
    b.detach()
    clock.now += 15  # a: 35 s away, b: 15 s
    assert not hub.table.resume(a.session.session_id, 1).ok
    assert hub.table.resume(b.session.session_id, 1).ok
    assert hub.table.expired_total == 1


async def test_a_live_session_never_expires() -> None:
    clock = FakeClock()
    hub = make_hub(clock=clock, resume_window=30.0)
    link = attach(hub, guilds=0)
    clock.now += 1000
    assert hub.table.sweep() == 0 and link.end is None


async def test_the_table_drops_the_oldest_detached_sessions_first() -> None:
    clock = FakeClock()
    hub = make_hub(clock=clock, max_sessions=3)
    live = attach(hub, guilds=0)
    older = attach(hub, guilds=0)
    newer = attach(hub, guilds=0)
    for link in (live, older, newer):
        await take(link)
    older.detach()
    clock.now += 1
    newer.detach()
    attach(hub, guilds=0)
    assert older.session.session_id not in hub.table
    assert newer.session.session_id in hub.table and live.session.session_id in hub.table
    assert hub.table.evicted_total == 1 and len(hub.table) == 3


async def test_a_detached_session_past_its_replay_is_dropped_at_once() -> None:
    hub = make_hub(replay_max_events=3)
    up = Upstream(hub)
    link = attach(hub, guilds=0)
    await take(link)
    link.detach()
    for n in range(3):
        up.message(n)
    assert link.session.state is SessionState.DETACHED  # replay 2..4 still holds everything after 1
    up.message(3)
    assert link.session.state is SessionState.CLOSED
    assert hub.stats().clients == 0


async def test_frames_come_in_batches_and_a_batch_can_be_capped() -> None:
    hub = make_hub()
    up = Upstream(hub)
    link = attach(hub, guilds=0)
    for n in range(5):
        up.message(n)
    assert [len(f) > 0 for f in await link.wait_frames(max_frames=4)] == [True] * 4
    assert len(await link.wait_frames()) == 2
    batches = []

    async def reader() -> None:
        async for frames in link:
            batches.append(len(frames))

    task = asyncio.create_task(reader())
    await asyncio.sleep(0)
    up.message(5)
    up.message(6)
    await asyncio.sleep(0)
    up.message(7)
    await asyncio.sleep(0)
    up.message(8)
    hub.close_all(4900, "reshard")  # the frame already numbered goes out before the close
    await asyncio.wait_for(task, 5)
    assert batches == [2, 1, 1]
    assert link.end is LinkEnd.CLOSED and link.close_code == 4900


async def test_client_counters() -> None:
    hub = make_hub()
    up = Upstream(hub)
    link = attach(hub, guilds=1, library="hikari")
    up.message(1)
    stats = link.session.stats()
    assert stats.library == "hikari" and stats.address == "127.0.0.1:5000"
    assert stats.seq == 3 and stats.backlog_events == 3 and stats.backlog_bytes > 100
    assert stats.state is SessionState.LIVE and stats.connected_since is not None
    await take(link)
    stats = hub.clients()[0]
    assert stats.backlog_events == 0 and stats.backlog_bytes == 0 and stats.seq == 3
    link.detach()
    hub_stats = hub.stats()
    assert (hub_stats.clients, hub_stats.live, hub_stats.cut_slow_total) == (1, 0, 0)
    assert hub.clients()[0].connected_since is None


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="outbox_max_events must be a positive integer"):
        SessionLimits(outbox_max_events=0)
    with pytest.raises(ValueError, match="resume_window"):
        SessionLimits(resume_window=0)


async def test_the_replay_byte_bound_limits_how_far_back_a_resume_reaches() -> None:
    size = len(b'{"t":"MESSAGE_CREATE","s":2,"op":0,"d":{"id":"0","channel_id":"7","content":"message 0"}}')
    hub = make_hub(replay_max_bytes=3 * size + size // 2)
    up = Upstream(hub)
    first = attach(hub, guilds=0)
    second = attach(hub, guilds=0)
    for link in (first, second):
        await take(link)
    for n in range(5):
        up.message(n)  # seqs 2..6; the replay keeps the last three (4..6)
    await take(first)
    await take(second)
    first.detach()
    second.detach()
    assert not hub.table.resume(first.session.session_id, 2).ok
    outcome = hub.table.resume(second.session.session_id, 3)
    assert outcome.ok and [p["s"] for p in await take(outcome.link)] == [4, 5, 6, 7]


async def test_a_small_replay_never_costs_a_live_client_an_event() -> None:
    hub = make_hub(replay_max_events=2)
    up = Upstream(hub)
    link = attach(hub, guilds=3)
    for n in range(10):
        up.message(n)
    payloads = await take(link)
    assert [p["s"] for p in payloads] == list(range(1, 15))
    assert link.end is None
