"""ShardHub fan-out: frames, per-client seqs, the attach race, upstream continuity."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
import pytest
from hub_helpers import BOT_ID, Upstream, attach, make_hub, names_and_seqs, snapshot, take

import shardtui.proxy.frames as frames_module
from shardtui.proxy import (
    INVALID_SESSION_FRAME,
    CacheSnapshots,
    LinkEnd,
    SessionState,
    Snapshot,
    library_of,
)


async def test_each_client_gets_every_dispatch_numbered_from_its_own_ready() -> None:
    hub = make_hub()
    up = Upstream(hub)
    first = attach(hub, guilds=2)
    sent = [up.message(n) for n in range(3)]
    second = attach(hub, guilds=2)
    sent += [up.message(n) for n in range(3, 5)]

    a = await take(first)
    b = await take(second)
    assert names_and_seqs(a) == [("READY", 1), ("GUILD_CREATE", 2), ("GUILD_CREATE", 3)] + [
        ("MESSAGE_CREATE", s) for s in range(4, 9)
    ]
    assert [p["d"] for p in a[3:]] == sent
    # The late client starts at 1 too; the upstream seq (501...) never leaks.
    assert names_and_seqs(b) == [
        ("READY", 1),
        ("GUILD_CREATE", 2),
        ("GUILD_CREATE", 3),
        ("MESSAGE_CREATE", 4),
        ("MESSAGE_CREATE", 5),
    ]
    assert [p["d"] for p in b[3:]] == sent[3:]
    assert all(p["op"] == 0 for p in a + b)


async def test_frames_are_compact_json_with_the_seq_spliced_in() -> None:
    hub = make_hub()
    up = Upstream(hub)
    link = attach(hub, guilds=0)
    await take(link)
    up.send("TYPING_START", {"user_id": "5", "channel_id": "7", "emoji": "é"})
    frames = await link.wait_frames()
    assert frames == [
        b'{"t":"TYPING_START","s":2,"op":0,"d":{"user_id":"5","channel_id":"7","emoji":"\xc3\xa9"}}'
    ]


async def test_an_event_is_serialized_once_whatever_the_number_of_clients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub = make_hub()
    up = Upstream(hub)
    links = [attach(hub, guilds=0) for _ in range(8)]
    data = {"id": "1", "content": "hello"}
    calls: list[Any] = []
    real = orjson.dumps

    def counting(obj: Any, *args: Any) -> bytes:
        calls.append(obj)
        return real(obj, *args)

    monkeypatch.setattr(frames_module.orjson, "dumps", counting)
    up.send("MESSAGE_CREATE", data)
    monkeypatch.undo()
    assert sum(1 for c in calls if c is data) == 1
    for link in links:
        payloads = await take(link)
        assert payloads[-1] == {"t": "MESSAGE_CREATE", "s": 2, "op": 0, "d": data}


async def test_ready_is_the_clients_own() -> None:
    hub = make_hub(shard_id=1, total=4)
    up = Upstream(hub)
    up.ready("upstream-session")
    link = attach(hub)
    ready = (await take(link))[0]
    assert ready["t"] == "READY" and ready["s"] == 1
    d = ready["d"]
    assert re.fullmatch(r"[0-9a-f]{32}", d["session_id"])
    assert d["session_id"] == link.session.session_id
    assert "upstream-session" not in orjson.dumps(ready).decode()
    assert d["resume_gateway_url"] == "ws://127.0.0.1:9999"
    assert d["shard"] == [1, 4]
    assert d["user"]["id"] == BOT_ID
    assert d["v"] == 10 and d["private_channels"] == [] and d["session_type"] == "normal"
    assert d["guilds"] == [{"id": "1", "unavailable": True}, {"id": "2", "unavailable": True}]
    assert attach(hub).session.session_id != link.session.session_id


class SlowCache:
    """A snapshot that takes a while; upstream events arrive meanwhile (and, being state, change it)."""

    def __init__(self, up: Upstream) -> None:
        self.up = up
        self.during: list[dict[str, Any]] = []

    async def snapshot(self, shard_id: int, intents: int | None) -> Snapshot:
        await asyncio.sleep(0)
        self.during.append(self.up.message(100))
        await asyncio.sleep(0)
        self.during.append(self.up.message(101))
        return snapshot(guilds=1)


async def test_events_during_the_snapshot_come_once_right_after_it() -> None:
    hub = make_hub()
    up = Upstream(hub)
    up.message(99)  # before the client: not its business
    cache = SlowCache(up)
    link = await hub.identify(cache, address="10.0.0.1:4", library="discord.py")
    up.message(102)
    payloads = await take(link)
    assert names_and_seqs(payloads) == [
        ("READY", 1),
        ("GUILD_CREATE", 2),
        ("MESSAGE_CREATE", 3),
        ("MESSAGE_CREATE", 4),
        ("MESSAGE_CREATE", 5),
    ]
    assert [p["d"]["id"] for p in payloads[2:]] == ["100", "101", "102"]
    assert link.session.library == "discord.py" and link.session.address == "10.0.0.1:4"


async def test_a_failed_snapshot_drops_the_session_with_op_9() -> None:
    hub = make_hub()

    class Broken:
        def snapshot(self, shard_id: int, intents: int | None) -> Snapshot:
            raise RuntimeError("cache unavailable")

    opened: list[Any] = []
    real_open = hub.open_session

    def spy(**kw: Any) -> Any:
        opened.append(real_open(**kw))
        return opened[-1]

    hub.open_session = spy  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="cache unavailable"):
        await hub.identify(Broken())
    (link,) = opened
    assert await link.wait_frames() == [INVALID_SESSION_FRAME]
    assert link.end is LinkEnd.INVALIDATED and await link.wait_frames() == []
    assert len(hub.table) == 0 and hub.stats().clients == 0


async def test_upstream_resumed_is_invisible_and_the_stream_goes_on() -> None:
    hub = make_hub()
    up = Upstream(hub)
    up.ready("s1")
    link = attach(hub, guilds=0)
    up.message(1)
    up.send("RESUMED", {"_trace": ["gateway"]})
    up.message(2)
    payloads = await take(link)
    assert names_and_seqs(payloads) == [("READY", 1), ("MESSAGE_CREATE", 2), ("MESSAGE_CREATE", 3)]
    assert link.end is None


async def test_a_new_upstream_session_sends_op_9_to_every_client_and_nothing_after_it() -> None:
    hub = make_hub()
    up = Upstream(hub)
    up.ready("s1")
    live = attach(hub)
    away = attach(hub)
    away_seq = len(await take(away))
    away.detach()
    pending = hub.open_session()  # its snapshot is still being taken
    await take(live)
    last = up.message(1)  # numbered for the live client but not written yet

    up.ready("s2")
    up.send("GUILD_CREATE", {"id": "1", "name": "refreshed"})
    hub.begin(pending, snapshot())  # the stale snapshot arrives too late: ignored

    # What the old session already had still goes out, then op 9; nothing of the new session.
    frames = await live.wait_frames()
    assert [orjson.loads(f) for f in frames[:-1]] == [{"t": "MESSAGE_CREATE", "s": 4, "op": 0, "d": last}]
    assert frames[-1] == INVALID_SESSION_FRAME
    assert await pending.wait_frames() == [INVALID_SESSION_FRAME]
    for link in (live, pending):
        assert link.end is LinkEnd.INVALIDATED and link.close_code is None
        assert await link.wait_frames() == []
    assert live.session.state is SessionState.CLOSED
    assert not hub.table.resume(away.session.session_id, away_seq).ok
    assert hub.upstream_session_id == "s2"
    assert hub.stats().invalidated_total == 3 and len(hub.table) == 0

    # Re-identified clients start over from the cache, then get the live stream.
    fresh = attach(hub, guilds=1)
    up.send("GUILD_CREATE", {"id": "2", "name": "late guild"})
    assert names_and_seqs(await take(fresh)) == [("READY", 1), ("GUILD_CREATE", 2), ("GUILD_CREATE", 3)]


async def test_the_first_upstream_ready_is_not_forwarded() -> None:
    hub = make_hub()
    up = Upstream(hub)
    up.ready("s1")
    link = attach(hub, guilds=0)
    up.message(1)
    assert names_and_seqs(await take(link)) == [("READY", 1), ("MESSAGE_CREATE", 2)]
    assert hub.stats().invalidated_total == 0


class FakeShardCache:
    """The two reads CacheSnapshots makes of shardtui.proxy.cache.ShardCache, with its shapes."""

    def __init__(self) -> None:
        self.asked: list[int | None] = []

    def ready_fields(self) -> dict[str, Any]:
        return {
            "user": {"id": BOT_ID},
            "application": {"id": BOT_ID, "flags": 0},
            "guilds": [{"id": "1", "unavailable": True}, {"id": "2", "unavailable": True}],
        }

    def guild_events(self, intents: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        self.asked.append(intents)
        return [
            ("GUILD_CREATE", {"id": "1", "name": "one"}),
            ("GUILD_DELETE", {"id": "2", "unavailable": True}),
        ]


async def test_a_snapshot_from_the_cache_follows_ready_with_its_dispatches_for_the_clients_intents() -> None:
    hub = make_hub()
    cache = FakeShardCache()
    link = await hub.identify(CacheSnapshots(lambda shard_id: cache), intents=513)
    payloads = await take(link)
    assert names_and_seqs(payloads) == [("READY", 1), ("GUILD_CREATE", 2), ("GUILD_DELETE", 3)]
    assert payloads[0]["d"]["application"] == {"id": BOT_ID, "flags": 0}
    assert payloads[2]["d"] == {"id": "2", "unavailable": True}
    assert cache.asked == [513]


def test_library_comes_from_identify_properties() -> None:
    assert library_of({"properties": {"os": "linux", "browser": "discord.py"}}) == "discord.py"
    assert library_of({"properties": {"$browser": "JDA"}}) == "JDA"
    assert library_of({"properties": "nope"}) == ""
    assert library_of(None) == ""


def test_a_shard_outside_the_total_is_refused() -> None:
    with pytest.raises(ValueError, match="outside the shard total 2"):
        make_hub(shard_id=2, total=2)
