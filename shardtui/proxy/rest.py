"""The proxy's HTTP side: local /gateway, /gateway/bot and /health, and every other /api call passed
through to Discord's REST API unchanged.

Bots point their REST base at the proxy (``http://proxy:port/api/v10``) as they point their gateway at
it. ``GET /api/v{9,10}/gateway`` and ``/gateway/bot`` are answered here: ``url`` is the proxy's own
WebSocket URL, ``shards`` the manager's total, and a ``session_start_limit`` that never makes a bot
wait (a downstream IDENTIFY costs no upstream identify). Everything else under ``/api/`` goes upstream
through one shared aiohttp ``ClientSession``: method, path, query, headers (Authorization and rate-limit
headers included; hop-by-hop headers dropped), body and response streamed both ways, status kept.

With a client token configured, bot code never holds the real token: a request authorized with
``Bot <client_token>`` is sent upstream with the real token; any other Authorization gets Discord's 401.
Neither token ever reaches a log line (both are registered with :mod:`shardtui.logsafe`).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict, istr
from yarl import URL

from shardtui.logsafe import register_secret

log = logging.getLogger("shardtui.proxy")

API_VERSIONS: Final = (9, 10)
#: session_start_limit the proxy announces: downstream identifies are free, so never a reason to wait.
SESSION_STARTS: Final = 1_000_000
SESSION_RESET_AFTER_MS: Final = 1_000

#: Headers that describe one hop, never forwarded (RFC 9110 §7.6.1), plus Host (the upstream's own).
HOP_BY_HOP: Final = frozenset(
    istr(h)
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
    )
)
AUTHORIZATION: Final = istr("Authorization")
SKIP_AUTO_HEADERS: Final = frozenset({"Accept-Encoding", "User-Agent", "Content-Type"})
#: Chunk size for streaming bodies both ways.
CHUNK: Final = 64 * 1024

HealthCheck = Callable[[], tuple[bool, dict[str, Any]]]


def json_response(data: Any, status: int = 200) -> web.Response:
    # Built by hand: web.json_response appends "; charset=utf-8", which strict clients treat as text.
    return web.Response(body=orjson.dumps(data), status=status, headers={"Content-Type": "application/json"})


def unauthorized() -> web.Response:
    return json_response({"message": "401: Unauthorized", "code": 0}, status=401)


def _forwardable(headers: Any) -> CIMultiDict[str]:
    """``headers`` without hop-by-hop ones (also those a Connection header names)."""
    named = {istr(v.strip()) for value in headers.getall("Connection", ()) for v in value.split(",")}
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in headers.items():
        if key not in HOP_BY_HOP and key not in named:
            out.add(key, value)
    return out


class RestProxy:
    """Routes for the proxy's HTTP port. ``add_routes(app)`` mounts them; ``close()`` (also run on the
    app's cleanup) closes the client session if this object made it.

    ``upstream`` is the REST base the upstream shards use (``https://discord.com/api/v10`` or a sandbox's
    ``rest_url``): requests keep their own ``/api/...`` path and query and go to that base's origin and
    path prefix before ``/api``."""

    def __init__(
        self,
        *,
        upstream: str,
        token: str,
        ws_url: str | Callable[[str | None], str],
        shard_count: Callable[[], int],
        health: HealthCheck | None = None,
        client_token: str | None = None,
        max_concurrency: int = 16,
        session: aiohttp.ClientSession | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> None:
        if not token:
            raise ValueError("the REST proxy needs the bot token")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        base = URL(upstream)
        if not base.scheme or not base.host:
            raise ValueError(f"upstream REST base must be an absolute http(s) URL, got {upstream!r}")
        path = base.path
        cut = path.find("/api")
        # Everything before "/api" in the base is a prefix the upstream serves the API under.
        self._prefix = path[:cut].rstrip("/") if cut >= 0 else path.rstrip("/")
        self._origin = base.origin()
        self.upstream_host = base.host
        self._token = token
        self._client_token = client_token
        register_secret(token)
        register_secret(client_token)
        self._ws_url = ws_url
        self._shard_count = shard_count
        self._health = health
        self.max_concurrency = max_concurrency
        self._session = session
        self._owns_session = session is None
        self._timeout = timeout or aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
        #: Requests passed upstream, and those answered 502 because the upstream could not be reached.
        self.forwarded = 0
        self.upstream_failures = 0

    def __repr__(self) -> str:
        return (
            f"<RestProxy upstream={self._origin}{self._prefix} client_token={self._client_token is not None}>"
        )

    # -- mounting ---------------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        for version in API_VERSIONS:
            app.router.add_get(f"/api/v{version}/gateway", self.gateway)
            app.router.add_get(f"/api/v{version}/gateway/bot", self.gateway_bot)
        app.router.add_get("/health", self.health)
        app.router.add_route("*", "/api/{tail:.*}", self.forward)
        app.on_cleanup.append(self._on_cleanup)

    async def _on_cleanup(self, app: web.Application) -> None:
        await self.close()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._owns_session and not session.closed:
            await session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise RuntimeError("the REST proxy's shared client session is closed")
            # No cookie jar: one proxy serves many bots, a cookie of one must not reach another's call.
            self._session = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(), connector=aiohttp.TCPConnector(limit=0)
            )
        return self._session

    # -- local answers ----------------------------------------------------------------------------

    def ws_url(self, request: web.Request) -> str:
        """The gateway URL to tell this request's bot (``ws_url`` called with its Host header)."""
        url = self._ws_url(request.headers.get("Host")) if callable(self._ws_url) else self._ws_url
        # Clients append their own query.
        return url.split("?", 1)[0]

    def _authorized(self, header: str | None) -> bool:
        """Discord's rule for the token this proxy expects (the client token when one is set)."""
        expected = f"Bot {self._client_token or self._token}"
        return header is not None and hmac.compare_digest(header.encode(), expected.encode())

    async def gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self.ws_url(request)})

    async def gateway_bot(self, request: web.Request) -> web.Response:
        if not self._authorized(request.headers.get(AUTHORIZATION)):
            return unauthorized()
        return json_response(
            {
                "url": self.ws_url(request),
                "shards": self._shard_count(),
                "session_start_limit": {
                    "total": SESSION_STARTS,
                    "remaining": SESSION_STARTS,
                    "reset_after": SESSION_RESET_AFTER_MS,
                    "max_concurrency": self.max_concurrency,
                },
            }
        )

    async def health(self, request: web.Request) -> web.Response:
        if self._health is None:
            return json_response({"ok": True})
        ok, detail = self._health()
        return json_response({"ok": ok, **detail}, status=200 if ok else 503)

    # -- passthrough ------------------------------------------------------------------------------

    async def forward(self, request: web.Request) -> web.StreamResponse:
        headers = _forwardable(request.headers)
        if self._client_token is not None and AUTHORIZATION in headers:
            if not self._authorized(headers[AUTHORIZATION]):
                return unauthorized()
            headers[AUTHORIZATION] = f"Bot {self._token}"
        # raw_path keeps the client's own encoding and query string.
        target = URL(f"{self._origin}{self._prefix}{request.raw_path}", encoded=True)
        body = request.content if request.body_exists else None
        self.forwarded += 1
        try:
            upstream = await self._client().request(
                request.method,
                target,
                headers=headers,
                data=body,
                allow_redirects=False,
                # Send only what the client sent: an Accept-Encoding aiohttp added would get a
                # compressed body back to a client that never asked for one.
                skip_auto_headers=SKIP_AUTO_HEADERS,
                # Bytes go through as sent (gzip stays gzip), with their own Content-Encoding/Length.
                auto_decompress=False,
                timeout=self._timeout,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.upstream_failures += 1
            log.warning(
                "REST passthrough: %s %s failed, upstream %s unreachable: %s",
                request.method,
                request.path,
                self.upstream_host,
                type(exc).__name__,
            )
            return json_response(
                {"message": f"502: upstream {self.upstream_host} unreachable", "code": 0}, status=502
            )
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in _forwardable(upstream.headers).items():
                response.headers.add(key, value)
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_chunked(CHUNK):
                    await response.write(chunk)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                # Headers are out: the client sees a cut body, as it would from Discord itself.
                log.warning(
                    "REST passthrough: %s %s cut short by upstream %s: %s",
                    request.method,
                    request.path,
                    self.upstream_host,
                    type(exc).__name__,
                )
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
        return response
