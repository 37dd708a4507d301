"""Name lookups of the gateway client: shared by concurrent connects and cached for DNS_TTL, so a fleet
reconnecting at once after an outage makes one lookup instead of one per shard."""

from __future__ import annotations

import asyncio

import pytest

from shardtui.gateway import websocket


@pytest.fixture
async def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the event loop's real getaddrinfo calls (and clears the module's cache around the test)."""
    seen: list[str] = []
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def counting(host, port, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(host)
        return await real(host, port, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", counting)
    monkeypatch.setattr(websocket, "_dns", {})
    monkeypatch.setattr(websocket, "_dns_pending", {})
    return seen


async def test_concurrent_connects_share_one_lookup(sandbox_factory, lookups) -> None:
    sandbox = await sandbox_factory()
    url = f"ws://localhost:{sandbox.port}/?v=10&encoding=json"
    sockets = await asyncio.gather(*(websocket.connect(url) for _ in range(20)))
    try:
        assert lookups == ["localhost"]
        hellos = await asyncio.gather(*(s.receive() for s in sockets))
        assert all(m.kind is websocket.MessageKind.TEXT and b'"op":10' in m.data for m in hellos)
        again = await websocket.connect(url)  # within the TTL: from the cache
        sockets.append(again)
        assert lookups == ["localhost"]
    finally:
        await asyncio.gather(*(s.close(code=1000) for s in sockets))


async def test_an_ip_literal_is_never_looked_up(sandbox_factory, lookups) -> None:
    sandbox = await sandbox_factory()
    ws = await websocket.connect(f"ws://127.0.0.1:{sandbox.port}/?v=10&encoding=json")
    await ws.close(code=1000)
    assert lookups == []


async def test_an_unknown_name_fails_every_sharer_with_oserror(lookups) -> None:
    results = await asyncio.gather(
        *(websocket.connect("ws://no-such-host.invalid/") for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, OSError) for r in results), results
    assert lookups == ["no-such-host.invalid"]
