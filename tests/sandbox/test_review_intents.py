"""Review: the initial GUILD_CREATE burst is gated by the GUILDS intent, as on Discord (fact sheet §11).

A bot without GUILDS still gets READY with its (unavailable) guild stubs, but no GUILD_CREATE: a client
that waits for the burst must meet the same silence here as on Discord.
"""

from __future__ import annotations

from shardtui.gateway.protocol import GatewayIntents

GUILDS = int(GatewayIntents.GUILDS)
MESSAGES = int(GatewayIntents.GUILD_MESSAGES)


async def test_no_guild_create_without_the_guilds_intent(sandbox, raw):
    client = await raw(sandbox)
    ready = await client.ready(sandbox.token, (0, 1), MESSAGES)
    assert len(ready["d"]["guilds"]) == len(sandbox.guild_ids)  # READY still lists them
    sandbox.emit(3, "MESSAGE_CREATE")  # guild traffic the intent does allow
    await client.heartbeat(client.last_seq)
    seen = await client.recv_until(lambda p: p["op"] == 11)
    names = [p["t"] for p in seen if p["op"] == 0]
    assert "GUILD_CREATE" not in names
    assert names.count("MESSAGE_CREATE") == len(sandbox.event_ids(0)) - 1


async def test_guild_create_burst_with_the_guilds_intent(sandbox, raw):
    client = await raw(sandbox)
    await client.ready(sandbox.token, (0, 1), GUILDS | MESSAGES)
    seen = await client.recv_until(
        lambda p: [q["t"] for q in client.received].count("GUILD_CREATE") == len(sandbox.guild_ids)
    )
    assert all(p["t"] == "GUILD_CREATE" for p in seen)
