"""Random interleavings of upstream events, reads, dropped sockets, resumes (also over a live socket) and
slow clients, with tiny bounds: a client never sees an event twice or out of order, its seqs are
consecutive, and it never misses one unless it was told so (op 9 or a refused RESUME), after which it
identifies again. Now and then the upstream session is replaced (op 9 for everyone)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from hub_helpers import Upstream, make_hub
from hypothesis import given, settings
from hypothesis import strategies as st

from shardtui.proxy import Link, LinkEnd, ShardHub, Snapshot

OPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "publish",
                "publish",
                "publish",
                "read",
                "read_one",
                "drop",
                "resume",
                "resume_live",
                "new_upstream",
            ]
        ),
        st.integers(0, 2),
    ),
    max_size=80,
)


@dataclass
class Client:
    hub: ShardHub
    link: Link | None = None
    session_id: str = ""
    last_seq: int = 0
    #: Event ids published while the current session existed, and those it received.
    expected: list[int] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    told_invalid: bool = False

    def identify(self) -> None:
        self.link = self.hub.open_session()
        self.hub.begin(self.link, Snapshot({"user": {"id": "1"}}, []))
        self.session_id = self.link.session.session_id
        self.last_seq = 0
        self.expected, self.received = [], []

    def take(self, frames: list[bytes]) -> None:
        for frame in frames:
            if frame.startswith(b'{"t":null'):
                assert orjson.loads(frame)["op"] == 9
                self.told_invalid = True
                continue
            payload = orjson.loads(frame)
            assert payload["s"] == self.last_seq + 1, (payload["s"], self.last_seq)
            self.last_seq = payload["s"]
            if payload["t"] == "MESSAGE_CREATE":
                self.received.append(int(payload["d"]["id"]))

    def end_of_session(self) -> None:
        """The client was told its session is gone: what it got must be an unbroken prefix."""
        assert self.received == self.expected[: len(self.received)]
        self.told_invalid = False
        self.identify()

    async def read(self, max_frames: int | None = None) -> None:
        link = self.link
        if link is None:
            return
        if link.end is None and link.session.backlog_events == 0:
            return
        self.take(await link.wait_frames(max_frames))
        if link.end is not None:
            self.take(await link.wait_frames())  # the last frames, then []
            self.link = None
            if link.end is LinkEnd.INVALIDATED or self.told_invalid:
                self.end_of_session()

    def resume(self) -> None:
        outcome = self.hub.table.resume(self.session_id, self.last_seq)
        if outcome.ok:
            self.link = outcome.link
        else:
            self.end_of_session()


async def scenario(ops: list[tuple[str, int]]) -> None:
    hub = make_hub(outbox_max_events=4, replay_max_events=6)
    up = Upstream(hub)
    clients = [Client(hub) for _ in range(3)]
    for client in clients:
        client.identify()
    n = 0
    for op, who in ops:
        client = clients[who]
        if op == "publish":
            n += 1
            up.message(n)
            for c in clients:
                if c.link is None or c.link.session.state.value != "closed":
                    c.expected.append(n)
        elif op == "new_upstream":
            up.ready(f"upstream-{n}")  # every session gets op 9
        elif op == "read":
            await client.read()
        elif op == "read_one":
            await client.read(1)
        elif op == "lost_in_flight" and client.link is not None and client.link.end is None:
            # Written to a socket that died before the client read it: only a resume can bring it back.
            if client.link.session.backlog_events:
                await client.link.wait_frames()
            client.link.detach()
            client.link = None
        elif op == "drop" and client.link is not None and client.link.end is None:
            client.link.detach()
            client.link = None
        elif op == "resume" and client.link is None:
            client.resume()
        elif op == "resume_live" and client.link is not None and client.link.end is None:
            client.link = None  # a half-open socket: the client resumes on a new one
            client.resume()
    # Everyone catches up: what is still its session must hold every event, once, in order.
    for client in clients:
        for _ in range(50):
            if client.link is None:
                client.resume()
            await client.read()
            link = client.link
            if link is not None and link.end is None and link.session.backlog_events == 0:
                break
        assert client.received == client.expected


@settings(max_examples=1000, deadline=None)
@given(OPS)
def test_no_event_is_lost_repeated_or_reordered_unless_the_client_was_told(ops: Any) -> None:
    asyncio.run(scenario(ops))
