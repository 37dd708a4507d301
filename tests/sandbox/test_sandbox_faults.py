"""Every fault the sandbox can inject, seen from a raw client, and its accounting."""

from __future__ import annotations

import asyncio
import zlib

import aiohttp
import pytest
from rawclient import Closed, RawClient

from shardtui.gateway.protocol import GatewayIntents
from shardtui.sandbox import FAULT_KINDS, ScheduledFault

DMS = int(GatewayIntents.GUILDS | GatewayIntents.DIRECT_MESSAGES)


async def _ready(raw, sandbox, shard=(0, 2), **kwargs) -> tuple[RawClient, dict]:
    client = await raw(sandbox, **kwargs)
    ready = await client.ready(sandbox.token, shard, DMS)
    return client, ready


async def _resume(raw, sandbox, session_id: str, seq: int) -> RawClient:
    client = await raw(sandbox)
    await client.hello()
    await client.send({"op": 6, "d": {"token": sandbox.token, "session_id": session_id, "seq": seq}})
    return client


async def test_drop_closes_without_a_close_frame_and_the_session_resumes(sandbox, raw):
    client, ready = await _ready(raw, sandbox)
    assert sandbox.inject("drop", 0) == 1
    assert await client.expect_close() == 1006
    resumer = await _resume(raw, sandbox, ready["d"]["session_id"], 1)
    assert (await resumer.recv_until("RESUMED"))[-1]["t"] == "RESUMED"
    shard = sandbox.stats()["shards"]["0"]
    assert shard["faults"] == {"drop": 1}
    assert shard["server_closes"] == {"1006": 1}
    session = sandbox.stats()["sessions"][0]
    assert session["faults"] == {"drop": 1} and session["closes"] == ["server 1006"]
    assert session["resumes"] == 1 and session["connected"] is True


async def test_zombie_stops_acks_and_dispatches(sandbox, raw):
    client, _ = await _ready(raw, sandbox)
    await client.heartbeat(1)
    await client.recv_until(lambda p: p["op"] == 11)
    sandbox.inject("zombie", 0)
    await client.heartbeat(1)
    sandbox.emit(2, "DM_MESSAGE_CREATE")
    with pytest.raises(TimeoutError):
        await client.recv(wait=0.3)
    # The dispatches were not lost: they wait in the session's replay buffer.
    assert [e.name for e in sandbox.sent_events(0)][-2:] == ["MESSAGE_CREATE", "MESSAGE_CREATE"]


async def test_wedge_keeps_acking_but_holds_dispatches_until_resume(sandbox, raw):
    client, ready = await _ready(raw, sandbox)
    seen = len(await client.recv_until(lambda p: p["s"] == len(sandbox.sent_events(0))))
    assert seen
    sandbox.inject("wedge", 0)
    sandbox.emit(3, "DM_MESSAGE_CREATE")
    await client.heartbeat(client.last_seq)
    assert (await client.recv())["op"] == 11  # an ACK, not the three dispatches
    last = client.last_seq
    await client.close(4000)
    resumer = await _resume(raw, sandbox, ready["d"]["session_id"], last)
    got = await resumer.recv_until("RESUMED")
    assert [p["t"] for p in got] == ["MESSAGE_CREATE"] * 3 + ["RESUMED"]


async def test_reconnect_sends_op7(sandbox, raw):
    client, _ = await _ready(raw, sandbox)
    sandbox.inject("reconnect", 0)
    got = await client.recv_until(lambda p: p["op"] == 7)
    assert got[-1] == {"t": None, "s": None, "op": 7, "d": None}


async def test_invalid_session_resumable_keeps_the_session(sandbox, raw):
    client, ready = await _ready(raw, sandbox)
    sandbox.inject("invalid_session", 0, resumable=True)
    assert (await client.recv_until(lambda p: p["op"] == 9))[-1]["d"] is True
    await client.close(4000)
    resumer = await _resume(raw, sandbox, ready["d"]["session_id"], 1)
    assert (await resumer.recv_until("RESUMED"))[-1]["t"] == "RESUMED"


async def test_invalid_session_not_resumable_ends_it_and_marks_unconfirmed_dispatches(sandbox_factory, raw):
    sandbox = await sandbox_factory(identify_window=0.0)
    client, ready = await _ready(raw, sandbox)
    await client.heartbeat(1)  # the client confirms READY only
    await client.recv_until(lambda p: p["op"] == 11)
    sandbox.emit(2, "DM_MESSAGE_CREATE")
    sandbox.inject("invalid_session", 0, resumable=False)
    assert (await client.recv_until(lambda p: p["op"] == 9))[-1]["d"] is False
    events = sandbox.sent_events(0)
    assert events[0].replayable
    assert all(not e.replayable and e.lost_reason == "op 9 not resumable" for e in events[1:])
    resumer = await _resume(raw, sandbox, ready["d"]["session_id"], 1)
    assert (await resumer.recv())["d"] is False
    # The connection may identify again (a new session).
    await client.identify(sandbox.token, (0, 2), DMS)
    assert (await client.recv_until("READY"))[-1]["d"]["session_id"] != ready["d"]["session_id"]


@pytest.mark.parametrize("code", [4000, 4009, 1001, 4999])
async def test_close_fault_uses_the_requested_code(sandbox, raw, code):
    client, _ = await _ready(raw, sandbox)
    sandbox.inject("close", 0, code=code)
    assert await client.expect_close() == code
    assert sandbox.stats()["shards"]["0"]["server_closes"] == {str(code): 1}


async def test_close_4009_kills_the_session_and_4000_does_not(sandbox_factory, raw):
    sandbox = await sandbox_factory(max_concurrency=2)
    zero, ready0 = await _ready(raw, sandbox, (0, 2))
    one, ready1 = await _ready(raw, sandbox, (1, 2))
    sandbox.inject("close", 0, code=4009)
    sandbox.inject("close", 1, code=4000)
    assert await zero.expect_close() == 4009 and await one.expect_close() == 4000
    dead = await _resume(raw, sandbox, ready0["d"]["session_id"], 1)
    assert (await dead.recv())["d"] is False
    alive = await _resume(raw, sandbox, ready1["d"]["session_id"], 1)
    assert (await alive.recv_until("RESUMED"))[-1]["t"] == "RESUMED"


async def test_close_fault_rejects_codes_a_server_may_not_send(sandbox):
    with pytest.raises(ValueError, match="close code 1005"):
        sandbox.inject("close", None, code=1005)


async def test_malformed_frame_is_not_json(sandbox, raw):
    client, _ = await _ready(raw, sandbox, compress="zlib-stream")
    sandbox.inject("malformed", 0)
    with pytest.raises(ValueError):
        await client.recv_until(lambda p: False, wait=2.0)


@pytest.mark.parametrize("compress", ["zlib-stream", "zstd-stream"])
async def test_truncated_frame_breaks_the_compression_stream(sandbox, raw, compress):
    client, _ = await _ready(raw, sandbox, compress=compress)
    await client.heartbeat(None)
    await client.recv_until(lambda p: p["op"] == 11)
    sandbox.inject("truncated", 0)
    await client.heartbeat(None)
    with pytest.raises((zlib.error, ValueError, TimeoutError)):
        # zlib: the cut frame lacks the sync-flush suffix and corrupts what follows.
        for _ in range(3):
            await client.recv(wait=0.5)


async def test_oversized_dispatch_is_a_real_recorded_dispatch(sandbox, raw):
    client, _ = await _ready(raw, sandbox, compress="zstd-stream")
    sandbox.inject("oversized", 0, size=3_000_000)
    got = (await client.recv_until("MESSAGE_CREATE"))[-1]
    assert len(got["d"]["content"]) == 3_000_000
    assert sandbox.sent_events(0)[-1].seq == got["s"]


async def test_oversized_dispatch_names_a_guild_of_the_shards_own(sandbox, raw):
    # A guild_id from another shard is one no gateway sends: a client's cache would file it wrongly.
    client, ready = await _ready(raw, sandbox, shard=(1, 2))
    own = {g["id"] for g in ready["d"]["guilds"]}
    assert own, "the sandbox gave shard 1 of 2 no guilds"
    sandbox.inject("oversized", 1, size=1000)
    got = (await client.recv_until("MESSAGE_CREATE"))[-1]["d"]
    assert got["guild_id"] in own and got["content"] == "x" * 1000


async def test_heartbeat_request_sends_op1(sandbox, raw):
    client, _ = await _ready(raw, sandbox)
    sandbox.inject("heartbeat_request", 0)
    assert (await client.recv_until(lambda p: p["op"] == 1))[-1] == {"t": None, "s": None, "op": 1, "d": None}


async def test_latency_holds_heartbeat_acks_on_that_connection_until_lifted(sandbox, raw):
    slow, _ = await _ready(raw, sandbox)
    assert sandbox.inject("latency", 0, seconds=30) == 1
    await slow.heartbeat()
    with pytest.raises(TimeoutError):
        await slow.recv_until(lambda p: p["op"] == 11, wait=0.5)
    sandbox.inject("latency", 0, seconds=0)
    await slow.heartbeat()
    # The held ACK is still pending (30 s); the new one is not held.
    assert (await slow.recv_until(lambda p: p["op"] == 11))[-1]["op"] == 11


async def test_delay_hello_holds_hello_on_the_next_connection_only(sandbox, raw):
    assert sandbox.inject("delay_hello", seconds=30, count=1) == 1
    slow = await raw(sandbox)
    with pytest.raises(TimeoutError):
        await slow.recv(wait=0.3)
    fast = await raw(sandbox)
    assert (await fast.recv())["op"] == 10


async def test_refuse_rejects_new_connections_but_keeps_existing_ones(sandbox, raw):
    client, _ = await _ready(raw, sandbox)
    sandbox.inject("refuse", seconds=30)
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await RawClient.connect(sandbox.gateway_url)
    assert info.value.status == 503
    await client.heartbeat(None)
    assert (await client.recv_until(lambda p: p["op"] == 11))[-1]["op"] == 11
    assert sandbox.stats()["refused_connections"] == 1


async def test_outage_drops_every_shard_and_refuses_for_a_while(sandbox_factory, raw):
    sandbox = await sandbox_factory(max_concurrency=2)
    zero, _ = await _ready(raw, sandbox, (0, 2))
    one, _ = await _ready(raw, sandbox, (1, 2))
    assert sandbox.inject("outage", seconds=0.2) == 2
    assert await zero.expect_close() == 1006 and await one.expect_close() == 1006
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await RawClient.connect(sandbox.gateway_url)
    await asyncio.sleep(0.3)
    after = await raw(sandbox)
    assert (await after.recv())["op"] == 10


async def test_scheduled_faults_fire_from_settings(sandbox_factory, raw):
    sandbox = await sandbox_factory(faults=[ScheduledFault("reconnect", every=0.05, shard=0)])
    client, _ = await _ready(raw, sandbox)
    assert (await client.recv_until(lambda p: p["op"] == 7))[-1]["op"] == 7
    assert sandbox.stats()["shards"]["0"]["faults"]["reconnect"] >= 1


async def test_random_schedule_hits_a_live_shard(sandbox_factory, raw):
    sandbox = await sandbox_factory(faults=[ScheduledFault("random", every=0.05, choices=("reconnect",))])
    client, _ = await _ready(raw, sandbox, (1, 2))
    assert (await client.recv_until(lambda p: p["op"] == 7))[-1]["op"] == 7


async def test_unknown_fault_names_the_known_ones(sandbox):
    with pytest.raises(ValueError, match="unknown sandbox fault 'explode'; known: drop, zombie"):
        sandbox.inject("explode", 0)


def test_every_fault_kind_is_described():
    assert all(isinstance(text, str) and text for text in FAULT_KINDS.values())
    assert {
        "drop",
        "zombie",
        "wedge",
        "reconnect",
        "invalid_session",
        "close",
        "malformed",
        "truncated",
        "delay_hello",
        "refuse",
        "outage",
    } <= set(FAULT_KINDS)


async def test_injecting_on_a_shard_without_connection_affects_nothing(sandbox, raw):
    await _ready(raw, sandbox, (0, 2))
    assert sandbox.inject("reconnect", 1) == 0


async def test_closed_helper_sees_drop_as_closed(sandbox, raw):
    client, _ = await _ready(raw, sandbox)
    sandbox.inject("drop")
    with pytest.raises(Closed):
        while True:
            await client.recv()


async def test_server_heartbeat_requests_on_a_schedule(sandbox_factory, raw):
    sandbox = await sandbox_factory(server_heartbeat_request_every=0.05)
    client, _ = await _ready(raw, sandbox)
    assert (await client.recv_until(lambda p: p["op"] == 1))[-1]["op"] == 1


@pytest.mark.parametrize(
    ("code", "reason"), [(4007, "server closed with 4007"), (4003, "server closed with 4003")]
)
async def test_session_ending_close_marks_unconfirmed_dispatches(sandbox, raw, code, reason):
    client, _ = await _ready(raw, sandbox)
    await client.heartbeat(1)
    await client.recv_until(lambda p: p["op"] == 11)
    sandbox.emit(2, "DM_MESSAGE_CREATE")
    sandbox.inject("close", 0, code=code)
    assert await client.expect_close() == code
    marks = [(e.name, e.replayable, e.lost_reason) for e in sandbox.sent_events(0)]
    assert marks[0] == ("READY", True, None)
    assert marks[-2:] == [("MESSAGE_CREATE", False, reason)] * 2
    assert sandbox.stats()["shards"]["0"]["not_replayable"] == len(marks) - 1


async def test_client_close_1000_marks_unconfirmed_dispatches(sandbox, raw):
    client, _ = await _ready(raw, sandbox)
    sandbox.emit(1, "DM_MESSAGE_CREATE")
    await client.recv_until("MESSAGE_CREATE")
    await client.heartbeat(client.last_seq)
    await client.recv_until(lambda p: p["op"] == 11)
    await client.close(1000)
    assert all(e.replayable for e in sandbox.sent_events(0))
    session = sandbox.stats()["sessions"][0]
    assert session["alive"] is False and session["end_reason"] == "client closed with 1000"


async def test_a_client_ignoring_op7_is_dropped_after_the_grace(sandbox_factory, raw):
    sandbox = await sandbox_factory(reconnect_drop_after=0.05)
    client, _ = await _ready(raw, sandbox)
    sandbox.inject("reconnect", 0)
    assert (await client.recv_until(lambda p: p["op"] == 7))[-1]["op"] == 7
    assert await client.expect_close() == 1006


async def test_split_sends_one_zlib_message_in_two_frames(sandbox, raw):
    client, _ = await _ready(raw, sandbox, compress="zlib-stream")
    await client.heartbeat(None)
    await client.recv_until(lambda p: p["op"] == 11)
    frames_before = len(client.frame_types)
    assert sandbox.inject("split", 0) == 1
    await client.heartbeat(None)
    assert (await client.recv_until(lambda p: p["op"] == 11))[-1]["op"] == 11
    assert len(client.frame_types) - frames_before == 2  # two frames, one payload
