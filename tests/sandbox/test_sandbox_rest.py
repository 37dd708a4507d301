"""REST surface real clients call before connecting, and the loopback control API."""

from __future__ import annotations

from types import SimpleNamespace

import aiohttp
import pytest

from shardtui.sandbox.rest import RestApi


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def _auth(sandbox, token=None):
    return {"Authorization": f"Bot {token or sandbox.token}"}


@pytest.mark.parametrize("version", [9, 10])
@pytest.mark.parametrize("path", ["/gateway/bot", "/users/@me", "/oauth2/applications/@me"])
async def test_routes_answer_with_bare_application_json(sandbox, http, version, path):
    base = sandbox.rest_url.replace("/api/v10", f"/api/v{version}")
    async with http.get(base + path, headers=_auth(sandbox)) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"


async def test_gateway_needs_no_auth_and_has_no_query(sandbox, http):
    async with http.get(sandbox.rest_url + "/gateway") as response:
        assert await response.json() == {"url": sandbox.gateway_url}
    assert "?" not in sandbox.gateway_url


async def test_gateway_bot_reports_shards_and_session_start_limit(sandbox_factory, http):
    sandbox = await sandbox_factory(shards=6, max_concurrency=4, session_start_total=1500)
    async with http.get(sandbox.rest_url + "/gateway/bot", headers=_auth(sandbox)) as response:
        body = await response.json()
    assert body["url"] == sandbox.gateway_url
    assert body["shards"] == 6
    limit = body["session_start_limit"]
    assert limit["total"] == 1500 and limit["remaining"] == 1500 and limit["max_concurrency"] == 4
    assert 0 < limit["reset_after"] <= 86_400_000


@pytest.mark.parametrize("path", ["/gateway/bot", "/users/@me", "/oauth2/applications/@me", "/channels/1"])
@pytest.mark.parametrize("header", [None, "Bot wrong.token.here", "Bearer x"])
async def test_bad_or_missing_token_gets_401(sandbox, http, path, header):
    headers = {"Authorization": header} if header else {}
    async with http.get(sandbox.rest_url + path, headers=headers) as response:
        assert response.status == 401
        assert response.headers["Content-Type"] == "application/json"
        assert (await response.json())["message"] == "401: Unauthorized"


async def test_users_me_is_the_bot_of_the_token(sandbox, http):
    async with http.get(sandbox.rest_url + "/users/@me", headers=_auth(sandbox)) as response:
        me = await response.json()
    assert me["id"] == str(sandbox.bot_user_id) and me["bot"] is True
    for key in ("username", "discriminator", "avatar", "mfa_enabled", "flags"):
        assert key in me


async def test_application_has_the_fields_clients_require(sandbox, http):
    async with http.get(sandbox.rest_url + "/oauth2/applications/@me", headers=_auth(sandbox)) as response:
        app = await response.json()
    for key in ("owner", "verify_key", "bot_public", "bot_require_code_grant", "flags"):
        assert key in app
    assert app["interactions_endpoint_url"] is None
    assert app["id"] == str(sandbox.bot_user_id)


async def test_unknown_route_is_a_json_404(sandbox, http):
    async with http.get(sandbox.rest_url + "/channels/1/messages", headers=_auth(sandbox)) as response:
        assert response.status == 404
        assert response.headers["Content-Type"] == "application/json"


async def test_configured_token_is_used_and_its_user_id_is_the_bot(sandbox_factory, http):
    token = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhJk9a.0123456789abcdefghijklmnopqrstuvwxyzAB"
    sandbox = await sandbox_factory(token=token)
    assert sandbox.token == token
    assert sandbox.bot_user_id == 123456789012345678
    async with http.get(sandbox.rest_url + "/users/@me", headers=_auth(sandbox)) as response:
        assert response.status == 200


async def test_control_api_reports_stats_and_events(sandbox, http, raw):
    client = await raw(sandbox)
    await client.ready(sandbox.token, (0, 2), 1)
    async with http.get(sandbox.control_url + "/stats") as response:
        stats = await response.json()
    assert response.headers["Content-Type"] == "application/json"
    assert stats["shards"]["0"]["identifies"] == 1
    assert stats["rest_url"] == sandbox.rest_url
    async with http.get(sandbox.control_url + "/stats?events=1") as response:
        detailed = await response.json()
    assert [e["event_id"] for e in detailed["shards"]["0"]["events"]] == sandbox.event_ids(0)
    assert detailed["sessions"][0]["shard"] == [0, 2] and detailed["sessions"][0]["connected"] is True
    async with http.get(sandbox.control_url + "/events/0") as response:
        events = await response.json()
    assert events[0]["name"] == "READY"
    assert [e["event_id"] for e in events] == sandbox.event_ids(0)


async def test_control_api_injects_faults(sandbox, http, raw):
    client = await raw(sandbox)
    await client.ready(sandbox.token, (1, 2), 1)
    async with http.post(
        sandbox.control_url + "/faults", json={"kind": "close", "shard": 1, "code": 4000}
    ) as resp:
        assert await resp.json() == {"kind": "close", "shard": 1, "affected": 1}
    assert await client.expect_close() == 4000
    async with http.get(sandbox.control_url + "/faults") as response:
        assert "drop" in await response.json()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kind": "explode"}, "unknown sandbox fault 'explode'"),
        ({"shard": 1}, "body needs a string 'kind'"),
        ({"kind": "drop", "shard": "one"}, "'shard' must be an integer or null"),
        ({"kind": "close", "code": 1006}, "close code 1006 is not one a server may send"),
    ],
)
async def test_control_api_rejects_bad_requests_with_a_message(sandbox, http, body, message):
    async with http.post(sandbox.control_url + "/faults", json=body) as response:
        assert response.status == 400
        assert message in (await response.json())["message"]


def test_control_api_only_answers_loopback_peers():
    assert RestApi._loopback(SimpleNamespace(remote="127.0.0.1"))
    assert RestApi._loopback(SimpleNamespace(remote="::1"))
    assert not RestApi._loopback(SimpleNamespace(remote="192.168.1.20"))
    assert not RestApi._loopback(SimpleNamespace(remote=None))


async def test_secret_token_appears_in_no_stats_or_repr(sandbox, raw):
    client = await raw(sandbox)
    await client.ready(sandbox.token, (0, 2), 1)
    assert sandbox.token not in repr(sandbox)
    assert sandbox.token not in repr(sandbox.settings)
    assert sandbox.token not in str(sandbox.stats(with_events=True))
