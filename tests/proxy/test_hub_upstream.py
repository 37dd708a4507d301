"""The hub fed by a real ShardManager against the sandbox: what the library hands the proxy (READY and
RESUMED included) gives clients one seamless stream across an upstream resume, and op 9 when the
upstream session is replaced."""

from __future__ import annotations

import asyncio

import orjson
from support.manager import options_for
from support.waiting import eventually

from shardtui.gateway.manager import ShardManager
from shardtui.gateway.protocol import GatewayIntents
from shardtui.proxy import INVALID_SESSION_FRAME, LinkEnd, SessionTable, ShardHub, Snapshot
from shardtui.sandbox import EVENT_ID_KEY

SKIP = ("READY", "RESUMED", "GUILD_CREATE")


async def test_clients_see_one_stream_across_an_upstream_resume_and_op_9_on_a_new_session(
    sandbox_factory,
) -> None:
    sandbox = await sandbox_factory(shards=1, guilds=2)
    hub = ShardHub(0, 1, SessionTable(), resume_gateway_url="ws://127.0.0.1:1")
    readies: list[str] = []

    def handler(dispatch) -> None:
        if dispatch.name == "READY":
            readies.append(dispatch.data["session_id"])
        hub.publish(dispatch)

    intents = GatewayIntents.GUILDS | GatewayIntents.DIRECT_MESSAGES
    manager = ShardManager(options_for(sandbox, shard_total=1, intents=intents, event_handler=handler))
    try:
        await manager.initialize()
        assert await manager.wait_until_connected(timeout=15)
        link = hub.open_session(address="test", library="test")
        hub.begin(link, Snapshot({"user": {"id": "1"}, "guilds": []}, []))
        attached_at = len(sandbox.sent_events(0))
        received: list[dict] = []

        async def read_until(count: int) -> None:
            while len(received) < count:
                frames = await asyncio.wait_for(link.wait_frames(), 10)
                assert frames, link.reason
                received.extend(orjson.loads(f) for f in frames)

        sandbox.emit(4, "DM_MESSAGE_CREATE")
        await read_until(5)
        sandbox.inject("drop", 0)
        await eventually(lambda: any(e.name == "RESUMED" for e in sandbox.sent_events(0)), within=15)
        sandbox.emit(4, "DM_MESSAGE_CREATE")
        await read_until(9)

        expected = [e.event_id for e in sandbox.sent_events(0)[attached_at:] if e.name not in SKIP]
        assert len(expected) == 8
        assert [p["s"] for p in received] == list(range(1, 10))
        assert received[0]["t"] == "READY"
        assert [p["d"][EVENT_ID_KEY] for p in received[1:]] == expected
        assert link.end is None and len(readies) == 1

        sandbox.inject("invalid_session", 0, resumable=False)
        await eventually(lambda: len(readies) == 2, within=20)
        frames = await asyncio.wait_for(link.wait_frames(), 5)
        assert frames[-1] == INVALID_SESSION_FRAME
        assert link.end is LinkEnd.INVALIDATED and hub.upstream_session_id == readies[1]
    finally:
        await manager.shutdown_all()
