"""GET /gateway/bot against small real HTTP servers: the happy path and each failure's message."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
import pytest
from aiohttp import web

from shardtui.gateway.errors import FatalGatewayError, GatewayError
from shardtui.gateway.http import fetch_gateway_bot, normalise_gateway_url

TOKEN = "MTIzNDU2Nzg5.secret-part.do-not-log"
GOOD = {
    "url": "wss://gateway.example/",
    "shards": 9,
    "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 4},
}


@pytest.fixture
async def serve():
    """Start an aiohttp server with one handler for /api/v10/gateway/bot; yields its REST url."""
    runners: list[web.AppRunner] = []

    async def start(handler) -> str:
        app = web.Application()
        app.router.add_get("/api/v10/gateway/bot", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/api/v10"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_reads_url_shards_and_session_start_limit(serve) -> None:
    seen: dict[str, str] = {}

    async def handler(request: web.Request) -> web.Response:
        seen["auth"] = request.headers.get("Authorization", "")
        seen["ua"] = request.headers.get("User-Agent", "")
        # Liberal: charset in the content type, a query string on the advertised url.
        body = dict(GOOD, url="wss://gateway.example/?v=10&encoding=json")
        return web.Response(
            body=json.dumps(body).encode(), headers={"Content-Type": "application/json; charset=utf-8"}
        )

    rest = await serve(handler)
    async with aiohttp.ClientSession() as session:
        info = await fetch_gateway_bot(session, rest, TOKEN)
    assert seen["auth"] == f"Bot {TOKEN}"
    assert seen["ua"].startswith("DiscordBot (")
    assert info.url == "wss://gateway.example/"
    assert info.shards == 9
    limit = info.session_start_limit
    assert limit is not None
    assert (limit.total, limit.remaining, limit.max_concurrency) == (1000, 999, 4)


async def test_rejected_token_is_fatal_and_never_quoted(serve) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)

    rest = await serve(handler)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(FatalGatewayError) as caught:
            await fetch_gateway_bot(session, rest, TOKEN)
    assert caught.value.kind == "authentication"
    assert "token was rejected" in str(caught.value)
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value)
    assert "secret-part" not in str(caught.value)


async def test_rate_limit_is_waited_out_then_retried(serve) -> None:
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.json_response(
                {"message": "You are being rate limited.", "retry_after": 0.05}, status=429
            )
        return web.json_response(GOOD)

    rest = await serve(handler)
    async with aiohttp.ClientSession() as session:
        info = await fetch_gateway_bot(session, rest, TOKEN)
    assert calls == 2
    assert info.shards == 9


async def test_long_rate_limit_is_reported_not_slept(serve) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"retry_after": 3600}, status=429)

    rest = await serve(handler)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(GatewayError, match=r"rate limited \(HTTP 429\) for 1 h"):
            await fetch_gateway_bot(session, rest, TOKEN)


async def test_malformed_json_is_an_error_naming_the_url(serve) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="<html>gateway</html>", content_type="text/html")

    rest = await serve(handler)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(GatewayError, match="returned malformed JSON: <html>gateway</html>") as caught:
            await fetch_gateway_bot(session, rest, TOKEN)
    assert f"{rest}/gateway/bot" in str(caught.value)


async def test_json_without_a_url_is_unusable(serve) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"shards": 2})

    rest = await serve(handler)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(GatewayError, match="unusable answer: no 'url'"):
            await fetch_gateway_bot(session, rest, TOKEN)


async def test_not_found_reports_status_and_body(serve) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"message": "404: Not Found"}, status=404)

    rest = await serve(handler)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(GatewayError, match="answered HTTP 404"):
            await fetch_gateway_bot(session, rest.replace("/v10", "/v10/"), TOKEN)


async def test_connection_refused_names_the_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rest = f"http://127.0.0.1:{port}/api/v10"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(GatewayError, match=f"cannot reach {rest}/gateway/bot"):
            await fetch_gateway_bot(session, rest, TOKEN)


async def test_timeout_names_the_url(serve) -> None:
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response(GOOD)

    rest = await serve(handler)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(GatewayError, match=r"GET .*/gateway/bot timed out after 0.2 s"):
            await fetch_gateway_bot(session, rest, TOKEN, request_timeout=0.2)
    release.set()


def test_gateway_urls_are_normalised() -> None:
    assert normalise_gateway_url("wss://gateway.discord.gg") == "wss://gateway.discord.gg/"
    assert normalise_gateway_url("ws://127.0.0.1:9/?v=10&encoding=json") == "ws://127.0.0.1:9/"
    # Issue #14: the advertised path and any query of the server's own are kept.
    assert normalise_gateway_url("ws://127.0.0.1:9/gateway") == "ws://127.0.0.1:9/gateway"
    assert normalise_gateway_url("ws://h/gw?region=eu&v=9#x") == "ws://h/gw?region=eu"
    with pytest.raises(ValueError, match="not a WebSocket url"):
        normalise_gateway_url("gateway.discord.gg")


class InstantClock:
    """Real wall time, but sleeps return at once and are recorded (the retry waits are long)."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return 0.0

    def wall(self) -> float:
        return 1_000.0

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


async def test_server_errors_are_retried_with_backoff_then_reported(serve) -> None:
    calls = 0

    async def flaky(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls < 3:
            return web.Response(status=502, text="bad gateway")
        return web.json_response(GOOD)

    clock = InstantClock()
    rest = await serve(flaky)
    async with aiohttp.ClientSession() as session:
        info = await fetch_gateway_bot(session, rest, TOKEN, clock=clock)
    assert info.session_start_limit is not None
    assert info.session_start_limit.reset_at == 1_000.0 + 14_400.0
    assert clock.slept == [1.0, 2.0]

    async def down(request: web.Request) -> web.Response:
        return web.Response(status=503, text="upstream unavailable")

    rest = await serve(down)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(GatewayError, match="answered HTTP 503: upstream unavailable"):
            await fetch_gateway_bot(session, rest, TOKEN, clock=InstantClock())
