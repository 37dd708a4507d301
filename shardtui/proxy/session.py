"""A proxy client's session: its own session_id and seq, a bounded outbox, a bounded replay buffer, and
the one live socket (:class:`Link`) that drains it. Plus the :class:`SessionTable` every hub shares.

Sans-I/O: nothing here touches a socket. A transport holds a :class:`Link` per WebSocket and writes
what :meth:`Link.wait_frames` gives it; the :class:`~shardtui.proxy.hub.ShardHub` fills the sessions.

Seqs are the client's own: READY is 1 and every frame after it is numbered one more, so the outbox
always holds the consecutive seqs ``last_sent + 1 .. seq`` and the replay buffer the consecutive seqs
``replay_first .. seq``. Storing only the frames (no seq per entry) keeps the per-event cost at one
%-join and two deque appends (replay + outbox share the same bytes object).
"""

from __future__ import annotations

import asyncio
import enum
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any, Final

from shardtui.gateway.protocol import CloseCode

from .frames import FRAME_FORMAT, INVALID_SESSION_FRAME, dispatch_frame

if TYPE_CHECKING:
    from .hub import ShardHub

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Bounds of every client session (``[proxy]`` config feeds these)."""

    #: Frames waiting for the socket before the client counts as slow and is cut (resumable close).
    outbox_max_events: int = 10_000
    outbox_max_bytes: int = 32 * 1024 * 1024
    #: What a RESUME can still get back. A client that was away longer than this gets op 9.
    replay_max_events: int = 10_000
    replay_max_bytes: int = 32 * 1024 * 1024
    #: Seconds a session without a socket stays resumable.
    resume_window: float = 120.0
    #: Sessions in the table; past it the oldest detached ones are dropped first.
    max_sessions: int = 1_000

    def __post_init__(self) -> None:
        for name in (
            "outbox_max_events",
            "outbox_max_bytes",
            "replay_max_events",
            "replay_max_bytes",
            "max_sessions",
        ):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"proxy session limit {name} must be a positive integer, got {value!r}")
        if not self.resume_window > 0:
            raise ValueError(f"proxy resume_window must be > 0 seconds, got {self.resume_window!r}")


class SessionState(enum.Enum):
    #: Subscribed to the live stream; its READY/GUILD_CREATE snapshot is not delivered yet.
    PENDING = "pending"
    #: A socket is attached and drains the outbox.
    LIVE = "live"
    #: No socket; still numbering and recording events, resumable until the window passes.
    DETACHED = "detached"
    #: Gone: expired, invalidated, evicted or past its replay while away. Never comes back.
    CLOSED = "closed"


class LinkEnd(enum.Enum):
    """Why the hub ended a socket's link. The transport closes (or keeps) the socket accordingly."""

    #: The backlog passed its bound: close with 4000, the client resumes and gets the rest replayed.
    CUT_SLOW = "cut_slow"
    #: Another socket resumed this session: close this one with 4000.
    REPLACED = "replaced"
    #: The session is gone; op 9 ``d=false`` was the last frame (after the frames already numbered for
    #: this socket). The socket may stay open for a new IDENTIFY (what Discord allows) or be closed.
    INVALIDATED = "invalidated"
    #: The proxy ended it with a code of its choice (:meth:`ShardHub.close_all`), e.g. on a reshard, after
    #: the frames already numbered; also what :meth:`Link.detach` records (the transport's own end).
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ClientStats:
    """What the console and metrics show per client."""

    session_id: str
    shard_id: int
    address: str
    library: str
    state: SessionState
    seq: int
    backlog_events: int
    backlog_bytes: int
    #: Wall-clock time (epoch seconds) of the current socket's attach; None while detached.
    connected_since: float | None
    cuts: int


class Link:
    """One live socket's handle on a session. The transport's loop::

        while frames := await link.wait_frames():
            write(frames)          # already numbered, ready to compress
        # link.end says why: close with link.close_code (None: keep the socket for a new IDENTIFY)

    and calls :meth:`detach` when the socket goes away first.
    """

    __slots__ = ("_end_waiter", "_final", "_waiter", "close_code", "end", "reason", "session")

    def __init__(self, session: ClientSession) -> None:
        self.session = session
        self.end: LinkEnd | None = None
        self.close_code: int | None = None
        self.reason = ""
        self._final: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        self._end_waiter: asyncio.Future[None] | None = None

    async def wait_frames(self, max_frames: int | None = None) -> list[bytes]:
        """The next batch of frames (at least one), waiting while there are none; ``[]`` once the link ended
        (after any last frames, e.g. op 9)."""
        while True:
            if self.end is not None:
                final, self._final = self._final, []
                return final
            frames = self.session._take(max_frames)
            if frames:
                return frames
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    async def wait_end(self) -> None:
        """Return once the link has ended: for a transport blocked on its socket (a client that stopped
        reading) rather than on :meth:`wait_frames`, so a cut still reaches it."""
        if self.end is not None:
            return
        waiter = self._end_waiter
        if waiter is None:
            waiter = self._end_waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(waiter)

    def __aiter__(self) -> AsyncIterator[list[bytes]]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[list[bytes]]:
        while frames := await self.wait_frames():
            yield frames

    def detach(self) -> None:
        """The socket is gone (closed by the client or the network): the session stays resumable."""
        if self.end is None:
            self._finish(LinkEnd.CLOSED, None, "socket closed")
            self.session._link_gone(self)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _finish(self, end: LinkEnd, code: int | None, reason: str, final: list[bytes] | None = None) -> None:
        if self.end is not None:
            return
        self.end = end
        self.close_code = code
        self.reason = reason
        if final:
            self._final = final
        self._wake()
        end_waiter = self._end_waiter
        if end_waiter is not None and not end_waiter.done():
            end_waiter.set_result(None)


class ClientSession:
    """A client's view of one shard: the proxy's session_id, its seq, outbox and replay buffer."""

    __slots__ = (
        "_backlog_bytes",
        "_clock",
        "_exempt_bytes",
        "_exempt_events",
        "_link",
        "_outbox",
        "_outbox_max_bytes",
        "_outbox_max_events",
        "_pending",
        "_pending_bytes",
        "_replay",
        "_replay_bytes",
        "_replay_first",
        "_replay_max_bytes",
        "_replay_max_events",
        "acked",
        "address",
        "connected_since",
        "cuts",
        "detached_at",
        "hub",
        "intents",
        "last_sent",
        "library",
        "limits",
        "seq",
        "session_id",
        "shard_id",
        "state",
    )

    def __init__(
        self,
        hub: ShardHub,
        shard_id: int,
        limits: SessionLimits,
        *,
        address: str = "",
        library: str = "",
        intents: int | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.hub = hub
        #: The client's IDENTIFY intents: live events they do not cover are not sent (None: all).
        self.intents = -1 if intents is None else intents
        self.shard_id = shard_id
        self.limits = limits
        # Copied out of the limits: read on every event.
        self._outbox_max_events = limits.outbox_max_events
        self._outbox_max_bytes = limits.outbox_max_bytes
        self._replay_max_events = limits.replay_max_events
        self._replay_max_bytes = limits.replay_max_bytes
        self.address = address
        self.library = library
        self._clock = clock
        self.session_id = secrets.token_hex(16)
        self.state = SessionState.PENDING
        #: Seq of the last frame numbered for this client (0 before READY).
        self.seq = 0
        #: Seq of the last frame handed to a socket.
        self.last_sent = 0
        #: The last seq the client said it received (its heartbeat's ``d``, its RESUME's ``seq``).
        self.acked = 0
        self.cuts = 0
        self.connected_since: float | None = None
        self.detached_at: float | None = None
        self._link: Link | None = None
        self._outbox: deque[bytes] = deque()
        self._backlog_bytes = 0
        # Snapshot and replayed frames at the head of the outbox are not the client being slow: the
        # backlog bound applies to what is behind them.
        self._exempt_events = 0
        self._exempt_bytes = 0
        self._replay: deque[bytes] = deque(maxlen=limits.replay_max_events)
        self._replay_bytes = 0
        self._replay_first = 1
        #: Live events (head, body) that arrived before the snapshot was delivered.
        self._pending: list[tuple[bytes, bytes]] | None = []
        self._pending_bytes = 0

    def __repr__(self) -> str:
        return f"<ClientSession {self.session_id} shard={self.shard_id} {self.state.value} seq={self.seq}>"

    # --- what the console shows -------------------------------------------------------------------

    @property
    def link(self) -> Link | None:
        return self._link

    @property
    def backlog_events(self) -> int:
        return len(self._outbox) if self._pending is None else len(self._pending)

    @property
    def backlog_bytes(self) -> int:
        return self._backlog_bytes if self._pending is None else self._pending_bytes

    def stats(self) -> ClientStats:
        return ClientStats(
            session_id=self.session_id,
            shard_id=self.shard_id,
            address=self.address,
            library=self.library,
            state=self.state,
            seq=self.seq,
            backlog_events=self.backlog_events,
            backlog_bytes=self.backlog_bytes,
            connected_since=self.connected_since if self._link is not None else None,
            cuts=self.cuts,
        )

    # --- filling (the hub calls these) --------------------------------------------------------------

    def push(self, head: bytes, body: bytes) -> bool:
        """Number one live event (:func:`~shardtui.proxy.frames.dispatch_parts`) for this client.
        True when the session closed itself doing so. The hot path: kept inline on purpose."""
        pending = self._pending
        if pending is not None:
            return self._hold(pending, head, body)
        seq = self.seq = self.seq + 1
        frame = FRAME_FORMAT % (head, seq, body)
        n = len(frame)
        replay = self._replay
        if len(replay) == self._replay_max_events:
            # The deque's maxlen drops the oldest frame on append, in C; only its accounting is ours.
            self._replay_bytes -= len(replay[0])
            self._replay_first += 1
        replay.append(frame)
        replay_bytes = self._replay_bytes = self._replay_bytes + n
        if replay_bytes > self._replay_max_bytes:
            self._trim_replay()
        link = self._link
        if link is None:
            if self._replay_first > self.last_sent + 1:
                # Away, and the replay no longer holds what it missed: nothing could deliver it.
                self._close(None, None, "away past its replay buffer")
                return True
            return False
        outbox = self._outbox
        outbox.append(frame)
        backlog_bytes = self._backlog_bytes = self._backlog_bytes + n
        if (
            len(outbox) - self._exempt_events > self._outbox_max_events
            or backlog_bytes - self._exempt_bytes > self._outbox_max_bytes
        ):
            self._cut()
            return False
        waiter = link._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return False

    def _hold(self, pending: list[tuple[bytes, bytes]], head: bytes, body: bytes) -> bool:
        pending.append((head, body))
        self._pending_bytes += len(head) + len(body) + 24
        if len(pending) > self._outbox_max_events or self._pending_bytes > self._outbox_max_bytes:
            # No READY yet, so nothing to resume: the client must identify again.
            self.hub._count_cut()
            self.cuts += 1
            self._close(LinkEnd.CUT_SLOW, CloseCode.UNKNOWN_ERROR, "backlog bound passed before READY")
            return True
        return False

    def _append_exempt(self, frame: bytes) -> bool:
        """A snapshot frame: into the replay and the outbox, not counted against the backlog bound."""
        n = len(frame)
        replay = self._replay
        if len(replay) == self._replay_max_events:
            self._replay_bytes -= len(replay[0])
            self._replay_first += 1
        replay.append(frame)
        self._replay_bytes += n
        if self._replay_bytes > self._replay_max_bytes:
            self._trim_replay()
        link = self._link
        if link is None:
            if self._replay_first > self.last_sent + 1:
                self._close(None, None, "away past its replay buffer")
                return True
        else:
            self._outbox.append(frame)
            self._backlog_bytes += n
            self._exempt_events += 1
            self._exempt_bytes += n
            link._wake()
        return False

    def _trim_replay(self) -> None:
        """Drop the oldest replay frames past the byte bound (the event bound is the deque's maxlen)."""
        replay = self._replay
        max_bytes = self._replay_max_bytes
        while replay and self._replay_bytes > max_bytes:
            self._replay_bytes -= len(replay.popleft())
            self._replay_first += 1

    def _cut(self) -> None:
        self.cuts += 1
        self.hub._count_cut()
        link = self._link
        self._clear_outbox()
        self._link = None
        self.state = SessionState.DETACHED
        self.detached_at = self._clock()
        if link is not None:
            link._finish(LinkEnd.CUT_SLOW, CloseCode.UNKNOWN_ERROR, "client too slow: backlog bound passed")
        if self._replay_first > self.last_sent + 1:
            self._close(None, None, "cut past its replay buffer")

    def _clear_outbox(self) -> None:
        self._outbox.clear()
        self._backlog_bytes = self._exempt_events = self._exempt_bytes = 0

    def begin(self, ready: Mapping[str, Any], dispatches: Iterable[tuple[str, Any]]) -> None:
        """Deliver READY (seq 1) and the snapshot's ``(name, data)`` dispatches, then the live events queued
        meanwhile (after the snapshot, each exactly once)."""
        pending = self._pending
        if pending is None or self.state is SessionState.CLOSED:
            return
        self._pending = None
        self._pending_bytes = 0
        if self._link is not None:
            self.state = SessionState.LIVE
        else:
            self.state = SessionState.DETACHED
            self.detached_at = self._clock()
        self.seq = 1
        if self._append_exempt(dispatch_frame("READY", 1, ready)):
            return
        for name, data in dispatches:
            seq = self.seq = self.seq + 1
            if self._append_exempt(dispatch_frame(name, seq, data)):
                return
        for head, body in pending:
            # A cut while catching up detaches the session; the rest still numbers into its replay.
            if self.push(head, body):
                return

    # --- sockets ----------------------------------------------------------------------------------

    def attach(self) -> Link:
        """A new socket for this session; an older live one is ended (:attr:`LinkEnd.REPLACED`)."""
        old = self._link
        if old is not None:
            old._finish(LinkEnd.REPLACED, CloseCode.UNKNOWN_ERROR, "session resumed on another connection")
        self._clear_outbox()
        link = self._link = Link(self)
        if self._pending is None:
            self.state = SessionState.LIVE
        self.detached_at = None
        self.connected_since = time.time()
        return link

    def replay_after(self, seq: int) -> list[bytes] | None:
        """The frames numbered after ``seq`` when the replay buffer still holds all of them, else None."""
        if self._pending is not None or seq > self.last_sent or seq < 0:
            return None
        if seq + 1 < self._replay_first:
            return None
        skip = seq + 1 - self._replay_first
        replay = self._replay
        count = len(replay) - skip
        if count <= 0:
            return []
        if count >= skip:
            return list(islice(replay, skip, None))
        # From the right end: the replayed tail is usually short next to the buffer.
        tail = list(islice(reversed(replay), count))
        tail.reverse()
        return tail

    def resume_with(self, replayed: list[bytes], resumed_parts: tuple[bytes, bytes]) -> Link:
        """Re-attach: the replayed frames, then RESUMED numbered next, then the live stream."""
        link = self.attach()
        for frame in replayed:
            self._outbox.append(frame)
            self._backlog_bytes += len(frame)
            self._exempt_events += 1
            self._exempt_bytes += len(frame)
        self.last_sent = self.seq - len(self._outbox)
        self.push(*resumed_parts)
        return link

    def confirm(self, seq: object) -> None:
        """The client's heartbeat ``d``: it received every frame up to ``seq``."""
        if type(seq) is int and self.acked < seq <= self.last_sent:
            self.acked = seq

    def release(self, code: int, reason: str) -> None:
        """End the live socket with ``code`` (resumable) after the frames already numbered for it, and
        keep the session, detached: for a proxy stop whose sessions are saved for the next start."""
        link = self._link
        if self.state is SessionState.CLOSED:
            return
        if self._pending is not None:
            self.close(code, reason)  # no READY yet: nothing a RESUME could continue
            return
        if link is None:
            return
        self._link = None
        final = list(self._outbox)
        self._clear_outbox()
        self.last_sent = self.seq
        self.state = SessionState.DETACHED
        self.detached_at = self._clock()
        link._finish(LinkEnd.CLOSED, code, reason, final)

    def saved_form(self) -> dict[str, Any] | None:
        """What a next process needs to take this session over (:meth:`restore`): the frames after
        what the client confirmed, as text. None for a session that could not be resumed anyway."""
        if self.state is SessionState.CLOSED or self._pending is not None:
            return None
        first = max(self._replay_first, self.acked + 1)
        frames = list(islice(self._replay, first - self._replay_first, None))
        return {
            "session_id": self.session_id,
            "intents": self.intents,
            "address": self.address,
            "library": self.library,
            "seq": self.seq,
            "replay_first": first,
            "replay": [frame.decode() for frame in frames],
            "cuts": self.cuts,
        }

    @classmethod
    def restore(
        cls, hub: ShardHub, limits: SessionLimits, saved: Mapping[str, Any], clock: Clock = time.monotonic
    ) -> ClientSession:
        """A session of a previous process (:meth:`saved_form`), detached, resumable for a whole window
        from now, numbering on from its seq. ``ValueError`` for a form that does not hold together."""
        session_id, seq, first, replay = (
            saved.get(k) for k in ("session_id", "seq", "replay_first", "replay")
        )
        if (
            type(session_id) is not str
            or not session_id
            or type(seq) is not int
            or type(first) is not int
            or type(replay) is not list
            or not all(type(frame) is str for frame in replay)
            or seq < 1
            or first + len(replay) != seq + 1
        ):
            raise ValueError("a saved client session is malformed")
        intents = saved.get("intents")
        library, address, cuts = saved.get("library"), saved.get("address"), saved.get("cuts")
        session = cls(
            hub,
            hub.shard_id,
            limits,
            address=address if type(address) is str else "",
            library=library if type(library) is str else "",
            intents=intents if type(intents) is int and intents >= 0 else None,
            clock=clock,
        )
        session.session_id = session_id
        session.cuts = cuts if type(cuts) is int else 0
        session._pending = None
        session.seq = session.last_sent = seq
        session.acked = first - 1
        frames = [frame.encode() for frame in replay][-limits.replay_max_events :]
        session._replay.extend(frames)
        session._replay_first = seq + 1 - len(frames)
        session._replay_bytes = sum(len(frame) for frame in frames)
        session._trim_replay()
        session.state = SessionState.DETACHED
        session.detached_at = clock()
        return session

    def _link_gone(self, link: Link) -> None:
        if self._link is not link:
            return
        self._link = None
        self._clear_outbox()
        if self.state is SessionState.CLOSED:
            return
        if self._pending is not None:
            # Gone before READY: nothing to resume.
            self._close(None, None, "socket closed before READY")
            return
        self.state = SessionState.DETACHED
        self.detached_at = self._clock()
        if self._replay_first > self.last_sent + 1:
            self._close(None, None, "socket closed past its replay buffer")

    def _take(self, max_frames: int | None) -> list[bytes]:
        out = self._outbox
        if not out:
            return []
        if max_frames is None or len(out) <= max_frames:
            frames = list(out)
            self._clear_outbox()
        else:
            frames = [out.popleft() for _ in range(max_frames)]
            taken = 0
            for frame in frames:
                taken += len(frame)
            self._backlog_bytes -= taken
            exempt = min(self._exempt_events, max_frames)
            if exempt:
                self._exempt_events -= exempt
                for frame in frames[:exempt]:
                    self._exempt_bytes -= len(frame)
        self.last_sent = self.seq - len(out)
        return frames

    # --- ending -----------------------------------------------------------------------------------

    def invalidate(self, reason: str) -> None:
        """The session is gone: a live socket gets op 9 ``d=false`` as its last frame."""
        self._close(LinkEnd.INVALIDATED, None, reason, [INVALID_SESSION_FRAME])

    def close(self, code: int, reason: str) -> None:
        """End the session and close its socket with ``code``."""
        self._close(LinkEnd.CLOSED, code, reason)

    def expired(self, now: float) -> bool:
        return (
            self.state is SessionState.DETACHED
            and self.detached_at is not None
            and now - self.detached_at > self.limits.resume_window
        )

    def _close(
        self, end: LinkEnd | None, code: int | None, reason: str, final: list[bytes] | None = None
    ) -> None:
        if self.state is SessionState.CLOSED:
            return
        self.state = SessionState.CLOSED
        link = self._link
        self._link = None
        if link is not None:
            if end is None:
                end, final = LinkEnd.INVALIDATED, [INVALID_SESSION_FRAME]
            if end is LinkEnd.INVALIDATED or end is LinkEnd.CLOSED:
                # What was already numbered for this socket still goes out before the op 9 or the
                # close: those events happened, and nothing else would ever deliver them.
                final = [*self._outbox, *(final or ())]
            link._finish(end, code, reason, final)
        self._clear_outbox()
        self._replay.clear()
        self._replay_bytes = 0
        self._pending = None
        self.hub._forget(self)


#: Sessions dropped per sweep of :meth:`SessionTable.sweep` at most, so a timer tick stays short.
_SWEEP_BATCH: Final = 10_000


class SessionTable:
    """Every client session of the process by session_id, shared by all hubs (a RESUME names no shard)."""

    def __init__(self, limits: SessionLimits | None = None, *, clock: Clock = time.monotonic) -> None:
        self.limits = limits or SessionLimits()
        self.clock = clock
        self._sessions: dict[str, ClientSession] = {}
        #: Sessions dropped for the table's bound or the resume window.
        self.evicted_total = 0
        self.expired_total = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def get(self, session_id: str) -> ClientSession | None:
        return self._sessions.get(session_id)

    def sessions(self) -> list[ClientSession]:
        return list(self._sessions.values())

    def add(self, session: ClientSession) -> None:
        self.sweep()
        sessions = self._sessions
        if len(sessions) >= self.limits.max_sessions:
            detached = [s for s in sessions.values() if s.state is SessionState.DETACHED]
            detached.sort(key=lambda s: s.detached_at or 0.0)
            # Live sessions are bounded by their sockets; only detached ones can be let go.
            for victim in detached[: len(sessions) - self.limits.max_sessions + 1]:
                victim._close(None, None, "session table full")
                self.evicted_total += 1
        sessions[session.session_id] = session

    def remove(self, session: ClientSession) -> None:
        if self._sessions.get(session.session_id) is session:
            del self._sessions[session.session_id]

    def sweep(self) -> int:
        """Drop detached sessions past the resume window; returns how many. Call it from a timer too."""
        now = self.clock()
        gone = [s for s in self._sessions.values() if s.expired(now)][:_SWEEP_BATCH]
        for session in gone:
            session._close(None, None, "resume window passed")
        self.expired_total += len(gone)
        return len(gone)

    def resume(self, session_id: str, seq: object) -> ResumeOutcome:
        """A client's RESUME, routed to the hub of the session's shard."""
        self.sweep()
        session = self._sessions.get(session_id) if type(session_id) is str else None
        if session is None:
            return ResumeOutcome(None, 0, "unknown or expired session")
        return session.hub.resume(session_id, seq)


@dataclass(frozen=True, slots=True)
class ResumeOutcome:
    """A RESUME's answer. ``link`` None: send :data:`INVALID_SESSION_FRAME` at once, never a lossy RESUMED."""

    link: Link | None
    #: Frames replayed before RESUMED (already queued on the link).
    replayed: int
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.link is not None
