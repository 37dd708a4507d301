"""Raw clients through the proxy to a real ShardManager of the sandbox: READY and the cache's
GUILD_CREATEs, IDENTIFY checks, RESUME, attach-without-loss, commands upstream, slow clients."""

from __future__ import annotations

import asyncio

import aiohttp
from support.waiting import eventually
from test_cache_sandbox import EVERYTHING, KINDS, comparable

from shardtui.gateway.models import ReshardSwitchEvent
from shardtui.metrics import MetricsServer, ProxyClientsCollector
from shardtui.proxy.server import ProxySettings
from shardtui.proxy.session import SessionLimits

INTENTS = 513  # GUILDS | GUILD_MESSAGES
CONTENT = 1 << 15  # MESSAGE_CONTENT


def dispatches(payloads: list[dict]) -> list[dict]:
    return [p for p in payloads if p.get("op") == 0]


async def test_a_client_gets_ready_and_every_guild_of_its_shard_with_its_own_seqs(
    sandbox_factory, rigs, raw
) -> None:
    sandbox = await sandbox_factory(shards=2, guilds=6)
    rig = await rigs(sandbox)
    for shard in (0, 1):
        client = await raw(rig.url, compress="zlib-stream")
        hello = await client.hello()
        assert hello["d"]["heartbeat_interval"] == rig.proxy.settings.heartbeat_interval_ms
        await client.identify(sandbox.token, (shard, 2), INTENTS)
        ready = (await client.recv_until("READY"))[-1]
        expected = {str(g) for g in sandbox.guild_ids_for_shard(shard, 2)}
        assert ready["s"] == 1
        assert ready["d"]["shard"] == [shard, 2]
        assert ready["d"]["resume_gateway_url"] == rig.url
        assert ready["d"]["session_id"] != rig.manager.runners[next(iter(rig.manager.runners))].session_id
        assert {g["id"] for g in ready["d"]["guilds"]} == expected
        creates = [await client.recv() for _ in expected]
        assert [p["t"] for p in creates] == ["GUILD_CREATE"] * len(expected)
        assert {p["d"]["id"] for p in creates} == expected
        assert [p["s"] for p in creates] == list(range(2, 2 + len(expected)))


async def test_identify_checks_token_shard_and_sharding(sandbox_factory, rigs, raw) -> None:
    sandbox = await sandbox_factory(shards=2, guilds=4)
    rig = await rigs(sandbox)

    bad_token = await raw(rig.url)
    await bad_token.hello()
    await bad_token.identify("not-the-token", (0, 2), INTENTS)
    assert await bad_token.expect_close() == 4004

    wrong_total = await raw(rig.url)
    await wrong_total.hello()
    await wrong_total.identify(sandbox.token, (0, 4), INTENTS)
    assert await wrong_total.expect_close() == 4010
    assert "expected total 2" in rig.proxy.shard_reason(0, 4)

    no_shard = await raw(rig.url)
    await no_shard.hello()
    await no_shard.identify(sandbox.token, None, INTENTS)
    assert await no_shard.expect_close() == 4011

    second = await raw(rig.url)
    await second.ready(sandbox.token, (1, 2), INTENTS)
    await second.identify(sandbox.token, (1, 2), INTENTS)
    assert await second.expect_close() == 4005


async def test_a_client_token_is_accepted_and_the_bot_token_still_is(sandbox_factory, rigs, raw) -> None:
    sandbox = await sandbox_factory(shards=1, guilds=2)
    rig = await rigs(sandbox, settings=ProxySettings(client_token="client-secret"))
    for token in ("client-secret", sandbox.token):
        client = await raw(rig.url)
        ready = await client.ready(token, (0, 1), INTENTS)
        assert ready["t"] == "READY"


async def test_resume_replays_exactly_the_missed_seqs_then_resumed(sandbox_factory, rigs, raw) -> None:
    sandbox = await sandbox_factory(shards=1, guilds=2)
    rig = await rigs(sandbox)
    client = await raw(rig.url)
    ready = await client.ready(sandbox.token, (0, 1), INTENTS)
    await client.recv_until(lambda p: p.get("s") == 3)  # the two GUILD_CREATEs
    sandbox.emit(3, "MESSAGE_CREATE")
    await client.recv_until(lambda p: p.get("s") == 6)
    await client.close(4000)
    await eventually(lambda: rig.proxy.clients_per_shard()[0] == 0)
    sandbox.emit(4, "MESSAGE_CREATE")
    await eventually(lambda: rig.proxy.clients(0)[0].seq == 10)

    again = await raw(rig.url)
    await again.hello()
    await again.send(
        {"op": 6, "d": {"token": sandbox.token, "session_id": ready["d"]["session_id"], "seq": 6}}
    )
    replay = await again.recv_until("RESUMED")
    assert [p["s"] for p in replay] == [7, 8, 9, 10, 11]
    assert [p["t"] for p in replay[:-1]] == ["MESSAGE_CREATE"] * 4

    unknown = await raw(rig.url)
    await unknown.hello()
    await unknown.send({"op": 6, "d": {"token": sandbox.token, "session_id": "nope", "seq": 1}})
    answer = await unknown.recv()
    assert answer["op"] == 9 and answer["d"] is False


async def test_op3_reaches_the_upstream_shard_and_the_console_presence(sandbox_factory, rigs, raw) -> None:
    sandbox = await sandbox_factory(shards=2, guilds=4)
    rig = await rigs(sandbox)
    client = await raw(rig.url)
    await client.ready(sandbox.token, (1, 2), INTENTS)
    presence = {
        "status": "dnd",
        "since": None,
        "afk": False,
        "activities": [{"name": "via proxy", "type": 0}],
    }
    await client.send({"op": 3, "d": presence})
    await eventually(lambda: (sandbox.presence(1) or {}).get("status") == "dnd", within=10)
    assert sandbox.presence(1)["activities"][0]["name"] == "via proxy"
    assert (sandbox.presence(0) or {}).get("status") != "dnd"
    info = next(i for s, i in rig.manager.runners.items() if s.id == 1)
    await eventually(lambda: info.presence is not None and info.presence.status.value == "dnd")


async def test_a_member_chunk_reaches_only_its_requester(sandbox_factory, rigs, raw) -> None:
    sandbox = await sandbox_factory(shards=1, guilds=2, privileged_intents=["guild_members"])
    rig = await rigs(sandbox, intents=INTENTS | 2)
    asker = await raw(rig.url)
    await asker.ready(sandbox.token, (0, 1), INTENTS | 2)
    other = await raw(rig.url)
    await other.ready(sandbox.token, (0, 1), INTENTS | 2)
    guild = str(sandbox.guild_ids_for_shard(0, 1)[0])
    await asker.send({"op": 8, "d": {"guild_id": guild, "query": "", "limit": 0, "nonce": "mine"}})
    chunk = (await asker.recv_until("GUILD_MEMBERS_CHUNK"))[-1]
    assert chunk["d"]["nonce"] == "mine" and chunk["d"]["guild_id"] == guild
    sandbox.emit(1, "MESSAGE_CREATE")
    seen = await other.recv_until("MESSAGE_CREATE")
    assert not [p for p in seen if p.get("t") == "GUILD_MEMBERS_CHUNK"]


async def test_events_injected_while_a_client_identifies_arrive_once(sandbox_factory, rigs, raw) -> None:
    sandbox = await sandbox_factory(shards=1, guilds=2)
    rig = await rigs(sandbox)
    client = await raw(rig.url)
    await client.hello()
    await client.identify(sandbox.token, (0, 1), INTENTS)
    sandbox.emit(5, "MESSAGE_CREATE")  # while the proxy handles the IDENTIFY
    await eventually(lambda: rig.proxy.hubs[0].events_total >= 5 + 2)
    sandbox.emit(1, "CHANNEL_CREATE")
    seen = await client.recv_until("CHANNEL_CREATE")
    names = [p["t"] for p in dispatches(seen)]
    assert names[0] == "READY"
    assert names.count("MESSAGE_CREATE") == 5
    ids = [p["d"]["id"] for p in dispatches(seen) if p["t"] == "MESSAGE_CREATE"]
    assert len(set(ids)) == 5
    assert [p["s"] for p in dispatches(seen)] == list(range(1, len(dispatches(seen)) + 1))


async def test_an_upstream_invalid_session_reaches_clients_as_op9(sandbox_factory, rigs, raw) -> None:
    sandbox = await sandbox_factory(shards=1, guilds=2)
    rig = await rigs(sandbox)
    client = await raw(rig.url)
    await client.ready(sandbox.token, (0, 1), INTENTS)
    sandbox.inject("invalid_session", 0, resumable=False)
    op9 = (await client.recv_until(lambda p: p.get("op") == 9, wait=20))[-1]
    assert op9["d"] is False
    # The socket stays open: the client identifies again on it and is served from the cache.
    await client.identify(sandbox.token, (0, 1), INTENTS)
    ready = (await client.recv_until("READY", wait=20))[-1]
    assert ready["s"] == 1


async def test_a_client_that_stops_reading_is_cut_without_stalling_another(
    sandbox_factory, rigs, raw
) -> None:
    sandbox = await sandbox_factory(shards=1, guilds=2)
    limits = SessionLimits(outbox_max_events=50, replay_max_events=50)
    rig = await rigs(sandbox, settings=ProxySettings(limits=limits))
    slow = await raw(rig.url)
    await slow.ready(sandbox.token, (0, 1), INTENTS)
    fast = await raw(rig.url)
    await fast.ready(sandbox.token, (0, 1), INTENTS)
    big = 0
    received: list[dict] = []

    async def read_fast() -> None:
        while True:
            payload = await fast.recv(wait=20)
            if payload.get("t") == "MESSAGE_CREATE":
                received.append(payload)

    reader = asyncio.create_task(read_fast())
    try:
        # The slow client's TCP buffers fill first; then its session outbox passes 50 and it is cut.
        # Bursts below the bound, each read by the fast client before the next: only the one that
        # reads nothing falls behind.
        while rig.proxy.hubs[0].cut_slow_total == 0 and big < 100_000:
            sandbox.emit(25, "MESSAGE_CREATE")
            big += 25
            await eventually(lambda n=big: len(received) == n, within=30)
        assert rig.proxy.hubs[0].cut_slow_total == 1
        sandbox.emit(25, "MESSAGE_CREATE")
        big += 25
        await eventually(lambda n=big: len(received) == n, within=30)
        assert [p["s"] for p in received] == list(range(received[0]["s"], received[0]["s"] + big))
    finally:
        reader.cancel()
    assert await slow.expect_close(wait=20) in (4000, 1006)
    assert rig.proxy.stats()["cut_slow"] == 1
    # ... and Grafana sees it: the cut, the clients left, the fan-out.
    server = MetricsServer("127.0.0.1:0", lambda: rig.manager)
    server.add_collector(ProxyClientsCollector(rig.proxy))
    await server.start()
    try:
        async with aiohttp.ClientSession() as http, http.get(server.url) as response:
            metrics = await response.text()
    finally:
        await server.stop()
    assert 'shardtui_proxy_clients_cut_slow_total{shard="0"} 1.0' in metrics
    assert 'shardtui_proxy_clients{shard="0"} 1.0' in metrics  # the fast one
    # The cut one is gone too: it was behind by more than its replay buffer (50) could give back.
    assert 'shardtui_proxy_client_sessions{shard="0"} 1.0' in metrics
    dispatched = next(
        line for line in metrics.splitlines() if line.startswith("shardtui_proxy_dispatches_total")
    )
    assert float(dispatched.split()[-1]) >= big


async def test_a_late_client_sees_the_state_an_early_client_saw_change(sandbox_factory, rigs, raw) -> None:
    sandbox = await sandbox_factory(
        shards=1,
        guilds=3,
        identify_window=0.0,  # the direct client below identifies right after the proxy's upstream
        privileged_intents=["guild_members", "guild_presences", "message_content"],
    )
    everything = EVERYTHING
    rig = await rigs(sandbox, intents=everything)
    early = await raw(rig.url)
    await early.ready(sandbox.token, (0, 1), everything)
    await early.recv_until(lambda p: p.get("s") == 4)  # READY + 3 GUILD_CREATEs
    first = {p["d"]["id"]: p["d"] for p in early.received if p.get("t") == "GUILD_CREATE"}
    for _ in range(6):
        for kind in KINDS:
            sandbox.emit(1, kind)
    changes = len(sandbox.sent_events(0)) - 4
    await early.recv_until(lambda p: p.get("s") == 4 + changes)

    late = await raw(rig.url)
    await late.ready(sandbox.token, (0, 1), everything)
    proxied = [(await late.recv())["d"] for _ in range(3)]

    direct = await raw(sandbox.gateway_url)
    await direct.ready(sandbox.token, (0, 1), everything)
    truth = [(await direct.recv())["d"] for _ in range(3)]
    assert [g["id"] for g in proxied] == [g["id"] for g in truth]
    for mine, theirs in zip(proxied, truth, strict=True):
        assert comparable(mine) == comparable(theirs), mine["id"]
        assert mine["member_count"] == theirs["member_count"]
    # The world did change after the early client attached.
    assert any(comparable(first[g["id"]]) != comparable(g) for g in truth)


async def test_a_process_serves_only_the_shards_of_its_range(sandbox_factory, rigs, raw) -> None:
    sandbox = await sandbox_factory(shards=2, guilds=4)
    rig = await rigs(sandbox, shard_range=(1, 1))  # as one fleet process running shard 1 of 2
    other = await raw(rig.url)
    await other.hello()
    await other.identify(sandbox.token, (0, 2), INTENTS)
    assert await other.expect_close() == 4010
    mine = await raw(rig.url)
    ready = await mine.ready(sandbox.token, (1, 2), INTENTS)
    assert ready["d"]["shard"] == [1, 2]
    assert rig.proxy.clients_per_shard() == {1: 1}


async def test_op4_makes_the_client_the_voice_owner_of_the_guild(sandbox_factory, rigs, raw) -> None:
    sandbox = await sandbox_factory(shards=1, guilds=2)
    voice = INTENTS | 128  # GUILD_VOICE_STATES
    rig = await rigs(sandbox, intents=voice)
    owner = await raw(rig.url)
    await owner.ready(sandbox.token, (0, 1), voice)
    bystander = await raw(rig.url)
    await bystander.ready(sandbox.token, (0, 1), voice)
    guild = str(sandbox.guild_ids_for_shard(0, 1)[0])
    join = {"guild_id": guild, "channel_id": guild, "self_mute": False, "self_deaf": True}
    await owner.send({"op": 4, "d": join})
    got = await owner.recv_until("VOICE_SERVER_UPDATE")
    states = [p for p in got if p.get("t") == "VOICE_STATE_UPDATE"]
    assert states and states[-1]["d"]["user_id"] == str(sandbox.bot_user_id)
    sandbox.emit(1, "MESSAGE_CREATE")
    seen = await bystander.recv_until("MESSAGE_CREATE")
    assert not [p for p in seen if p.get("t") in ("VOICE_STATE_UPDATE", "VOICE_SERVER_UPDATE")]


async def test_each_client_gets_only_the_live_events_its_intents_cover(sandbox_factory, rigs, raw) -> None:
    sandbox = await sandbox_factory(shards=1, guilds=2)
    rig = await rigs(sandbox)  # the upstream identifies with the default intents (messages, typing...)
    guilds_only = await raw(rig.url)
    await guilds_only.ready(sandbox.token, (0, 1), 1)
    messages = await raw(rig.url)
    await messages.ready(sandbox.token, (0, 1), 1 | 512)
    sandbox.emit(3, "MESSAGE_CREATE")
    sandbox.emit(2, "TYPING_START")
    sandbox.emit(1, "CHANNEL_CREATE")
    got_messages = dispatches(await messages.recv_until("CHANNEL_CREATE"))
    got_guilds = dispatches(await guilds_only.recv_until("CHANNEL_CREATE"))
    assert [p["t"] for p in got_messages].count("MESSAGE_CREATE") == 3
    assert "TYPING_START" not in [p["t"] for p in got_messages]
    assert [p["t"] for p in got_guilds if p["t"] in ("MESSAGE_CREATE", "TYPING_START")] == []
    # Seqs stay consecutive per client: a filtered event takes no number.
    for got in (got_messages, got_guilds):
        assert [p["s"] for p in got] == list(range(got[0]["s"], got[0]["s"] + len(got)))


async def test_after_a_live_reshard_clients_of_the_new_total_get_its_guild_layout(
    sandbox_factory, rigs, raw
) -> None:
    sandbox = await sandbox_factory(shards=2, guilds=9)
    rig = await rigs(sandbox)
    old = await raw(rig.url)
    await old.ready(sandbox.token, (0, 2), INTENTS)
    before = {c.shard_id: c.dispatches for c in rig.proxy.shard_counters()}
    assert before[0] > 0  # at least the upstream READY and its guilds
    await rig.manager.reshard(3, dedupe_grace=0.0)
    # Closed at the switch with 4011 (no library resumes after it; restarted, the bot reads /gateway/bot).
    assert await old.expect_close(wait=20) == 4011
    assert "3 shards" in old.close_reason and "/gateway/bot" in old.close_reason
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bot {sandbox.token}"}
        async with http.get(f"{rig.proxy.rest_url}/gateway/bot", headers=auth) as response:
            assert (await response.json())["shards"] == 3
    stale = await raw(rig.url)
    await stale.hello()
    await stale.identify(sandbox.token, (0, 2), INTENTS)
    assert await stale.expect_close() == 4010
    for shard in range(3):
        client = await raw(rig.url)
        ready = await client.ready(sandbox.token, (shard, 3), INTENTS)
        expected = {str(g) for g in sandbox.guild_ids_for_shard(shard, 3)}
        assert {g["id"] for g in ready["d"]["guilds"]} == expected
        creates = [await client.recv() for _ in expected]
        assert {p["d"]["id"] for p in creates if p["t"] == "GUILD_CREATE"} == expected
    # The metrics' counters carry over the hubs a reshard replaced: never backwards.
    after = {c.shard_id: c.dispatches for c in rig.proxy.shard_counters()}
    assert all(after[sid] >= count for sid, count in before.items()) and 2 in after


async def test_events_held_through_a_reshard_reach_the_clients_of_the_new_total(
    sandbox_factory, rigs, raw
) -> None:
    """The new set delivers from the switch on, while the manager still reports the old total until
    its old set is closed: its dispatches are laid out for the new total and reach the shard owning them."""
    sandbox = await sandbox_factory(shards=2, guilds=12, identify_window=0.0)
    rig = await rigs(sandbox)
    switch_totals: list[tuple[int, int]] = []
    rig.manager.subscribe(
        lambda e: (
            switch_totals.append((e.old_total, e.new_total)) if isinstance(e, ReshardSwitchEvent) else None
        )
    )
    reshard = asyncio.create_task(rig.manager.reshard(3, dedupe_grace=0.0))

    async def emit_until_done() -> None:
        # Dense enough that the few milliseconds between the new set's READYs and the switch always
        # see some (at two events per tick a third of the runs saw none).
        while not reshard.done():
            sandbox.emit(16, "CHANNEL_CREATE")
            await asyncio.sleep(0.002)

    await emit_until_done()
    result = await reshard
    assert switch_totals == [(2, 3)]
    # Traffic ran through the switch (the new set's copies of what the old set delivered were dropped).
    assert result.duplicates_dropped > 0
    for shard in range(3):
        client = await raw(rig.url)
        ready = await client.ready(sandbox.token, (shard, 3), INTENTS)
        expected = {str(g) for g in sandbox.guild_ids_for_shard(shard, 3)}
        assert {g["id"] for g in ready["d"]["guilds"]} == expected
        proxied = {p["d"]["id"]: p["d"] for p in [await client.recv() for _ in expected]}
        # The channels created during the reshard are in the cache, each under its guild's new shard.
        direct = await raw(sandbox.gateway_url)
        await direct.ready(sandbox.token, (shard, 3), INTENTS)
        truth = {p["d"]["id"]: p["d"] for p in [await direct.recv() for _ in expected]}
        assert proxied.keys() == truth.keys() == expected
        for guild_id, guild in truth.items():
            assert {c["id"] for c in proxied[guild_id]["channels"]} == {c["id"] for c in guild["channels"]}


async def test_public_url_is_what_bots_are_told(sandbox_factory, rigs, raw) -> None:
    sandbox = await sandbox_factory(shards=1, guilds=2)
    rig = await rigs(sandbox, settings=ProxySettings(public_url="wss://gateway.example.com"))
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bot {sandbox.token}"}
        async with http.get(
            f"http://127.0.0.1:{rig.proxy.port}/api/v10/gateway/bot", headers=auth
        ) as response:
            assert (await response.json())["url"] == "wss://gateway.example.com"
    client = await raw(f"ws://127.0.0.1:{rig.proxy.port}")
    ready = await client.ready(sandbox.token, (0, 1), INTENTS)
    assert ready["d"]["resume_gateway_url"] == "wss://gateway.example.com"


async def test_a_wildcard_listen_tells_each_bot_the_host_it_reached(sandbox_factory, rigs, raw) -> None:
    sandbox = await sandbox_factory(shards=1, guilds=2)
    rig = await rigs(sandbox, settings=ProxySettings(host="0.0.0.0"))
    port = rig.proxy.port
    async with aiohttp.ClientSession() as http:
        for host, expected in (
            (f"bots.internal:{port}", f"ws://bots.internal:{port}"),
            (f"10.1.2.3:{port}", f"ws://10.1.2.3:{port}"),
            ("evil/path?x=1", f"ws://127.0.0.1:{port}"),  # not a host: the bound address instead
        ):
            async with http.get(
                f"http://127.0.0.1:{port}/api/v10/gateway", headers={"Host": host}
            ) as response:
                assert (await response.json())["url"] == expected, host
    client = await raw(f"ws://127.0.0.1:{port}")
    ready = await client.ready(sandbox.token, (0, 1), INTENTS)
    assert ready["d"]["resume_gateway_url"] == f"ws://127.0.0.1:{port}"


async def test_a_client_without_message_content_gets_messages_as_discord_sends_them(
    sandbox_factory, rigs, raw
) -> None:
    """The upstream shard has MESSAGE_CONTENT; one client asked for it, one did not: the second gets
    guild messages with the content fields empty, live and in a RESUME's replay, the first gets them whole."""
    sandbox = await sandbox_factory(shards=1, guilds=2, privileged_intents=["message_content"])
    rig = await rigs(sandbox, intents=INTENTS | CONTENT)
    full = await raw(rig.url)
    await full.ready(sandbox.token, (0, 1), INTENTS | CONTENT)
    blind = await raw(rig.url)
    ready = await blind.ready(sandbox.token, (0, 1), INTENTS)
    await blind.recv_until(lambda p: p.get("s") == 3)  # READY + 2 GUILD_CREATEs
    sandbox.emit(3, "MESSAGE_CREATE")
    whole = [p["d"] for p in dispatches(await full.recv_until(lambda p: p.get("s") == 6))]
    empty = [p["d"] for p in dispatches(await blind.recv_until(lambda p: p.get("s") == 6))]
    whole, empty = whole[-3:], empty[-3:]
    assert all(m["content"] for m in whole)
    assert [m["content"] for m in empty] == ["", "", ""]
    assert [m["id"] for m in empty] == [m["id"] for m in whole]

    await blind.close(4000)
    await eventually(lambda: rig.proxy.clients_per_shard()[0] == 1)
    sandbox.emit(2, "MESSAGE_CREATE")
    await full.recv_until(lambda p: p.get("s") == 8)
    again = await raw(rig.url)
    await again.hello()
    await again.send(
        {"op": 6, "d": {"token": sandbox.token, "session_id": ready["d"]["session_id"], "seq": 6}}
    )
    replay = await again.recv_until("RESUMED")
    assert [p["s"] for p in replay] == [7, 8, 9]
    assert [p["d"]["content"] for p in replay[:-1]] == ["", ""]
