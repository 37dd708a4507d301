"""``Shard.receive_frame`` reads only ``t``/``s``/``op`` of a payload's bytes and hands ``d`` on undecoded.

It must decide exactly as ``Shard.receive`` does for the decoded payload, decline (changing nothing)
whatever it cannot read with certainty, and a dispatch it makes must give the same ``data`` when read.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.shard import connect, make_shard
from test_shard_receive_dispatch import MAX_SEQ, ops, seqs, state

from shardtui.gateway.models import Dispatch, MalformedDispatchError, ShardId
from shardtui.gateway.shard import Shard

names = (
    st.sampled_from(["MESSAGE_CREATE", "TYPING_START", "READY", "RESUMED", "GUILD_CREATE"])
    # Quotes, backslashes, control and non-ASCII characters: escaped or multi-byte in JSON.
    | st.text(alphabet=st.sampled_from('AB_"\\\n\x01é€'), max_size=4)
    | st.none()
    | st.integers(0, 3)
)
bodies = st.none() | st.dictionaries(
    st.sampled_from(["op", "d", "s", "t", "x"]),
    st.integers(-(2**63), 2**63 - 1) | st.text(max_size=3),
    max_size=3,
)
#: Key orders: Discord's (t, s, op, d) most often, then others a server might use.
orders = st.sampled_from(
    [("t", "s", "op", "d")] * 3 + [("op", "s", "t", "d"), ("t", "s", "d", "op"), ("d", "t", "s", "op")]
)


def opened(seq: int | None) -> Shard:
    shard = make_shard(saved_seq=seq)
    connect(shard)
    return shard


def frame(fields: dict[str, Any], order: tuple[str, ...]) -> bytes:
    return orjson.dumps({key: fields[key] for key in order if key in fields})


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([None, 0, 5, MAX_SEQ - 2]),
    st.lists(
        st.tuples(
            st.fixed_dictionaries({"op": ops, "t": names, "s": seqs, "d": bodies})
            | st.fixed_dictionaries({"op": ops}, optional={"t": names, "s": seqs}),
            orders,
        ),
        max_size=25,
    ),
)
def test_reading_only_the_head_delivers_and_decides_as_receive(start: int | None, sequence: list) -> None:
    plain, fast = opened(start), opened(start)
    for fields, order in sequence:
        if type(fields.get("s")) is tuple:
            fields = {**fields, "s": (plain.seq or 0) + fields["s"][1]}
        raw = frame(fields, order)
        payload = orjson.loads(raw)
        expected = list(plain.receive(payload))
        before = state(fast)
        dispatch = fast.receive_frame(raw)
        if dispatch is None:
            assert state(fast) == before  # declined: nothing changed
            dispatch = fast.receive_dispatch(payload)
        got = [dispatch] if dispatch is not None else list(fast.receive(payload))
        assert got == expected
        assert state(fast) == state(plain)


def test_the_next_dispatch_keeps_its_d_as_the_bytes_it_came_in() -> None:
    shard = opened(5)
    raw = b'{"t":"MESSAGE_CREATE","s":6,"op":0,"d":{"id":"1","content":"a \\"quoted\\" \xc3\xa9"}}'
    dispatch = shard.receive_frame(raw)
    assert dispatch is not None
    assert (dispatch.shard_id, dispatch.name, dispatch.seq) == (ShardId(0), "MESSAGE_CREATE", 6)
    assert dispatch.raw_data == b'{"id":"1","content":"a \\"quoted\\" \xc3\xa9"}'
    assert "undecoded" in repr(dispatch)
    assert dispatch.data == {"id": "1", "content": 'a "quoted" é'}
    assert dispatch.data is dispatch.data  # decoded once
    assert dispatch == Dispatch(ShardId(0), "MESSAGE_CREATE", 6, {"id": "1", "content": 'a "quoted" é'})
    assert shard.seq == 6


@pytest.mark.parametrize(
    "raw",
    [
        b'{"t":"MESSAGE_CREATE","s":6,"op":0,"d":{}} ',  # trailing whitespace: the decoder's call
        b'{"t":"MESSAGE_CREATE","s":7,"op":0,"d":{}}',  # a gap: receive logs it
        b'{"t":"MESSAGE_CREATE","s":5,"op":0,"d":{}}',  # stale
        b'{"t":"RESUMED","s":6,"op":0,"d":{}}',  # starts a session
        b'{"t":"MESSAGE_\\u0043REATE","s":6,"op":0,"d":{}}',  # an escaped name
        b'{"t":"MESSAGE_CREATE","s":6,"op":1,"d":{"x":1,"op":0,"d":2}}',  # "op":0 only inside d
        b'{"t":"A","x":"B","s":6,"op":0,"d":{}}',  # another key between t and s
        b'{"t":"MESSAGE_CREATE","s":+6,"op":0,"d":{}}',
        b'{"t":"MESSAGE_CREATE","s":00000000000000000000006,"op":0,"d":{}}',
        b'{"t":"MESSAGE_CREATE","s":null,"op":0,"d":{}}',
        b'{"t":"MESSAGE_CREATE","s":1000000000000000000000000000006,"op":0,"d":{}}',  # past int64
        b'{"op":0,"s":6,"t":"MESSAGE_CREATE","d":{}}',  # another order: decoded and taken the usual way
        b'{"t":"\xff","s":6,"op":0,"d":{}}',  # not UTF-8
    ],
)
def test_anything_not_certain_is_declined_and_changes_nothing(raw: bytes) -> None:
    shard = opened(5)
    before = state(shard)
    assert shard.receive_frame(raw) is None
    assert state(shard) == before


def test_no_session_yet_means_the_usual_path() -> None:
    shard = opened(None)
    assert shard.receive_frame(b'{"t":"MESSAGE_CREATE","s":1,"op":0,"d":{}}') is None


def test_a_d_that_is_not_json_is_delivered_and_fails_when_read_naming_the_event() -> None:
    shard = opened(5)
    dispatch = shard.receive_frame(b'{"t":"MESSAGE_CREATE","s":6,"op":0,"d":{"id":}')
    assert dispatch is not None and dispatch.name == "MESSAGE_CREATE"
    with pytest.raises(
        MalformedDispatchError, match=r"MESSAGE_CREATE \(seq 6\) with a d that is not valid JSON"
    ):
        _ = dispatch.data
