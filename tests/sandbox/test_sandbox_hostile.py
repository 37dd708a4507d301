"""Hostile input to the sandbox: each answered with Discord's close code, other shards unaffected."""

from __future__ import annotations

import json

import pytest

from shardtui.gateway.protocol import GatewayIntents

INTENTS = int(GatewayIntents.GUILDS | GatewayIntents.DIRECT_MESSAGES)


async def _bad_json(client, sandbox):
    await client.hello()
    await client.send("{'op': 1, d: }")


async def _binary_garbage(client, sandbox):
    await client.hello()
    await client.send(bytes(range(256)), binary=True)


async def _wrong_token(client, sandbox):
    await client.hello()
    await client.identify("MTIz.abc.def", (0, 2), INTENTS)


async def _wrong_shard(client, sandbox):
    await client.hello()
    await client.identify(sandbox.token, (5, 2), INTENTS)


async def _huge_payload(client, sandbox):
    await client.hello()
    await client.send(json.dumps({"op": 2, "d": {"token": sandbox.token, "junk": "A" * 200_000}}))


async def _over_rate_limit(client, sandbox):
    await client.hello()
    for _ in range(121):
        await client.heartbeat(None)


async def _foreign_session(client, sandbox):
    await client.hello()
    await client.send({"op": 6, "d": {"token": sandbox.token, "session_id": "f" * 32, "seq": 10}})


async def _resume_wrong_token(client, sandbox):
    await client.hello()
    await client.send({"op": 6, "d": {"token": "nope", "session_id": "f" * 32, "seq": 1}})


async def _command_unauthenticated(client, sandbox):
    await client.hello()
    await client.send({"op": 8, "d": {"guild_id": "1", "query": "", "limit": 0}})


async def _deeply_nested(client, sandbox):
    await client.hello()
    await client.send('{"op":2,"d":' + "[" * 1500 + "]" * 1500 + "}")


HOSTILE = [
    pytest.param(_bad_json, 4002, id="bad-json"),
    pytest.param(_binary_garbage, 4002, id="binary-garbage"),
    pytest.param(_wrong_token, 4004, id="wrong-token"),
    pytest.param(_wrong_shard, 4010, id="wrong-shard-tuple"),
    pytest.param(_huge_payload, 4002, id="huge-payload"),
    pytest.param(_over_rate_limit, 4008, id="over-rate-limit"),
    pytest.param(_resume_wrong_token, 4004, id="resume-wrong-token"),
    pytest.param(_command_unauthenticated, 4003, id="command-before-identify"),
    pytest.param(_deeply_nested, 4002, id="deeply-nested-json"),
]


@pytest.fixture
async def two_shards(sandbox_factory, raw):
    sandbox = await sandbox_factory(max_concurrency=2)
    zero, one = await raw(sandbox), await raw(sandbox)
    await zero.ready(sandbox.token, (0, 2), INTENTS)
    await one.ready(sandbox.token, (1, 2), INTENTS)
    return sandbox, zero, one


async def _still_served(sandbox, zero, one) -> None:
    await one.heartbeat(None)
    assert (await one.recv_until(lambda p: p["op"] == 11))[-1]["op"] == 11
    before = len([p for p in zero.received if p["t"] == "MESSAGE_CREATE"])
    sandbox.emit(2, "DM_MESSAGE_CREATE")
    await zero.recv_until(
        lambda p: len([q for q in zero.received if q["t"] == "MESSAGE_CREATE"]) == before + 2
    )


@pytest.mark.parametrize(("attack", "code"), HOSTILE)
async def test_hostile_input_gets_discords_close_code_and_other_shards_go_on(two_shards, raw, attack, code):
    sandbox, zero, one = two_shards
    hostile = await raw(sandbox)
    await attack(hostile, sandbox)
    assert await hostile.expect_close() == code
    await _still_served(sandbox, zero, one)
    stats = sandbox.stats()
    assert stats["connections_open"] == 2
    assert stats["shards"]["0"]["client_closes"] == {} and stats["shards"]["1"]["client_closes"] == {}


async def test_resume_with_a_foreign_session_id_gets_op9_false(two_shards, raw):
    sandbox, zero, one = two_shards
    hostile = await raw(sandbox)
    await _foreign_session(hostile, sandbox)
    assert await hostile.recv() == {"t": None, "s": None, "op": 9, "d": False}
    await _still_served(sandbox, zero, one)


async def test_frame_beyond_the_read_limit_is_closed_and_the_server_survives(two_shards, raw):
    sandbox, zero, one = two_shards
    hostile = await raw(sandbox)
    await hostile.hello()
    await hostile.send("x" * (2 << 20))
    # aiohttp refuses to buffer it at all (1009 message too big) before the sandbox can say 4002.
    assert await hostile.expect_close() == 1009
    await _still_served(sandbox, zero, one)
    assert sandbox.stats()["unidentified"]["server_closes"] == {"1009": 1}


async def test_plain_http_on_the_gateway_path_is_a_404(sandbox):
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(sandbox.gateway_url) as response:
        assert response.status == 404
        assert response.headers["Content-Type"] == "application/json"


async def test_many_idle_unidentified_connections_do_not_disturb_a_shard(two_shards, raw):
    sandbox, zero, one = two_shards
    idle = [await raw(sandbox) for _ in range(20)]
    for client in idle:
        await client.hello()
    await _still_served(sandbox, zero, one)
    assert sandbox.stats()["connections_open"] == 22
