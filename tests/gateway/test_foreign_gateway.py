"""The library against gateways that deviate from Discord (issue #14), through its public API.

Each test turns on the deviations of one point of the issue in :mod:`tests.gateway.foreign_gateway`
and runs a real ShardManager (or ShardRunner) against it: per-message zstd frames, a RESUMED that
repeats the seq, a gateway routed only at ``/gateway``, READY without ``shard``, every guild on every
shard and one session_id for all shards.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from support.waiting import eventually

from shardtui.gateway.manager import ShardManager, ShardManagerOptions
from shardtui.gateway.models import ConnectionStage, Dispatch, ShardId
from shardtui.gateway.protocol import GatewayIntents
from shardtui.gateway.runner import REPEATED_UNAVAILABLE
from tests.gateway.foreign_gateway import EVENT_KEY, Deviations, ForeignGateway


@pytest.fixture
async def foreign() -> AsyncIterator[Callable[..., Any]]:
    made: list[ForeignGateway] = []

    async def make(deviations: Deviations, **kwargs: Any) -> ForeignGateway:
        gateway = await ForeignGateway(deviations, **kwargs).start()
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        await gateway.stop()


@pytest.fixture
async def managers() -> AsyncIterator[Callable[..., ShardManager]]:
    made: list[ShardManager] = []

    def make(gateway: ForeignGateway, received: list[Dispatch], **overrides: Any) -> ShardManager:
        values: dict[str, Any] = {
            "token": gateway.token,
            "intents": GatewayIntents.default(),
            "rest_url": gateway.rest_url,
            "identify_window": 0.05,
            "shutdown_timeout": 3.0,
            "health_interval": 0.0,
            "event_handler": received.append,
        }
        values.update(overrides)
        manager = ShardManager(ShardManagerOptions(**values))
        made.append(manager)
        return manager

    yield make
    for manager in made:
        await manager.shutdown_all()


def numbers(received: list[Dispatch], shard: int | None = None) -> list[int]:
    return [
        d.data[EVENT_KEY]
        for d in received
        if isinstance(d.data, dict) and EVENT_KEY in d.data and (shard is None or d.shard_id.id == shard)
    ]


# -- point 1 ----------------------------------------------------------------------------------------


async def test_zstd_stream_with_a_frame_per_message_connects_and_stays_connected(foreign, managers) -> None:
    gateway = await foreign(Deviations(zstd_frame_per_message=True), shards=2)
    received: list[Dispatch] = []
    manager = managers(gateway, received, compression="zstd-stream")
    await manager.initialize()
    assert await manager.wait_until_connected(10.0)
    sent = [await gateway.emit(shard, 5) for shard in (0, 1)]
    await eventually(lambda: len(numbers(received)) == 10)
    assert [numbers(received, shard) for shard in (0, 1)] == sent
    # Neither shard went round the close-4000-and-identify loop.
    assert gateway.identifies == {0: 1, 1: 1}
    assert gateway.connections == 2
    assert all(info.reconnects == 0 for info in manager.runners.values())
    assert all(info.stage is ConnectionStage.CONNECTED for info in manager.runners.values())


# -- point 2 ----------------------------------------------------------------------------------------


async def test_resumed_repeating_the_seq_resumes_and_delivers_every_event_once(
    foreign, harness_factory
) -> None:
    gateway = await foreign(Deviations(resumed_repeats_seq=True, replay_overlaps=True, no_resume_url=True))
    h = harness_factory(gateway, compression="zlib-stream")
    await h.wait_connected()
    first = await gateway.emit(0, 3)
    await h.wait_for(lambda: len(h.received) == 4, what="READY and three events")
    missed = gateway.queue(0, 2)  # lost in flight: they come back in the replay
    await gateway.drop(0)
    await h.wait_for(lambda: h.info.resumes == 1, what="RESUMED")
    assert h.runner.stage is ConnectionStage.CONNECTED
    later = await gateway.emit(0, 2)
    await h.wait_for(lambda: len(numbers(h.received)) >= 7, what="the events after the resume")
    # Exactly once and in order: the replayed duplicate of event 3 was dropped, RESUMED was not.
    assert numbers(h.received) == first + missed + later
    assert h.names().count("RESUMED") == 1
    assert gateway.identifies == {0: 1}
    assert gateway.resumes == {0: 1}
    assert h.runner.stage is ConnectionStage.CONNECTED
    # The replay repeated a delivered seq; that is not a warning about live traffic.
    assert "did not increase" not in h.log_text()


# -- point 3 ----------------------------------------------------------------------------------------


async def test_a_gateway_routed_only_at_gateway_connects_and_resumes_there(foreign, managers) -> None:
    deviations = Deviations(ws_path="/gateway", advertised_query="region=eu&v=9")
    gateway = await foreign(deviations)
    received: list[Dispatch] = []
    manager = managers(gateway, received, compression="zstd-stream")
    await manager.initialize()
    assert await manager.wait_until_connected(10.0)
    expected = "/gateway?region=eu&v=10&encoding=json&compress=zstd-stream"
    assert gateway.requests == [expected]
    await gateway.drop(0)
    info = manager.runners[ShardId(0)]
    await eventually(lambda: info.resumes == 1)
    # resume_gateway_url (the same advertised url here) keeps its path and query too.
    assert gateway.requests == [expected, expected]
    assert gateway.identifies == {0: 1}


@pytest.mark.parametrize(("plain_200", "status"), [(False, 404), (True, 200)])
async def test_refused_handshakes_name_the_status_and_the_url(
    foreign, harness_factory, plain_200: bool, status: int
) -> None:
    # The url advertises /gateway/ while the server routes /gateway exactly.
    deviations = Deviations(ws_path="/gateway", advertised_path="/gateway/", plain_200_elsewhere=plain_200)
    gateway = await foreign(deviations)
    h = harness_factory(gateway, max_backoff=0.2)
    url = gateway.gateway_url + "?v=10&encoding=json&compress=zstd-stream"

    def errors() -> list[str]:
        return [e.message for e in h.logs if e.level >= logging.ERROR]

    await h.wait_for(lambda: errors(), what="an error about the refused handshakes")
    assert f"HTTP {status}" in errors()[0] and url in errors()[0]
    assert f"HTTP {status}" in h.info.last_close_reason and url in h.info.last_close_reason
    assert all(gateway.token not in e.message for e in h.logs)
    assert gateway.requests == []
    if plain_200:
        assert gateway.refused and all(path.startswith("/gateway/?v=10") for path in gateway.refused)


# -- READY without shard, every guild on every shard, one session_id ---------------------------------


async def test_foreign_ready_quirks_leave_each_shard_its_own_state(foreign, managers) -> None:
    deviations = Deviations(
        ready_without_shard=True,
        every_guild_on_every_shard=True,
        one_session_id=True,
        bare_envelopes=True,
        first_seq_zero=True,
        charset_in_content_type=True,
    )
    gateway = await foreign(deviations, shards=3, guilds=6)
    received: list[Dispatch] = []
    manager = managers(gateway, received, compression="zlib-stream")
    await manager.initialize()
    assert await manager.wait_until_connected(10.0)
    infos = [manager.runners[ShardId(i)] for i in range(3)]
    # Guild counts are whatever each READY said; every READY said all six.
    assert [info.guilds for info in infos] == [6, 6, 6]
    assert [info.session_id for info in infos] == ["one-session-for-all"] * 3
    readies = [d for d in received if d.name == "READY"]
    assert sorted(d.shard_id.id for d in readies) == [0, 1, 2] and {d.seq for d in readies} == {0}
    before = [info.events_received for info in infos]
    sent = await gateway.emit(1, 4)
    await eventually(lambda: len(numbers(received)) == 4)
    assert numbers(received, 1) == sent
    assert [d.seq for d in received if d.name == "MESSAGE_CREATE"] == [1, 2, 3, 4]
    assert [info.events_received - b for info, b in zip(infos, before, strict=True)] == [0, 4, 0]
    # HELLO and ACK without s/t: heartbeats are still acknowledged.
    await eventually(lambda: all(info.latency is not None for info in infos))
    assert gateway.identifies == {0: 1, 1: 1, 2: 1}
    assert all(info.reconnects == 0 for info in infos)


async def test_a_gateway_briefly_unavailable_is_retried_without_blaming_the_url(
    foreign, harness_factory
) -> None:
    # Five bare 503s in a row (a deploy behind a load balancer), then the gateway is back.
    gateway = await foreign(Deviations(unavailable_first=5))
    h = harness_factory(gateway, max_backoff=0.05)
    await h.wait_connected(within=10.0)
    assert len(gateway.refused) == 5
    refusals = [e for e in h.logs if "could not connect" in e.message]
    assert len(refusals) == 5 and all("HTTP 503" in e.message for e in refusals)
    assert [e.message for e in h.logs if e.level >= logging.ERROR] == []


async def test_a_gateway_unavailable_for_long_is_an_error_that_says_so(foreign, harness_factory) -> None:
    gateway = await foreign(Deviations(unavailable_first=REPEATED_UNAVAILABLE + 1))
    h = harness_factory(gateway, max_backoff=0.05)
    await h.wait_connected(within=20.0)
    errors = [e.message for e in h.logs if e.level >= logging.ERROR]
    assert len(errors) == 2  # the 10th and the 11th refusal
    assert all("HTTP 503" in e and "down or overloaded" in e and "url right" not in e for e in errors)
