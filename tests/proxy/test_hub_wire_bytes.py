"""The hub forwards the upstream's own bytes of ``d``: decoded only where routing needs it."""

from __future__ import annotations

import asyncio

import orjson
from hub_helpers import attach, make_hub, snapshot, take

from shardtui.gateway.models import Dispatch, ShardId
from shardtui.gateway.protocol import GatewayIntents as I
from shardtui.proxy.intents import required_intent


async def test_d_reaches_clients_byte_for_byte_and_dms_still_route_by_intent() -> None:
    hub = make_hub()
    everything = attach(hub)
    guild_only = hub.open_session(intents=int(I.GUILDS | I.GUILD_MESSAGES | I.MESSAGE_CONTENT))
    hub.begin(guild_only, snapshot())
    await take(everything)
    await take(guild_only)
    # Spacing orjson would never write: only forwarding the bytes as received keeps it.
    in_guild = b'{"id": "1", "guild_id": "1", "channel_id": "7", "content": "hi"}'
    in_dm = b'{"id": "2", "channel_id": "9", "content": "psst"}'
    presence = b'{"user": {"id": "5"}, "guild_id": "1", "status": "idle"}'
    for seq, (name, raw) in enumerate(
        (("MESSAGE_CREATE", in_guild), ("MESSAGE_CREATE", in_dm), ("PRESENCE_UPDATE", presence)), 501
    ):
        hub.publish(Dispatch.from_wire(ShardId(0), name, seq, raw))

    frames = await asyncio.wait_for(everything.wait_frames(), 5)
    first = orjson.loads(frames[0])["s"]
    assert frames == [
        b'{"t":"MESSAGE_CREATE","s":%d,"op":0,"d":%b}' % (first, in_guild),
        b'{"t":"MESSAGE_CREATE","s":%d,"op":0,"d":%b}' % (first + 1, in_dm),
        b'{"t":"PRESENCE_UPDATE","s":%d,"op":0,"d":%b}' % (first + 2, presence),
    ]
    # No DIRECT_MESSAGES and no GUILD_PRESENCES: only the guild's message, as Discord would send it.
    got = [(p["t"], p["d"]["id"]) for p in await take(guild_only)]
    assert got == [("MESSAGE_CREATE", "1")]


async def test_a_client_without_message_content_gets_the_stripped_body_of_a_forwarded_message() -> None:
    hub = make_hub()
    blind = hub.open_session(intents=int(I.GUILDS | I.GUILD_MESSAGES))
    hub.begin(blind, snapshot())
    await take(blind)
    raw = b'{"id": "1", "guild_id": "1", "channel_id": "7", "author": {"id": "5"}, "content": "secret"}'
    hub.publish(Dispatch.from_wire(ShardId(0), "MESSAGE_CREATE", 501, raw))
    (payload,) = await take(blind)
    assert payload["d"]["id"] == "1" and payload["d"]["content"] == ""


def test_d_is_decoded_for_routing_only_when_some_subscriber_lacks_one_of_the_pair() -> None:
    both = int(I.GUILD_MESSAGES | I.DIRECT_MESSAGES)
    raw = b'{"id":"1","channel_id":"9"}'  # a DM: no guild_id
    everyone_takes_it = Dispatch.from_wire(ShardId(0), "MESSAGE_CREATE", 1, raw)
    assert required_intent(everyone_takes_it, held_by_all=both | int(I.GUILDS)) == 0
    assert "undecoded" in repr(everyone_takes_it)
    some_lack_dms = Dispatch.from_wire(ShardId(0), "MESSAGE_CREATE", 1, raw)
    assert required_intent(some_lack_dms, held_by_all=int(I.GUILD_MESSAGES)) == int(I.DIRECT_MESSAGES)
    guild_event = Dispatch.from_wire(ShardId(0), "GUILD_ROLE_CREATE", 2, b'{"guild_id":"1"}')
    assert required_intent(guild_event, held_by_all=0) == int(I.GUILDS)
    assert "undecoded" in repr(guild_event)
