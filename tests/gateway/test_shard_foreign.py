"""The sans-I/O Shard against gateways that deviate from Discord (issue #14, points 2 and 3).

A RESUMED that repeats the last seq must start the session, not be dropped as a duplicate; a resume
that goes nowhere must fall back to IDENTIFY instead of resuming for ever; outside a replay a seq that
does not increase is delivered with one warning; a gateway url keeps its path and query.
"""

from __future__ import annotations

import logging

import pytest
from support.shard import Clock, connect, dispatch, hello, identified, make_shard, of

from shardtui.gateway.models import ConnectionStage, Dispatch
from shardtui.gateway.protocol import gateway_query
from shardtui.gateway.shard import (
    Identify,
    Log,
    Reconnect,
    Send,
    SessionStarted,
    SessionState,
    Shard,
    with_gateway_query,
)

ZSTD_QUERY = gateway_query(10, "zstd-stream")


def resuming(clock: Clock, *, seq: int = 10, resume_url: str | None = None, **kwargs) -> Shard:
    """A shard restored from a saved session that has just sent its RESUME."""
    shard = make_shard(clock, resume=SessionState("saved", seq, resume_url), **kwargs)
    connect(shard, clock.now)
    [resume] = of(shard.receive(hello()), Send)
    assert resume.payload["op"] == 6 and resume.payload["d"]["seq"] == seq
    assert shard.stage is ConnectionStage.RESUMING
    return shard


def seqs(actions) -> list[tuple[str, int | None]]:
    return [(d.name, d.seq) for d in of(actions, Dispatch)]


# -- point 2: RESUMED, replays, fallback to IDENTIFY ------------------------------------------------


def test_resumed_repeating_the_last_seq_starts_the_session() -> None:
    shard = resuming(Clock(), seq=10)
    actions = list(shard.receive(dispatch("RESUMED", 10)))
    assert seqs(actions) == [("RESUMED", 10)]
    assert of(actions, SessionStarted) == [SessionStarted("resume", "saved")]
    assert shard.stage is ConnectionStage.CONNECTED
    assert shard.seq == 10
    # Live traffic continues from there, through the fast path.
    assert shard.receive_dispatch(dispatch("MESSAGE_CREATE", 11)) is not None


def test_resumed_numbered_below_the_replay_does_not_move_the_seq_back() -> None:
    shard = resuming(Clock(), seq=10)
    shard.receive(dispatch("MESSAGE_CREATE", 11))
    shard.receive(dispatch("MESSAGE_CREATE", 12))
    assert seqs(shard.receive(dispatch("RESUMED", 10))) == [("RESUMED", 10)]
    assert shard.stage is ConnectionStage.CONNECTED
    assert shard.seq == 12


def test_duplicates_inside_a_replay_are_dropped_and_new_events_delivered_in_order() -> None:
    shard = resuming(Clock(), seq=10)
    delivered: list[tuple[str, int | None]] = []
    for s in (9, 10, 11, 11, 12, 8, 13):
        delivered += seqs(shard.receive(dispatch("MESSAGE_CREATE", s)))
    delivered += seqs(shard.receive(dispatch("RESUMED", 13)))
    assert delivered == [
        ("MESSAGE_CREATE", 11),
        ("MESSAGE_CREATE", 12),
        ("MESSAGE_CREATE", 13),
        ("RESUMED", 13),
    ]
    assert shard.stale_dropped == 4
    assert shard.seq_regressions == 0


def test_outside_a_replay_non_increasing_seqs_are_delivered_with_one_warning_per_connection() -> None:
    shard = identified()
    shard.receive(dispatch("A", 2))
    logs: list[Log] = []
    delivered = []
    for s in (2, 2, 1):
        actions = list(shard.receive(dispatch("A", s)))
        logs += of(actions, Log)
        delivered += seqs(actions)
    assert delivered == [("A", 2), ("A", 2), ("A", 1)]
    assert len(logs) == 1 and logs[0].level == logging.WARNING
    assert shard.seq_regressions == 3 and shard.stale_dropped == 0
    # A new connection warns again (once).
    shard.connection_closed(1006)
    connect(shard)
    shard.receive(hello())
    shard.receive(dispatch("RESUMED", 1))
    logs = []
    for s in (1, 1):
        logs += of(shard.receive(dispatch("B", s)), Log)
    assert len(logs) == 1


def test_a_resume_that_times_out_without_progress_identifies_next() -> None:
    clock = Clock()
    shard = resuming(clock, setup_timeout=5.0, resume_url="wss://resume.gateway.test")
    clock.now += 5.0
    actions = shard.tick(clock.now)
    [reconnect] = of(actions, Reconnect)
    assert reconnect.resume is False
    assert reconnect.close_code == 1000  # ends the old session on the server's side
    assert reconnect.url == "ws://gateway.test/" + ZSTD_QUERY
    assert not shard.has_session
    connect(shard, clock.now)
    assert of(shard.receive(hello()), Identify) == [Identify()]
    assert shard.stage is ConnectionStage.IDENTIFYING


def test_a_resume_closed_on_the_base_url_identifies_next() -> None:
    # No resume url (a foreign gateway's READY may lack one): the base url was the only place to resume.
    shard = resuming(Clock(), seq=10)
    [reconnect] = of(shard.connection_closed(4000), Reconnect)
    assert reconnect.resume is False
    assert not shard.has_session


def test_a_resume_that_fails_on_the_resume_url_tries_the_base_url_once_then_identifies() -> None:
    clock = Clock()
    shard = resuming(clock, seq=10, resume_url="wss://resume.gateway.test")
    [first] = of(shard.connection_closed(4000), Reconnect)
    assert first.resume is True and first.url == "ws://gateway.test/" + ZSTD_QUERY
    connect(shard, clock.now)
    assert of(shard.receive(hello()), Send)[0].payload["op"] == 6
    [second] = of(shard.connection_closed(4000), Reconnect)
    assert second.resume is False
    assert "new session" in second.reason


def test_a_resume_whose_replay_made_progress_resumes_again() -> None:
    shard = resuming(Clock(), seq=10)
    shard.receive(dispatch("MESSAGE_CREATE", 11))
    [reconnect] = of(shard.connection_closed(1006), Reconnect)
    assert reconnect.resume is True
    assert shard.seq == 11


# -- point 3: the advertised url keeps its path and query ------------------------------------------


@pytest.mark.parametrize(
    ("advertised", "expected"),
    [
        ("wss://gateway.discord.gg/", "wss://gateway.discord.gg/" + ZSTD_QUERY),
        ("wss://gateway-us-east1-c.discord.gg", "wss://gateway-us-east1-c.discord.gg/" + ZSTD_QUERY),
        ("ws://127.0.0.1:3001/gateway", "ws://127.0.0.1:3001/gateway" + ZSTD_QUERY),
        ("ws://127.0.0.1:3001/gateway/", "ws://127.0.0.1:3001/gateway/" + ZSTD_QUERY),
        (
            "wss://proxy.test/gw?region=eu&v=9&compress=zlib-stream#frag",
            "wss://proxy.test/gw?region=eu&" + ZSTD_QUERY[1:],
        ),
        ("wss://proxy.test/gw?encoding=etf", "wss://proxy.test/gw" + ZSTD_QUERY),
    ],
)
def test_connect_url_keeps_the_advertised_path_and_query(advertised: str, expected: str) -> None:
    assert with_gateway_query(advertised, ZSTD_QUERY) == expected
    assert make_shard(gateway_url=advertised).connect_url() == expected


def test_resume_gateway_url_keeps_its_path_too() -> None:
    shard = make_shard(resume=SessionState("saved", 3, "ws://127.0.0.1:3001/gateway?node=2"))
    assert shard.connect_url() == "ws://127.0.0.1:3001/gateway?node=2&" + ZSTD_QUERY[1:]
    ready = dispatch("READY", 1, {"session_id": "s", "resume_gateway_url": "ws://10.0.0.1/resume"})
    shard = identified()
    shard.receive(ready)
    shard.connection_closed(1006)
    assert shard.connect_url() == "ws://10.0.0.1/resume" + ZSTD_QUERY
