"""The proxy's HTTP side against real upstreams: the sandbox's REST API, and a tiny echo server where the
sandbox cannot show a detail (request bodies, rate-limit headers, compression)."""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from yarl import URL

from shardtui.proxy.rest import RestProxy

CLIENT_TOKEN = "client-secret-for-the-bots"
Served = Callable[..., Awaitable[tuple[RestProxy, str]]]


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def serve_proxy() -> AsyncIterator[Served]:
    """``await serve_proxy(upstream=..., token=..., **options)`` -> (RestProxy, its base URL)."""
    runners: list[web.AppRunner] = []

    async def start(**options: Any) -> tuple[RestProxy, str]:
        options.setdefault("ws_url", "ws://127.0.0.1:1/?v=10")
        options.setdefault("shard_count", lambda: 4)
        proxy = RestProxy(**options)
        app = web.Application()
        proxy.add_routes(app)
        runner, base = await _serve(app)
        runners.append(runner)
        return proxy, base

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """An upstream that records each request and answers like Discord's REST API would."""
    seen: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen.append(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "headers": list(request.headers.items()),
                "body": body,
            }
        )
        if request.path.endswith("/gzip"):
            payload = gzip.compress(b'{"big":"' + b"x" * 5000 + b'"}')
            headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
            return web.Response(body=payload, headers=headers)
        response = web.Response(
            status=201,
            body=orjson.dumps({"size": len(body)}),
            headers={
                "Content-Type": "application/json",
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "4",
                "X-RateLimit-Reset-After": "1.5",
                "X-RateLimit-Bucket": "abcd1234",
                "Keep-Alive": "timeout=5",
            },
        )
        response.headers.add("Set-Cookie", "a=1")
        response.headers.add("Set-Cookie", "b=2")
        return response

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    runner, base = await _serve(app)
    yield base, seen
    await runner.cleanup()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_get_users_me_passes_through_to_the_sandbox(sandbox, serve_proxy) -> None:
    proxy, base = await serve_proxy(upstream=sandbox.rest_url, token=sandbox.token)
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bot {sandbox.token}"}
        async with http.get(f"{base}/api/v10/users/@me", headers=auth) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/json"
            me = await response.json()
        async with http.get(f"{base}/api/v10/users/@me", headers={"Authorization": "Bot nope"}) as response:
            # Without a client token the bot's own Authorization goes up as it is: the sandbox refuses it.
            assert response.status == 401
            assert await response.json() == {"message": "401: Unauthorized", "code": 0}
    assert me["id"] == str(sandbox.bot_user_id) and me["bot"] is True
    assert proxy.forwarded == 2


async def test_a_request_goes_up_unchanged_and_the_answer_comes_back_unchanged(echo, serve_proxy) -> None:
    upstream, seen = echo
    _, base = await serve_proxy(upstream=f"{upstream}/api/v10", token="real.token.value")
    body = orjson.dumps({"content": "y" * 300_000})  # bigger than one streamed chunk
    headers = {
        "Authorization": "Bot real.token.value",
        "Content-Type": "application/json",
        "X-Audit-Log-Reason": "cleanup%20time",
        "Connection": "keep-alive, X-Hop",
        "X-Hop": "this hop only",
        "Keep-Alive": "timeout=5",
    }
    async with aiohttp.ClientSession() as http:
        # encoded=True: the test client sends these exact bytes (yarl would normalize %40 to @).
        url = URL(f"{base}/api/v10/channels/1/messages?limit=5&around=%40me", encoded=True)
        async with http.post(url, data=body, headers=headers) as response:
            assert response.status == 201
            answer = await response.json()
            got = response.headers
            assert got["Content-Type"] == "application/json"
            assert got["X-RateLimit-Limit"] == "5" and got["X-RateLimit-Remaining"] == "4"
            assert got["X-RateLimit-Reset-After"] == "1.5" and got["X-RateLimit-Bucket"] == "abcd1234"
            assert got.getall("Set-Cookie") == ["a=1", "b=2"]
            assert "Keep-Alive" not in got
    assert answer == {"size": len(body)}
    (request,) = seen
    assert request["method"] == "POST"
    assert request["raw_path"] == "/api/v10/channels/1/messages?limit=5&around=%40me"
    assert request["body"] == body
    sent = dict(request["headers"])
    assert sent["Authorization"] == "Bot real.token.value"
    assert sent["X-Audit-Log-Reason"] == "cleanup%20time" and sent["Content-Type"] == "application/json"
    assert sent["Host"] == upstream.removeprefix("http://")
    assert not {"X-Hop", "Keep-Alive"} & set(sent)
    assert sent["Content-Length"] == str(len(body))  # streamed, yet with the client's length


async def test_compressed_answers_go_through_as_sent(echo, serve_proxy) -> None:
    upstream, seen = echo
    _, base = await serve_proxy(upstream=f"{upstream}/api/v10", token="real.token.value")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/v10/gzip", headers={"Accept-Encoding": "gzip"}) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            assert len((await response.json())["big"]) == 5000
        async with http.get(f"{base}/api/v10/plain", skip_auto_headers={"Accept-Encoding"}) as response:
            assert response.status == 201
    # The proxy adds no Accept-Encoding of its own: a client that asked for none gets plain bytes.
    assert dict(seen[0]["headers"])["Accept-Encoding"] == "gzip"
    assert "Accept-Encoding" not in dict(seen[1]["headers"])


async def test_gateway_routes_are_answered_by_the_proxy(serve_proxy) -> None:
    shards = [4]
    unreachable = f"http://127.0.0.1:{_free_port()}/api/v10"
    proxy, base = await serve_proxy(
        upstream=unreachable,
        token="real.token.value",
        ws_url=lambda _host: "ws://127.0.0.1:9999/?v=10&encoding=json",
        shard_count=lambda: shards[0],
        max_concurrency=16,
    )
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": "Bot real.token.value"}
        for version in (9, 10):
            async with http.get(f"{base}/api/v{version}/gateway") as response:
                assert await response.json() == {"url": "ws://127.0.0.1:9999/"}
            shards[0] = 4 + version
            async with http.get(f"{base}/api/v{version}/gateway/bot", headers=auth) as response:
                assert response.status == 200 and response.headers["Content-Type"] == "application/json"
                data = await response.json()
            assert data["url"] == "ws://127.0.0.1:9999/" and data["shards"] == 4 + version
            limit = data["session_start_limit"]
            assert limit["remaining"] == limit["total"] >= 100_000 and limit["max_concurrency"] == 16
            assert 0 <= limit["reset_after"] <= 5_000
        async with http.get(f"{base}/api/v10/gateway/bot", headers={"Authorization": "Bot x"}) as response:
            assert response.status == 401
    assert proxy.forwarded == 0 and proxy.upstream_failures == 0  # nothing went upstream


async def test_a_client_token_is_swapped_for_the_real_one_and_others_are_refused(
    sandbox, serve_proxy
) -> None:
    _, base = await serve_proxy(upstream=sandbox.rest_url, token=sandbox.token, client_token=CLIENT_TOKEN)
    async with aiohttp.ClientSession() as http:
        url = f"{base}/api/v10/users/@me"
        async with http.get(url, headers={"Authorization": f"Bot {CLIENT_TOKEN}"}) as response:
            assert response.status == 200
            assert (await response.json())["id"] == str(sandbox.bot_user_id)
        for other in (f"Bot {sandbox.token}", "Bot wrong", f"Bearer {CLIENT_TOKEN}", CLIENT_TOKEN):
            async with http.get(url, headers={"Authorization": other}) as response:
                assert response.status == 401, other
                assert await response.json() == {"message": "401: Unauthorized", "code": 0}
        auth = {"Authorization": f"Bot {CLIENT_TOKEN}"}
        async with http.get(f"{base}/api/v10/gateway/bot", headers=auth) as response:
            assert response.status == 200
        real = {"Authorization": f"Bot {sandbox.token}"}
        async with http.get(f"{base}/api/v10/gateway/bot", headers=real) as response:
            assert response.status == 401


async def test_an_unreachable_upstream_is_a_502_naming_it_in_one_log_line(serve_proxy, caplog) -> None:
    port = _free_port()
    proxy, base = await serve_proxy(
        upstream=f"http://127.0.0.1:{port}/api/v10",
        token="secret.token.never-logged",
        client_token=CLIENT_TOKEN,
    )
    with caplog.at_level(logging.DEBUG, logger="shardtui.proxy"):
        async with aiohttp.ClientSession() as http:
            auth = {"Authorization": f"Bot {CLIENT_TOKEN}"}
            async with http.get(f"{base}/api/v10/users/@me", headers=auth) as response:
                assert response.status == 502
                assert response.headers["Content-Type"] == "application/json"
                data = await response.json()
    assert "127.0.0.1" in data["message"] and data["code"] == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "shardtui.proxy"]
    assert len(lines) == 1 and "127.0.0.1" in lines[0] and "/api/v10/users/@me" in lines[0], lines
    assert "secret.token" not in caplog.text and CLIENT_TOKEN not in caplog.text
    assert proxy.upstream_failures == 1
    assert "secret" not in repr(proxy) and CLIENT_TOKEN not in repr(proxy)


async def test_health_is_200_only_when_the_check_says_ok(serve_proxy) -> None:
    state = {"ok": True}

    def check() -> tuple[bool, dict[str, Any]]:
        return state["ok"], {"shards": {"0": "connected" if state["ok"] else "resuming"}}

    _, base = await serve_proxy(upstream="http://127.0.0.1:1/api/v10", token="t.t.t", health=check)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/health") as response:
            assert response.status == 200
            assert await response.json() == {"ok": True, "shards": {"0": "connected"}}
        state["ok"] = False
        async with http.get(f"{base}/health") as response:
            assert response.status == 503
            assert await response.json() == {"ok": False, "shards": {"0": "resuming"}}


def test_bad_settings_are_refused_up_front() -> None:
    with pytest.raises(ValueError, match="absolute"):
        RestProxy(upstream="discord.com/api", token="t", ws_url="ws://x/", shard_count=lambda: 1)
    with pytest.raises(ValueError, match="max_concurrency"):
        RestProxy(
            upstream="https://discord.com/api/v10",
            token="t",
            ws_url="ws://x/",
            shard_count=lambda: 1,
            max_concurrency=0,
        )


async def test_discordpy_logs_in_and_finds_the_gateway_through_the_proxy(sandbox, serve_proxy, monkeypatch):
    discord = pytest.importorskip("discord")
    _, base = await serve_proxy(
        upstream=sandbox.rest_url,
        token=sandbox.token,
        client_token=CLIENT_TOKEN,
        ws_url="ws://127.0.0.1:7777/",
        shard_count=lambda: 3,
    )
    monkeypatch.setattr(discord.http.Route, "BASE", f"{base}/api/v10")
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    try:
        me = await http.static_login(CLIENT_TOKEN)
        assert me["id"] == str(sandbox.bot_user_id)
        shards, url, limits = await http.get_bot_gateway()
        assert (shards, url) == (3, "ws://127.0.0.1:7777/")
        assert limits["max_concurrency"] == 16
    finally:
        await http.close()
