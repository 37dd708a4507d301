"""The sans-I/O Shard: fed payloads, ticks and closes, it must answer as Discord's protocol demands."""

from __future__ import annotations

import random

import pytest
from support.shard import (
    BASE,
    QUERY,
    RESUME_URL,
    TOKEN,
    Clock,
    connect,
    dispatch,
    hello,
    identified,
    make_shard,
    of,
    ready,
)

from shardtui.gateway.models import Activity, ConnectionStage, Dispatch, Presence, ShardId
from shardtui.gateway.protocol import GatewayIntents, Status
from shardtui.gateway.shard import (
    Fatal,
    HeartbeatAcked,
    Identify,
    Log,
    Reconnect,
    Send,
    SessionStarted,
    SessionState,
    Shard,
    StageChange,
    Stop,
)

# -- connecting, identify, READY ------------------------------------------------------------------


def test_identify_flow_walks_the_stages_and_builds_a_complete_identify() -> None:
    presence = Presence(Status.DND, Activity("the tests"))
    shard = make_shard(shard_id=2, total=4, presence=presence, large_threshold=100)
    actions = connect(shard)
    assert [a.new for a in of(actions, StageChange)] == [
        ConnectionStage.CONNECTING,
        ConnectionStage.HANDSHAKE,
    ]
    assert shard.connect_url() == BASE + QUERY

    actions = list(shard.receive(hello()))
    assert StageChange(ConnectionStage.HANDSHAKE, ConnectionStage.IDENTIFYING) in actions
    assert of(actions, Identify) and not of(actions, Send)

    payload = shard.identify_payload()
    assert payload is not None
    assert payload["op"] == 2
    d = payload["d"]
    assert d["token"] == TOKEN
    assert d["shard"] == [2, 4]
    assert d["intents"] == int(GatewayIntents.GUILDS | GatewayIntents.GUILD_MESSAGES)
    assert d["large_threshold"] == 100
    assert set(d["properties"]) == {"os", "browser", "device"}
    assert d["presence"]["status"] == "dnd"
    assert d["presence"]["activities"][0]["name"] == "the tests"
    # Only one IDENTIFY per connection, however often the runner asks.
    assert shard.identify_payload() is None

    actions = list(shard.receive(ready(s=1)))
    assert StageChange(ConnectionStage.IDENTIFYING, ConnectionStage.CONNECTED) in actions
    assert SessionStarted("identify", "sess-1") in actions
    [ready_dispatch] = of(actions, Dispatch)
    assert ready_dispatch.name == "READY" and ready_dispatch.seq == 1
    assert ready_dispatch.shard_id == ShardId(2)
    assert shard.session_state() == SessionState("sess-1", 1, RESUME_URL)
    # The next connection goes to resume_gateway_url with the same query.
    assert shard.connect_url() == RESUME_URL + "/" + QUERY


def test_identify_is_not_wanted_after_the_connection_closed() -> None:
    shard = make_shard()
    connect(shard)
    list(shard.receive(hello()))
    shard.connection_closed(1006)
    assert shard.identify_payload() is None


def test_repr_and_session_state_never_show_the_token() -> None:
    shard = identified()
    assert TOKEN not in repr(shard)
    assert TOKEN not in repr(shard.session_state())


# -- heartbeats ---------------------------------------------------------------------------------------


def test_first_heartbeat_is_jittered_within_one_interval_then_regular() -> None:
    clock = Clock()
    shard = make_shard(clock)
    connect(shard, now=100.0)
    list(shard.receive(hello(interval_ms=2000)))
    first = shard.next_heartbeat
    expected_jitter = random.Random(7).random() * 2.0
    assert first == pytest.approx(100.0 + expected_jitter)
    assert shard.tick(first - 0.001) == []
    beat = shard.tick(first)
    assert beat == [Send({"op": 1, "d": None}, heartbeat=True)]
    assert shard.next_heartbeat == pytest.approx(first + 2.0)


def test_heartbeat_carries_last_seq_and_ack_sets_latency() -> None:
    clock = Clock()
    shard = identified(clock)
    list(shard.receive(dispatch("MESSAGE_CREATE", 2)))
    due = shard.next_heartbeat
    [send] = shard.tick(due)
    assert send.payload == {"op": 1, "d": 2}
    clock.now = due + 0.25
    actions = list(shard.receive({"op": 11, "d": None}))
    [ack] = of(actions, HeartbeatAcked)
    assert ack.latency == pytest.approx(0.25)
    assert shard.latency == pytest.approx(0.25)
    # An ACK nobody asked for is harmless and changes nothing.
    assert list(shard.receive({"op": 11})) == []


def test_zombie_connection_closes_with_a_resumable_code_and_resumes() -> None:
    clock = Clock()
    shard = identified(clock)
    due = shard.next_heartbeat
    assert of(shard.tick(due), Send)
    actions = shard.tick(due + 1.0)  # next beat due, the last one never ACKed
    [reconnect] = of(actions, Reconnect)
    assert reconnect.resume is True
    assert reconnect.close_code not in (1000, 1001)
    assert reconnect.url == RESUME_URL + "/" + QUERY
    assert reconnect.unresponsive is True  # the runner will not wait for a close reply that never comes
    assert shard.stage is ConnectionStage.DISCONNECTED
    assert shard.has_session


def test_server_heartbeat_request_is_answered_at_once_and_keeps_the_schedule() -> None:
    shard = identified()
    scheduled = shard.next_heartbeat
    actions = list(shard.receive({"op": 1, "d": None}))
    assert actions == [Send({"op": 1, "d": 1}, heartbeat=True)]
    assert shard.next_heartbeat == scheduled


def test_no_hello_within_the_timeout_reconnects_as_a_failure() -> None:
    shard = make_shard(hello_timeout=5.0)
    connect(shard, now=100.0)
    assert shard.next_deadline() == 105.0
    assert shard.tick(104.0) == []
    [reconnect] = of(shard.tick(105.0), Reconnect)
    assert reconnect.failure is True


@pytest.mark.parametrize("interval", ["41250", -5, 0, None, True, 10**400, float("nan"), float("inf")])
def test_unusable_heartbeat_interval_is_clamped_or_defaulted(interval: object) -> None:
    shard = make_shard()
    connect(shard)
    list(shard.receive({"op": 10, "d": {"heartbeat_interval": interval}}))
    assert shard.heartbeat_interval is not None
    assert 0.02 <= shard.heartbeat_interval <= 3600.0
    assert shard.stage is ConnectionStage.IDENTIFYING


# Answering a server heartbeat request (op 1) must not make a healthy connection a "zombie".
# The zombie rule is judged at each *scheduled* beat: was the previous scheduled beat ACKed? An op 1 that
# lands just before a scheduled beat used to restart that wait, so the scheduled beat (one round trip
# later, before the ACK could arrive) found "no ACK" and dropped a perfectly healthy connection.


def connected(clock: Clock) -> Shard:
    shard = Shard(
        0,
        1,
        token=TOKEN,
        intents=GatewayIntents.GUILDS,
        gateway_url="ws://gateway.test/",
        clock=clock,
        rng=random.Random(5),
    )
    shard.begin_connect()
    shard.connection_opened(clock.now)
    shard.receive({"op": 10, "d": {"heartbeat_interval": 10_000}})
    shard.identify_payload()
    shard.receive({"op": 0, "t": "READY", "s": 1, "d": {"session_id": "s", "guilds": []}})
    assert shard.stage is ConnectionStage.CONNECTED
    return shard


def beat(shard: Shard, clock: Clock) -> None:
    """Run the clock to the next scheduled beat and ACK it after 50 ms."""
    assert shard.next_heartbeat is not None
    clock.now = shard.next_heartbeat
    actions = shard.tick(clock.now)
    assert [a for a in actions if isinstance(a, Send)], actions
    clock.now += 0.05
    assert [a for a in shard.receive({"op": 11, "d": None}) if isinstance(a, HeartbeatAcked)]


def test_op1_just_before_a_scheduled_beat_does_not_drop_a_healthy_connection() -> None:
    clock = Clock()
    shard = connected(clock)
    beat(shard, clock)
    assert shard.next_heartbeat is not None
    # The server asks for a beat 10 ms before ours is due; its ACK is still on the way when ours goes.
    clock.now = shard.next_heartbeat - 0.01
    [request_beat] = [a for a in shard.receive({"op": 1, "d": None}) if isinstance(a, Send)]
    assert request_beat.payload == {"op": 1, "d": 1}
    clock.now = shard.next_heartbeat
    actions = shard.tick(clock.now)
    assert not [a for a in actions if isinstance(a, Reconnect)], "a healthy connection was called a zombie"
    assert [a.payload for a in actions if isinstance(a, Send)] == [{"op": 1, "d": 1}]
    assert shard.stage is ConnectionStage.CONNECTED


def test_zombie_is_still_caught_when_the_server_asked_for_a_beat() -> None:
    clock = Clock()
    shard = connected(clock)
    beat(shard, clock)
    # op 1 arrives, then the server goes silent: no ACK for anything any more.
    clock.now += 1.0
    shard.receive({"op": 1, "d": None})
    for _ in range(3):
        assert shard.next_heartbeat is not None
        clock.now = shard.next_heartbeat
        actions = shard.tick(clock.now)
        if [a for a in actions if isinstance(a, Reconnect)]:
            break
    else:
        raise AssertionError("a silent connection was never detected as a zombie")
    [reconnect] = [a for a in actions if isinstance(a, Reconnect)]
    assert reconnect.resume and reconnect.close_code not in (1000, 1001)


def test_op1_while_a_scheduled_beat_is_unacked_keeps_waiting_for_that_ack() -> None:
    clock = Clock()
    shard = connected(clock)
    assert shard.next_heartbeat is not None
    clock.now = shard.next_heartbeat
    shard.tick(clock.now)  # scheduled beat out, no ACK yet
    clock.now += 0.02
    shard.receive({"op": 1, "d": None})
    clock.now += 0.05
    [acked] = [a for a in shard.receive({"op": 11, "d": None}) if isinstance(a, HeartbeatAcked)]
    assert acked.latency > 0
    assert shard.heartbeat_acked


# -- op 7, op 9 -----------------------------------------------------------------------------------------


def test_op7_reconnects_to_resume_url_and_resumes() -> None:
    shard = identified()
    [reconnect] = of(shard.receive({"op": 7, "d": None}), Reconnect)
    assert reconnect.resume is True
    assert reconnect.unresponsive is False
    assert reconnect.close_code not in (1000, 1001)
    assert reconnect.url.startswith(RESUME_URL)


def test_op9_resumable_keeps_the_session_and_resumes() -> None:
    shard = identified()
    [reconnect] = of(shard.receive({"op": 9, "d": True}), Reconnect)
    assert reconnect.resume is True and reconnect.delay == 0
    assert shard.session_state() == SessionState("sess-1", 1, RESUME_URL)


def test_op9_not_resumable_drops_the_session_waits_and_identifies_on_the_base_url() -> None:
    shard = identified()
    [reconnect] = of(shard.receive({"op": 9, "d": False}), Reconnect)
    assert reconnect.resume is False
    assert 1.0 <= reconnect.delay <= 5.0
    assert reconnect.url == BASE + QUERY
    assert shard.session_state() is None
    connect(shard)
    assert of(shard.receive(hello()), Identify)


def test_op9_true_without_a_session_identifies() -> None:
    shard = make_shard()
    connect(shard)
    list(shard.receive(hello()))
    [reconnect] = of(shard.receive({"op": 9, "d": True}), Reconnect)
    assert reconnect.resume is False


# -- close codes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [4004, 4010, 4011, 4012, 4013, 4014])
def test_fatal_close_codes_give_up_without_reconnecting(code: int) -> None:
    shard = identified()
    actions = shard.connection_closed(code, "refused")
    assert of(actions, Fatal) == [Fatal(code, "refused")]
    assert not of(actions, Reconnect)
    assert shard.stage is ConnectionStage.DISCONNECTED


@pytest.mark.parametrize("code", [4006, 4007, 4009])
def test_session_invalidating_closes_identify_again(code: int) -> None:
    shard = identified()
    [reconnect] = of(shard.connection_closed(code), Reconnect)
    assert reconnect.resume is False
    assert reconnect.url == BASE + QUERY
    assert shard.session_state() is None


@pytest.mark.parametrize(
    "code", [4000, 4001, 4002, 4003, 4005, 4008, 1000, 1001, 1006, 1011, 3000, 4999, None]
)
def test_other_closes_resume_when_there_is_a_session(code: int | None) -> None:
    shard = identified()
    [reconnect] = of(shard.connection_closed(code), Reconnect)
    assert reconnect.resume is True
    assert reconnect.failure is False  # it was connected: reconnect at once
    fresh = make_shard()
    connect(fresh)
    [reconnect] = of(fresh.connection_closed(code), Reconnect)
    assert reconnect.resume is False
    assert reconnect.failure is True  # never got connected: the runner backs off


# -- resume and exactly-once ----------------------------------------------------------------------------


def test_resume_sends_session_and_seq_and_drops_replayed_duplicates() -> None:
    shard = identified()
    delivered = [d.seq for d in of(shard.receive(dispatch("MESSAGE_CREATE", 2)), Dispatch)]
    delivered += [d.seq for d in of(shard.receive(dispatch("MESSAGE_CREATE", 3)), Dispatch)]
    shard.connection_closed(1006)
    connect(shard)
    actions = list(shard.receive(hello()))
    assert StageChange(ConnectionStage.HANDSHAKE, ConnectionStage.RESUMING) in actions
    [resume] = of(actions, Send)
    assert resume.payload == {"op": 6, "d": {"token": TOKEN, "session_id": "sess-1", "seq": 3}}
    # A server replaying a little too much (2, 3) must not make us deliver twice.
    for s in (2, 3, 4, 5):
        delivered += [d.seq for d in of(shard.receive(dispatch("MESSAGE_CREATE", s)), Dispatch)]
    actions = list(shard.receive(dispatch("RESUMED", 6)))
    assert SessionStarted("resume", "sess-1") in actions
    assert shard.stage is ConnectionStage.CONNECTED
    delivered += [d.seq for d in of(actions, Dispatch)]
    assert delivered == [2, 3, 4, 5, 6]
    assert shard.stale_dropped == 2


def test_saved_session_resumes_on_first_connection() -> None:
    shard = make_shard(resume=SessionState("saved", 41, RESUME_URL))
    assert shard.connect_url() == RESUME_URL + "/" + QUERY
    connect(shard)
    [resume] = of(shard.receive(hello()), Send)
    assert resume.payload["op"] == 6
    assert resume.payload["d"]["seq"] == 41


def test_live_seq_going_backwards_is_delivered_with_one_warning_and_a_gap_is_logged() -> None:
    # Outside a resume replay a non-increasing seq is the server's numbering (issue #14): deliver it,
    # as discord.py and hikari do, and warn once per connection.
    shard = identified()
    list(shard.receive(dispatch("A", 5)))
    assert shard.seq_gaps == 1
    actions = list(shard.receive(dispatch("A", 3)))
    assert [d.seq for d in of(actions, Dispatch)] == [3]
    assert len(of(actions, Log)) == 1
    assert shard.seq == 3
    assert [d.seq for d in of(shard.receive(dispatch("B", 3)), Dispatch)] == [3]
    assert shard.seq_regressions == 2 and shard.stale_dropped == 0


@pytest.mark.parametrize("bad", [2**63, 10**400, -1, "7", 7.0, True])
def test_seq_that_cannot_be_a_seq_is_delivered_without_one_and_never_echoed(bad: object) -> None:
    clock = Clock()
    shard = identified(clock)
    [d] = of(shard.receive(dispatch("A", bad)), Dispatch)
    assert d.seq is None
    assert shard.seq == 1
    [beat] = shard.tick(shard.next_heartbeat)
    assert beat.payload == {"op": 1, "d": 1}


def test_new_session_after_identify_restarts_seq_numbering() -> None:
    shard = identified()
    for s in range(2, 10):
        list(shard.receive(dispatch("A", s)))
    shard.receive({"op": 9, "d": False})
    connect(shard)
    list(shard.receive(hello()))
    shard.identify_payload()
    actions = list(shard.receive(ready(s=1, session_id="sess-2")))
    assert [d.seq for d in of(actions, Dispatch)] == [1]
    assert [d.seq for d in of(shard.receive(dispatch("A", 2)), Dispatch)] == [2]
    assert shard.session_id == "sess-2"


def test_connect_failure_falls_back_to_the_base_url_but_keeps_the_session() -> None:
    shard = identified()
    shard.connection_closed(1006)
    shard.begin_connect()
    shard.connect_failed()
    assert shard.connect_url() == BASE + QUERY
    assert shard.has_session


# A broken ``resume_gateway_url`` node must not hold a shard forever. A resume node that accepts the
# WebSocket but never sends HELLO (or never answers the RESUME) is not a connect *error*, so it used to
# be retried for ever: the session expired meanwhile and the shard never came back. After a connection
# that never became usable the shard resumes through the base url instead (Discord accepts RESUME there;
# twilight clears its resume url the same way). End to end: test_runner.py.


def resumed_shard(clock: Clock) -> Shard:
    shard = Shard(
        0,
        1,
        token=TOKEN,
        intents=GatewayIntents.GUILDS,
        gateway_url=BASE,
        hello_timeout=5.0,
        clock=clock,
        rng=random.Random(3),
    )
    shard.begin_connect()
    shard.connection_opened(clock.now)
    shard.receive({"op": 10, "d": {"heartbeat_interval": 1000}})
    shard.identify_payload()
    ready = {"session_id": "s1", "resume_gateway_url": RESUME_URL, "guilds": []}
    shard.receive({"op": 0, "t": "READY", "s": 1, "d": ready})
    assert shard.stage is ConnectionStage.CONNECTED
    shard.connection_closed(1006)
    assert shard.connect_url() == RESUME_URL + "/" + QUERY
    return shard


def test_no_hello_from_the_resume_node_resumes_through_the_base_url_next() -> None:
    clock = Clock()
    shard = resumed_shard(clock)
    shard.begin_connect()
    shard.connection_opened(clock.now)
    clock.now += 5.0
    [reconnect] = [a for a in shard.tick(clock.now) if isinstance(a, Reconnect)]
    assert reconnect.resume and reconnect.failure
    assert reconnect.url == BASE + QUERY
    assert shard.connect_url() == BASE + QUERY
    assert shard.has_session


def test_resume_node_closing_before_resumed_resumes_through_the_base_url_next() -> None:
    clock = Clock()
    shard = resumed_shard(clock)
    shard.begin_connect()
    shard.connection_opened(clock.now)
    shard.receive({"op": 10, "d": {"heartbeat_interval": 1000}})
    assert shard.stage is ConnectionStage.RESUMING
    [reconnect] = [a for a in shard.connection_closed(4000) if isinstance(a, Reconnect)]
    assert reconnect.resume
    assert reconnect.url == BASE + QUERY


def test_a_usable_connection_keeps_the_resume_url() -> None:
    clock = Clock()
    shard = resumed_shard(clock)
    shard.begin_connect()
    shard.connection_opened(clock.now)
    shard.receive({"op": 10, "d": {"heartbeat_interval": 1000}})
    shard.receive({"op": 0, "t": "RESUMED", "s": 2, "d": {}})
    [reconnect] = [a for a in shard.connection_closed(1006) if isinstance(a, Reconnect)]
    assert reconnect.url == RESUME_URL + "/" + QUERY


# -- liberal input --------------------------------------------------------------------------------------


def test_liberal_payloads_missing_keys_zero_seq_unknown_names() -> None:
    shard = make_shard()
    connect(shard)
    assert of(shard.receive({"op": 10, "d": {"heartbeat_interval": 1000}}), Identify)  # no s / t keys
    shard.identify_payload()
    # READY numbered 0, without shard, with extra junk keys.
    actions = list(shard.receive({"op": 0, "t": "READY", "s": 0, "d": {"session_id": "x", "_trace": [1]}}))
    assert [d.seq for d in of(actions, Dispatch)] == [0]
    assert shard.stage is ConnectionStage.CONNECTED
    assert [d.name for d in of(shard.receive(dispatch("SOMETHING_NEW_2030", 1)), Dispatch)] == [
        "SOMETHING_NEW_2030"
    ]
    # Non-dict d and a missing s are delivered as they are.
    [d] = of(shard.receive({"op": 0, "t": "WEIRD", "d": [1, 2]}), Dispatch)
    assert d.data == [1, 2] and d.seq is None
    assert shard.seq == 1


def test_junk_payloads_are_ignored_and_logged_a_bounded_number_of_times() -> None:
    shard = identified()
    junk = [[1, 2], "text", 5, None, {"op": "0"}, {"op": 2.0}, {"op": 99}, {"op": 10**40}, {"d": {}}]
    logs = []
    for payload in junk * 3:
        actions = list(shard.receive(payload))
        assert all(isinstance(a, Log) for a in actions)
        logs += actions
    assert 0 < len(logs) <= 5
    assert shard.stage is ConnectionStage.CONNECTED
    assert shard.ignored_payloads == len(junk) * 3


def test_ready_without_a_session_id_connects_but_cannot_resume() -> None:
    shard = make_shard()
    connect(shard)
    list(shard.receive(hello()))
    shard.identify_payload()
    list(shard.receive(dispatch("READY", 1, "not a dict")))
    assert shard.stage is ConnectionStage.CONNECTED
    [reconnect] = of(shard.connection_closed(4000), Reconnect)
    assert reconnect.resume is False


def test_hostile_resume_gateway_url_is_not_used() -> None:
    shard = make_shard()
    connect(shard)
    list(shard.receive(hello()))
    shard.identify_payload()
    list(shard.receive(dispatch("READY", 1, {"session_id": "s", "resume_gateway_url": "http://evil/?x=1"})))
    assert shard.connect_url() == BASE + QUERY
    assert shard.has_session


# -- operator requests --------------------------------------------------------------------------------------


def test_close_1000_ends_the_session_and_stops() -> None:
    shard = identified()
    actions = shard.close_requested(1000)
    assert of(actions, Stop) == [Stop(1000, "shutdown requested")]
    assert shard.session_state() is None


def test_close_with_other_code_reconnects_and_resumes() -> None:
    shard = identified()
    [reconnect] = of(shard.close_requested(4000), Reconnect)
    assert reconnect.resume is True and reconnect.close_code == 4000


def test_restart_resumes_unless_forced_to_identify() -> None:
    shard = identified()
    [reconnect] = of(shard.restart_requested(), Reconnect)
    assert reconnect.resume is True and reconnect.close_code not in (1000, 1001)
    assert shard.has_session
    [reconnect] = of(shard.restart_requested(force_identify=True), Reconnect)
    assert reconnect.resume is False
    assert reconnect.close_code == 1000  # ends the old session instead of leaving a ghost
    assert not shard.has_session


def test_decode_failure_reconnects_and_resumes() -> None:
    shard = identified()
    [reconnect] = of(shard.decode_failed("bad zstd"), Reconnect)
    assert reconnect.resume is True


def test_invalid_construction_is_refused() -> None:
    with pytest.raises(ValueError, match="not within"):
        Shard(3, 2, token=TOKEN, intents=1, gateway_url=BASE)
    with pytest.raises(ValueError, match="ws://"):
        Shard(0, 1, token=TOKEN, intents=1, gateway_url="http://example.com")
