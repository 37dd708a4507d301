"""ShardRunner against the real sandbox gateway: connect, heartbeat, resume, re-identify, give up, stop.

"No loss, no duplicate" is always checked the same way: every dispatch the sandbox gave a seq to this
shard (its own accounting, by event id) must reach the handler exactly once and in order.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import WSMsgType, web

from shardtui.gateway.errors import PayloadTooLarge
from shardtui.gateway.messages import ShardManagerMessage
from shardtui.gateway.models import Activity, ConnectionStage, Dispatch, Presence, ShardLogEvent
from shardtui.gateway.protocol import ActivityType, GatewayIntents, Status
from shardtui.gateway.shard import SessionState
from shardtui.sandbox.accounting import EVENT_ID_KEY

C = ConnectionStage
FIRST_CONNECT = [C.CONNECTING, C.HANDSHAKE, C.IDENTIFYING, C.CONNECTED]


async def assert_all_delivered_once(h, sandbox, shard_id: int = 0) -> None:
    """Wait until the handler has every event the sandbox sent, then check order and uniqueness."""
    await h.wait_for(lambda: len(h.event_ids()) >= len(sandbox.event_ids(shard_id)), what="all events")
    await asyncio.sleep(0.05)  # a late duplicate would show up here
    assert h.event_ids() == sandbox.event_ids(shard_id)
    last = 0
    for d in h.received:  # seqs strictly increase within each session (READY starts a new one)
        if d.name == "READY":
            last = 0
        assert d.seq is not None and d.seq > last
        last = d.seq


def runner_tasks() -> list[asyncio.Task]:
    """Tasks started by a ShardRunner still alive (the sandbox's own server tasks are not ours)."""
    return [
        t
        for t in asyncio.all_tasks()
        if t.get_name().startswith("shard-") or "ShardRunner" in getattr(t.get_coro(), "__qualname__", "")
    ]


@pytest.mark.parametrize("compression", ["zstd-stream", "zlib-stream", "none"])
async def test_connects_identifies_and_receives_ready_and_guilds(
    sandbox_factory, harness_factory, compression: str
) -> None:
    sandbox = await sandbox_factory()
    h = harness_factory(sandbox, compression=compression)
    await h.wait_connected()
    await h.wait_for(lambda: h.names().count("GUILD_CREATE") == 6, what="6 GUILD_CREATEs")
    sandbox.emit(15)
    await assert_all_delivered_once(h, sandbox)
    assert h.names()[0] == "READY"
    assert h.stage_changes() == FIRST_CONNECT
    assert h.info.guilds == 6
    assert h.info.identifies == 1
    assert h.info.last_start == "identify"
    assert h.info.session_id is not None
    assert h.info.connected_since is not None
    assert h.info.events_received == len(h.received)
    assert h.info.last_seq == h.received[-1].seq
    assert h.gate.acquired == [h.runner.shard_id]
    assert sandbox.stats()["shards"]["0"]["identifies"] == 1


async def test_heartbeats_are_acked_and_latency_is_reported(sandbox_factory, harness_factory) -> None:
    sandbox = await sandbox_factory(heartbeat_interval_ms=100)
    h = harness_factory(sandbox)
    await h.wait_connected()
    updates = lambda: [  # noqa: E731
        m for m in h.drain() if isinstance(m, ShardManagerMessage.ShardUpdate) and m.latency is not None
    ]
    await h.wait_for(lambda: len(updates()) >= 3, what="three ACKed heartbeats")
    assert all(0 <= m.latency < 1.0 for m in updates())
    assert h.info.last_ack_at is not None
    # Heartbeats alone never made the shard reconnect.
    assert h.stage_changes() == FIRST_CONNECT


@pytest.mark.parametrize(
    "fault", ["drop", "reconnect", "zombie", "heartbeat_request", "malformed", "truncated"]
)
async def test_resumes_after_fault_without_losing_or_duplicating(
    sandbox_factory, harness_factory, fault: str
) -> None:
    sandbox = await sandbox_factory(heartbeat_interval_ms=150)
    h = harness_factory(sandbox)
    await h.wait_connected()
    sandbox.emit(10)
    await assert_all_delivered_once(h, sandbox)
    assert sandbox.inject(fault, 0) == 1
    sandbox.emit(10)  # sent into the broken connection or buffered for the session
    if fault != "heartbeat_request":
        await h.wait_connected(2)
        sandbox.emit(5)
    await assert_all_delivered_once(h, sandbox)
    if fault == "heartbeat_request":
        assert h.stage_changes() == FIRST_CONNECT
        return
    assert h.stage_changes()[4:] == [C.DISCONNECTED, C.CONNECTING, C.HANDSHAKE, C.RESUMING, C.CONNECTED]
    assert h.info.resumes == 1
    assert h.info.identifies == 1
    assert h.info.last_start == "resume"
    assert h.info.reconnects == 1
    assert sandbox.stats()["shards"]["0"]["resumes"] == 1
    if fault in ("zombie", "reconnect"):
        # We closed, with a code that keeps the session.
        closes = sandbox.stats()["shards"]["0"]["client_closes"]
        assert closes and not set(closes) & {"1000", "1001"}


async def test_invalid_session_not_resumable_reidentifies_through_the_gate(
    sandbox_factory, harness_factory
) -> None:
    sandbox = await sandbox_factory()
    h = harness_factory(sandbox)
    await h.wait_connected()
    sandbox.emit(5)
    await assert_all_delivered_once(h, sandbox)
    first_session = h.info.session_id
    sandbox.inject("invalid_session", 0, resumable=False)
    await h.wait_connected(2)
    sandbox.emit(5)
    await assert_all_delivered_once(h, sandbox)
    assert h.stage_changes()[4:] == [C.DISCONNECTED, C.CONNECTING, C.HANDSHAKE, C.IDENTIFYING, C.CONNECTED]
    assert len(h.gate.acquired) == 2
    assert h.info.identifies == 2
    assert h.info.session_id != first_session
    assert h.names().count("READY") == 2
    assert sandbox.stats()["shards"]["0"]["identify_violations"] == 0


async def test_invalid_session_resumable_resumes(sandbox_factory, harness_factory) -> None:
    sandbox = await sandbox_factory()
    h = harness_factory(sandbox)
    await h.wait_connected()
    sandbox.inject("invalid_session", 0, resumable=True)
    await h.wait_connected(2)
    sandbox.emit(5)
    await assert_all_delivered_once(h, sandbox)
    assert h.info.identifies == 1
    assert h.info.resumes == 1


@pytest.mark.parametrize(("code", "resumed"), [(4000, True), (4008, True), (4009, False), (4007, False)])
async def test_server_close_codes_resume_or_identify(
    sandbox_factory, harness_factory, code: int, resumed: bool
) -> None:
    sandbox = await sandbox_factory()
    h = harness_factory(sandbox)
    await h.wait_connected()
    sandbox.emit(3)
    sandbox.inject("close", 0, code=code)
    await h.wait_connected(2)
    sandbox.emit(3)
    await h.wait_for(lambda: h.event_ids()[-3:] == sandbox.event_ids(0)[-3:], what="events after reconnect")
    ids = h.event_ids()
    assert len(ids) == len(set(ids))
    assert h.info.last_close_code == code
    assert (h.info.resumes, h.info.identifies) == ((1, 1) if resumed else (0, 2))
    if resumed:
        await assert_all_delivered_once(h, sandbox)


async def test_wrong_token_stops_with_invalid_authentication_and_no_retry(
    sandbox_factory, harness_factory
) -> None:
    sandbox = await sandbox_factory()
    bad_token = "MTAw.wrong-token-for-the-test.NOT-THE-REAL-ONE-xyz"
    h = harness_factory(sandbox, token=bad_token)
    await asyncio.wait_for(h.task, 5.0)
    messages = h.drain()
    assert [m for m in messages if isinstance(m, ShardManagerMessage.ShardInvalidAuthentication)] == [
        ShardManagerMessage.ShardInvalidAuthentication(h.runner.shard_id)
    ]
    assert messages[-1] == ShardManagerMessage.ShutdownFinished(h.runner.shard_id)
    assert "token" in (h.info.fatal_error or "")
    assert h.info.last_close_code == 4004
    assert h.info.running is False
    assert sandbox.stats()["connections_total"] == 1  # never retried
    assert all(bad_token not in e.message and sandbox.token not in e.message for e in h.logs)
    assert bad_token not in repr(h.runner.options)


async def test_disallowed_intents_stop_with_their_own_message(sandbox_factory, harness_factory) -> None:
    sandbox = await sandbox_factory()
    h = harness_factory(sandbox, intents=GatewayIntents.default() | GatewayIntents.GUILD_MEMBERS)
    await asyncio.wait_for(h.task, 5.0)
    assert ShardManagerMessage.ShardDisallowedGatewayIntents(h.runner.shard_id) in h.drain()
    assert "privileged" in (h.info.fatal_error or "")
    assert sandbox.stats()["connections_total"] == 1


async def test_presence_from_identify_and_from_the_messenger_reaches_the_gateway(
    sandbox_factory, harness_factory
) -> None:
    sandbox = await sandbox_factory()
    start = Presence(Status.IDLE, Activity("the boot", ActivityType.WATCHING))
    h = harness_factory(sandbox, presence=start)
    await h.wait_connected()
    await h.wait_for(lambda: sandbox.presence(0) is not None, what="identify presence")
    assert sandbox.presence(0)["status"] == "idle"
    assert h.info.presence == start

    h.runner.messenger.set_presence("dnd", Activity("the tests", ActivityType.COMPETING))
    await h.wait_for(lambda: sandbox.presence(0)["status"] == "dnd", what="op 3")
    assert sandbox.presence(0)["activities"][0]["name"] == "the tests"
    h.runner.messenger.set_status(Status.ONLINE)
    await h.wait_for(lambda: sandbox.presence(0)["status"] == "online", what="status change")
    # set_status kept the activity.
    assert sandbox.presence(0)["activities"][0]["name"] == "the tests"
    assert h.info.presence == Presence(Status.ONLINE, Activity("the tests", ActivityType.COMPETING))


async def test_presence_set_while_disconnected_is_sent_after_resume(sandbox_factory, harness_factory) -> None:
    sandbox = await sandbox_factory()
    h = harness_factory(sandbox)
    await h.wait_connected()
    sandbox.inject("refuse", seconds=0.4)
    sandbox.inject("drop", 0)
    await h.wait_for(lambda: C.DISCONNECTED in h.stage_changes(), what="disconnect")
    h.runner.messenger.set_activity(Activity("while away"))
    await h.wait_connected(2)
    await h.wait_for(
        lambda: (sandbox.presence(0) or {}).get("activities", [{}])[0].get("name") == "while away",
        what="deferred presence",
    )
    assert h.info.resumes == 1


async def test_chunk_guild_reaches_the_gateway_and_chunks_come_back(sandbox_factory, harness_factory) -> None:
    sandbox = await sandbox_factory(privileged_intents=["guild_members"])
    h = harness_factory(sandbox, intents=GatewayIntents.default() | GatewayIntents.GUILD_MEMBERS)
    await h.wait_connected()
    guild_id = sandbox.guild_ids_for_shard(0, 1)[0]
    h.runner.messenger.chunk_guild(guild_id, query="", limit=0, nonce="n1")
    await h.wait_for(lambda: "GUILD_MEMBERS_CHUNK" in h.names(), what="member chunk")
    chunk = next(d for d in h.received if d.name == "GUILD_MEMBERS_CHUNK")
    assert chunk.data["guild_id"] == str(guild_id)
    assert chunk.data.get("nonce") == "n1"
    assert sandbox.stats()["shards"]["0"]["member_requests"] == 1


async def test_oversized_raw_command_is_refused_before_sending(sandbox_factory, harness_factory) -> None:
    sandbox = await sandbox_factory()
    h = harness_factory(sandbox)
    await h.wait_connected()
    with pytest.raises(PayloadTooLarge, match="4096"):
        h.runner.messenger.websocket_message({"op": 3, "d": {"junk": "x" * 5000}})
    with pytest.raises(ValueError, match="sent by the runner"):
        h.runner.messenger.websocket_message({"op": 2, "d": {}})
    assert sandbox.stats()["shards"]["0"]["server_closes"] == {}


async def test_restart_resumes_and_forced_restart_identifies(sandbox_factory, harness_factory) -> None:
    sandbox = await sandbox_factory()
    h = harness_factory(sandbox)
    await h.wait_connected()
    sandbox.emit(4)
    h.runner.messenger.restart()
    await h.wait_connected(2)
    assert (h.info.resumes, h.info.identifies) == (1, 1)
    h.runner.messenger.restart(force_identify=True)
    await h.wait_connected(3)
    assert (h.info.resumes, h.info.identifies) == (1, 2)
    sandbox.emit(4)
    await assert_all_delivered_once(h, sandbox)
    closes = sandbox.stats()["shards"]["0"]["client_closes"]
    assert closes.get("1000") == 1  # the forced identify ended the old session instead of leaving it


async def test_refused_connections_are_retried_with_backoff(sandbox_factory, harness_factory) -> None:
    sandbox = await sandbox_factory()
    sandbox.inject("refuse", seconds=0.6)
    h = harness_factory(sandbox)
    await h.wait_connected(within=10.0)
    refused = sandbox.stats()["refused_connections"]
    assert 1 <= refused <= 4  # backed off, not hammering
    assert "could not connect" in h.log_text()
    assert h.info.identifies == 1


async def test_handler_errors_are_logged_and_async_handlers_keep_order(
    sandbox_factory, harness_factory
) -> None:
    sandbox = await sandbox_factory()
    seen: list[int] = []

    async def handler(dispatch) -> None:
        if dispatch.name == "MESSAGE_CREATE" and len(seen) % 3 == 0:
            seen.append(dispatch.seq)
            raise RuntimeError("handler bug")
        await asyncio.sleep(0)
        seen.append(dispatch.seq)

    h = harness_factory(sandbox, handler=handler)
    await h.wait_connected()
    sandbox.emit(12, kind="MESSAGE_CREATE")
    await h.wait_for(lambda: len(seen) == len(sandbox.event_ids(0)), what="async handler")
    assert seen == sorted(seen)
    assert "handler bug" in h.log_text()
    assert h.stage_changes() == FIRST_CONNECT


async def test_shutdown_clean_ends_the_session_and_leaves_no_task(sandbox_factory, harness_factory) -> None:
    sandbox = await sandbox_factory()
    h = harness_factory(sandbox)
    await h.wait_connected()
    h.runner.messenger.shutdown_clean()
    await asyncio.wait_for(h.task, 5.0)
    assert h.drain()[-1] == ShardManagerMessage.ShutdownFinished(h.runner.shard_id)
    assert h.stage_changes()[-1] is C.DISCONNECTED
    assert h.info.running is False
    assert h.runner.session_state() is None
    await asyncio.sleep(0.05)
    assert sandbox.stats()["shards"]["0"]["client_closes"] == {"1000": 1}
    assert runner_tasks() == []


async def test_cancellation_closes_the_socket_keeps_the_session_and_leaves_no_task(
    sandbox_factory, harness_factory
) -> None:
    sandbox = await sandbox_factory()
    h = harness_factory(sandbox)
    await h.wait_connected()
    sandbox.emit(5)
    await assert_all_delivered_once(h, sandbox)
    h.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await h.task
    assert runner_tasks() == []
    assert h.drain()[-1] == ShardManagerMessage.ShutdownFinished(h.runner.shard_id)
    await h.wait_for(lambda: sandbox.stats()["shards"]["0"]["client_closes"], what="close seen by sandbox")
    assert "1000" not in sandbox.stats()["shards"]["0"]["client_closes"]

    # The saved session resumes in a new runner with nothing lost or repeated.
    state = h.runner.session_state()
    assert isinstance(state, SessionState) and state.seq == h.received[-1].seq
    sandbox.emit(5)
    h2 = harness_factory(sandbox, resume=state)
    await h2.wait_connected()
    sandbox.emit(3)
    await h2.wait_for(lambda: len(h.event_ids()) + len(h2.event_ids()) >= len(sandbox.event_ids(0)))
    assert h.event_ids() + h2.event_ids() == sandbox.event_ids(0)
    assert h2.info.identifies == 0 and h2.info.resumes == 1


async def test_stop_requested_while_waiting_to_reconnect_ends_promptly(
    sandbox_factory, harness_factory
) -> None:
    sandbox = await sandbox_factory()
    sandbox.inject("refuse", seconds=30)
    h = harness_factory(sandbox, max_backoff=30.0)
    await h.wait_for(lambda: "could not connect" in h.log_text(), what="a refused connect")
    h.runner.messenger.shutdown_clean()
    await asyncio.wait_for(h.task, 3.0)
    assert h.drain()[-1] == ShardManagerMessage.ShutdownFinished(h.runner.shard_id)


async def test_oversized_dispatch_is_received_without_a_reconnect(sandbox_factory, harness_factory) -> None:
    sandbox = await sandbox_factory()
    h = harness_factory(sandbox)
    await h.wait_connected()
    sandbox.inject("oversized", 0, size=3 * 1024 * 1024)
    await assert_all_delivered_once(h, sandbox)
    assert len(h.received[-1].data["content"]) == 3 * 1024 * 1024
    assert h.stage_changes() == FIRST_CONNECT


async def test_hello_that_never_comes_is_given_up_on_and_retried(sandbox_factory, harness_factory) -> None:
    sandbox = await sandbox_factory()
    sandbox.inject("delay_hello", seconds=3.0, count=1)
    h = harness_factory(sandbox, connect_timeout=0.3)
    await h.wait_connected()
    assert "no HELLO" in h.log_text()
    assert h.info.identifies == 1
    assert h.stage_changes()[:3] == [C.CONNECTING, C.HANDSHAKE, C.DISCONNECTED]


async def test_two_shards_get_their_own_guilds_through_one_gate(sandbox_factory, harness_factory) -> None:
    sandbox = await sandbox_factory(guilds=8)
    first = harness_factory(sandbox, shard_id=0, total=2)
    gate = first.gate
    shards = [first, harness_factory(sandbox, shard_id=1, total=2, gate=gate)]
    for h in shards:
        await h.wait_connected()
    for i, h in enumerate(shards):
        expected = len(sandbox.guild_ids_for_shard(i, 2))
        await h.wait_for(lambda h=h, n=expected: h.info.guilds == n, what=f"shard {i} guilds")
        assert h.names().count("GUILD_CREATE") == expected
    assert sorted(int(s) for s in gate.acquired) == [0, 1]
    assert sandbox.stats()["identify_violations"] == 0


async def test_events_per_second_follows_traffic(sandbox_factory, harness_factory) -> None:
    sandbox = await sandbox_factory(event_rate=300.0, guilds=4)
    h = harness_factory(sandbox)
    await h.wait_connected()
    await h.wait_for(lambda: h.info.events_per_second > 20, within=6.0, what="a measured event rate")
    assert h.info.last_dispatch_at is not None
    assert h.info.events_received == len(h.received)


async def test_command_flood_waits_for_the_limiter_while_heartbeats_go_on(
    sandbox_factory, harness_factory
) -> None:
    sandbox = await sandbox_factory(heartbeat_interval_ms=1000)
    h = harness_factory(sandbox)
    await h.wait_connected()
    presence = {"since": None, "activities": [], "status": "online", "afk": False}
    for _ in range(150):
        h.runner.messenger.websocket_message({"op": 3, "d": presence})
    stats = lambda: sandbox.stats()["shards"]["0"]  # noqa: E731
    # 60 s / 1 s heartbeats reserve half of the 120 (the cap): IDENTIFY plus 59 commands fit.
    await h.wait_for(lambda: stats()["presence_updates"] == 59, what="the command budget to be used")
    acks_before = h.info.last_ack_at
    await h.wait_for(
        lambda: h.info.last_ack_at != acks_before, within=3.0, what="a heartbeat after the flood"
    )
    assert stats()["presence_updates"] == 59
    assert stats()["command_violations"] == 0
    assert "4008" not in stats()["server_closes"]
    assert h.runner.stage is C.CONNECTED
    # A close queued behind commands that wait for the limiter is not held up by them.
    h.runner.messenger.shutdown_clean()
    await asyncio.wait_for(h.task, 2.0)
    assert runner_tasks() == []


async def test_cancelled_while_draining_a_slow_handler_still_finishes_cleanly(
    sandbox_factory, harness_factory
) -> None:
    sandbox = await sandbox_factory()
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(dispatch) -> None:
        if dispatch.name == "MESSAGE_CREATE":
            started.set()
            await release.wait()

    h = harness_factory(sandbox, handler=slow)
    await h.wait_connected()
    sandbox.emit(3, kind="MESSAGE_CREATE")
    await asyncio.wait_for(started.wait(), 5)
    h.runner.messenger.shutdown_clean()
    await h.wait_for(lambda: h.info.fatal_error is None and h.runner.stage is C.DISCONNECTED, what="stop")
    await asyncio.sleep(0.05)  # now draining the handler's queue
    assert not h.task.done()
    h.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(h.task, 2.0)
    assert h.drain()[-1] == ShardManagerMessage.ShutdownFinished(h.runner.shard_id)
    assert runner_tasks() == []
    assert h.info.running is False


async def test_zlib_messages_split_over_frames_are_reassembled(sandbox_factory, harness_factory) -> None:
    sandbox = await sandbox_factory()
    h = harness_factory(sandbox, compression="zlib-stream")
    await h.wait_connected()
    for _ in range(3):
        assert sandbox.inject("split", 0) == 1
        sandbox.emit(2)
    await assert_all_delivered_once(h, sandbox)
    assert h.stage_changes() == FIRST_CONNECT  # a split message is no reason to reconnect


async def test_all_member_chunk_without_the_intent_is_refused_not_sent(
    sandbox_factory, harness_factory
) -> None:
    sandbox = await sandbox_factory()
    h = harness_factory(sandbox, intents=GatewayIntents.default())
    await h.wait_connected()
    h.runner.messenger.chunk_guild(sandbox.guild_ids_for_shard(0, 1)[0])
    await h.wait_for(lambda: "guild_members intent" in h.log_text(), what="the refusal")
    stats = sandbox.stats()["shards"]["0"]
    assert stats["member_requests"] == 0 and stats["server_closes"] == {}
    assert h.stage_changes() == FIRST_CONNECT


# A resume node that accepts the WebSocket but never sends HELLO must not hold a shard forever: after a
# connection that never became usable the shard resumes through the base url (the Shard's side of it:
# test_shard.py).


async def test_runner_gets_past_a_resume_node_that_never_says_hello(sandbox_factory, harness_factory):
    """End to end: READY points at a node that accepts sockets and stays silent; after a drop the
    runner must come back on the sandbox with a RESUME (no identify spent, nothing lost)."""
    silent_connections = 0

    async def silent(request: web.Request) -> web.WebSocketResponse:
        nonlocal silent_connections
        silent_connections += 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:  # never HELLO
            if msg.type is WSMsgType.ERROR:
                break
        return ws

    app = web.Application()
    app.router.add_get("/", silent)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        sandbox = await sandbox_factory()
        sandbox._state.resume_url = f"ws://127.0.0.1:{port}"  # what READY will advertise
        h = harness_factory(sandbox, connect_timeout=0.3, compression="zlib-stream")
        await h.wait_connected()
        sandbox.emit(4, "DM_MESSAGE_CREATE")
        sandbox.inject("drop", 0)
        sandbox.emit(3, "DM_MESSAGE_CREATE")
        await h.wait_for(lambda: h.info.resumes == 1, within=8.0, what="a resume on the base url")
        assert silent_connections >= 1
        assert h.info.identifies == 1
        await h.wait_for(lambda: len(h.event_ids()) >= len(sandbox.event_ids(0)), what="all events")
        assert h.event_ids() == sandbox.event_ids(0)
    finally:
        await runner.cleanup()


async def test_rebind_hands_dispatches_and_logs_to_the_new_owner(sandbox_factory, harness_factory) -> None:
    # The reshard's switch: the manager that stays takes over a running shard, without a reconnect.
    sandbox = await sandbox_factory()
    h = harness_factory(sandbox)
    await h.wait_connected()
    old_received, old_logs = len(h.received), len(h.logs)
    switched_at = len(sandbox.event_ids(0))
    received: list[Dispatch] = []
    logs: list[ShardLogEvent] = []
    h.runner.rebind(lambda e: logs.append(e) if isinstance(e, ShardLogEvent) else None, received.append)
    sandbox.emit(3, "DM_MESSAGE_CREATE")

    def new_ids() -> list[int]:
        return [d.data[EVENT_ID_KEY] for d in received if isinstance(d.data, dict) and EVENT_ID_KEY in d.data]

    await h.wait_for(lambda: len(new_ids()) >= 3, what="the events after the switch")
    assert new_ids() == sandbox.event_ids(0)[switched_at:]
    sandbox.inject("drop", 0)
    await h.wait_connected(count=2)
    assert any("closed" in e.message for e in logs)
    assert (len(h.received), len(h.logs)) == (old_received, old_logs)
