"""Hostile input to the client: random and mutated payloads, frames and event orders.

Whatever a gateway sends, the Shard must not raise, must stay in a defined ConnectionStage, must only
ever ask to send well-formed commands, and must never deliver a seq twice within a session.
"""

from __future__ import annotations

import random
import zlib
from urllib.parse import parse_qs, urlsplit

import orjson
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shardtui.gateway.compression import make_inflater
from shardtui.gateway.errors import DecompressionError
from shardtui.gateway.models import ConnectionStage, Dispatch
from shardtui.gateway.ratelimit import encode_command
from shardtui.gateway.shard import Send, SessionState, Shard

TOKEN = "fuzz.token.value"
HUGE = st.sampled_from([2**63, 2**64 + 1, -(2**63), 10**30, 10**400, -1])

json_scalars = st.none() | st.booleans() | st.integers() | HUGE | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
ops = st.sampled_from([0, 1, 7, 9, 10, 11]) | st.integers(-5, 50) | HUGE | json_scalars
seqs = st.none() | st.integers(-3, 40) | HUGE | st.text(max_size=3) | st.floats() | st.booleans()
names = st.sampled_from(["READY", "RESUMED", "GUILD_CREATE", "MESSAGE_CREATE", "", "X" * 300]) | json_scalars
hello_data = (
    st.fixed_dictionaries({"heartbeat_interval": json_scalars | st.integers(0, 100_000)}) | json_values
)
ready_data = st.fixed_dictionaries(
    {
        "session_id": st.text(max_size=10) | json_scalars,
        "resume_gateway_url": st.sampled_from(["wss://r.example", "ws://x", "nope", "wss://", ""])
        | json_scalars,
    },
    optional={"guilds": json_values, "shard": json_values},
)


@st.composite
def payloads(draw: st.DrawFn) -> object:
    shape = draw(st.integers(0, 7))
    if shape >= 6:
        return {"op": 0, "t": draw(names), "s": draw(seqs), "d": draw(json_values)}
    if shape == 0:
        return draw(json_values)  # anything at all, often not even a dict
    if shape == 1:
        return {"op": 10, "d": draw(hello_data)}
    if shape == 2:
        return {"op": 0, "t": "READY", "s": draw(seqs), "d": draw(ready_data)}
    payload: dict = {"op": draw(ops)}
    if draw(st.booleans()):
        payload["d"] = draw(json_values)
    if draw(st.booleans()):
        payload["s"] = draw(seqs)
    if draw(st.booleans()):
        payload["t"] = draw(names)
    return payload


events = st.one_of(
    st.tuples(st.just("receive"), payloads()),
    st.tuples(st.just("tick"), st.floats(0, 200, allow_nan=False)),
    st.tuples(
        st.just("closed"), st.none() | st.integers(0, 5000) | st.sampled_from([4004, 4007, 4009, 4014])
    ),
    st.tuples(st.just("open"), st.none()),
    st.tuples(st.just("identify"), st.none()),
    st.tuples(st.just("close_requested"), st.sampled_from([1000, 1001, 4000, 3000])),
    st.tuples(st.just("restart"), st.booleans()),
    st.tuples(st.just("decode_failed"), st.none()),
)


def check_send(action: Send) -> None:
    # Strict in what we send: every command is a JSON object with an int op that fits Discord's limit.
    assert isinstance(action.payload, dict)
    assert type(action.payload["op"]) is int
    encode_command(action.payload)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, max_size=40), st.booleans())
def test_shard_survives_any_sequence_of_hostile_events(sequence: list, saved: bool) -> None:
    clock_now = [0.0]
    shard = Shard(
        0,
        1,
        token=TOKEN,
        intents=513,
        gateway_url="wss://gateway.example/",
        resume=SessionState("saved", 3, "wss://resume.example") if saved else None,
        clock=lambda: clock_now[0],
        rng=random.Random(1),
    )
    shard.begin_connect()
    shard.connection_opened(0.0)
    last_seq: int | None = None
    for kind, value in sequence:
        # Inside a resume replay a seq at or below the last one is a duplicate and must never be
        # delivered; outside one (issue #14) it is the server's numbering and is delivered.
        replaying = shard.stage is ConnectionStage.RESUMING
        if kind == "receive":
            actions = list(shard.receive(value))
        elif kind == "tick":
            clock_now[0] = max(clock_now[0], value)
            actions = shard.tick(clock_now[0])
        elif kind == "closed":
            actions = shard.connection_closed(value)
        elif kind == "open":
            actions = shard.begin_connect() + shard.connection_opened(clock_now[0])
        elif kind == "identify":
            payload = shard.identify_payload()
            actions = [Send(payload)] if payload is not None else []
        elif kind == "close_requested":
            actions = shard.close_requested(value)
        elif kind == "restart":
            actions = shard.restart_requested(value)
        else:
            actions = shard.decode_failed("fuzz")
        assert isinstance(shard.stage, ConnectionStage)
        for action in actions:
            if isinstance(action, Send):
                check_send(action)
            elif isinstance(action, Dispatch):
                assert isinstance(action.name, str)
                if action.name == "READY":
                    last_seq = None
                if action.seq is not None:
                    if replaying and action.name != "RESUMED":
                        assert last_seq is None or action.seq > last_seq, "a replayed seq was delivered twice"
                    if action.name != "RESUMED" or last_seq is None or action.seq > last_seq:
                        last_seq = action.seq
        if shard.seq is None:  # the session was dropped: a new one numbers from the start
            last_seq = None
        url = shard.connect_url()
        assert url.startswith(("ws://", "wss://"))
        assert parse_qs(urlsplit(url).query)["v"] == ["10"]


def _zlib_stream(messages: list[bytes]) -> list[bytes]:
    c = zlib.compressobj()
    return [c.compress(m) + c.flush(zlib.Z_SYNC_FLUSH) for m in messages]


def _zstd_stream(messages: list[bytes]) -> list[bytes]:
    c = zstandard.ZstdCompressor().compressobj()
    return [c.compress(m) + c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK) for m in messages]


@st.composite
def mutated_frames(draw: st.DrawFn, compression: str) -> list[bytes]:
    messages = [
        orjson.dumps({"op": 0, "s": i, "t": "X", "d": {"i": i}}) for i in range(draw(st.integers(1, 4)))
    ]
    frames = _zlib_stream(messages) if compression == "zlib-stream" else _zstd_stream(messages)
    out = []
    for frame in frames:
        how = draw(st.integers(0, 4))
        if how == 1 and frame:
            i = draw(st.integers(0, len(frame) - 1))
            frame = frame[:i] + bytes([frame[i] ^ draw(st.integers(1, 255))]) + frame[i + 1 :]
        elif how == 2:
            frame = frame[: draw(st.integers(0, len(frame)))]
        elif how == 3:
            frame = draw(st.binary(max_size=64))
        out.append(frame)
    return out


def _feed_like_the_runner(compression: str, frames: list[bytes]) -> None:
    inflater = make_inflater(compression)
    shard = Shard(0, 1, token=TOKEN, intents=1, gateway_url="wss://g.example/", rng=random.Random(2))
    shard.begin_connect()
    shard.connection_opened(0.0)
    for frame in frames:
        try:
            data = inflater.feed(frame)
            if data is None:
                continue
            payload = orjson.loads(data)
        except (DecompressionError, orjson.JSONDecodeError):
            shard.decode_failed("fuzz")
            return  # the runner drops the connection here
        list(shard.receive(payload))
        assert isinstance(shard.stage, ConnectionStage)


@settings(max_examples=200, deadline=None)
@given(mutated_frames("zlib-stream"))
def test_zlib_inflater_raises_only_decompression_error(frames: list[bytes]) -> None:
    _feed_like_the_runner("zlib-stream", frames)


@settings(max_examples=200, deadline=None)
@given(mutated_frames("zstd-stream"))
def test_zstd_inflater_raises_only_decompression_error(frames: list[bytes]) -> None:
    _feed_like_the_runner("zstd-stream", frames)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=6), st.sampled_from(["zlib-stream", "zstd-stream", "none"]))
def test_random_bytes_never_escape_as_anything_but_decode_errors(
    frames: list[bytes], compression: str
) -> None:
    _feed_like_the_runner(compression, frames)
