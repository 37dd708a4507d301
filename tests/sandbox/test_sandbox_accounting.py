"""Delivery accounting: what the sandbox sent vs what a client received, across resumes and dead sessions."""

from __future__ import annotations

import asyncio

import pytest

from shardtui.gateway.protocol import GatewayIntents
from shardtui.sandbox import EVENT_ID_KEY, ScheduledFault, SentEvent, compare_delivery

INTENTS = int(GatewayIntents.GUILDS | GatewayIntents.DIRECT_MESSAGES)


def _sent(event_id: int, seq: int, session: str = "a", replayable: bool = True) -> SentEvent:
    return SentEvent(event_id, seq, "MESSAGE_CREATE", session, 0, replayable, None if replayable else "op 9")


def test_compare_delivery_separates_client_loss_from_server_loss():
    sent = [
        _sent(1, 1),
        _sent(2, 2),
        _sent(3, 3, replayable=False),
        _sent(4, 4),
        _sent(5, 5, replayable=False),
    ]
    report = compare_delivery(sent, [1, 2, 2, 5, 99])
    assert report.sent == 5 and report.received == 5
    assert report.lost == [4]
    assert report.not_replayable == [3]
    assert report.duplicated == [2]
    assert report.unknown == [99]
    assert not report.ok


def test_an_event_copied_to_two_sessions_counts_once():
    sent = [_sent(7, 3, "old", replayable=False), _sent(7, 2, "new")]
    assert compare_delivery(sent, [7]).ok
    assert compare_delivery(sent, []).lost == [7]
    only_dead = [_sent(8, 3, "old", replayable=False), _sent(8, 2, "new", replayable=False)]
    assert compare_delivery(only_dead, []).not_replayable == [8]


async def test_a_client_that_resumes_correctly_loses_nothing(sandbox, raw):
    client = await raw(sandbox, compress="zlib-stream")
    ready = await client.ready(sandbox.token, (0, 2), INTENTS)
    sandbox.emit(5, "DM_MESSAGE_CREATE")
    await client.recv_until(lambda p: p["s"] == len(sandbox.sent_events(0)))
    sandbox.inject("drop", 0)
    await client.expect_close()
    sandbox.emit(5, "DM_MESSAGE_CREATE")  # lands in the replay buffer
    received = [p["d"][EVENT_ID_KEY] for p in client.received if p["op"] == 0]
    resumer = await raw(sandbox, compress="zstd-stream")
    await resumer.hello()
    session_id = ready["d"]["session_id"]
    await resumer.send(
        {"op": 6, "d": {"token": sandbox.token, "session_id": session_id, "seq": client.last_seq}}
    )
    got = await resumer.recv_until("RESUMED")
    received += [p["d"][EVENT_ID_KEY] for p in got if p["op"] == 0]
    report = sandbox.delivery_report(0, received)
    assert report.ok and report.sent == len(received) == len(sandbox.sent_events(0))
    names = [e.name for e in sandbox.sent_events(0)]
    assert names.count("MESSAGE_CREATE") == 10 and names[0] == "READY" and names[-1] == "RESUMED"
    assert report.not_replayable == []


async def test_a_client_that_skips_a_resume_shows_a_loss(sandbox, raw):
    client = await raw(sandbox)
    await client.ready(sandbox.token, (0, 2), INTENTS)
    sandbox.emit(3, "DM_MESSAGE_CREATE")
    await client.recv_until(lambda p: p["s"] == len(sandbox.sent_events(0)))
    received = [p["d"][EVENT_ID_KEY] for p in client.received if p["op"] == 0]
    sandbox.inject("wedge", 0)
    sandbox.emit(2, "DM_MESSAGE_CREATE")
    report = sandbox.delivery_report(0, received)
    assert len(report.lost) == 2 and report.not_replayable == []


async def test_inject_random_is_seeded_and_reports_what_it_did(sandbox_factory, raw):
    sandbox = await sandbox_factory(max_concurrency=2)
    assert sandbox.inject_random() is None  # nobody connected
    client = await raw(sandbox)
    await client.ready(sandbox.token, (1, 2), INTENTS)
    kind, params = sandbox.inject_random(choices=("close",))
    assert kind == "close" and params["code"] in (4000, 4001, 4002, 4003, 4005, 4007, 4008, 4009)
    assert await client.expect_close() == params["code"]
    assert sandbox.stats()["shards"]["1"]["faults"] == {"close": 1}


@pytest.mark.parametrize("kind", ["delay_hello", "refuse"])
async def test_random_slow_or_refusing_server_also_drops_the_shard(sandbox, raw, kind):
    client = await raw(sandbox)
    await client.ready(sandbox.token, (0, 2), INTENTS)
    applied = sandbox.inject_random(0, choices=(kind,))
    assert applied is not None and applied[0] == kind and 0.2 <= applied[1]["seconds"] <= 1.0
    assert await client.expect_close() == 1006


async def test_heal_releases_what_a_wedge_held_back(sandbox, raw):
    client = await raw(sandbox)
    await client.ready(sandbox.token, (0, 2), INTENTS)
    sandbox.inject("wedge", 0)
    sandbox.emit(3, "DM_MESSAGE_CREATE")
    assert sandbox.stats()["sessions"][0]["held"] == 3
    assert sandbox.heal() == 1
    total = len(sandbox.sent_events(0))
    await client.recv_until(lambda p: p["s"] == total)
    received = [p["d"][EVENT_ID_KEY] for p in client.received if p["op"] == 0]
    assert sandbox.delivery_report(0, received).ok
    assert sandbox.stats()["sessions"][0]["held"] == 0


async def test_heal_lets_a_zombie_answer_again(sandbox, raw):
    client = await raw(sandbox)
    await client.ready(sandbox.token, (0, 2), INTENTS)
    sandbox.inject("zombie", 0)
    sandbox.emit(1, "DM_MESSAGE_CREATE")
    assert sandbox.heal() == 1
    await client.heartbeat(None)
    got = await client.recv_until(lambda p: p["op"] == 11)
    assert [p["t"] for p in got if p["op"] == 0][-1] == "MESSAGE_CREATE"


async def test_quiesce_stops_traffic_and_faults_but_not_the_gateway(sandbox_factory, raw):
    sandbox = await sandbox_factory(
        event_rate=500.0, faults=[ScheduledFault("refuse", every=0.02, params={"seconds": 30})]
    )
    client = await raw(sandbox)
    await client.ready(sandbox.token, (0, 2), INTENTS)
    await asyncio.sleep(0.1)
    sandbox.quiesce()
    before = sandbox.stats()["dispatches_sent"]
    await asyncio.sleep(0.1)
    assert sandbox.stats()["dispatches_sent"] == before
    fresh = await raw(sandbox)  # no longer refused
    assert (await fresh.recv())["op"] == 10
    await client.heartbeat(None)
    assert (await client.recv_until(lambda p: p["op"] == 11))[-1]["op"] == 11
