"""``Shard.receive_dispatch`` (the runner's fast path for op 0) must decide exactly as ``Shard.receive``.

Two shards get the same payloads: one only through ``receive``, the other through ``receive_dispatch`` with
``receive`` for whatever it declines (as the runner does). What each delivers and its state afterwards
must be the same.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from support.shard import connect, make_shard

from shardtui.gateway.models import Dispatch, ShardId
from shardtui.gateway.shard import Shard

MAX_SEQ = 2**63 - 1
names = (
    st.sampled_from(["MESSAGE_CREATE", "TYPING_START", "READY", "RESUMED", "GUILD_CREATE"])
    | st.none()
    | st.integers(0, 3)
)
#: ("next", k): the shard's seq + k when the payload is fed, so in-order dispatches are common.
seqs = (
    st.tuples(st.just("next"), st.integers(-1, 2))
    | st.tuples(st.just("next"), st.just(1))
    | st.integers(0, 12)
    | st.sampled_from([MAX_SEQ - 1, MAX_SEQ, MAX_SEQ + 1])
    | st.none()
    | st.booleans()
    | st.floats(0, 12)
    | st.text(max_size=2)
)
ops = st.just(0) | st.sampled_from([False, 0.0, 1, 11, "0", None])
payloads = st.one_of(
    st.fixed_dictionaries(
        {
            "op": ops,
            "t": names,
            "s": seqs,
            "d": st.none() | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        }
    ),
    st.fixed_dictionaries({"op": ops}, optional={"t": names, "s": seqs}),
    st.none() | st.lists(st.integers(), max_size=2),
)


def opened(seq: int | None) -> Shard:
    """A shard whose connection just opened, restored from a saved session at ``seq`` (None: none)."""
    shard = make_shard(saved_seq=seq)
    connect(shard)
    return shard


def state(shard: Shard) -> tuple:
    return (
        shard.seq,
        shard.stage,
        shard.session_id,
        shard.stale_dropped,
        shard.seq_gaps,
        shard.ignored_payloads,
    )


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([None, 0, 5, MAX_SEQ - 2]), st.lists(payloads, max_size=25))
def test_fast_path_delivers_and_decides_as_receive(start: int | None, sequence: list) -> None:
    plain, fast = opened(start), opened(start)
    for payload in sequence:
        if type(payload) is dict and type(payload.get("s")) is tuple:
            payload = {**payload, "s": (plain.seq or 0) + payload["s"][1]}
        if type(payload) is dict and type(payload.get("s")) is tuple:
            payload = {**payload, "s": (plain.seq or 0) + payload["s"][1]}
        expected = list(plain.receive(payload))
        dispatch = fast.receive_dispatch(payload)
        got = [dispatch] if dispatch is not None else list(fast.receive(payload))
        assert [repr(a) for a in got] == [repr(a) for a in expected]
        assert got == expected
        assert state(fast) == state(plain)


def test_fast_path_takes_the_next_dispatch_and_declines_everything_else() -> None:
    shard = opened(5)
    taken = shard.receive_dispatch({"op": 0, "t": "MESSAGE_CREATE", "s": 6, "d": {"id": "1"}})
    assert taken == Dispatch(ShardId(0), "MESSAGE_CREATE", 6, {"id": "1"})
    assert shard.seq == 6
    for declined in (
        {"op": 0, "t": "MESSAGE_CREATE", "s": 6, "d": {}},  # stale: receive drops and counts it
        {"op": 0, "t": "MESSAGE_CREATE", "s": 9, "d": {}},  # a gap: receive logs it
        {"op": 0, "t": "RESUMED", "s": 7, "d": {}},  # starts a session
        {"op": 0, "t": None, "s": 7, "d": {}},
        {"op": 11},
    ):
        assert shard.receive_dispatch(declined) is None
        assert shard.seq == 6


def test_a_seq_past_int64_is_left_to_receive() -> None:
    # Discord's seqs are int64: receive delivers such a dispatch without a seq and keeps the last one.
    shard = opened(MAX_SEQ)
    payload = {"op": 0, "t": "MESSAGE_CREATE", "s": MAX_SEQ + 1, "d": {}}
    assert shard.receive_dispatch(payload) is None
    assert shard.receive(payload) == [Dispatch(ShardId(0), "MESSAGE_CREATE", None, {})]
    assert shard.seq == MAX_SEQ
