"""REST routes real client libraries call before connecting, plus the loopback-only control API."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import orjson
from aiohttp import web

from .faults import FAULT_KINDS
from .responses import error_response, json_response
from .state import SandboxState

API_VERSIONS = (9, 10)


class RestApi:
    def __init__(self, state: SandboxState, inject: Callable[..., int], rest_url: Callable[[], str]) -> None:
        self.state = state
        self._inject = inject
        self._rest_url = rest_url

    def add_routes(self, app: web.Application) -> None:
        for version in API_VERSIONS:
            base = f"/api/v{version}"
            app.router.add_get(f"{base}/gateway", self.gateway)
            app.router.add_get(f"{base}/gateway/bot", self.gateway_bot)
            app.router.add_get(f"{base}/users/@me", self.me)
            app.router.add_get(f"{base}/oauth2/applications/@me", self.application)
            app.router.add_get(f"{base}/applications/@me", self.application)
            app.router.add_route("*", base + "/{tail:.*}", self.not_found)
        app.router.add_get("/sandbox/stats", self.control_stats)
        app.router.add_get("/sandbox/events/{shard}", self.control_events)
        app.router.add_get("/sandbox/faults", self.control_fault_kinds)
        app.router.add_post("/sandbox/faults", self.control_inject)

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        return header.startswith("Bot ") and self.state.accepts_token(header[4:])

    async def gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self.state.gateway_url})

    async def gateway_bot(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return error_response(401, "401: Unauthorized")
        return json_response(
            {
                "url": self.state.gateway_url,
                "shards": self.state.settings.shards,
                "session_start_limit": self.state.session_start_limit(),
            }
        )

    async def me(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return error_response(401, "401: Unauthorized")
        return json_response(self.state.world.user_payload())

    async def application(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return error_response(401, "401: Unauthorized")
        return json_response(self.state.world.application_payload())

    async def not_found(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return error_response(401, "401: Unauthorized")
        return error_response(404, "404: Not Found")

    # -- control API (loopback only) ----------------------------------------------------------------

    @staticmethod
    def _loopback(request: web.Request) -> bool:
        try:
            return ipaddress.ip_address(request.remote or "").is_loopback
        except ValueError:
            return False

    async def control_stats(self, request: web.Request) -> web.Response:
        if not self._loopback(request):
            return error_response(403, "the sandbox control API only answers loopback clients")
        data = self.state.stats(with_events=request.query.get("events") in ("1", "true"))
        data["rest_url"] = self._rest_url()
        return json_response(data)

    async def control_events(self, request: web.Request) -> web.Response:
        if not self._loopback(request):
            return error_response(403, "the sandbox control API only answers loopback clients")
        try:
            shard_id = int(request.match_info["shard"])
        except ValueError:
            return error_response(400, "shard must be an integer")
        stats = self.state.shard_stats.get(shard_id)
        return json_response([e.as_dict() for e in stats.sent] if stats else [])

    async def control_fault_kinds(self, request: web.Request) -> web.Response:
        if not self._loopback(request):
            return error_response(403, "the sandbox control API only answers loopback clients")
        return json_response(FAULT_KINDS)

    async def control_inject(self, request: web.Request) -> web.Response:
        if not self._loopback(request):
            return error_response(403, "the sandbox control API only answers loopback clients")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return error_response(400, 'body must be JSON: {"kind": ..., "shard": null|int, ...params}')
        if not isinstance(body, dict) or not isinstance(body.get("kind"), str):
            return error_response(400, "body needs a string 'kind'")
        kind = body.pop("kind")
        shard = body.pop("shard", None)
        if shard is not None and (not isinstance(shard, int) or isinstance(shard, bool)):
            return error_response(400, "'shard' must be an integer or null")
        try:
            affected = self._inject(kind, shard, **body)
        except (ValueError, TypeError) as exc:
            return error_response(400, str(exc))
        return json_response({"kind": kind, "shard": shard, "affected": affected})
