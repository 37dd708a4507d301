"""The sandbox's gateway backend: sessions, READY, commands and Discord's account-wide limits.

The protocol itself (HELLO, heartbeats, payload checks, close codes, compression) is
`shardtui.server`; this is the fake Discord behind it, a `GatewayBackend`.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any

from aiohttp import web

from shardtui.gateway.aio import wait_for
from shardtui.gateway.closecodes import SESSION_ENDING_SERVER_CLOSES
from shardtui.gateway.protocol import PRIVILEGED_INTENTS_VALUE, CloseCode, GatewayIntents, Opcode
from shardtui.server import (
    Accepted,
    AuthResult,
    CommandReceived,
    GatewaySocket,
    IdentifyRequest,
    InvalidSession,
    MemberRequest,
    Rejected,
    ResumeRequest,
    VoiceStateRequest,
    control,
    validate_presence,
)
from shardtui.server.validate import snowflake

from .payloads import guild_create_payload, presence_of, ready_payload, trace
from .responses import error_response
from .session import Session
from .settings import SandboxSettings
from .state import SandboxState
from .transport import Connection

__all__ = ["SandboxBackend", "control", "validate_presence"]

log = logging.getLogger("shardtui.sandbox")


class SandboxBackend:
    """`shardtui.server.GatewayBackend` over the sandbox's world and accounting."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    @property
    def settings(self) -> SandboxSettings:
        return self.state.settings

    @property
    def heartbeat_interval_ms(self) -> int:
        return self.settings.heartbeat_interval_ms

    def conn(self, socket: GatewaySocket) -> Connection:
        return self.state.connections[socket.id]

    # -- connection lifecycle ---------------------------------------------------------------------

    def before_upgrade(self, request: web.Request) -> web.StreamResponse | None:
        state = self.state
        if state.now() >= state.refuse_until:
            return None
        state.totals.refused_connections += 1
        # Whole seconds, as HTTP has it; a client that honours it comes back once, when it is over.
        remaining = state.refuse_until - state.now()
        headers = {"Retry-After": str(max(1, math.ceil(remaining)))} if remaining < 10**6 else None
        return web.Response(
            status=503, text="sandbox is refusing connections (injected fault)", headers=headers
        )

    def opened(self, socket: GatewaySocket) -> None:
        state = self.state
        state.connections[socket.id] = Connection(socket)
        state.totals.connections += 1
        state.totals.compressions[socket.request.query.get("compress") or "none"] += 1

    async def before_hello(self, socket: GatewaySocket) -> dict[str, Any]:
        delay = self.settings.hello_delay
        if self.state.pending_hello_delays:
            delay += self.state.pending_hello_delays.popleft()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await wait_for(socket.ended.wait(), delay)
        return {"_trace": trace("hello")}

    def finished(self, socket: GatewaySocket) -> None:
        self.state.connections.pop(socket.id, None)

    def violation(self, socket: GatewaySocket, code: int, reason: str) -> None:
        conn = self.conn(socket)
        shard = socket.protocol.identify_shard
        if conn.shard_id is None and shard is not None:
            # An IDENTIFY with a valid shard that failed a later check (intents...) still counts
            # against that shard, as Discord's accounting would.
            conn.shard_id = shard[0]
            self.state.shard(shard[0]).connections += 1
        if code != CloseCode.RATE_LIMITED:
            return
        self.state.totals.command_violations += 1
        if conn.shard_id is not None:
            self.state.shard(conn.shard_id).command_violations += 1

    def closed(self, socket: GatewaySocket, code: int, *, by_client: bool) -> None:
        """Close accounting and session detach (the server layer calls this once per socket)."""
        state = self.state
        conn = state.connections.get(socket.id)
        if conn is None:
            return
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
        elif not by_client and code in SESSION_ENDING_SERVER_CLOSES:
            session.kill(f"server closed with {code}")

    # -- inbound ----------------------------------------------------------------------------------

    def heartbeat(self, socket: GatewaySocket, seq: int | None) -> None:
        conn = self.conn(socket)
        if conn.shard_id is not None:
            self.state.shard(conn.shard_id).heartbeats += 1
        if conn.session is not None:
            conn.session.confirm(seq)

    async def command(self, socket: GatewaySocket, command: CommandReceived) -> Rejected | None:
        session = self.conn(socket).session
        if session is None:
            return Rejected(CloseCode.NOT_AUTHENTICATED, "Not authenticated.")
        op, parsed = command.op, command.parsed
        if op == Opcode.PRESENCE_UPDATE:
            assert isinstance(parsed, dict)
            session.presence = parsed
            stats = self.state.shard(session.shard_id)
            stats.presence = parsed
            stats.presence_updates += 1
        elif op == Opcode.REQUEST_GUILD_MEMBERS:
            assert isinstance(parsed, MemberRequest)
            return self._request_members(session, parsed)
        elif op == Opcode.VOICE_STATE_UPDATE:
            assert isinstance(parsed, VoiceStateRequest)
            self._voice_state(session, parsed)
        elif op == Opcode.REQUEST_SOUNDBOARD_SOUNDS:
            assert isinstance(parsed, list)
            self._soundboard(session, parsed)
        elif op == Opcode.REQUEST_CHANNEL_INFO:
            assert isinstance(parsed, int)
            self._channel_info(session, parsed)
        return None

    async def identify(self, socket: GatewaySocket, request: IdentifyRequest) -> AuthResult:
        state, settings = self.state, self.settings
        conn = self.conn(socket)
        if not state.accepts_token(request.token):
            return Rejected(CloseCode.AUTHENTICATION_FAILED, "Authentication failed.")
        shard_id, num_shards = request.shard or (0, 1)
        if settings.shard_multiple and num_shards % settings.shard_multiple:
            return Rejected(CloseCode.INVALID_SHARD, "Invalid shard.")
        conn.shard_id = shard_id
        stats = state.shard(shard_id)
        stats.connections += 1
        guild_ids = state.guild_ids_for(shard_id, num_shards)
        if len(guild_ids) > settings.max_guilds_per_shard:
            return Rejected(CloseCode.SHARDING_REQUIRED, "Sharding required.")
        intents = request.intents
        if intents & PRIVILEGED_INTENTS_VALUE & ~state.privileged_allowed:
            return Rejected(CloseCode.DISALLOWED_INTENTS, "Disallowed intent(s).")
        now = state.now()
        bucket = shard_id % settings.max_concurrency
        last = state.bucket_last.get(bucket)
        if last is not None and now - last < settings.identify_window:
            # Discord's answer to an identify-concurrency violation; counted so tests can prove
            # a client never does this.
            stats.identify_violations += 1
            state.totals.identify_violations += 1
            stats.invalid_sessions[False] += 1
            return InvalidSession(False)
        if not state.take_session_start():
            self._reset_token(conn)
            return Rejected(
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
            large_threshold=request.large_threshold,
            stats=stats,
            buffer_size=settings.replay_buffer_size,
        )
        if request.presence is not None:
            session.presence = request.presence
            stats.presence = request.presence
        state.sessions[session.id] = session
        session.connection = conn
        conn.session = session
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
            return Accepted()  # GUILD_CREATE is a GUILDS event: READY's stubs are all such a bot hears
        bot_id = state.world.bot.id
        for gid in guild_ids:
            guild = state.world.guild_by_id[gid]
            data = guild_create_payload(guild, intents, request.large_threshold, bot_id)
            session.dispatch("GUILD_CREATE", data, state.next_event_id())
        return Accepted()

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

    async def resume(self, socket: GatewaySocket, request: ResumeRequest) -> AuthResult:
        state = self.state
        conn = self.conn(socket)
        if not state.accepts_token(request.token):
            return Rejected(CloseCode.AUTHENTICATION_FAILED, "Authentication failed.")
        seq = request.seq
        session = state.sessions.get(request.session_id)
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
            return InvalidSession(False)
        conn.shard_id = session.shard_id
        stats = state.shard(session.shard_id)
        stats.connections += 1
        if not session.can_resume_from(seq):
            stats.resume_failures += 1
            session.kill("invalid seq on resume")
            return Rejected(CloseCode.INVALID_SEQ, "Invalid seq.")
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
        stats.resumes += 1
        replay = session.replay_after(seq)
        stats.replayed += len(replay)
        for payload in replay:
            conn.send(payload)
        conn.last_dispatch_seq = session.seq
        session.dispatch("RESUMED", {"_trace": trace("resumed")}, state.next_event_id())
        return Accepted()

    # -- commands ---------------------------------------------------------------------------------

    def _request_members(self, session: Session, request: MemberRequest) -> Rejected | None:
        state = self.state
        guild_id, nonce = request.guild_id, request.nonce
        want_presences = request.presences and bool(session.intents & GatewayIntents.GUILD_PRESENCES)
        stats = state.shard(session.shard_id)
        stats.member_requests += 1
        guild = state.world.guild_by_id.get(guild_id)
        if guild is None or not session.covers_guild(guild_id):
            return None
        all_members = request.all_members
        if all_members:
            if not session.intents & GatewayIntents.GUILD_MEMBERS:
                return Rejected(
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
                return None
            state.member_request_last[guild_id] = now
        not_found: list[object] = []
        if request.user_ids is not None:
            by_id = {m.user.id: m for m in guild.members}
            members = []
            for raw in request.user_ids:
                member = by_id.get(snowflake(raw) or 0)
                if member is None:
                    not_found.append(raw)
                else:
                    members.append(member)
        else:
            prefix = str(request.query).lower()
            limit = request.limit
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
        return None

    def _voice_state(self, session: Session, request: VoiceStateRequest) -> None:
        state = self.state
        guild_id, channel = request.guild_id, request.channel_id
        if guild_id not in state.world.guild_by_id or not session.covers_guild(guild_id):
            return
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
                    "self_deaf": request.self_deaf,
                    "self_mute": request.self_mute,
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

    def _soundboard(self, session: Session, guild_ids: list[int]) -> None:
        for gid in guild_ids:
            if gid in self.state.world.guild_by_id and session.covers_guild(gid):
                session.dispatch(
                    "SOUNDBOARD_SOUNDS",
                    {"guild_id": str(gid), "soundboard_sounds": []},
                    self.state.next_event_id(),
                )

    def _channel_info(self, session: Session, gid: int) -> None:
        guild = self.state.world.guild_by_id.get(gid)
        if guild is None or not session.covers_guild(gid):
            return
        channels = [{"id": c["id"], "status": None} for c in guild.channels if c["type"] == 2]
        session.dispatch(
            "CHANNEL_INFO", {"guild_id": str(gid), "channels": channels}, self.state.next_event_id()
        )

    @staticmethod
    def not_websocket(_request: web.Request) -> web.StreamResponse:
        """What a plain GET of an unknown path gets (the gateway route catches every path)."""
        return error_response(404, "404: Not Found")
