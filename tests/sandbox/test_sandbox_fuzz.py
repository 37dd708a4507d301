"""Mutated client payloads never crash the sandbox: each gets an answer or one of Discord's close codes."""

from __future__ import annotations

import copy
import logging
import random

from rawclient import Closed

ODD_VALUES = [
    None,
    True,
    False,
    -1,
    0,
    2**70,
    1.5,
    "",
    "x",
    "9" * 30,
    [],
    {},
    [1, 2],
    {"a": 1},
    [[[]]],
    "\u0000",
]
#: Codes a hostile payload may earn; 1006/1011 (a crashed handler) are never acceptable.
DISCORD_CODES = {4001, 4002, 4003, 4004, 4005, 4007, 4008, 4010, 4011, 4013, 4014}


def _templates(token: str, guild_id: str) -> list[dict]:
    properties = {"os": "a", "browser": "b", "device": "c"}
    presence = {"status": "online", "activities": [{"name": "n", "type": 0}], "afk": False, "since": None}
    streaming = {"name": "n", "type": 1, "url": "https://twitch.tv/x", "state": "s"}
    return [
        {"op": 2, "d": {"token": token, "intents": 513, "properties": properties, "shard": [0, 2],
                        "large_threshold": 250, "presence": presence}},
        {"op": 6, "d": {"token": token, "session_id": "a" * 32, "seq": 3}},
        {"op": 3, "d": {"since": None, "activities": [streaming], "status": "idle", "afk": False}},
        {"op": 8, "d": {"guild_id": guild_id, "query": "", "limit": 0, "presences": True, "nonce": "n"}},
        {"op": 8, "d": {"guild_id": guild_id, "user_ids": [guild_id, "1"]}},
        {"op": 4, "d": {"guild_id": guild_id, "channel_id": None, "self_mute": False, "self_deaf": False}},
        {"op": 31, "d": {"guild_ids": [guild_id]}},
        {"op": 43, "d": {"guild_id": guild_id, "fields": ["status"]}},
        {"op": 1, "d": 5},
    ]  # fmt: skip


def _mutate(payload: dict, rng: random.Random) -> dict:
    payload = copy.deepcopy(payload)
    for _ in range(rng.randint(1, 3)):
        # Walk to a random dict inside and replace or delete one key.
        node = payload
        while True:
            keys = [k for k, v in node.items() if isinstance(v, dict)]
            if not keys or rng.random() < 0.4:
                break
            node = node[rng.choice(keys)]
        if not node:
            break
        key = rng.choice(list(node))
        if rng.random() < 0.2:
            del node[key]
        else:
            node[key] = copy.deepcopy(rng.choice(ODD_VALUES))
        if not node:
            break
    return payload


async def test_mutated_payloads_get_an_answer_or_a_discord_close_code(sandbox_factory, raw, caplog):
    caplog.set_level(logging.ERROR)
    sandbox = await sandbox_factory(
        identify_window=0.0, guilds=2, shards=2, privileged_intents=["guild_members"]
    )
    rng = random.Random(20260)
    templates = _templates(sandbox.token, str(sandbox.guild_ids[0]))
    outcomes: dict[str, int] = {}
    for case in range(150):
        client = await raw(sandbox)
        await client.hello()
        if case % 2:
            await client.identify(sandbox.token, (case % 2, 2), 513 | 2)
            await client.recv_until("READY")
        await client.send(_mutate(rng.choice(templates), rng))
        await client.heartbeat(None)
        try:
            await client.recv_until(lambda p: p["op"] in (9, 11), wait=3.0)
            outcome = "answered"
        except Closed as closed:
            assert closed.code in DISCORD_CODES, f"case {case}: closed with {closed.code}"
            outcome = str(closed.code)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        await client.close(4000)
    assert len(outcomes) >= 4, outcomes  # the mutations reach several different rules
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [
        r.getMessage() for r in caplog.records
    ]
    # And the server still serves a fresh shard.
    last = await raw(sandbox)
    assert (await last.ready(sandbox.token, (1, 2), 513))["t"] == "READY"
