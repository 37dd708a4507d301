"""ServerConnection, sans-I/O: fed payloads and times, it answers with events and Discord's closes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from shardtui.gateway.protocol import CloseCode, Opcode
from shardtui.server import (
    AuthState,
    CloseConnection,
    CommandReceived,
    HeartbeatReceived,
    IdentifyReceived,
    MemberRequest,
    ResumeReceived,
    SendPayload,
    ServerConnection,
    VoiceStateRequest,
)

IDENTIFY: dict[str, Any] = {
    "token": "Bot secret-token",
    "intents": 513,
    "properties": {"os": "linux", "browser": "test", "device": "test"},
    "shard": [1, 4],
}


def conn(**kwargs: Any) -> ServerConnection:
    return ServerConnection(heartbeat_interval_ms=1000, **kwargs)


def msg(op: int, d: Any = None) -> bytes:
    return orjson.dumps({"op": op, "d": d})


def closed_with(events: list[Any]) -> int:
    assert len(events) == 1 and isinstance(events[0], CloseConnection), events
    return events[0].code


def authenticated(c: ServerConnection | None = None, now: float = 0.0) -> ServerConnection:
    c = c or conn()
    (event,) = c.receive(msg(Opcode.IDENTIFY, IDENTIFY), now)
    assert isinstance(event, IdentifyReceived)
    c.accept(now)
    return c


def test_hello_carries_the_interval_and_extra_fields() -> None:
    assert conn().hello(_trace=["x"]) == {
        "t": None,
        "s": None,
        "op": Opcode.HELLO,
        "d": {"heartbeat_interval": 1000, "_trace": ["x"]},
    }


def test_heartbeat_is_answered_with_op_11_and_reported_with_its_seq() -> None:
    events = conn().receive(msg(Opcode.HEARTBEAT, 7), 0.0)
    assert events[0] == HeartbeatReceived(7)
    assert isinstance(events[1], SendPayload) and events[1].payload["op"] == Opcode.HEARTBEAT_ACK


def test_without_auto_ack_the_caller_answers_heartbeats() -> None:
    assert conn(auto_ack=False).receive(msg(Opcode.HEARTBEAT), 0.0) == [HeartbeatReceived(None)]


def test_text_and_binary_messages_are_both_decoded() -> None:
    c = conn()
    assert c.receive(msg(Opcode.HEARTBEAT).decode(), 0.0)[0] == HeartbeatReceived(None)
    assert c.receive(msg(Opcode.HEARTBEAT), 0.0)[0] == HeartbeatReceived(None)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"{not json", CloseCode.DECODE_ERROR),
        (b"[1, 2]", CloseCode.DECODE_ERROR),
        (orjson.dumps({"op": 1, "d": "x" * 5000}), CloseCode.DECODE_ERROR),
        (orjson.dumps({"op": 99, "d": None}), CloseCode.UNKNOWN_OPCODE),
        (orjson.dumps({"op": 11, "d": None}), CloseCode.UNKNOWN_OPCODE),
        (orjson.dumps({"op": True, "d": None}), CloseCode.UNKNOWN_OPCODE),
        (orjson.dumps({"op": 1, "d": "seq"}), CloseCode.UNKNOWN_OPCODE),
    ],
)
def test_bad_payloads_close_with_discords_codes(data: bytes, code: int) -> None:
    c = conn()
    assert closed_with(c.receive(data, 0.0)) == code
    assert c.state is AuthState.CLOSED
    assert c.receive(msg(Opcode.HEARTBEAT), 0.0) == []  # nothing is processed after a close


def test_commands_before_authentication_close_4003() -> None:
    assert closed_with(conn().receive(msg(Opcode.PRESENCE_UPDATE, {"status": "idle"}), 0.0)) == 4003


def test_a_second_identify_closes_4005_also_while_the_first_is_pending() -> None:
    c = conn()
    c.receive(msg(Opcode.IDENTIFY, IDENTIFY), 0.0)
    assert c.state is AuthState.PENDING
    assert closed_with(c.receive(msg(Opcode.IDENTIFY, IDENTIFY), 0.0)) == 4005
    c = authenticated()
    assert (
        closed_with(c.receive(msg(Opcode.RESUME, {"token": "t", "session_id": "s", "seq": 1}), 0.0)) == 4005
    )


def test_after_reset_the_client_may_identify_again() -> None:
    c = conn()
    c.receive(msg(Opcode.IDENTIFY, IDENTIFY), 0.0)
    c.reset()  # e.g. the backend answered op 9
    assert isinstance(c.receive(msg(Opcode.IDENTIFY, IDENTIFY), 0.0)[0], IdentifyReceived)


def test_rate_limit_counts_heartbeats_and_closes_the_121st_message_4008() -> None:
    c = authenticated()
    for i in range(119):  # the IDENTIFY was the first
        assert not any(isinstance(e, CloseConnection) for e in c.receive(msg(Opcode.HEARTBEAT), i * 0.1))
    assert closed_with(c.receive(msg(Opcode.HEARTBEAT), 12.0)) == CloseCode.RATE_LIMITED


def test_rate_limit_window_slides() -> None:
    c = authenticated()
    for i in range(119):
        c.receive(msg(Opcode.HEARTBEAT), 1.0 + i * 0.01)
    # 60 s after the identify, its slot is free again.
    assert isinstance(c.receive(msg(Opcode.HEARTBEAT), 60.0)[0], HeartbeatReceived)


def test_identify_is_parsed_with_discords_defaults_and_the_token_never_in_its_repr() -> None:
    c = conn()
    d = {
        **IDENTIFY,
        "large_threshold": 1000,
        "compress": False,
        "presence": {"status": "dnd", "game": {"name": "chess", "type": 0}, "afk": False, "since": None},
    }
    (event,) = c.receive(msg(Opcode.IDENTIFY, d), 0.0)
    assert isinstance(event, IdentifyReceived)
    request = event.request
    assert request.token == "Bot secret-token"
    assert (request.shard, request.intents, request.large_threshold) == ((1, 4), 513, 250)
    assert request.presence == {
        "status": "dnd",
        "activities": [{"name": "chess", "type": 0}],
        "afk": False,
        "since": None,
    }
    assert "secret" not in repr(request) and "secret" not in repr(event)
    assert c.identify_shard == (1, 4)


def test_identify_without_shard_leaves_it_to_the_backend() -> None:
    d = {k: v for k, v in IDENTIFY.items() if k != "shard"}
    (event,) = conn().receive(msg(Opcode.IDENTIFY, d), 0.0)
    assert isinstance(event, IdentifyReceived) and event.request.shard is None


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"token": 5}, CloseCode.AUTHENTICATION_FAILED),
        ({"token": ""}, CloseCode.AUTHENTICATION_FAILED),
        ({"properties": None}, CloseCode.UNKNOWN_OPCODE),
        ({"shard": [4, 4]}, CloseCode.INVALID_SHARD),
        ({"shard": [0]}, CloseCode.INVALID_SHARD),
        ({"shard": ["0", "1"]}, CloseCode.INVALID_SHARD),
        ({"intents": "513"}, CloseCode.INVALID_INTENTS),
        ({"intents": 1 << 40}, CloseCode.INVALID_INTENTS),
        ({"presence": {"status": "busy"}}, CloseCode.UNKNOWN_OPCODE),
        ({"large_threshold": "50"}, CloseCode.UNKNOWN_OPCODE),
        ({"compress": "yes"}, CloseCode.UNKNOWN_OPCODE),
    ],
)
def test_bad_identify_fields_close_with_discords_codes(change: dict[str, Any], code: int) -> None:
    assert closed_with(conn().receive(msg(Opcode.IDENTIFY, {**IDENTIFY, **change}), 0.0)) == code


def test_a_refused_identify_still_tells_which_shard_it_named() -> None:
    c = conn()
    closed_with(c.receive(msg(Opcode.IDENTIFY, {**IDENTIFY, "intents": -1}), 0.0))
    assert c.identify_shard == (1, 4)


def test_resume_is_parsed_and_a_null_seq_reads_as_zero() -> None:
    (event,) = conn().receive(msg(Opcode.RESUME, {"token": "t", "session_id": "abc", "seq": None}), 0.0)
    assert isinstance(event, ResumeReceived)
    assert (event.request.session_id, event.request.seq) == ("abc", 0)
    assert closed_with(conn().receive(msg(Opcode.RESUME, {"token": "t", "session_id": 5}), 0.0)) == 4001


def test_commands_are_shape_checked_and_parsed() -> None:
    c = authenticated()
    (event,) = c.receive(
        msg(Opcode.REQUEST_GUILD_MEMBERS, {"guild_id": "81", "query": "", "limit": 0, "nonce": "n1"}), 1.0
    )
    assert isinstance(event, CommandReceived) and isinstance(event.parsed, MemberRequest)
    assert (event.parsed.guild_id, event.parsed.all_members, event.parsed.nonce) == (81, True, "n1")
    (event,) = c.receive(msg(Opcode.VOICE_STATE_UPDATE, {"guild_id": 81, "channel_id": "9"}), 1.0)
    assert event.parsed == VoiceStateRequest(guild_id=81, channel_id=9, self_mute=False, self_deaf=False)
    (event,) = c.receive(msg(Opcode.REQUEST_SOUNDBOARD_SOUNDS, {"guild_ids": ["1", 2]}), 1.0)
    assert event.parsed == [1, 2]
    (event,) = c.receive(msg(Opcode.REQUEST_CHANNEL_INFO, {"guild_id": "3"}), 1.0)
    assert event.parsed == 3


@pytest.mark.parametrize(
    ("op", "d"),
    [
        (Opcode.REQUEST_GUILD_MEMBERS, {"guild_id": "81"}),
        (Opcode.REQUEST_GUILD_MEMBERS, {"guild_id": "81", "query": "", "user_ids": ["1"]}),
        (Opcode.REQUEST_GUILD_MEMBERS, {"guild_id": "81", "user_ids": ["x"]}),
        (Opcode.VOICE_STATE_UPDATE, {"channel_id": "9"}),
        (Opcode.VOICE_STATE_UPDATE, {"guild_id": 1, "channel_id": "nine"}),
        (Opcode.PRESENCE_UPDATE, {"status": "online", "activities": [{"type": 0}]}),
        (Opcode.REQUEST_SOUNDBOARD_SOUNDS, {"guild_ids": "1"}),
        (Opcode.REQUEST_CHANNEL_INFO, {}),
    ],
)
def test_malformed_commands_close_4001(op: int, d: Any) -> None:
    assert closed_with(authenticated().receive(msg(op, d), 1.0)) == CloseCode.UNKNOWN_OPCODE


def test_a_client_that_stops_heartbeating_is_closed_and_one_that_heartbeats_is_not() -> None:
    c = authenticated(conn(heartbeat_timeout=1.5), now=10.0)
    assert c.heartbeat_deadline() == 11.5
    assert c.tick(11.0) == []
    c.receive(msg(Opcode.HEARTBEAT), 11.0)
    assert c.heartbeat_deadline() == 12.5
    assert c.tick(12.0) == []
    assert closed_with(c.tick(12.6)) == CloseCode.UNKNOWN_ERROR
    assert c.state is AuthState.CLOSED


def test_no_heartbeat_deadline_before_authentication_or_without_a_timeout() -> None:
    assert conn(heartbeat_timeout=1.0).tick(100.0) == []
    assert authenticated(conn()).tick(100.0) == []
