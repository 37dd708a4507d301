"""A small gateway that deviates from Discord the way independent reimplementations do (issue #14).

Spacebar and Litecord end a zstd frame after every message, may number RESUMED with the seq the RESUME
carried, route the WebSocket at ``/gateway`` only, send READY without ``shard``, put every guild on
every shard, give all shards one session_id, send HELLO/ACK without ``s``/``t``, number the first
dispatch 0 and add a charset to the REST Content-Type (fact sheet §17.10). Each deviation is a flag of
:class:`Deviations`, so a test turns on the one it is about.

It speaks just enough of the protocol for a client library: ``GET /api/v10/gateway/bot``; a WebSocket
with HELLO, heartbeat ACKs, IDENTIFY -> READY, RESUME -> replay + RESUMED; and test controls to send
dispatches (:meth:`ForeignGateway.emit`) and drop a shard's connection (:meth:`ForeignGateway.drop`).
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson
import zstandard
from aiohttp import WSMsgType, web

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.foreign-gateway.secret-token-value"
EVENT_KEY = "foreign_event"


@dataclass(frozen=True)
class Deviations:
    #: zstd-stream as a complete zstd frame per message instead of one frame flushed per message.
    zstd_frame_per_message: bool = False
    #: RESUMED numbered with the seq the RESUME carried (a repeat) instead of the next one.
    resumed_repeats_seq: bool = False
    #: The replay starts one event before the RESUME's seq (so it repeats one already delivered).
    replay_overlaps: bool = False
    #: The WebSocket path (exact: ``/gateway/`` is a 404); ``query`` is added to the advertised url.
    ws_path: str = "/"
    advertised_query: str = ""
    #: Every other path answers a plain HTTP 200 (a reverse proxy's default page) instead of 404.
    plain_200_elsewhere: bool = False
    #: Advertise this path instead of ``ws_path`` (a misconfigured url: every handshake is refused).
    advertised_path: str | None = None
    ready_without_shard: bool = False
    every_guild_on_every_shard: bool = False
    one_session_id: bool = False
    #: HELLO and heartbeat ACK carry only ``op`` and ``d``.
    bare_envelopes: bool = False
    first_seq_zero: bool = False
    charset_in_content_type: bool = False
    #: READY without resume_gateway_url.
    no_resume_url: bool = False
    #: The first this many WebSocket handshakes are answered with a bare HTTP 503 (a deploy behind a load
    #: balancer): the url is right, the gateway is briefly not there.
    unavailable_first: int = 0


@dataclass
class _Session:
    session_id: str
    shard: int
    first_seq: int
    #: Every dispatch of the session, in order: (seq, name, data).
    log: list[tuple[int, str, Any]] = field(default_factory=list)

    @property
    def seq(self) -> int:
        return self.log[-1][0] if self.log else self.first_seq - 1

    def add(self, name: str, data: Any) -> int:
        seq = self.seq + 1
        self.log.append((seq, name, data))
        return seq


class _Connection:
    """One WebSocket: the compression the client asked for, and the session it identified or resumed."""

    def __init__(self, ws: web.WebSocketResponse, compression: str | None, per_message: bool) -> None:
        self.ws = ws
        self.compression = compression
        self.per_message = per_message
        self.session: _Session | None = None
        self._zlib = zlib.compressobj()
        self._zstd = zstandard.ZstdCompressor()
        self._zstd_stream = self._zstd.compressobj()

    async def send(self, payload: dict[str, Any]) -> None:
        data = orjson.dumps(payload)
        if self.compression == "zlib-stream":
            await self.ws.send_bytes(self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH))
        elif self.compression == "zstd-stream" and self.per_message:
            await self.ws.send_bytes(self._zstd.compress(data))  # a whole frame, ended, every time
        elif self.compression == "zstd-stream":
            stream = self._zstd_stream
            await self.ws.send_bytes(stream.compress(data) + stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
        else:
            await self.ws.send_str(data.decode())


class ForeignGateway:
    def __init__(self, deviations: Deviations, *, shards: int = 1, guilds: int = 6) -> None:
        self.deviations = deviations
        self.shards = shards
        self.guild_ids = [str((i + 1) << 22 | i) for i in range(guilds)]
        self.token = TOKEN
        self.rest_url = ""
        self.gateway_url = ""
        self.port = 0
        #: What the clients did: the path+query of every WebSocket request, identifies and resumes.
        self.requests: list[str] = []
        self.refused: list[str] = []
        self._unavailable_left = deviations.unavailable_first
        self.identifies: dict[int, int] = {}
        self.resumes: dict[int, int] = {}
        self.resume_seqs: list[int] = []
        self.connections = 0
        self._sessions: dict[tuple[str, int], _Session] = {}
        self._live: dict[int, _Connection] = {}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> ForeignGateway:
        app = web.Application()
        app.router.add_get("/api/v10/gateway/bot", self._gateway_bot)
        app.router.add_get(self.deviations.ws_path, self._websocket)
        if self.deviations.plain_200_elsewhere:
            app.router.add_route("GET", "/{tail:.*}", self._plain_page)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.rest_url = f"http://127.0.0.1:{self.port}/api/v10"
        path = self.deviations.advertised_path or self.deviations.ws_path
        query = f"?{self.deviations.advertised_query}" if self.deviations.advertised_query else ""
        self.gateway_url = f"ws://127.0.0.1:{self.port}{path}{query}"
        return self

    async def stop(self) -> None:
        for conn in list(self._live.values()):
            await conn.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()

    # -- test controls --------------------------------------------------------------------------------

    def connected(self, shard: int) -> bool:
        conn = self._live.get(shard)
        return conn is not None and conn.session is not None and not conn.ws.closed

    async def emit(self, shard: int, count: int) -> list[int]:
        """Send ``count`` MESSAGE_CREATE to ``shard``'s live session; returns their event numbers."""
        conn = self._live[shard]
        assert conn.session is not None
        numbers = []
        for _ in range(count):
            number = next(self._ids)
            numbers.append(number)
            data = {"id": str(number), "content": "hi", EVENT_KEY: number}
            seq = conn.session.add("MESSAGE_CREATE", data)
            await conn.send({"op": 0, "s": seq, "t": "MESSAGE_CREATE", "d": data})
        return numbers

    def queue(self, shard: int, count: int) -> list[int]:
        """Events for ``shard`` that happen while it is disconnected: they arrive in the resume replay."""
        session = next(s for (sid, n), s in self._sessions.items() if n == shard)
        numbers = []
        for _ in range(count):
            number = next(self._ids)
            numbers.append(number)
            session.add("MESSAGE_CREATE", {"id": str(number), "content": "missed", EVENT_KEY: number})
        return numbers

    async def drop(self, shard: int, code: int = 4000) -> None:
        """Close ``shard``'s connection with a resumable code; its session stays resumable."""
        conn = self._live.pop(shard)
        await conn.ws.close(code=code, message=b"dropped by the test")

    # -- REST -------------------------------------------------------------------------------------------

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bot {self.token}":
            return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        body = orjson.dumps(
            {
                "url": self.gateway_url,
                "shards": self.shards,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 1000,
                    "reset_after": 0,
                    "max_concurrency": 16,
                },
            }
        )
        content_type = "application/json"
        if self.deviations.charset_in_content_type:
            content_type += "; charset=utf-8"
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _plain_page(self, request: web.Request) -> web.Response:
        self.refused.append(request.path_qs)
        return web.Response(text="<html>it works</html>", content_type="text/html")

    # -- gateway ---------------------------------------------------------------------------------------

    def _envelope(self, op: int, d: Any) -> dict[str, Any]:
        if self.deviations.bare_envelopes:
            return {"op": op, "d": d}
        return {"op": op, "d": d, "s": None, "t": None}

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if self._unavailable_left > 0:
            self._unavailable_left -= 1
            self.refused.append(request.path_qs)
            return web.Response(status=503, text="no healthy upstream")
        self.requests.append(request.path_qs)
        self.connections += 1
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        conn = _Connection(ws, request.query.get("compress"), self.deviations.zstd_frame_per_message)
        await conn.send(self._envelope(10, {"heartbeat_interval": 1000}))
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                payload = orjson.loads(msg.data)
                op = payload.get("op")
                if op == 1:
                    await conn.send(self._envelope(11, None))
                elif op == 2:
                    await self._identify(conn, payload["d"])
                elif op == 6:
                    await self._resume(conn, payload["d"])
        finally:
            if conn.session is not None and self._live.get(conn.session.shard) is conn:
                del self._live[conn.session.shard]
        return ws

    async def _identify(self, conn: _Connection, d: dict[str, Any]) -> None:
        if d.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        shard, total = d.get("shard", [0, 1])
        self.identifies[shard] = self.identifies.get(shard, 0) + 1
        dev = self.deviations
        session_id = "one-session-for-all" if dev.one_session_id else f"session-{shard}-{next(self._ids)}"
        session = _Session(session_id, shard, 0 if dev.first_seq_zero else 1)
        self._sessions[(session_id, shard)] = session
        conn.session = session
        self._live[shard] = conn
        if dev.every_guild_on_every_shard:
            guilds = self.guild_ids
        else:
            guilds = [g for g in self.guild_ids if (int(g) >> 22) % total == shard]
        ready: dict[str, Any] = {
            "v": 10,
            "user": {"id": "123456789012345678", "username": "foreign", "discriminator": "0", "bot": True},
            "guilds": [{"id": g, "unavailable": True} for g in guilds],
            "session_id": session_id,
            "application": {"id": "123456789012345678", "flags": 0},
        }
        if not dev.no_resume_url:
            ready["resume_gateway_url"] = self.gateway_url
        if not dev.ready_without_shard:
            ready["shard"] = [shard, total]
        seq = session.add("READY", ready)
        await conn.send({"op": 0, "s": seq, "t": "READY", "d": ready})

    async def _resume(self, conn: _Connection, d: dict[str, Any]) -> None:
        matches = [s for (sid, _), s in self._sessions.items() if sid == d.get("session_id")]
        if d.get("token") != self.token or len(matches) != 1:
            await conn.send(self._envelope(9, False))
            return
        session = matches[0]
        conn.session = session
        self._live[session.shard] = conn
        seq = d.get("seq") or 0
        self.resumes[session.shard] = self.resumes.get(session.shard, 0) + 1
        self.resume_seqs.append(seq)
        start = seq - 1 if self.deviations.replay_overlaps else seq
        for s, name, data in session.log:
            if s > start:
                await conn.send({"op": 0, "s": s, "t": name, "d": data})
        if self.deviations.resumed_repeats_seq:
            resumed_seq = session.seq
        else:
            resumed_seq = session.add("RESUMED", {})
        await conn.send({"op": 0, "s": resumed_seq, "t": "RESUMED", "d": {}})
