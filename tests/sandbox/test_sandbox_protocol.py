"""The sandbox follows Discord's gateway rules, checked with a raw WebSocket client (one test per rule)."""

from __future__ import annotations

import asyncio
import base64
import zlib

import aiohttp
import pytest
import zstandard
from rawclient import Closed

from shardtui.gateway.protocol import GatewayIntents, shard_for_guild
from shardtui.sandbox import EVENT_ID_KEY

GUILDS = int(GatewayIntents.GUILDS)
MESSAGES = int(GatewayIntents.GUILD_MESSAGES)
BASIC = GUILDS | MESSAGES
DMS = int(GatewayIntents.DIRECT_MESSAGES)


@pytest.mark.parametrize("compress", [None, "zlib-stream", "zstd-stream"])
async def test_every_payload_has_all_four_keys_in_each_compression(sandbox, raw, compress):
    client = await raw(sandbox, compress=compress)
    hello = await client.hello()
    assert hello == {
        "t": None,
        "s": None,
        "op": 10,
        "d": {"heartbeat_interval": 1000, "_trace": hello["d"]["_trace"]},
    }
    await client.heartbeat(None)
    ack = await client.recv()
    assert ack == {"t": None, "s": None, "op": 11, "d": None}
    await client.identify(sandbox.token, (0, 2), BASIC | DMS)
    await client.recv_until("READY")
    sandbox.emit(3, "DM_MESSAGE_CREATE")
    await client.heartbeat(None)
    await client.recv_until(lambda p: p["op"] == 11)
    assert {p["t"] for p in client.received} >= {"READY", "GUILD_CREATE", "MESSAGE_CREATE"}
    for payload in client.received:
        assert set(payload) == {"op", "d", "s", "t"}
    # Once compression is asked for, the server never sends a text frame.
    expected = aiohttp.WSMsgType.TEXT if compress is None else aiohttp.WSMsgType.BINARY
    assert set(client.frame_types) == {expected}


async def test_zlib_stream_frames_end_with_sync_flush_and_share_one_context(sandbox):
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(sandbox.gateway_url + "?v=10&encoding=json&compress=zlib-stream") as ws:
            first = await ws.receive()
            await ws.send_str('{"op":1,"d":null}')
            second = await ws.receive()
    assert first.data[:2] == b"\x78\x9c"
    assert first.data.endswith(b"\x00\x00\xff\xff") and second.data.endswith(b"\x00\x00\xff\xff")

    # The second frame alone is not a zlib stream: it depends on the first (one context per connection).
    with pytest.raises(zlib.error):
        zlib.decompressobj().decompress(second.data)


async def test_zstd_stream_is_one_frame_for_the_connection(sandbox):

    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(sandbox.gateway_url + "?v=10&encoding=json&compress=zstd-stream") as ws:
            first = await ws.receive()
            await ws.send_str('{"op":1,"d":null}')
            second = await ws.receive()
    assert first.data[:4] == b"\x28\xb5\x2f\xfd"
    assert not second.data.startswith(b"\x28\xb5\x2f\xfd")
    stream = zstandard.ZstdDecompressor().decompressobj()
    assert b'"op":10' in stream.decompress(first.data)
    assert stream.decompress(second.data) == b'{"t":null,"s":null,"op":11,"d":null}'


async def test_binary_client_frames_are_accepted(sandbox, raw):
    client = await raw(sandbox)
    await client.hello()
    await client.send({"op": 1, "d": None}, binary=True)
    assert (await client.recv())["op"] == 11


async def test_ready_has_every_field_clients_index(sandbox, raw):
    client = await raw(sandbox, v=9)
    ready = await client.ready(sandbox.token, (1, 2), BASIC)
    d = ready["d"]
    assert ready["s"] == 1 and ready["op"] == 0
    assert d["v"] == 9
    assert d["shard"] == [1, 2]
    assert len(d["session_id"]) == 32
    assert d["resume_gateway_url"] == sandbox.gateway_url.rstrip("/")
    assert "?" not in d["resume_gateway_url"]
    assert d["application"]["id"] == str(sandbox.bot_user_id)
    for key in ("id", "username", "discriminator", "avatar", "bot", "mfa_enabled", "flags"):
        assert key in d["user"]
    assert d["user"]["bot"] is True
    expected = {str(g) for g in sandbox.guild_ids_for_shard(1, 2)}
    assert {g["id"] for g in d["guilds"]} == expected
    assert all(g["unavailable"] is True for g in d["guilds"])


async def test_guild_create_per_guild_on_the_right_shard(sandbox_factory, raw):
    sandbox = await sandbox_factory(guilds=12, shards=3, max_concurrency=3)
    seen: dict[int, set[str]] = {}
    for shard_id in range(3):
        client = await raw(sandbox)
        ready = await client.ready(sandbox.token, (shard_id, 3), BASIC)
        want = len(ready["d"]["guilds"])
        creates = []
        while len(creates) < want:
            payload = await client.recv()
            if payload["t"] == "GUILD_CREATE":
                creates.append(payload["d"])
        seen[shard_id] = {g["id"] for g in creates}
        for guild in creates:
            assert shard_for_guild(int(guild["id"]), 3) == shard_id
            assert guild["unavailable"] is False
            for role in guild["roles"]:
                assert set(role["colors"]) == {"primary_color", "secondary_color", "tertiary_color"}
    assert set().union(*seen.values()) == {str(g) for g in sandbox.guild_ids}
    assert sum(len(v) for v in seen.values()) == 12


async def test_dispatch_seqs_start_at_one_and_increase(sandbox, raw):
    client = await raw(sandbox)
    await client.ready(sandbox.token, (0, 2), BASIC | DMS)
    sandbox.emit(20, "MESSAGE_CREATE")
    sandbox.emit(3, "DM_MESSAGE_CREATE")
    await client.heartbeat(None)
    await client.recv_until(lambda p: p["op"] == 11)
    seqs = [p["s"] for p in client.received if p["op"] == 0]
    assert seqs == list(range(1, len(seqs) + 1))
    ids = [p["d"][EVENT_ID_KEY] for p in client.received if p["op"] == 0]
    assert len(set(ids)) == len(ids)
    assert ids == sandbox.event_ids(0)


async def test_heartbeat_is_acked_before_identify_and_after(sandbox, raw):
    client = await raw(sandbox)
    await client.hello()
    await client.heartbeat(None)
    assert (await client.recv())["op"] == 11
    await client.identify(sandbox.token, (0, 2), GUILDS)
    await client.recv_until("READY")
    await client.heartbeat(1)
    assert (await client.recv_until(lambda p: p["op"] == 11))[-1]["op"] == 11


async def test_command_before_identify_closes_4003(sandbox, raw):
    client = await raw(sandbox)
    await client.hello()
    await client.send({"op": 3, "d": {"status": "online", "activities": [], "afk": False, "since": None}})
    assert await client.expect_close() == 4003


async def test_second_identify_closes_4005(sandbox, raw):
    client = await raw(sandbox)
    await client.ready(sandbox.token, (0, 2), GUILDS)
    await client.identify(sandbox.token, (0, 2), GUILDS)
    assert await client.expect_close() == 4005


async def test_wrong_token_closes_4004(sandbox, raw):
    client = await raw(sandbox)
    await client.hello()
    await client.identify(sandbox.token[:-3] + "abc", (0, 2), GUILDS)
    assert await client.expect_close() == 4004


async def test_token_with_bot_prefix_is_accepted(sandbox, raw):
    client = await raw(sandbox)
    ready = await client.ready("Bot " + sandbox.token, (0, 2), GUILDS)
    assert ready["t"] == "READY"


@pytest.mark.parametrize("shard", [[2, 2], [-1, 2], [0, 0], [0], "0,2", [0.0, 2]])
async def test_bad_shard_tuple_closes_4010(sandbox, raw, shard):
    client = await raw(sandbox)
    await client.hello()
    await client.identify(sandbox.token, shard, GUILDS)
    assert await client.expect_close() == 4010


async def test_shard_count_not_a_multiple_closes_4010(sandbox_factory, raw):
    sandbox = await sandbox_factory(shard_multiple=4)
    client = await raw(sandbox)
    await client.hello()
    await client.identify(sandbox.token, (0, 3), GUILDS)
    assert await client.expect_close() == 4010


async def test_too_many_guilds_on_one_shard_closes_4011(sandbox_factory, raw):
    sandbox = await sandbox_factory(guilds=5, max_guilds_per_shard=2)
    client = await raw(sandbox)
    await client.hello()
    await client.identify(sandbox.token, (0, 1), GUILDS)
    assert await client.expect_close() == 4011


@pytest.mark.parametrize("version", ["8", "11", "x", ""])
async def test_bad_api_version_closes_4012(sandbox, raw, version):
    client = await raw(sandbox, v=version)
    assert await client.expect_close() == 4012


@pytest.mark.parametrize("intents", [1 << 17, 1 << 30, -1, "513", None])
async def test_invalid_intents_close_4013(sandbox, raw, intents):
    client = await raw(sandbox)
    await client.hello()
    await client.identify(sandbox.token, (0, 2), intents=intents)
    assert await client.expect_close() == 4013


async def test_privileged_intent_not_enabled_closes_4014(sandbox, raw):
    client = await raw(sandbox)
    await client.hello()
    await client.identify(sandbox.token, (0, 2), GUILDS | int(GatewayIntents.MESSAGE_CONTENT))
    assert await client.expect_close() == 4014


async def test_privileged_intent_enabled_in_the_portal_is_accepted(sandbox_factory, raw):
    sandbox = await sandbox_factory(privileged_intents=["message_content", "guild_presences"])
    client = await raw(sandbox)
    ready = await client.ready(sandbox.token, (0, 2), BASIC | int(GatewayIntents.MESSAGE_CONTENT))
    assert ready["t"] == "READY"


@pytest.mark.parametrize("op", [5, 12, 99, "1", None])
async def test_unknown_opcode_closes_4001(sandbox, raw, op):
    client = await raw(sandbox)
    await client.hello()
    await client.send({"op": op, "d": None})
    assert await client.expect_close() == 4001


@pytest.mark.parametrize("frame", ["{not json", "[1,2]", "null", b"\xff\xfe"])
async def test_undecodable_payload_closes_4002(sandbox, raw, frame):
    client = await raw(sandbox)
    await client.hello()
    await client.send(frame, binary=isinstance(frame, bytes))
    assert await client.expect_close() == 4002


async def test_payload_over_4096_bytes_closes_4002(sandbox, raw):
    client = await raw(sandbox)
    await client.hello()
    await client.send({"op": 1, "d": None, "pad": "x" * 4096})
    assert await client.expect_close() == 4002


async def test_payload_of_exactly_4096_bytes_is_accepted(sandbox, raw):
    client = await raw(sandbox)
    await client.hello()
    base = '{"op":1,"d":null,"pad":""}'
    await client.send(base[:-2] + "x" * (4096 - len(base)) + '"}')
    assert (await client.recv())["op"] == 11


async def test_121st_command_in_a_minute_closes_4008_and_is_counted(sandbox, raw):
    client = await raw(sandbox)
    await client.ready(sandbox.token, (1, 2), GUILDS)
    # The identify was command 1; heartbeats count too.
    for _ in range(119):
        await client.heartbeat(None)
    await client.recv_until(lambda p: sum(q["op"] == 11 for q in client.received) == 119)
    await client.heartbeat(None)
    assert await client.expect_close() == 4008
    stats = sandbox.stats()
    assert stats["command_violations"] == 1
    assert stats["shards"]["1"]["command_violations"] == 1
    assert stats["shards"]["1"]["server_closes"] == {"4008": 1}


async def test_identify_in_a_used_bucket_gets_op9_false_and_is_counted(sandbox_factory, raw):
    sandbox = await sandbox_factory(identify_window=30.0)
    first, second = await raw(sandbox), await raw(sandbox)
    await first.ready(sandbox.token, (0, 2), GUILDS)
    await second.hello()
    await second.identify(sandbox.token, (1, 2), GUILDS)
    assert (await second.recv()) == {"t": None, "s": None, "op": 9, "d": False}
    stats = sandbox.stats()
    assert stats["identify_violations"] == 1
    assert stats["shards"]["1"]["identify_violations"] == 1
    assert stats["session_starts_used"] == 1


async def test_separate_buckets_identify_together(sandbox_factory, raw):
    sandbox = await sandbox_factory(identify_window=30.0, max_concurrency=2)
    first, second = await raw(sandbox), await raw(sandbox)
    await first.ready(sandbox.token, (0, 2), GUILDS)
    assert (await second.ready(sandbox.token, (1, 2), GUILDS))["t"] == "READY"
    assert sandbox.stats()["identify_violations"] == 0


async def test_session_start_limit_is_decremented_per_identify_not_per_resume(sandbox, raw, http_get):
    client = await raw(sandbox)
    ready = await client.ready(sandbox.token, (0, 2), GUILDS)
    await client.close(4000)
    resumer = await raw(sandbox)
    await resumer.hello()
    await resumer.send(
        {"op": 6, "d": {"token": sandbox.token, "session_id": ready["d"]["session_id"], "seq": 1}}
    )
    await resumer.recv_until("RESUMED")
    body = await http_get(sandbox, "/gateway/bot")
    assert body["session_start_limit"]["remaining"] == 999
    assert body["session_start_limit"]["total"] == 1000


async def test_exhausted_session_starts_refuse_identify(sandbox_factory, raw):
    sandbox = await sandbox_factory(session_start_total=1, identify_window=0.0)
    first = await raw(sandbox)
    await first.ready(sandbox.token, (0, 2), GUILDS)
    second = await raw(sandbox)
    await second.hello()
    await second.identify(sandbox.token, (1, 2), GUILDS)
    assert await second.expect_close() == 4004


async def _resume(client, sandbox, session_id, seq):
    await client.hello()
    await client.send({"op": 6, "d": {"token": sandbox.token, "session_id": session_id, "seq": seq}})


async def test_resume_replays_every_dispatch_after_seq_then_resumed(sandbox, raw):
    client = await raw(sandbox)
    ready = await client.ready(sandbox.token, (0, 2), BASIC | DMS)
    sandbox.emit(10, "DM_MESSAGE_CREATE")
    await client.recv_until(lambda p: p["op"] == 0 and p["s"] == 3)
    await client.close(4000)
    sandbox.emit(5, "DM_MESSAGE_CREATE")  # while disconnected: buffered for the session
    resumer = await raw(sandbox)
    await _resume(resumer, sandbox, ready["d"]["session_id"], 3)
    got = await resumer.recv_until("RESUMED")
    replayed = [p for p in got if p["op"] == 0 and p["t"] != "RESUMED"]
    total = len(sandbox.sent_events(0))
    assert [p["s"] for p in replayed] == list(range(4, total))
    assert got[-1]["s"] == total
    assert [p["d"][EVENT_ID_KEY] for p in replayed] == sandbox.event_ids(0)[3 : total - 1]
    stats = sandbox.stats()["shards"]["0"]
    assert stats["resumes"] == 1 and stats["identifies"] == 1


async def test_resume_unknown_session_gets_op9_false(sandbox, raw):
    client = await raw(sandbox)
    await _resume(client, sandbox, "0" * 32, 1)
    assert await client.recv() == {"t": None, "s": None, "op": 9, "d": False}


async def test_resume_with_seq_ahead_of_server_closes_4007_and_kills_session(sandbox, raw):
    client = await raw(sandbox)
    ready = await client.ready(sandbox.token, (0, 2), GUILDS)
    await client.close(4000)
    resumer = await raw(sandbox)
    await _resume(resumer, sandbox, ready["d"]["session_id"], 999)
    assert await resumer.expect_close() == 4007
    again = await raw(sandbox)
    await _resume(again, sandbox, ready["d"]["session_id"], 1)
    assert (await again.recv())["op"] == 9


@pytest.mark.parametrize("code", [1000, 1001])
async def test_client_close_1000_or_1001_ends_the_session(sandbox, raw, code):
    client = await raw(sandbox)
    ready = await client.ready(sandbox.token, (0, 2), GUILDS)
    await client.close(code)
    resumer = await raw(sandbox)
    await _resume(resumer, sandbox, ready["d"]["session_id"], 1)
    assert await resumer.recv() == {"t": None, "s": None, "op": 9, "d": False}
    assert sandbox.stats()["shards"]["0"]["client_closes"] == {str(code): 1}


@pytest.mark.parametrize("code", [4000, 3000, 4999])
async def test_other_client_closes_keep_the_session_resumable(sandbox, raw, code):
    client = await raw(sandbox)
    ready = await client.ready(sandbox.token, (0, 2), GUILDS)
    await client.close(code)
    resumer = await raw(sandbox)
    await _resume(resumer, sandbox, ready["d"]["session_id"], 1)
    assert (await resumer.recv_until("RESUMED"))[-1]["t"] == "RESUMED"


async def test_session_expires_after_the_resume_window(sandbox_factory, raw):
    sandbox = await sandbox_factory(resume_window=0.05)
    client = await raw(sandbox)
    ready = await client.ready(sandbox.token, (0, 2), DMS)
    sandbox.emit(3, "DM_MESSAGE_CREATE")
    await client.close(4000)
    await asyncio.sleep(0.3)
    resumer = await raw(sandbox)
    await _resume(resumer, sandbox, ready["d"]["session_id"], 1)
    assert (await resumer.recv())["d"] is False
    lost = [e for e in sandbox.sent_events(0) if not e.replayable]
    assert lost and all(e.lost_reason == "expired" for e in lost)


async def test_client_missing_heartbeats_is_closed_resumably(sandbox_factory, raw):
    sandbox = await sandbox_factory(heartbeat_interval_ms=50, heartbeat_timeout_factor=2.0)
    client = await raw(sandbox)
    ready = await client.ready(sandbox.token, (0, 2), GUILDS)
    assert await client.expect_close() == 4000
    resumer = await raw(sandbox)
    await _resume(resumer, sandbox, ready["d"]["session_id"], 1)
    assert (await resumer.recv_until("RESUMED"))[-1]["t"] == "RESUMED"


async def test_dms_go_to_shard_zero_only(sandbox_factory, raw):
    sandbox = await sandbox_factory(max_concurrency=2)
    zero, one = await raw(sandbox), await raw(sandbox)
    dm = int(GatewayIntents.DIRECT_MESSAGES)
    await zero.ready(sandbox.token, (0, 2), dm)
    await one.ready(sandbox.token, (1, 2), dm)
    sandbox.emit(4, "DM_MESSAGE_CREATE")
    got = await zero.recv_until(lambda p: len([q for q in zero.received if q["t"] == "MESSAGE_CREATE"]) == 4)
    assert all("guild_id" not in p["d"] for p in got if p["t"] == "MESSAGE_CREATE")
    assert "MESSAGE_CREATE" not in [e.name for e in sandbox.sent_events(1)]
    assert [e.name for e in sandbox.sent_events(0)].count("MESSAGE_CREATE") == 4


async def test_traffic_is_filtered_by_intents(sandbox_factory, raw):
    sandbox = await sandbox_factory(guilds=4, shards=1)
    client = await raw(sandbox)
    await client.ready(sandbox.token, (0, 1), BASIC)
    for kind in (
        "MESSAGE_CREATE",
        "PRESENCE_UPDATE",
        "TYPING_START",
        "GUILD_MEMBER_ADD",
        "MESSAGE_REACTION_ADD",
    ):
        sandbox.emit(5, kind)
    names = [e.name for e in sandbox.sent_events(0)]
    assert names.count("MESSAGE_CREATE") == 5
    assert not {"PRESENCE_UPDATE", "TYPING_START", "GUILD_MEMBER_ADD", "MESSAGE_REACTION_ADD"} & set(names)
    messages = [
        p for p in await client.recv_until(lambda p: p["s"] == len(names)) if p["t"] == "MESSAGE_CREATE"
    ]
    assert all(m["d"]["content"] == "" for m in messages)


async def test_message_content_and_presences_flow_with_their_intents(sandbox_factory, raw):
    sandbox = await sandbox_factory(
        guilds=4, shards=1, privileged_intents=["message_content", "guild_presences", "guild_members"]
    )
    client = await raw(sandbox)
    everything = int(GatewayIntents.all())
    await client.ready(sandbox.token, (0, 1), everything)
    sandbox.emit(3, "MESSAGE_CREATE")
    sandbox.emit(3, "PRESENCE_UPDATE")
    total = len(sandbox.sent_events(0))
    got = await client.recv_until(lambda p: p["s"] == total)
    assert all(p["d"]["content"] for p in got if p["t"] == "MESSAGE_CREATE")
    assert len([p for p in got if p["t"] == "PRESENCE_UPDATE"]) == 3
    creates = [p["d"] for p in got if p["t"] == "GUILD_CREATE"]
    assert creates and all(len(g["members"]) > 1 for g in creates)


async def test_event_rate_generates_background_traffic(sandbox_factory, raw):
    sandbox = await sandbox_factory(guilds=4, shards=1, event_rate=200.0, event_mix={"MESSAGE_CREATE": 1.0})
    client = await raw(sandbox)
    await client.ready(sandbox.token, (0, 1), BASIC)
    got = await client.recv_until(
        lambda p: len([q for q in client.received if q["t"] == "MESSAGE_CREATE"]) >= 10
    )
    assert len([p for p in got if p["t"] == "MESSAGE_CREATE"]) >= 10


async def test_op8_answers_member_chunks_then_rate_limits_repeats(sandbox_factory, raw):
    sandbox = await sandbox_factory(guilds=2, shards=1, privileged_intents=["guild_members"])
    client = await raw(sandbox)
    await client.ready(sandbox.token, (0, 1), GUILDS | int(GatewayIntents.GUILD_MEMBERS))
    guild_id = str(sandbox.guild_ids[0])
    request = {"op": 8, "d": {"guild_id": guild_id, "query": "", "limit": 0, "nonce": "abc"}}
    await client.send(request)
    chunk = (await client.recv_until("GUILD_MEMBERS_CHUNK"))[-1]["d"]
    assert chunk["guild_id"] == guild_id and chunk["nonce"] == "abc"
    assert chunk["chunk_index"] == 0 and chunk["chunk_count"] == 1
    assert {m["user"]["id"] for m in chunk["members"]} >= {str(sandbox.bot_user_id)}
    assert len(chunk["members"]) >= 7  # the bot, six members and maybe the guild owner
    await client.send(request)
    limited = (await client.recv_until("RATE_LIMITED"))[-1]["d"]
    assert limited["opcode"] == 8 and limited["meta"] == {"guild_id": guild_id, "nonce": "abc"}
    assert limited["retry_after"] > 0
    await client.send({"op": 8, "d": {"guild_id": guild_id, "user_ids": ["1", str(sandbox.bot_user_id)]}})
    by_ids = (await client.recv_until("GUILD_MEMBERS_CHUNK"))[-1]["d"]
    assert by_ids["not_found"] == ["1"]
    assert [m["user"]["id"] for m in by_ids["members"]] == [str(sandbox.bot_user_id)]


async def test_presence_update_is_validated_and_recorded_per_shard(sandbox, raw):
    client = await raw(sandbox)
    await client.ready(sandbox.token, (1, 2), GUILDS)
    await client.send(
        {
            "op": 3,
            "d": {
                "since": None,
                "activities": [{"name": "the shards", "type": 3}],
                "status": "dnd",
                "afk": False,
            },
        }
    )
    await client.heartbeat(None)
    await client.recv_until(lambda p: p["op"] == 11)
    assert sandbox.presence(1) == {
        "status": "dnd",
        "activities": [{"name": "the shards", "type": 3}],
        "afk": False,
        "since": None,
    }
    assert sandbox.stats()["shards"]["1"]["presence"]["status"] == "dnd"
    assert sandbox.presence(0) is None


async def test_legacy_game_key_is_accepted_in_identify(sandbox, raw):
    client = await raw(sandbox)
    presence = {"status": "idle", "game": {"name": "chess", "type": 0}, "afk": False, "since": 0}
    await client.ready(sandbox.token, (0, 2), GUILDS, presence=presence)
    assert sandbox.presence(0)["activities"] == [{"name": "chess", "type": 0}]


async def test_invalid_presence_closes_4001(sandbox, raw):
    client = await raw(sandbox)
    await client.ready(sandbox.token, (0, 2), GUILDS)
    await client.send({"op": 3, "d": {"status": "sleeping", "activities": [], "afk": False, "since": None}})
    assert await client.expect_close() == 4001


async def test_token_is_shaped_like_a_discord_bot_token(sandbox):
    head, stamp, tail = sandbox.token.split(".")
    assert base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)).decode() == str(sandbox.bot_user_id)
    assert stamp and len(tail) >= 27


async def test_closed_connection_raises_closed_for_the_test_client(sandbox, raw):
    client = await raw(sandbox, v=8)
    with pytest.raises(Closed):
        while True:
            await client.recv()


async def test_all_member_request_without_the_members_intent_closes_4001(sandbox_factory, raw):
    sandbox = await sandbox_factory(guilds=2, shards=1)
    client = await raw(sandbox)
    await client.ready(sandbox.token, (0, 1), GUILDS)
    await client.send({"op": 8, "d": {"guild_id": str(sandbox.guild_ids[0]), "query": "", "limit": 0}})
    assert await client.expect_close() == 4001


async def test_voice_soundboard_and_channel_info_requests_are_answered(sandbox_factory, raw):
    sandbox = await sandbox_factory(guilds=2, shards=1)
    client = await raw(sandbox)
    await client.ready(sandbox.token, (0, 1), GUILDS | int(GatewayIntents.GUILD_VOICE_STATES))
    guild = str(sandbox.guild_ids[0])
    await client.send(
        {"op": 4, "d": {"guild_id": guild, "channel_id": "1", "self_mute": True, "self_deaf": False}}
    )
    voice = await client.recv_until("VOICE_SERVER_UPDATE")
    state = next(p["d"] for p in voice if p["t"] == "VOICE_STATE_UPDATE")
    assert state["channel_id"] == "1" and state["self_mute"] is True
    await client.send({"op": 31, "d": {"guild_ids": [guild]}})
    sounds = (await client.recv_until("SOUNDBOARD_SOUNDS"))[-1]["d"]
    assert sounds["guild_id"] == guild and sounds["soundboard_sounds"] == []
    await client.send({"op": 43, "d": {"guild_id": guild, "fields": ["status"]}})
    info = (await client.recv_until("CHANNEL_INFO"))[-1]["d"]
    assert info["guild_id"] == guild and len(info["channels"]) == 1


# -- the GUILD_CREATE burst follows the GUILDS intent (fact sheet §11) ---------------------------------
# A bot without GUILDS still gets READY with its (unavailable) guild stubs, but no GUILD_CREATE: a
# client that waits for the burst must meet the same silence here as on Discord.


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


# -- going over the daily session start limit (fact sheet §7, §14.4) ----------------------------------
# On hitting the limit "all active sessions for the app will be terminated, the bot token will be
# reset": a client that overspends its budget must see its whole fleet go down and the old token
# refused everywhere, not just one refused IDENTIFY.


async def test_over_the_daily_limit_every_session_ends_and_the_token_is_reset(sandbox_factory, raw):
    sandbox = await sandbox_factory(session_start_total=2, identify_window=0.0)
    first = await raw(sandbox)
    ready = await first.ready(sandbox.token, (0, 2), GUILDS)
    second = await raw(sandbox)
    await second.ready(sandbox.token, (1, 2), GUILDS)

    third = await raw(sandbox)
    await third.hello()
    await third.identify(sandbox.token, (0, 2), GUILDS)
    assert await third.expect_close() == 4004

    # The sessions that were fine are terminated too ...
    assert await first.expect_close() == 4004
    assert await second.expect_close() == 4004
    # ... cannot be resumed with the old token ...
    resumer = await raw(sandbox)
    await resumer.hello()
    await resumer.send(
        {"op": 6, "d": {"token": sandbox.token, "session_id": ready["d"]["session_id"], "seq": 1}}
    )
    assert await resumer.expect_close() == 4004
    # ... and REST refuses the old token as well.
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bot {sandbox.token}"}
        async with http.get(sandbox.rest_url + "/gateway/bot", headers=headers) as response:
            assert response.status == 401
    stats = sandbox.stats()
    assert stats["token_reset"] is True
    assert not any(s["alive"] for s in stats["sessions"])


async def test_within_the_limit_nothing_is_reset(sandbox_factory, raw):
    sandbox = await sandbox_factory(session_start_total=2, identify_window=0.0)
    first = await raw(sandbox)
    await first.ready(sandbox.token, (0, 2), GUILDS)
    second = await raw(sandbox)
    await second.ready(sandbox.token, (1, 2), GUILDS)
    await first.heartbeat(1)
    try:
        await first.recv_until(lambda p: p["op"] == 11)
    except Closed as closed:  # pragma: no cover - the failure message
        raise AssertionError(f"a session within the budget was closed with {closed.code}") from None
    assert sandbox.stats()["token_reset"] is False
