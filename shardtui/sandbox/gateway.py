"""The WebSocket gateway: HELLO, identify/resume, heartbeats, commands and Discord's limits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any, TypeGuard

import orjson
from aiohttp import WSMsgType, web

from shardtui.gateway.aio import wait_for
from shardtui.gateway.protocol import (
    ALL_INTENTS_VALUE,
    CLIENT_OPCODES,
    MAX_CLIENT_PAYLOAD_BYTES,
    PRIVILEGED_INTENTS_VALUE,
    STREAMING_URL_HOSTS,
    SUPPORTED_API_VERSIONS,
    CloseCode,
    GatewayIntents,
    Opcode,
)

from .payloads import guild_create_payload, presence_of, ready_payload, trace
from .responses import error_response
from .session import Session
from .settings import SandboxSettings
from .state import SandboxState
from .transport import Connection

log = logging.getLogger("shardtui.sandbox")

#: Largest frame aiohttp reads at all; anything between 4096 B and this gets Discord's 4002.
READ_LIMIT = 1 << 20
VALID_STATUSES = frozenset({"online", "idle", "dnd", "invisible", "offline"})


class Reject(Exception):
    """Close the connection with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _snowflake(value: object) -> int | None:
    if _is_int(value) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit() and len(value) <= 20:
        return int(value)
    return None


def control(op: int, d: Any = None) -> dict[str, Any]:
    return {"t": None, "s": None, "op": op, "d": d}


def validate_presence(d: object) -> dict[str, Any]:
    """Discord's op 3 rules; returns the presence as Discord would hold it. Raises Reject(4001)."""
    if not isinstance(d, dict):
        raise Reject(CloseCode.UNKNOWN_OPCODE, "Presence update must be an object.")
    status = d.get("status", "online")
    if status not in VALID_STATUSES:
        raise Reject(CloseCode.UNKNOWN_OPCODE, "Invalid presence status.")
    since = d.get("since")
    if since is not None and not _is_int(since):
        raise Reject(CloseCode.UNKNOWN_OPCODE, "Invalid presence since.")
    afk = d.get("afk", False)
    if not isinstance(afk, bool):
        raise Reject(CloseCode.UNKNOWN_OPCODE, "Invalid presence afk.")
    raw = d.get("activities")
    if raw is None and d.get("game") is not None:
        # Legacy single-activity key that discord.py and hikari still send.
        raw = [d["game"]]
    if raw is None:
        raw = []
    if not isinstance(raw, list) or len(raw) > 5:
        raise Reject(CloseCode.UNKNOWN_OPCODE, "Invalid presence activities.")
    activities = []
    for activity in raw:
        if not isinstance(activity, dict):
            raise Reject(CloseCode.UNKNOWN_OPCODE, "Invalid activity.")
        name, kind = activity.get("name"), activity.get("type", 0)
        if not isinstance(name, str) or not _is_int(kind) or not 0 <= kind <= 5:
            raise Reject(CloseCode.UNKNOWN_OPCODE, "Invalid activity name or type.")
        kept: dict[str, Any] = {"name": name[:128], "type": kind}
        state = activity.get("state")
        if state is not None:
            if not isinstance(state, str):
                raise Reject(CloseCode.UNKNOWN_OPCODE, "Invalid activity state.")
            kept["state"] = state[:128]
        url = activity.get("url")
        if url is not None:
            if not isinstance(url, str):
                raise Reject(CloseCode.UNKNOWN_OPCODE, "Invalid activity url.")
            # Discord silently drops urls of non-streaming or non-twitch/youtube activities.
            host = url.split("://", 1)[-1].split("/", 1)[0].lower()
            if kind == 1 and host in STREAMING_URL_HOSTS:
                kept["url"] = url
        activities.append(kept)
    return {"status": status, "activities": activities, "afk": afk, "since": since}


class GatewayHandler:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    @property
    def settings(self) -> SandboxSettings:
        return self.state.settings

    # -- connection lifecycle ---------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        if not web.WebSocketResponse().can_prepare(request).ok:
            return error_response(404, "404: Not Found")
        if state.now() < state.refuse_until:
            state.totals.refused_connections += 1
            # Whole seconds, as HTTP has it; a client that honours it comes back once, when it is over.
            remaining = state.refuse_until - state.now()
            headers = {"Retry-After": str(max(1, math.ceil(remaining)))} if remaining < 10**6 else None
            return web.Response(
                status=503, text="sandbox is refusing connections (injected fault)", headers=headers
            )
        ws = web.WebSocketResponse(
            max_msg_size=READ_LIMIT,
            compress=False,
            autoping=True,
            autoclose=False,
            timeout=self.settings.close_timeout,
        )
        await ws.prepare(request)
        query = request.query
        compression = query.get("compress")
        raw_version = query.get("v", "")
        version = int(raw_version) if raw_version.isdigit() else 0
        conn = Connection(
            state.next_connection_id(),
            request,
            ws,
            version=version,
            compression=compression if compression in ("zlib-stream", "zstd-stream") else None,
            close_timeout=self.settings.close_timeout,
            command_window=self.settings.command_window,
            commands_per_window=self.settings.commands_per_window,
        )
        conn.on_server_close = self._server_closed
        state.connections[conn.id] = conn
        state.totals.connections += 1
        state.totals.compressions[compression or "none"] += 1
        conn.start()
        client_close: int | None = None
        try:
            if version not in SUPPORTED_API_VERSIONS:
                conn.close(CloseCode.INVALID_API_VERSION, "Invalid API version.")
            elif query.get("encoding", "json") != "json":
                conn.close(CloseCode.DECODE_ERROR, "The sandbox only speaks encoding=json.")
            elif compression is not None and compression not in ("zlib-stream", "zstd-stream"):
                conn.close(CloseCode.DECODE_ERROR, "Unknown compress value.")
            else:
                await self._hello(conn)
            client_close = await self._read_loop(conn)
        finally:
            await self._finish(conn, client_close)
        return ws

    async def _hello(self, conn: Connection) -> None:
        delay = self.settings.hello_delay
        if self.state.pending_hello_delays:
            delay += self.state.pending_hello_delays.popleft()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await wait_for(conn.ended.wait(), delay)
        conn.send(
            control(
                Opcode.HELLO,
                {"heartbeat_interval": self.settings.heartbeat_interval_ms, "_trace": trace("hello")},
            )
        )

    async def _read_loop(self, conn: Connection) -> int | None:
        ws = conn.ws
        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.CLOSE:
                code = int(msg.data) if msg.data is not None else None
                if conn.close_sent:
                    return None  # the client's reply to our close
                # Settle the session before answering, so a client whose close() returned can rely
                # on a 1000/1001 close having ended the session.
                self._settle(conn, code)
                with contextlib.suppress(Exception):
                    await ws.close(
                        code=code if code in (1000, 1001) or (code and 3000 <= code < 5000) else 1000
                    )
                return code
            if msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                code = getattr(msg.data, "code", None) if msg.type == WSMsgType.ERROR else None
                if isinstance(code, int) and code != 1006:
                    # aiohttp itself sent the close (a frame above READ_LIMIT: 1009).
                    conn.closing = True
                    conn.server_close_code = code
                    self._settle(conn, code, by_client=False)
                return None
            if conn.closing:
                continue
            raw = msg.data.encode() if isinstance(msg.data, str) else bytes(msg.data)
            try:
                self._receive(conn, raw)
            except Reject as exc:
                self._count_violation(conn, exc.code)
                conn.close(exc.code, exc.reason)

    def _count_violation(self, conn: Connection, code: int) -> None:
        if code != CloseCode.RATE_LIMITED:
            return
        self.state.totals.command_violations += 1
        if conn.shard_id is not None:
            self.state.shard(conn.shard_id).command_violations += 1

    async def _finish(self, conn: Connection, client_close: int | None) -> None:
        conn.closing = True
        self.state.connections.pop(conn.id, None)
        self._settle(conn, client_close)
        if conn.writer_task is not None and not conn.writer_task.done():
            conn.writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await conn.writer_task

    def _server_closed(self, conn: Connection, code: int) -> None:
        """The sandbox ends a connection: count it and end the session now if the code says so."""
        self._settle(conn, code, by_client=False)

    def _settle(self, conn: Connection, code: int | None, *, by_client: bool = True) -> None:
        """Close accounting and session detach, once per connection."""
        if conn.settled:
            return
        conn.settled = True
        state = self.state
        if code is None:
            code = 1006
        if conn.shard_id is not None:
            stats = state.shard(conn.shard_id)
            (stats.client_closes if by_client else stats.server_closes)[code] += 1
        else:
            totals = state.totals
            (totals.unidentified_client_closes if by_client else totals.unidentified_server_closes)[code] += 1
        session = conn.session
        conn.session = None
        if session is None or session.connection is not conn:
            return
        session.connection = None
        session.detached_at = state.now()
        session.closes.append(f"{'client' if by_client else 'server'} {code}")
        if by_client and code in (1000, 1001):
            session.kill(f"client closed with {code}")
        elif not by_client and code in (4003, 4004, 4006, 4007, 4009, 4010, 4011, 4012, 4013, 4014):
            session.kill(f"server closed with {code}")

    # -- inbound ----------------------------------------------------------------------------------

    def _receive(self, conn: Connection, raw: bytes) -> None:
        state = self.state
        if not conn.count_command(state.now()):
            raise Reject(CloseCode.RATE_LIMITED, "You are being rate limited.")
        if len(raw) > MAX_CLIENT_PAYLOAD_BYTES:
            raise Reject(CloseCode.DECODE_ERROR, "Payload too large.")
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise Reject(CloseCode.DECODE_ERROR, "Error while decoding payload.") from None
        if not isinstance(payload, dict):
            raise Reject(CloseCode.DECODE_ERROR, "Error while decoding payload.")
        op = payload.get("op")
        if not _is_int(op) or op not in CLIENT_OPCODES:
            raise Reject(CloseCode.UNKNOWN_OPCODE, "Unknown opcode.")
        d = payload.get("d")
        if op == Opcode.HEARTBEAT:
            self._heartbeat(conn, d)
            return
        session = conn.session
        if op == Opcode.IDENTIFY:
            if session is not None:
                raise Reject(CloseCode.ALREADY_AUTHENTICATED, "You're already authenticated.")
            self._identify(conn, d)
            return
        if op == Opcode.RESUME:
            if session is not None:
                raise Reject(CloseCode.ALREADY_AUTHENTICATED, "You're already authenticated.")
            self._resume(conn, d)
            return
        if session is None:
            raise Reject(CloseCode.NOT_AUTHENTICATED, "Not authenticated.")
        if op == Opcode.PRESENCE_UPDATE:
            presence = validate_presence(d)
            session.presence = presence
            stats = state.shard(session.shard_id)
            stats.presence = presence
            stats.presence_updates += 1
        elif op == Opcode.REQUEST_GUILD_MEMBERS:
            self._request_members(session, d)
        elif op == Opcode.VOICE_STATE_UPDATE:
            self._voice_state(session, d)
        elif op == Opcode.REQUEST_SOUNDBOARD_SOUNDS:
            self._soundboard(session, d)
        elif op == Opcode.REQUEST_CHANNEL_INFO:
            self._channel_info(session, d)

    def _heartbeat(self, conn: Connection, d: object) -> None:
        if d is not None and not _is_int(d):
            raise Reject(CloseCode.UNKNOWN_OPCODE, "Heartbeat payload must be the last sequence or null.")
        conn.last_heartbeat = self.state.now()
        if conn.shard_id is not None:
            self.state.shard(conn.shard_id).heartbeats += 1
        if conn.session is not None:
            conn.session.confirm(d)
        conn.send(control(Opcode.HEARTBEAT_ACK))

    def _identify(self, conn: Connection, d: object) -> None:
        state, settings = self.state, self.settings
        if not isinstance(d, dict):
            raise Reject(CloseCode.UNKNOWN_OPCODE, "Identify payload must be an object.")
        if not state.accepts_token(d.get("token")):
            raise Reject(CloseCode.AUTHENTICATION_FAILED, "Authentication failed.")
        properties = d.get("properties")
        if not isinstance(properties, dict):
            raise Reject(CloseCode.UNKNOWN_OPCODE, "Identify needs a properties object.")
        shard = d.get("shard", [0, 1])
        if (
            not isinstance(shard, list)
            or len(shard) != 2
            or not all(_is_int(x) for x in shard)
            or not 0 <= shard[0] < shard[1]
            or (settings.shard_multiple and shard[1] % settings.shard_multiple)
        ):
            raise Reject(CloseCode.INVALID_SHARD, "Invalid shard.")
        shard_id, num_shards = shard
        conn.shard_id = shard_id
        stats = state.shard(shard_id)
        stats.connections += 1
        guild_ids = state.guild_ids_for(shard_id, num_shards)
        if len(guild_ids) > settings.max_guilds_per_shard:
            raise Reject(CloseCode.SHARDING_REQUIRED, "Sharding required.")
        intents = d.get("intents")
        if not _is_int(intents) or intents < 0 or intents & ~ALL_INTENTS_VALUE:
            raise Reject(CloseCode.INVALID_INTENTS, "Invalid intent(s).")
        if intents & PRIVILEGED_INTENTS_VALUE & ~state.privileged_allowed:
            raise Reject(CloseCode.DISALLOWED_INTENTS, "Disallowed intent(s).")
        presence = validate_presence(d["presence"]) if d.get("presence") is not None else None
        large_threshold = d.get("large_threshold", 50)
        if not _is_int(large_threshold):
            raise Reject(CloseCode.UNKNOWN_OPCODE, "large_threshold must be an integer.")
        large_threshold = min(250, max(50, large_threshold))
        now = state.now()
        bucket = shard_id % settings.max_concurrency
        last = state.bucket_last.get(bucket)
        if last is not None and now - last < settings.identify_window:
            # Discord's answer to an identify-concurrency violation; counted so tests can prove
            # a client never does this.
            stats.identify_violations += 1
            state.totals.identify_violations += 1
            conn.send(control(Opcode.INVALID_SESSION, False))
            stats.invalid_sessions[False] += 1
            return
        if not state.take_session_start():
            self._reset_token(conn)
            raise Reject(
                CloseCode.AUTHENTICATION_FAILED,
                "Daily session start limit exceeded: every session was terminated and the token reset.",
            )
        state.bucket_last[bucket] = now
        stats.identifies += 1
        stats.session_starts += 1
        session = Session(
            shard_id=shard_id,
            num_shards=num_shards,
            intents=intents,
            version=conn.version,
            large_threshold=large_threshold,
            stats=stats,
            buffer_size=settings.replay_buffer_size,
        )
        if presence is not None:
            session.presence = presence
            stats.presence = presence
        state.sessions[session.id] = session
        session.connection = conn
        conn.session = session
        conn.last_heartbeat = now
        ready = ready_payload(
            state.world,
            version=conn.version,
            session_id=session.id,
            resume_url=state.resume_url,
            shard=[shard_id, num_shards],
            guild_ids=guild_ids,
        )
        session.dispatch("READY", ready, state.next_event_id())
        if not intents & GatewayIntents.GUILDS:
            return  # GUILD_CREATE is a GUILDS event: READY's stubs are all such a bot hears of its guilds
        bot_id = state.world.bot.id
        for gid in guild_ids:
            guild = state.world.guild_by_id[gid]
            data = guild_create_payload(guild, intents, large_threshold, bot_id)
            session.dispatch("GUILD_CREATE", data, state.next_event_id())

    def _reset_token(self, offender: Connection) -> None:
        """What Discord does to a bot over its daily session starts: every active session is terminated
        and the token reset. The close code for the terminated sessions is not documented; 4004 is
        what their clients meet on the next IDENTIFY or RESUME anyway."""
        state = self.state
        state.token_reset = True
        log.warning("session start limit exceeded: terminating every session and resetting the token")
        for conn in list(state.connections.values()):
            if conn is not offender and conn.session is not None:
                conn.close(CloseCode.AUTHENTICATION_FAILED, "Session start limit exceeded; token reset.")
        for session in state.live_sessions():
            session.kill("token reset (session start limit exceeded)")

    def _resume(self, conn: Connection, d: object) -> None:
        state = self.state
        if not isinstance(d, dict):
            raise Reject(CloseCode.UNKNOWN_OPCODE, "Resume payload must be an object.")
        if not state.accepts_token(d.get("token")):
            raise Reject(CloseCode.AUTHENTICATION_FAILED, "Authentication failed.")
        session_id, seq = d.get("session_id"), d.get("seq")
        if not isinstance(session_id, str) or not (seq is None or _is_int(seq)):
            raise Reject(CloseCode.UNKNOWN_OPCODE, "Resume needs session_id and seq.")
        seq = seq or 0
        session = state.sessions.get(session_id)
        now = state.now()
        if session is not None and session.alive and session.detached_at is not None:
            if now - session.detached_at > self.settings.resume_window:
                session.kill("expired")
        if session is None or not session.alive:
            if session is not None:
                conn.shard_id = session.shard_id
                stats = state.shard(session.shard_id)
                stats.resume_failures += 1
                stats.invalid_sessions[False] += 1
            conn.send(control(Opcode.INVALID_SESSION, False))
            return
        conn.shard_id = session.shard_id
        stats = state.shard(session.shard_id)
        stats.connections += 1
        if not session.can_resume_from(seq):
            stats.resume_failures += 1
            session.kill("invalid seq on resume")
            raise Reject(CloseCode.INVALID_SEQ, "Invalid seq.")
        old = session.connection
        if old is not None and old is not conn:
            # The client resumed elsewhere while the old socket still looked open to us.
            old.session = None
            old.close(CloseCode.UNKNOWN_ERROR, "Session resumed on another connection.")
        session.connection = conn
        session.detached_at = None
        session.confirm(seq)
        session.resumes += 1
        conn.session = session
        conn.last_heartbeat = now
        stats.resumes += 1
        replay = session.replay_after(seq)
        stats.replayed += len(replay)
        for payload in replay:
            conn.send(payload)
        conn.last_dispatch_seq = session.seq
        session.dispatch("RESUMED", {"_trace": trace("resumed")}, state.next_event_id())

    def _request_members(self, session: Session, d: object) -> None:
        state = self.state
        if not isinstance(d, dict):
            raise Reject(CloseCode.UNKNOWN_OPCODE, "Request guild members payload must be an object.")
        guild_id = _snowflake(d.get("guild_id"))
        if guild_id is None:
            raise Reject(CloseCode.UNKNOWN_OPCODE, "Request guild members needs a guild_id.")
        query, limit, user_ids = d.get("query"), d.get("limit", 0), d.get("user_ids")
        if query is not None and user_ids is not None:
            raise Reject(CloseCode.UNKNOWN_OPCODE, "query and user_ids are mutually exclusive.")
        if query is None and user_ids is None:
            raise Reject(CloseCode.UNKNOWN_OPCODE, "Request guild members needs query or user_ids.")
        if query is not None and (not isinstance(query, str) or not _is_int(limit) or limit < 0):
            raise Reject(CloseCode.UNKNOWN_OPCODE, "Invalid query or limit.")
        ids: list[object] = []
        if user_ids is not None:
            ids = user_ids if isinstance(user_ids, list) else [user_ids]
            if len(ids) > 100 or any(_snowflake(u) is None for u in ids):
                raise Reject(CloseCode.UNKNOWN_OPCODE, "Invalid user_ids.")
        nonce = d.get("nonce")
        if not isinstance(nonce, str) or len(nonce.encode()) > 32:
            nonce = None
        want_presences = bool(d.get("presences")) and bool(session.intents & GatewayIntents.GUILD_PRESENCES)
        stats = state.shard(session.shard_id)
        stats.member_requests += 1
        guild = state.world.guild_by_id.get(guild_id)
        if guild is None or not session.covers_guild(guild_id):
            return
        all_members = query == "" and limit == 0
        if all_members:
            if not session.intents & GatewayIntents.GUILD_MEMBERS:
                raise Reject(
                    CloseCode.UNKNOWN_OPCODE, "Requesting all members needs the GUILD_MEMBERS intent."
                )
            now = state.now()
            last = state.member_request_last.get(guild_id)
            cooldown = self.settings.member_request_cooldown
            if last is not None and now - last < cooldown:
                stats.rate_limited += 1
                meta: dict[str, Any] = {"guild_id": str(guild_id)}
                if nonce is not None:
                    meta["nonce"] = nonce
                retry = round(cooldown - (now - last), 3)
                session.dispatch(
                    "RATE_LIMITED",
                    {"opcode": int(Opcode.REQUEST_GUILD_MEMBERS), "retry_after": retry, "meta": meta},
                    state.next_event_id(),
                )
                return
            state.member_request_last[guild_id] = now
        not_found: list[object] = []
        if user_ids is not None:
            by_id = {m.user.id: m for m in guild.members}
            members = []
            for raw in ids:
                member = by_id.get(_snowflake(raw) or 0)
                if member is None:
                    not_found.append(raw)
                else:
                    members.append(member)
        else:
            prefix = str(query).lower()
            members = [m for m in guild.members if m.user.username.lower().startswith(prefix)]
            cap = limit if limit else (len(members) if all_members else 100)
            members = members[: min(cap, 100) if not all_members else cap]
        chunks = [members[i : i + 1000] for i in range(0, len(members), 1000)] or [[]]

        for index, chunk in enumerate(chunks):
            data: dict[str, Any] = {
                "guild_id": str(guild_id),
                "members": [m.payload() for m in chunk],
                "chunk_index": index,
                "chunk_count": len(chunks),
            }
            if not_found and index == 0:
                data["not_found"] = not_found
            if want_presences:
                data["presences"] = [presence_of(m, guild_id) for m in chunk if m.status != "offline"]
            if nonce is not None:
                data["nonce"] = nonce
            session.dispatch("GUILD_MEMBERS_CHUNK", data, state.next_event_id())

    def _voice_state(self, session: Session, d: object) -> None:
        guild_id = _snowflake(d.get("guild_id")) if isinstance(d, dict) else None
        if guild_id is None or not isinstance(d, dict):
            raise Reject(CloseCode.UNKNOWN_OPCODE, "Voice state update needs a guild_id.")
        channel = d.get("channel_id")
        if channel is not None and _snowflake(channel) is None:
            raise Reject(CloseCode.UNKNOWN_OPCODE, "Invalid channel_id.")
        if guild_id not in self.state.world.guild_by_id or not session.covers_guild(guild_id):
            return
        state = self.state
        if session.intents & GatewayIntents.GUILD_VOICE_STATES:
            session.dispatch(
                "VOICE_STATE_UPDATE",
                {
                    "guild_id": str(guild_id),
                    "channel_id": None if channel is None else str(channel),
                    "user_id": str(state.world.bot.id),
                    "session_id": session.id,
                    "deaf": False,
                    "mute": False,
                    "self_deaf": bool(d.get("self_deaf")),
                    "self_mute": bool(d.get("self_mute")),
                    "self_video": False,
                    "suppress": False,
                    "request_to_speak_timestamp": None,
                },
                state.next_event_id(),
            )
        if channel is not None:
            session.dispatch(
                "VOICE_SERVER_UPDATE",
                {"token": "sandbox-voice", "guild_id": str(guild_id), "endpoint": None},
                state.next_event_id(),
            )

    def _soundboard(self, session: Session, d: object) -> None:
        ids = d.get("guild_ids") if isinstance(d, dict) else None
        if not isinstance(ids, list) or any(_snowflake(g) is None for g in ids):
            raise Reject(CloseCode.UNKNOWN_OPCODE, "Request soundboard sounds needs guild_ids.")
        for raw in ids:
            gid = _snowflake(raw)
            if gid is not None and gid in self.state.world.guild_by_id and session.covers_guild(gid):
                session.dispatch(
                    "SOUNDBOARD_SOUNDS",
                    {"guild_id": str(gid), "soundboard_sounds": []},
                    self.state.next_event_id(),
                )

    def _channel_info(self, session: Session, d: object) -> None:
        gid = _snowflake(d.get("guild_id")) if isinstance(d, dict) else None
        if gid is None:
            raise Reject(CloseCode.UNKNOWN_OPCODE, "Request channel info needs a guild_id.")
        guild = self.state.world.guild_by_id.get(gid)
        if guild is None or not session.covers_guild(gid):
            return
        channels = [{"id": c["id"], "status": None} for c in guild.channels if c["type"] == 2]
        session.dispatch(
            "CHANNEL_INFO", {"guild_id": str(gid), "channels": channels}, self.state.next_event_id()
        )
