"""Per upstream shard, the fan-out of its dispatches to the client sessions attached to it.

Sans-I/O: no sockets, no aiohttp. A transport drives it::

    table = SessionTable(SessionLimits(...))                 # one per process, shared by every hub
    hub = ShardHub(shard_id, shard_total, table, resume_gateway_url="ws://127.0.0.1:7878")
    manager event handler:  hubs[dispatch.shard_id.id].publish(dispatch)   # after the cache took it

    snapshots = CacheSnapshots(guild_state_cache.shard)      # the cache (shardtui.proxy.cache)
    IDENTIFY:  link = await hub.identify(snapshots, intents=identify_d["intents"],
                                         address=peer, library=library_of(identify_d))
    RESUME:    outcome = table.resume(d["session_id"], d["seq"])
               if not outcome.ok: send INVALID_SESSION_FRAME        (never a lossy RESUMED)
               else: link = outcome.link                            (replay + RESUMED already queued)
    socket loop:  while frames := await link.wait_frames(): compress and write frames
                  then close with link.close_code (None: keep the socket, a new IDENTIFY may follow)
    socket gone first:  link.detach()                               (the session stays resumable)
    op 8:  upstream_d = hub.request_members(link.session, d)        (nonce rewritten; forward upstream_d)
    op 4:  hub.voice_state(link.session, d)                         (then forward d unchanged)
    timer: table.sweep()                                            (resume window)

Decisions, and why:

* **Attach without loss.** :meth:`ShardHub.open_session` subscribes the new session before the snapshot is
  taken; live events that arrive while a (possibly asynchronous) snapshot is built wait in the session,
  unnumbered, and are numbered and delivered after READY and the GUILD_CREATEs, each exactly once. An event
  that arrives between the subscription and the snapshot may therefore be reflected in the snapshot and
  also delivered live (a CHANNEL_CREATE after a GUILD_CREATE that already holds the channel). That repeat of
  state is what Discord itself does after READY and libraries handle it; a lost event is not acceptable.
* **Upstream READY** is never forwarded (each client has its own READY), nor is RESUMED (an upstream resume
  is continuity: clients see one stream). Any upstream READY means the upstream session was (re)identified,
  so events may be missing between the old and the new session: every session of the shard gets op 9
  ``d=false`` and is dropped — including one whose snapshot is still being taken. Dispatches after that
  READY (the GUILD_CREATE burst included) are forwarded normally to whoever is attached, which is nobody
  until clients re-identify; their snapshot then comes from the cache (which the burst feeds) and the
  later live GUILD_CREATEs for guilds their READY listed as unavailable are exactly Discord's own sequence.
  Nothing is delivered twice: a dropped session receives nothing more. The cache must reset its guild list
  on an upstream READY (the cache's business, not the hub's).
* **Member chunks.** :meth:`ShardHub.request_members` gives each op 8 an upstream nonce unique to this hub
  (``p<8 hex>.<counter hex>``, at most 20 bytes, under Discord's 32) and remembers (session, the client's
  own nonce). A GUILD_MEMBERS_CHUNK or RATE_LIMITED (``meta.nonce``) carrying such a nonce goes to that
  session only, with the client's nonce restored (or none, when the client sent none or an invalid one —
  Discord ignores a nonce over 32 bytes). Chunks of a session that is gone are dropped (nobody asked for
  them any more); a chunk with a nonce the hub never issued goes to every client. The table of requests
  is bounded (oldest forgotten first) and an entry ends with the last chunk (``chunk_index + 1 ==
  chunk_count``).
* **Voice.** A client's op 4 for guild G makes its session G's voice owner. VOICE_STATE_UPDATE for the
  bot's own user in G and VOICE_SERVER_UPDATE for G go to the owner only while the owner's session exists
  (live or resumable); with no owner they go to every client, as any other event (never dropped). The last
  own VOICE_STATE_UPDATE and VOICE_SERVER_UPDATE per guild are kept (cleared when the bot leaves the
  channel). When an op 4 asks for the channel the bot is already in — a restarted bot re-joining — the kept
  pair is delivered to the new owner at once, because Discord may send nothing for a voice update that
  changes nothing; any other op 4 gets Discord's fresh answer.
* **Intents.** Each session keeps its IDENTIFY intents; a live event whose intent
  (:func:`~shardtui.proxy.intents.required_intent`, one dict lookup per event) the session lacks is not
  numbered for it, as Discord would not send it. Events of unknown intent go to every session. A session
  without MESSAGE_CONTENT gets MESSAGE_CREATE / MESSAGE_UPDATE / AUTO_MODERATION_ACTION_EXECUTION with the
  content fields emptied (Discord's rule and its exceptions:
  :func:`~shardtui.server.message_content.without_message_content`), serialized once per event and only
  while such a session is subscribed.
* **Slow clients.** A session's outbox is bounded in events and bytes (snapshot and replayed frames at its
  head excepted). Past the bound the session is cut: its link ends with a resumable close (4000), it is
  counted (``cut_slow_total``), and it keeps numbering events into its replay buffer so a RESUME gets them.
  The hub never waits on a client.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol

import orjson

from shardtui.gateway.models import Dispatch
from shardtui.server.message_content import CONTENT_EVENTS, MESSAGE_CONTENT, without_message_content

from .frames import dispatch_head, dispatch_parts
from .intents import required_intent
from .session import (
    ClientSession,
    ClientStats,
    Link,
    ResumeOutcome,
    SessionState,
    SessionTable,
)

#: Op 8 requests whose chunks are still routed; past it the oldest is forgotten.
MAX_CHUNK_REQUESTS: Final = 1024
#: Discord ignores a nonce longer than this (in bytes) and answers without one.
MAX_NONCE_BYTES: Final = 32

_RESUMED_DATA: Final = {"_trace": ["shardtui-proxy"]}
#: Dispatches the hub does not simply fan out.
_ROUTED: Final = frozenset(
    {"READY", "RESUMED", "GUILD_MEMBERS_CHUNK", "RATE_LIMITED", "VOICE_STATE_UPDATE", "VOICE_SERVER_UPDATE"}
)


class Snapshot(NamedTuple):
    """What a new client is shown first: READY's fields (``user``, ``application``, ``guilds`` as
    unavailable, anything else the cache keeps) and the dispatches that follow READY, as ``(name, data)``:
    a GUILD_CREATE per available guild, ``GUILD_DELETE {id, unavailable}`` per guild in an outage."""

    ready: Mapping[str, Any]
    dispatches: Sequence[tuple[str, Any]]

    @classmethod
    def of_guilds(cls, ready: Mapping[str, Any], guild_creates: Iterable[Any]) -> Snapshot:
        """A snapshot whose READY is followed by one GUILD_CREATE per given payload."""
        return cls(ready, [("GUILD_CREATE", guild) for guild in guild_creates])


class SnapshotSource(Protocol):
    """The cache, as the hub sees it. May answer at once or be awaited (a cache in another process).
    ``intents``: the client's IDENTIFY intents, to narrow the snapshot the way Discord would (None: all)."""

    def snapshot(self, shard_id: int, intents: int | None) -> Snapshot | Awaitable[Snapshot]: ...


class ShardStateView(Protocol):
    """One shard's cache as :class:`CacheSnapshots` reads it (``shardtui.proxy.cache.ShardCache``)."""

    def ready_fields(self) -> Mapping[str, Any]: ...

    def guild_events(self, intents: int | None = None) -> Iterable[tuple[str, Any]]: ...


class CacheSnapshots:
    """A :class:`SnapshotSource` over an in-process cache: ``CacheSnapshots(guild_state_cache.shard)``."""

    def __init__(self, shard_cache: Callable[[int], ShardStateView]) -> None:
        self._shard_cache = shard_cache

    def snapshot(self, shard_id: int, intents: int | None) -> Snapshot:
        cache = self._shard_cache(shard_id)
        return Snapshot(cache.ready_fields(), list(cache.guild_events(intents)))


#: READY keys real bot READYs carry (fact sheet §4.2) that a cache may not hold; some libraries read
#: them unconditionally (hikari reads ``v``).
_READY_DEFAULTS: Final = (
    ("v", 10),
    ("user_settings", {}),
    ("session_type", "normal"),
    ("relationships", []),
    ("private_channels", []),
    ("presences", []),
    ("guild_join_requests", []),
    ("geo_ordered_rtc_regions", []),
    ("auth", {}),
)


@dataclass(frozen=True, slots=True)
class HubStats:
    shard_id: int
    #: Sessions of this shard (live, detached or awaiting their snapshot).
    clients: int
    #: Of those, with a socket attached.
    live: int
    cut_slow_total: int
    #: Upstream dispatches seen.
    events_total: int
    #: Sessions dropped with op 9 because the upstream session was replaced (or :meth:`invalidate_all`).
    invalidated_total: int


@dataclass(slots=True)
class _ChunkRequest:
    session: ClientSession
    #: The client's own nonce, restored in what it receives; None: deliver without one.
    nonce: str | None


def library_of(identify: object) -> str:
    """The client library an IDENTIFY names (``properties.browser``, or ``$browser`` of older clients)."""
    if type(identify) is not dict:
        return ""
    props = identify.get("properties")
    if type(props) is not dict:
        return ""
    for key in ("browser", "$browser"):
        value = props.get(key)
        if type(value) is str and value:
            return value[:64]
    return ""


class ShardHub:
    """One upstream shard's dispatches, fanned out to its client sessions. See the module docstring."""

    def __init__(
        self,
        shard_id: int,
        shard_total: int,
        table: SessionTable,
        *,
        resume_gateway_url: str,
        bot_user_id: str | None = None,
        upstream_session_id: str | None = None,
    ) -> None:
        if not 0 <= shard_id < shard_total:
            raise ValueError(f"shard id {shard_id} is outside the shard total {shard_total}")
        self.shard_id = shard_id
        self.shard_total = shard_total
        self.table = table
        self.resume_gateway_url = resume_gateway_url
        #: The bot's user id (from the upstream READY or a snapshot): whose voice states are routed.
        self.bot_user_id = bot_user_id
        #: The upstream session clients are served from (for the console; a restored one may be given).
        self.upstream_session_id = upstream_session_id
        self.cut_slow_total = 0
        self.events_total = 0
        self.invalidated_total = 0
        self._sessions: dict[str, ClientSession] = {}
        # Rebuilt (never mutated) when membership changes, so publish can iterate while sessions close.
        self._subscribers: tuple[ClientSession, ...] = ()
        #: Some subscriber lacks MESSAGE_CONTENT: content events need their stripped variant too.
        self._content_blind = False
        #: The intents every subscriber holds (-1 with none): an event all of them take needs no routing.
        self._held_by_all = -1
        self._nonce_prefix = "p" + secrets.token_hex(4) + "."
        self._nonce_counter = 0
        self._chunk_requests: dict[str, _ChunkRequest] = {}
        self._voice_owner: dict[str, ClientSession] = {}
        self._voice_state: dict[str, Any] = {}
        self._voice_server: dict[str, Any] = {}
        self._resumed_parts = dispatch_parts("RESUMED", _RESUMED_DATA)

    def __repr__(self) -> str:
        return f"<ShardHub shard={self.shard_id}/{self.shard_total} clients={len(self._sessions)}>"

    # --- upstream -----------------------------------------------------------------------------------

    def publish(self, dispatch: Dispatch) -> None:
        """One upstream dispatch, in upstream order. Serialized once; each client gets its own seq."""
        self.events_total += 1
        name = dispatch.name
        if name in _ROUTED:
            self._route(name, dispatch.data)
            return
        subscribers = self._subscribers
        if not subscribers:
            return
        # The upstream's own bytes of d go out as they came: no decode, no re-encode, unless routing needs d.
        body = dispatch.raw_data
        head = dispatch_head(name)
        if body is None:
            body = orjson.dumps(dispatch.data)
        need = required_intent(dispatch, self._held_by_all)
        if self._content_blind and name in CONTENT_EVENTS:
            stripped = without_message_content(name, dispatch.data, self.bot_user_id)
            if stripped is not None:
                self._publish_content(subscribers, need, head, body, dispatch_parts(name, stripped)[1])
                return
        if need:
            for session in subscribers:
                if session.intents & need:
                    session.push(head, body)
        else:
            for session in subscribers:
                session.push(head, body)

    @staticmethod
    def _publish_content(
        subscribers: Sequence[ClientSession], need: int, head: bytes, body: bytes, blind_body: bytes
    ) -> None:
        """A content event: the full body to sessions with MESSAGE_CONTENT, the stripped one (serialized
        once) to the others; either way only to sessions whose intents cover the event."""
        for session in subscribers:
            intents = session.intents
            if need and not intents & need:
                continue
            session.push(head, body if intents & MESSAGE_CONTENT else blind_body)

    def _resubscribe(self) -> None:
        subscribers = self._subscribers = tuple(self._sessions.values())
        self._content_blind = any(not s.intents & MESSAGE_CONTENT for s in subscribers)
        held = -1
        for session in subscribers:
            held &= session.intents
        self._held_by_all = held

    def _broadcast(self, name: str, data: Any) -> None:
        subscribers = self._subscribers
        if subscribers:
            head, body = dispatch_parts(name, data)
            for session in subscribers:
                session.push(head, body)

    def _route(self, name: str, data: Any) -> None:
        if name == "READY":
            self._upstream_ready(data)
        elif name == "RESUMED":
            pass  # continuity: the clients' streams simply go on
        elif name == "GUILD_MEMBERS_CHUNK":
            self._chunk(name, data, data.get("nonce") if type(data) is dict else None)
        elif name == "RATE_LIMITED":
            meta = data.get("meta") if type(data) is dict else None
            self._chunk(name, data, meta.get("nonce") if type(meta) is dict else None)
        else:
            self._voice(name, data)

    def _upstream_ready(self, data: Any) -> None:
        if type(data) is dict:
            session_id = data.get("session_id")
            self.upstream_session_id = session_id if type(session_id) is str else None
            self._learn_user(data)
        if self._sessions:
            self.invalidate_all("upstream session replaced")
        # The voice connections belonged to the old session.
        self._voice_owner.clear()
        self._voice_state.clear()
        self._voice_server.clear()

    def _learn_user(self, ready: Mapping[str, Any]) -> None:
        user = ready.get("user")
        if type(user) is dict and type(user.get("id")) is str:
            self.bot_user_id = user["id"]

    def _chunk(self, name: str, data: Any, nonce: object) -> None:
        request = self._chunk_requests.get(nonce) if type(nonce) is str else None
        if request is None:
            self._broadcast(name, data)
            return
        if name == "RATE_LIMITED" or _last_chunk(data):
            del self._chunk_requests[nonce]  # type: ignore[arg-type]
        session = request.session
        if session.state is SessionState.CLOSED:
            return
        out = dict(data)
        if name == "RATE_LIMITED":
            meta = dict(out["meta"])
            _restore_nonce(meta, request.nonce)
            out["meta"] = meta
        else:
            _restore_nonce(out, request.nonce)
        session.push(*dispatch_parts(name, out))

    def _voice(self, name: str, data: Any) -> None:
        guild_id = data.get("guild_id") if type(data) is dict else None
        if type(guild_id) is not str:
            self._broadcast(name, data)
            return
        if name == "VOICE_STATE_UPDATE":
            if self.bot_user_id is None or data.get("user_id") != self.bot_user_id:
                self._broadcast(name, data)
                return
            if data.get("channel_id") is None:
                self._voice_state.pop(guild_id, None)
                self._voice_server.pop(guild_id, None)
            else:
                self._voice_state[guild_id] = data
        else:
            self._voice_server[guild_id] = data
        owner = self._voice_owner.get(guild_id)
        if owner is None or owner.state is SessionState.CLOSED:
            self._broadcast(name, data)
        else:
            owner.push(*dispatch_parts(name, data))

    # --- clients ------------------------------------------------------------------------------------

    def open_session(self, *, address: str = "", library: str = "", intents: int | None = None) -> Link:
        """A new session for an accepted IDENTIFY, subscribed to the live stream from now on (the events
        its ``intents`` cover; None: all). Take the snapshot after this call and hand it to :meth:`begin`."""
        session = ClientSession(
            self,
            self.shard_id,
            self.table.limits,
            address=address,
            library=library,
            intents=intents,
            clock=self.table.clock,
        )
        link = session.attach()
        self.table.add(session)
        self._sessions[session.session_id] = session
        self._resubscribe()
        return link

    def begin(self, link: Link, snapshot: Snapshot, *, resume_gateway_url: str | None = None) -> None:
        """READY (seq 1, with the session's own session_id, ``resume_gateway_url`` (the hub's unless
        given) and ``shard``) and the snapshot's dispatches, then the live events that arrived since
        :meth:`open_session`."""
        ready_fields, dispatches = snapshot
        session = link.session
        if self.bot_user_id is None:
            self._learn_user(ready_fields)
        ready = dict(ready_fields)
        for key, value in _READY_DEFAULTS:
            if key not in ready:
                ready[key] = value.copy() if isinstance(value, list | dict) else value
        ready["session_id"] = session.session_id
        ready["resume_gateway_url"] = resume_gateway_url or self.resume_gateway_url
        ready["shard"] = [self.shard_id, self.shard_total]
        session.begin(ready, dispatches)

    async def identify(
        self,
        source: SnapshotSource,
        *,
        intents: int | None = None,
        address: str = "",
        library: str = "",
        resume_gateway_url: str | None = None,
    ) -> Link:
        """:meth:`open_session`, the snapshot from ``source`` (awaited if it must be), :meth:`begin`.
        If the snapshot fails the session is dropped (op 9 on the link) and the error propagates."""
        link = self.open_session(address=address, library=library, intents=intents)
        try:
            snapshot = source.snapshot(self.shard_id, intents)
            if inspect.isawaitable(snapshot):
                snapshot = await snapshot
        except BaseException:
            link.session.invalidate("snapshot failed")
            raise
        self.begin(link, snapshot, resume_gateway_url=resume_gateway_url)
        return link

    def resume(self, session_id: str, seq: object) -> ResumeOutcome:
        """A RESUME for one of this shard's sessions: the frames after ``seq`` with their original seqs,
        then RESUMED numbered next, all queued on a new link (an older live link is ended). Unknown,
        expired, past the replay buffer, or ``seq`` beyond what was sent: invalid, and the session dropped."""
        self.table.sweep()
        session = self._sessions.get(session_id) if type(session_id) is str else None
        if session is None:
            return ResumeOutcome(None, 0, "unknown or expired session")
        if type(seq) is not int:
            session.invalidate("resume without a seq")
            return ResumeOutcome(None, 0, "resume without a seq")
        replayed = session.replay_after(seq)
        if replayed is None:
            if seq > session.last_sent:
                reason = f"resume from seq {seq}, but only {session.last_sent} were sent"
            else:
                reason = f"seq {seq} is past the replay buffer"
            session.invalidate(reason)
            return ResumeOutcome(None, 0, reason)
        session.confirm(seq)
        return ResumeOutcome(session.resume_with(replayed, self._resumed_parts), len(replayed))

    def request_members(self, session: ClientSession, d: Mapping[str, Any]) -> dict[str, Any]:
        """An op 8 payload to send upstream: the same request with a nonce that routes its chunks back
        to ``session`` only."""
        nonce = d.get("nonce")
        if type(nonce) is not str or len(nonce.encode()) > MAX_NONCE_BYTES:
            nonce = None
        self._nonce_counter += 1
        upstream = f"{self._nonce_prefix}{self._nonce_counter:x}"
        requests = self._chunk_requests
        requests[upstream] = _ChunkRequest(session, nonce)
        if len(requests) > MAX_CHUNK_REQUESTS:
            del requests[next(iter(requests))]
        out = dict(d)
        out["nonce"] = upstream
        return out

    def voice_state(self, session: ClientSession, d: Mapping[str, Any]) -> None:
        """A client's op 4 (forward ``d`` upstream unchanged): it becomes the guild's voice owner."""
        guild_id = d.get("guild_id")
        if type(guild_id) is not str:
            return
        self._voice_owner[guild_id] = session
        channel_id = d.get("channel_id")
        kept = self._voice_state.get(guild_id)
        if channel_id is not None and kept is not None and kept.get("channel_id") == channel_id:
            session.push(*dispatch_parts("VOICE_STATE_UPDATE", kept))
            server = self._voice_server.get(guild_id)
            if server is not None:
                session.push(*dispatch_parts("VOICE_SERVER_UPDATE", server))

    def invalidate_all(self, reason: str) -> int:
        """Drop every session of the shard with op 9 ``d=false`` (they re-identify from the cache)."""
        sessions = list(self._sessions.values())
        for session in sessions:
            session.invalidate(reason)
        self.invalidated_total += len(sessions)
        return len(sessions)

    def close_all(self, code: int, reason: str) -> int:
        """Drop every session of the shard, closing live sockets with ``code`` (e.g. after a reshard)."""
        sessions = list(self._sessions.values())
        for session in sessions:
            session.close(code, reason)
        return len(sessions)

    def release_all(self, code: int, reason: str) -> int:
        """End every live socket with ``code`` (resumable) and keep the sessions, detached and still
        numbering events: a stop whose sessions the next process takes over (:meth:`saved_form`)."""
        sessions = list(self._sessions.values())
        for session in sessions:
            session.release(code, reason)
        return len(sessions)

    def saved_form(self) -> dict[str, Any]:
        """This shard's resumable sessions, for :meth:`restore` in the next process."""
        sessions = [form for s in self._sessions.values() if (form := s.saved_form()) is not None]
        return {
            "shard_id": self.shard_id,
            "shard_total": self.shard_total,
            "bot_user_id": self.bot_user_id,
            "sessions": sessions,
        }

    def restore(self, saved: Mapping[str, Any]) -> int:
        """Take over the sessions of a previous process (:meth:`saved_form`), detached and resumable:
        events published from now on are numbered for them, and a RESUME gets them replayed. A saved
        session that does not hold together is skipped. Returns how many were restored."""
        bot_user_id = saved.get("bot_user_id")
        if self.bot_user_id is None and type(bot_user_id) is str:
            self.bot_user_id = bot_user_id
        restored = 0
        for form in saved.get("sessions") or ():
            if type(form) is not dict or form.get("session_id") in self.table:
                continue
            try:
                session = ClientSession.restore(self, self.table.limits, form, self.table.clock)
            except ValueError:
                continue
            self.table.add(session)
            self._sessions[session.session_id] = session
            restored += 1
        self._resubscribe()
        return restored

    def sessions(self) -> list[ClientSession]:
        return list(self._sessions.values())

    def clients(self) -> list[ClientStats]:
        return [session.stats() for session in self._sessions.values()]

    def stats(self) -> HubStats:
        live = sum(1 for s in self._sessions.values() if s.link is not None)
        return HubStats(
            shard_id=self.shard_id,
            clients=len(self._sessions),
            live=live,
            cut_slow_total=self.cut_slow_total,
            events_total=self.events_total,
            invalidated_total=self.invalidated_total,
        )

    # --- called by sessions ---------------------------------------------------------------------------

    def _count_cut(self) -> None:
        self.cut_slow_total += 1

    def _forget(self, session: ClientSession) -> None:
        if self._sessions.pop(session.session_id, None) is not None:
            self._resubscribe()
        self.table.remove(session)


def _last_chunk(data: Mapping[str, Any]) -> bool:
    index, count = data.get("chunk_index"), data.get("chunk_count")
    return type(index) is not int or type(count) is not int or index + 1 >= count


def _restore_nonce(target: dict[str, Any], nonce: str | None) -> None:
    if nonce is None:
        target.pop("nonce", None)
    else:
        target["nonce"] = nonce
