"""The per-connection protocol state machine of one shard, without I/O (in the spirit of h11/wsproto).

The runner feeds a :class:`Shard` what happened — a decoded payload (:meth:`Shard.receive`), the clock
(:meth:`Shard.tick`), a closed connection (:meth:`Shard.connection_closed`), an operator request
(:meth:`Shard.close_requested`, :meth:`Shard.restart_requested`) — and gets back a list of actions to
carry out. Every protocol decision lives here: heartbeat schedule and zombie detection, identify vs
resume vs reconnect vs give up, seq tracking and the exactly-once rule for dispatches.

Liberal in what it accepts: payloads with missing ``s``/``t``, a first dispatch numbered 0, READY
without ``shard``, unknown dispatch names or opcodes, a non-dict ``d``, seq going backwards, a gateway
url with a path or a query of its own — none of them raises; they are ignored, counted, or logged.
Strict in what it builds: every payload it asks the runner to send is complete and well-typed.

Exactly once, in seq order: during a resume replay (RESUME sent, RESUMED not yet seen) a dispatch
numbered at or below the last seq is one already delivered and is dropped. Outside a replay a repeated
or backwards seq is the server's numbering, not a replay: it is delivered, with one warning per
connection (what discord.py and hikari do). READY and RESUMED are never dropped.
"""

from __future__ import annotations

import logging
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from shardtui.gateway.closecodes import CLOSE_POLICIES
from shardtui.gateway.models import UNDECODED, ConnectionStage, Dispatch, Presence, ShardId
from shardtui.gateway.protocol import (
    API_VERSION,
    DEFAULT_HEARTBEAT_INTERVAL_MS,
    SESSION_ENDING_CLIENT_CLOSES,
    CloseCode,
    GatewayIntents,
    Opcode,
    describe_close_code,
    gateway_query,
)

#: Close code the client uses when it closes but wants to RESUME (anything but 1000/1001 keeps the session).
RESUMABLE_CLOSE: Final = 4000
#: Close code that ends the session on Discord's side.
SESSION_ENDING_CLOSE: Final = 1000
#: Closes the policy table marks not resumable after which we still try a RESUME: 4003 is also the
#: answer to a payload sent before RESUME on a fresh connection, which leaves the session alive (the
#: sandbox keeps it too); if it is gone, the RESUME costs one op 9 before the IDENTIFY.
RESUME_ANYWAY_CLOSES: Final = frozenset({CloseCode.NOT_AUTHENTICATED})
#: Heartbeat intervals outside this range (seconds) are clamped: a hostile or broken HELLO must not make
#: us beat in a busy loop or never.
MIN_HEARTBEAT_INTERVAL: Final = 0.02
MAX_HEARTBEAT_INTERVAL: Final = 3600.0
#: Anomalies (seq gaps, stale seqs, junk payloads) are logged this many times per connection, then counted.
MAX_ANOMALY_LOGS: Final = 5
_LIBRARY: Final = "shardtui"


@dataclass(frozen=True, slots=True)
class SessionState:
    """What a RESUME needs; saved across runner restarts (and processes, for zero-downtime restarts)."""

    session_id: str
    seq: int | None
    resume_gateway_url: str | None


# -- actions ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``payload`` now. Heartbeats bypass the command limiter's queue (they have reserved slots)."""

    payload: dict[str, Any]
    heartbeat: bool = False

    def __repr__(self) -> str:  # IDENTIFY and RESUME payloads hold the token: show the op only
        return f"Send(op={self.payload.get('op')!r}, heartbeat={self.heartbeat})"


@dataclass(frozen=True, slots=True)
class Identify:
    """Await the identify gate, then send :meth:`Shard.identify_payload` (if it is still wanted)."""


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Close the connection with ``close_code`` (if it is still open) and connect again after ``delay``
    seconds to ``url``: RESUME if ``resume`` else IDENTIFY. ``failure`` marks reconnects caused by a
    connection that never became usable (the runner backs off on those)."""

    resume: bool
    url: str
    close_code: int
    reason: str
    delay: float = 0.0
    failure: bool = False
    #: The server stopped answering: send the close frame but do not wait for its reply.
    unresponsive: bool = False


@dataclass(frozen=True, slots=True)
class Stop:
    """Close the connection with ``close_code`` and stop the runner; the session is over."""

    close_code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Fatal:
    """The gateway refused this shard for good: stop, never retry."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class StageChange:
    old: ConnectionStage
    new: ConnectionStage


@dataclass(frozen=True, slots=True)
class HeartbeatAcked:
    """An ACK arrived for a heartbeat sent ``latency`` seconds before."""

    latency: float


@dataclass(frozen=True, slots=True)
class SessionStarted:
    """READY (``kind="identify"``) or RESUMED (``kind="resume"``): the shard is connected."""

    kind: str
    session_id: str | None


@dataclass(frozen=True, slots=True)
class Log:
    level: int
    message: str


ShardAction = (
    Send
    | Identify
    | Reconnect
    | Stop
    | Fatal
    | StageChange
    | HeartbeatAcked
    | SessionStarted
    | Log
    | Dispatch
)

#: Seqs are int64 on Discord's side; anything outside is junk we could not even echo back in JSON.
_MAX_SEQ: Final = 2**63 - 1


#: Dispatches that start a session: always through :meth:`Shard.receive`.
_SESSION_EVENTS: Final = frozenset({"READY", "RESUMED"})


#: A dispatch frame in Discord's key order (t, s, op, d) begins ``{"t":"NAME","s":SEQ,"op":0,"d":``.
_FRAME_T: Final = b'{"t":"'
#: What follows the name when the frame is the next dispatch: its closing quote, the seq, op 0, "d".
_FRAME_SEQ_OP: Final = b'","s":%d,"op":0,"d":'
#: Event names as they appear in frames (a gateway has a few dozen); past this many, decoded each time.
_MAX_DISPATCH_NAMES: Final = 512
_dispatch_names: dict[bytes, str] = {}


def _dispatch_name(raw: bytes) -> str | None:
    """The event name ``raw`` spells in a frame's head (remembered), or None for one the fast path leaves
    to the decoder: escaped, not UTF-8, or a session event."""
    if 92 in raw:  # 92: a backslash, an escape
        return None
    try:
        name = raw.decode()
    except UnicodeDecodeError:
        return None
    if name in _SESSION_EVENTS:
        return None
    if len(_dispatch_names) < _MAX_DISPATCH_NAMES:
        _dispatch_names[raw] = name
    return name


_new_object = object.__new__


def _is_int(value: object) -> bool:
    return type(value) is int


def _is_seq(value: object) -> bool:
    return type(value) is int and 0 <= value <= _MAX_SEQ


def _short(value: object) -> str:
    """A bounded, never-raising rendering of a value from the wire, for log lines."""
    if type(value) is int:
        return str(value) if -(10**30) < value < 10**30 else f"<{value.bit_length()}-bit integer>"
    return type(value).__name__


def _as_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _clean_ws_url(url: object) -> str | None:
    """A ws(s) url without its fragment, or None if ``url`` is not usable. Path and query are kept: a
    server or proxy may route only the exact advertised path (``/gateway``) or need its own query."""
    if not isinstance(url, str) or len(url) > 2048:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        return None
    return urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))


#: Query parameters of the gateway url that the client sets itself; a value the server advertised for
#: one of them is replaced by ours.
CLIENT_QUERY_PARAMS: Final = frozenset({"v", "encoding", "compress"})


def server_query(query: str) -> str:
    """The server's own part of a gateway url's query: ``query`` (as sent) minus v/encoding/compress."""
    if not query:
        return ""
    kept = [item for item in query.split("&") if item and item.partition("=")[0] not in CLIENT_QUERY_PARAMS]
    return "&".join(kept)


def with_gateway_query(url: str, query: str) -> str:
    """``url`` with ``query`` (``?v=…&encoding=…``) added the way discord.py, hikari and discord.js do:
    the advertised path stays as it is (an empty one becomes ``/``), the advertised query stays in front
    (minus v/encoding/compress: ours win) and ours follows it."""
    parts = urlsplit(url)
    ours = query.removeprefix("?")
    theirs = server_query(parts.query)
    if theirs:
        ours = theirs + "&" + ours
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", ours, ""))


class Shard:
    """Protocol state of one shard across its connections.

    ``clock`` (monotonic seconds) is read only to time heartbeat ACKs inside :meth:`receive`; every other
    method takes ``now`` explicitly. ``rng`` drives the heartbeat jitter and the op 9 wait.
    """

    # One per shard: slots instead of an instance dict of ~37 attributes, ~1 KiB (issue #18).
    __slots__ = (
        "_abandon_session",
        "_anomaly_logs",
        "_clock",
        "_identify_sent",
        "_opened_at",
        "_out",
        "_replaying",
        "_resume_seq",
        "_resume_via_base",
        "_rng",
        "_seq_warned",
        "_setup_deadline",
        "_setup_seq",
        "_token",
        "gateway_url",
        "heartbeat_acked",
        "heartbeat_interval",
        "hello_timeout",
        "ignored_payloads",
        "intents",
        "invalid_session_delay",
        "large_threshold",
        "last_heartbeat_sent",
        "latency",
        "next_heartbeat",
        "presence",
        "query",
        "resume_gateway_url",
        "seq",
        "seq_gaps",
        "seq_regressions",
        "session_id",
        "setup_timeout",
        "shard_id",
        "stage",
        "stale_dropped",
        "total",
    )

    def __init__(
        self,
        shard_id: ShardId | int,
        total: int,
        *,
        token: str,
        intents: GatewayIntents | int,
        gateway_url: str,
        compression: str = "zstd-stream",
        large_threshold: int = 250,
        presence: Presence | None = None,
        resume: SessionState | None = None,
        api_version: int = API_VERSION,
        hello_timeout: float = 10.0,
        setup_timeout: float = 60.0,
        invalid_session_delay: tuple[float, float] = (1.0, 5.0),
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.shard_id = shard_id if isinstance(shard_id, ShardId) else ShardId(shard_id)
        if not _is_int(total) or total < 1 or self.shard_id.id >= total:
            raise ValueError(f"shard {self.shard_id} is not within a total of {total!r} shards")
        base = _clean_ws_url(gateway_url)
        if base is None:
            raise ValueError(f"gateway url must be a ws:// or wss:// url, got {gateway_url!r}")
        self.total = total
        self._token = token
        self.intents = int(intents)
        self.gateway_url = base
        self.query = gateway_query(api_version, compression)
        self.large_threshold = large_threshold
        self.presence = presence
        self.hello_timeout = hello_timeout
        self.setup_timeout = setup_timeout
        self.invalid_session_delay = invalid_session_delay
        self._clock = clock
        self._rng = rng or random.Random()

        self.stage = ConnectionStage.DISCONNECTED
        self.session_id: str | None = None
        #: Last seq seen in this session (delivered or not): what heartbeats and RESUME carry.
        self.seq: int | None = None
        self.resume_gateway_url: str | None = None
        if resume is not None and isinstance(resume.session_id, str) and resume.session_id:
            self.session_id = resume.session_id
            self.seq = resume.seq if _is_seq(resume.seq) else None
            self.resume_gateway_url = _clean_ws_url(resume.resume_gateway_url)

        self.heartbeat_interval: float | None = None
        self.next_heartbeat: float | None = None
        self.last_heartbeat_sent: float | None = None
        self.heartbeat_acked = True
        self.latency: float | None = None

        self._identify_sent = False
        self._opened_at: float | None = None
        #: When an IDENTIFY/RESUME still unanswered (no READY/RESUMED) counts as lost, and the seq then:
        #: a replay that moves the seq is progress and pushes the deadline on.
        self._setup_deadline: float | None = None
        self._setup_seq: int | None = None
        #: A RESUME was sent on this connection and no RESUMED came yet: the replay window, in which a
        #: seq at or below the last one is a duplicate. ``_resume_seq`` is the seq the RESUME carried.
        self._replaying = False
        self._resume_seq: int | None = None
        #: Whether that RESUME went to the base url (no resume url was left to try).
        self._resume_via_base = False
        #: A RESUME failed where no other url is left: the next connection identifies.
        self._abandon_session = False
        self._seq_warned = False
        self._anomaly_logs = 0
        #: Counters an operator (or a test) may read.
        self.stale_dropped = 0
        #: Dispatches outside a replay whose seq did not increase (delivered anyway).
        self.seq_regressions = 0
        self.seq_gaps = 0
        self.ignored_payloads = 0
        #: Reused by :meth:`receive` so the per-dispatch path allocates nothing but the Dispatch.
        self._out: list[ShardAction] = []

    def __repr__(self) -> str:  # the token must never appear
        return (
            f"Shard(id={self.shard_id}, total={self.total}, stage={self.stage.value}, "
            f"session_id={self.session_id!r}, seq={self.seq})"
        )

    # -- queries --------------------------------------------------------------------------------------

    @property
    def has_session(self) -> bool:
        return self.session_id is not None

    def session_state(self) -> SessionState | None:
        if self.session_id is None:
            return None
        return SessionState(self.session_id, self.seq, self.resume_gateway_url)

    def connect_url(self) -> str:
        """Where the next connection goes: ``resume_gateway_url`` when resuming, else the base url,
        always with the same query (v, encoding, compress) added to the url's own path and query."""
        base = self.gateway_url
        if self.session_id is not None and self.resume_gateway_url:
            base = self.resume_gateway_url
        return with_gateway_query(base, self.query)

    def next_deadline(self) -> float | None:
        """Monotonic time at which :meth:`tick` has something to do, or None."""
        if self.stage is ConnectionStage.HANDSHAKE and self._opened_at is not None:
            return self._opened_at + self.hello_timeout
        setup = self._setup_deadline
        if setup is not None and (self.next_heartbeat is None or setup < self.next_heartbeat):
            return setup
        return self.next_heartbeat

    # -- connection lifecycle ---------------------------------------------------------------------------

    def _set_stage(self, new: ConnectionStage, out: list[ShardAction]) -> None:
        old = self.stage
        if old is not new:
            self.stage = new
            out.append(StageChange(old, new))

    def begin_connect(self) -> list[ShardAction]:
        """The runner is about to open a connection to :meth:`connect_url`."""
        out: list[ShardAction] = []
        self._set_stage(ConnectionStage.CONNECTING, out)
        return out

    def connect_failed(self) -> list[ShardAction]:
        """Opening the connection failed. A resume url that does not answer is dropped: the next attempt
        resumes through the base url (Discord accepts RESUME there too)."""
        out: list[ShardAction] = []
        self.resume_gateway_url = None
        self._set_stage(ConnectionStage.DISCONNECTED, out)
        return out

    def connection_opened(self, now: float) -> list[ShardAction]:
        """The WebSocket is open; HELLO is expected next."""
        out: list[ShardAction] = []
        self._opened_at = now
        self._identify_sent = False
        self.heartbeat_interval = None
        self.next_heartbeat = None
        self.last_heartbeat_sent = None
        self.heartbeat_acked = True
        self._anomaly_logs = 0
        self._seq_warned = False
        self._set_stage(ConnectionStage.HANDSHAKE, out)
        return out

    def connection_closed(self, code: int | None, reason: str = "") -> list[ShardAction]:
        """The server (or the network) closed the connection; decide what comes next.

        Not called for closes the runner made itself on this Shard's request.
        """
        out: list[ShardAction] = []
        was_connected = self.stage is ConnectionStage.CONNECTED
        self._end_connection(out)
        described = describe_close_code(code)
        policy = CLOSE_POLICIES.get(code) if code is not None else None
        if policy is not None and policy.fatal:
            out.append(Fatal(int(policy.code), reason or described))
            return out
        if policy is not None and not policy.resumable and policy.code not in RESUME_ANYWAY_CLOSES:
            self._drop_session()
            out.append(self._reconnect(False, RESUMABLE_CLOSE, f"closed with {described}", failure=False))
            return out
        # Any other code — 4000-4003 (4003: see RESUME_ANYWAY_CLOSES), 4005, 4008, unknown codes, a
        # server 1000/1001, a dropped TCP connection — keeps whatever session we have. A connection
        # that closes before it was ever usable counts as a failure so a server that keeps refusing
        # us is met with backoff.
        out.append(
            self._reconnect(
                self.has_session, RESUMABLE_CLOSE, f"closed with {described}", failure=not was_connected
            )
        )
        return out

    def _end_connection(self, out: list[ShardAction]) -> None:
        self.heartbeat_interval = None
        self.next_heartbeat = None
        self.last_heartbeat_sent = None
        self.heartbeat_acked = True
        self._opened_at = None
        self._setup_deadline = None
        if self._replaying:
            self._replaying = False
            # The RESUME was neither answered nor replaying anything. With the resume url already
            # tried, resuming again would only repeat this: the next connection identifies.
            if self.seq == self._resume_seq and self._resume_via_base:
                self._abandon_session = True
        self._set_stage(ConnectionStage.DISCONNECTED, out)

    def _drop_session(self) -> None:
        self.session_id = None
        self.seq = None
        self.resume_gateway_url = None
        self._abandon_session = False

    def _reconnect(
        self,
        resume: bool,
        close_code: int,
        reason: str,
        *,
        delay: float = 0.0,
        failure: bool = False,
        unresponsive: bool = False,
    ) -> Reconnect:
        if resume and self._abandon_session:
            self._drop_session()
            reason += "; the RESUME failed on every url, starting a new session"
        resume = resume and self.has_session
        if failure:
            # The connection never became usable (no HELLO, closed or unreadable before READY/RESUMED).
            # A broken resume node is not a connect error, so without this it is retried for ever:
            # resume through the base url next, as after a connect error.
            self.resume_gateway_url = None
        return Reconnect(resume, self.connect_url(), close_code, reason, delay, failure, unresponsive)

    # -- operator requests --------------------------------------------------------------------------

    def close_requested(self, code: int, reason: str = "") -> list[ShardAction]:
        """Close with ``code``: 1000/1001 end the session and stop; any other code reconnects and resumes."""
        out: list[ShardAction] = []
        if code in SESSION_ENDING_CLIENT_CLOSES:
            self._drop_session()
            self._end_connection(out)
            out.append(Stop(code, reason or "shutdown requested"))
            return out
        self._end_connection(out)
        out.append(self._reconnect(True, code, reason or f"closed with {code} on request"))
        return out

    def restart_requested(self, force_identify: bool = False) -> list[ShardAction]:
        """Reconnect now: resume if the session is valid (costs no identify) unless ``force_identify``."""
        out: list[ShardAction] = []
        if force_identify or not self.has_session:
            # 1000 ends the old session on Discord's side instead of leaving a ghost until it times out.
            had_session = self.has_session
            self._drop_session()
            self._end_connection(out)
            code = SESSION_ENDING_CLOSE if had_session else RESUMABLE_CLOSE
            out.append(self._reconnect(False, code, "restart with a fresh identify"))
            return out
        self._end_connection(out)
        out.append(self._reconnect(True, RESUMABLE_CLOSE, "restart (resuming the session)"))
        return out

    def decode_failed(self, detail: str) -> list[ShardAction]:
        """A frame could not be inflated or parsed: the stream is unusable; reconnect and resume."""
        out: list[ShardAction] = []
        out.append(Log(logging.WARNING, f"unreadable frame from the gateway ({detail}); reconnecting"))
        was_connected = self.stage is ConnectionStage.CONNECTED
        self._end_connection(out)
        out.append(self._reconnect(True, RESUMABLE_CLOSE, "unreadable frame", failure=not was_connected))
        return out

    # -- clock --------------------------------------------------------------------------------------

    def tick(self, now: float) -> list[ShardAction]:
        """Heartbeat when due; detect a zombie connection or a HELLO that never came."""
        out: list[ShardAction] = []
        stage = self.stage
        if stage is ConnectionStage.HANDSHAKE:
            if self._opened_at is not None and now >= self._opened_at + self.hello_timeout:
                out.append(Log(logging.WARNING, f"no HELLO within {self.hello_timeout:g} s; reconnecting"))
                self._end_connection(out)
                out.append(
                    self._reconnect(True, RESUMABLE_CLOSE, "no HELLO", failure=True, unresponsive=True)
                )
            return out
        if stage is ConnectionStage.DISCONNECTED or stage is ConnectionStage.CONNECTING:
            return out
        setup = self._setup_deadline
        if setup is not None and now >= setup:
            if stage is ConnectionStage.CONNECTED:
                self._setup_deadline = None
            elif self.seq != self._setup_seq:
                # Replayed dispatches are still arriving: the server is working on the RESUME.
                self._setup_seq = self.seq
                self._setup_deadline = now + self.setup_timeout
            elif stage is ConnectionStage.RESUMING and self.seq == self._resume_seq:
                # The server took the RESUME and then neither replayed anything nor said RESUMED:
                # resuming again would wait just as long (for ever, on a server whose RESUMED we cannot
                # read). Start a new session instead; 1000 lets the server end the old one. (A replay
                # that made progress and then stalled resumes again, from where it got to.)
                out.append(
                    Log(
                        logging.WARNING,
                        f"no RESUMED within {self.setup_timeout:g} s; identifying a new session",
                    )
                )
                self._end_connection(out)
                self._drop_session()
                out.append(self._reconnect(False, SESSION_ENDING_CLOSE, "no RESUMED", failure=True))
                return out
            else:
                # Heartbeats may still be ACKed, but a session that never starts is as stuck as a zombie.
                what = "RESUMED" if stage is ConnectionStage.RESUMING else "READY"
                out.append(Log(logging.WARNING, f"no {what} within {self.setup_timeout:g} s; reconnecting"))
                self._end_connection(out)
                out.append(self._reconnect(True, RESUMABLE_CLOSE, f"no {what}", failure=True))
                return out
        if self.next_heartbeat is None or now < self.next_heartbeat:
            return out
        if not self.heartbeat_acked:
            # Zombie: the last beat was never ACKed. Close with a non-1000 code so the session survives.
            out.append(Log(logging.WARNING, "heartbeat not acknowledged; connection is a zombie, resuming"))
            was_connected = stage is ConnectionStage.CONNECTED
            self._end_connection(out)
            out.append(
                self._reconnect(
                    True, RESUMABLE_CLOSE, "zombie connection", failure=not was_connected, unresponsive=True
                )
            )
            return out
        out.append(self._heartbeat(now))
        interval = self.heartbeat_interval or DEFAULT_HEARTBEAT_INTERVAL_MS / 1000.0
        # Skip missed slots rather than bursting after a stall.
        nxt = self.next_heartbeat + interval
        self.next_heartbeat = nxt if nxt > now else now + interval
        return out

    def _heartbeat(self, now: float) -> Send:
        self.last_heartbeat_sent = now
        self.heartbeat_acked = False
        return Send({"op": 1, "d": self.seq}, heartbeat=True)

    # -- receiving ------------------------------------------------------------------------------------

    def receive(self, payload: object) -> list[ShardAction]:
        """Process one decoded payload from the gateway.

        The returned list is reused by the next ``receive`` call: act on it (or copy it) first.
        """
        out = self._out
        out.clear()
        if type(payload) is not dict:
            self._anomaly(out, f"ignored a payload that is not a JSON object ({type(payload).__name__})")
            return out
        op = payload.get("op")
        if op == 0 and _is_int(op):
            self._on_dispatch(payload, out)
        elif not _is_int(op):
            self._anomaly(out, f"ignored a payload whose op is not an integer ({_short(op)})")
        elif op == Opcode.HEARTBEAT_ACK:
            self._on_ack(out)
        elif op == Opcode.HEARTBEAT:
            # The server asks for a beat now; the regular schedule continues unchanged. The extra beat
            # leaves the zombie check (judged at scheduled beats) alone: restarting the ACK wait here
            # made a scheduled beat due a round trip later find "no ACK" on a healthy connection.
            if self.stage is not ConnectionStage.DISCONNECTED:
                out.append(Send({"op": 1, "d": self.seq}, heartbeat=True))
        elif op == Opcode.HELLO:
            self._on_hello(payload.get("d"), out)
        elif op == Opcode.RECONNECT:
            self._on_reconnect(out)
        elif op == Opcode.INVALID_SESSION:
            self._on_invalid_session(payload.get("d"), out)
        else:
            self._anomaly(out, f"ignored unknown opcode {_short(op)}")
        return out

    def receive_dispatch(self, payload: object) -> Dispatch | None:
        """The common case of :meth:`receive` without its action list: a dispatch numbered exactly one
        after the last, other than READY/RESUMED. Returns its :class:`Dispatch` (the seq advanced, as
        :meth:`receive` would have), or None having changed nothing: pass that payload to :meth:`receive`.
        """
        if type(payload) is not dict:
            return None
        op = payload.get("op")
        last = self.seq
        if op != 0 or type(op) is not int or last is None:
            return None
        s = payload.get("s")
        t = payload.get("t")
        # s == last + 1 with last a valid seq keeps s inside the seq range unless last is the maximum.
        if type(s) is not int or s != last + 1 or s > _MAX_SEQ or type(t) is not str or t in _SESSION_EVENTS:
            return None
        self.seq = s
        # Dispatch() inlined: the hot path saves a Python call per event.
        dispatch = _new_object(Dispatch)
        dispatch.shard_id = self.shard_id
        dispatch.name = t
        dispatch.seq = s
        dispatch._data = payload.get("d")
        dispatch._raw = None
        dispatch._at = 0
        return dispatch

    def receive_frame(self, raw: bytes) -> Dispatch | None:
        """:meth:`receive_dispatch` for a payload still in its JSON bytes, reading only ``t``, ``s``, ``op``:
        ``d`` is handed on as bytes, decoded when first read (:attr:`Dispatch.data`). Takes frames in
        Discord's key order, ``{"t":"NAME","s":SEQ,"op":0,"d":…}`` with ``d`` last; for anything else
        (another order, another op, a seq out of line, READY/RESUMED) it returns None having changed
        nothing: decode the payload and pass it to :meth:`receive_dispatch` or :meth:`receive`.
        """
        last = self.seq
        if last is None or last >= _MAX_SEQ or not raw.startswith(_FRAME_T) or raw[-1] != 125:  # 125: "}"
            return None
        # A string's first '"' ends it unless escaped (an escaped name is declined below). What follows
        # must be exactly the next seq and op 0: one comparison instead of parsing the number.
        end_t = raw.find(34, 6)
        seq_op = _FRAME_SEQ_OP % (last + 1)
        if end_t < 0 or not raw.startswith(seq_op, end_t):
            return None
        t = raw[6:end_t]
        name = _dispatch_names.get(t)
        if name is None:
            name = _dispatch_name(t)
            if name is None:
                return None
        self.seq = seq = last + 1
        # Dispatch.from_wire inlined: a Python call less per event.
        dispatch = _new_object(Dispatch)
        dispatch.shard_id = self.shard_id
        dispatch.name = name
        dispatch.seq = seq
        dispatch._data = UNDECODED
        dispatch._raw = raw
        dispatch._at = end_t + len(seq_op)
        return dispatch

    def _anomaly(self, out: list[ShardAction], message: str) -> None:
        self.ignored_payloads += 1
        if self._anomaly_logs < MAX_ANOMALY_LOGS:
            self._anomaly_logs += 1
            out.append(Log(logging.WARNING, message))

    def _on_dispatch(self, payload: dict, out: list[ShardAction]) -> None:
        s = payload.get("s")
        t = payload.get("t")
        name = t if type(t) is str else "UNKNOWN"
        if _is_seq(s):
            last = self.seq
            if name == "READY" or last is None:
                self.seq = s  # a new session numbers from the start again
            elif s > last:
                if s != last + 1:
                    self.seq_gaps += 1
                    if self._anomaly_logs < MAX_ANOMALY_LOGS:
                        self._anomaly_logs += 1
                        out.append(Log(logging.WARNING, f"seq jumped from {last} to {_short(s)}"))
                self.seq = s
            elif name == "RESUMED":
                # Some servers number RESUMED with the seq the RESUME carried. It is never a duplicate
                # and must not move the seq back: what was replayed stays acknowledged.
                pass
            elif self._replaying:
                # A replay of something already delivered: never deliver twice.
                self.stale_dropped += 1
                return
            else:
                # Live traffic numbered at or below the last seq: the server's numbering, not a replay.
                # Deliver it and follow its numbering (heartbeats echo what the server sent last).
                self.seq_regressions += 1
                if not self._seq_warned:
                    self._seq_warned = True
                    out.append(
                        Log(
                            logging.WARNING,
                            f"seq did not increase ({last} then {_short(s)}); delivering anyway "
                            "(further ones on this connection are only counted)",
                        )
                    )
                self.seq = s
        else:
            s = None
        data = payload.get("d")
        if name == "READY":
            self._on_ready(data, out)
        elif name == "RESUMED":
            self._connected("resume", out)
        out.append(Dispatch(self.shard_id, name, s, data))

    def _on_ready(self, data: object, out: list[ShardAction]) -> None:
        if type(data) is dict:
            session_id = data.get("session_id")
            self.session_id = session_id if type(session_id) is str and session_id else None
            self.resume_gateway_url = _clean_ws_url(data.get("resume_gateway_url"))
        else:
            self.session_id = None
            self.resume_gateway_url = None
        if self.session_id is None:
            out.append(Log(logging.WARNING, "READY carried no session_id; this session cannot be resumed"))
        self._connected("identify", out)

    def _connected(self, kind: str, out: list[ShardAction]) -> None:
        self._setup_deadline = None
        self._replaying = False
        self._abandon_session = False
        self._set_stage(ConnectionStage.CONNECTED, out)
        out.append(SessionStarted(kind, self.session_id))

    def _on_ack(self, out: list[ShardAction]) -> None:
        if self.heartbeat_acked or self.last_heartbeat_sent is None:
            return  # unrequested ACK: harmless
        self.heartbeat_acked = True
        latency = max(0.0, self._clock() - self.last_heartbeat_sent)
        self.latency = latency
        out.append(HeartbeatAcked(latency))

    def _on_hello(self, data: object, out: list[ShardAction]) -> None:
        interval_ms = _as_float(data.get("heartbeat_interval")) if type(data) is dict else None
        if interval_ms is not None:
            interval = min(max(interval_ms / 1000.0, MIN_HEARTBEAT_INTERVAL), MAX_HEARTBEAT_INTERVAL)
        else:
            interval = DEFAULT_HEARTBEAT_INTERVAL_MS / 1000.0
            self._anomaly(out, "HELLO without a usable heartbeat_interval; using Discord's default")
        first_hello = self.heartbeat_interval is None
        self.heartbeat_interval = interval
        if self.stage is not ConnectionStage.HANDSHAKE or not first_hello:
            return  # a repeated HELLO only updates the interval
        now = self._clock()
        # Jittered first beat spreads the heartbeats of shards that reconnected together.
        self.next_heartbeat = now + interval * self._rng.random()
        self.heartbeat_acked = True
        if self.session_id is not None:
            self._set_stage(ConnectionStage.RESUMING, out)
            self._start_setup_timer(now)
            self._replaying = True
            self._resume_seq = self.seq
            self._resume_via_base = self.resume_gateway_url is None
            out.append(
                Send(
                    {
                        "op": int(Opcode.RESUME),
                        "d": {"token": self._token, "session_id": self.session_id, "seq": self.seq or 0},
                    }
                )
            )
        else:
            self._set_stage(ConnectionStage.IDENTIFYING, out)
            out.append(Identify())

    def _start_setup_timer(self, now: float) -> None:
        self._setup_deadline = now + self.setup_timeout
        self._setup_seq = self.seq

    def _on_reconnect(self, out: list[ShardAction]) -> None:
        was_connected = self.stage is ConnectionStage.CONNECTED
        self._end_connection(out)
        out.append(
            self._reconnect(
                True, RESUMABLE_CLOSE, "gateway asked to reconnect (op 7)", failure=not was_connected
            )
        )

    def _on_invalid_session(self, data: object, out: list[ShardAction]) -> None:
        self._end_connection(out)
        if data is True and self.has_session:
            out.append(self._reconnect(True, RESUMABLE_CLOSE, "invalid session (resumable)"))
            return
        # Not resumable: the session is gone. Wait a little (the server may be telling us we identified
        # too fast) and identify again through the gate, on the base url.
        self._drop_session()
        low, high = self.invalid_session_delay
        delay = low + (high - low) * self._rng.random()
        out.append(
            self._reconnect(False, SESSION_ENDING_CLOSE, "invalid session (not resumable)", delay=delay)
        )

    # -- sending --------------------------------------------------------------------------------------

    @property
    def wants_identify(self) -> bool:
        return self.stage is ConnectionStage.IDENTIFYING and not self._identify_sent

    def identify_payload(self) -> dict[str, Any] | None:
        """The IDENTIFY to send now that the gate let us through, or None if it is no longer wanted
        (the connection closed meanwhile, or it was already sent)."""
        if not self.wants_identify:
            return None
        self._identify_sent = True
        self._start_setup_timer(self._clock())
        d: dict[str, Any] = {
            "token": self._token,
            "properties": {"os": sys.platform, "browser": _LIBRARY, "device": _LIBRARY},
            "large_threshold": self.large_threshold,
            "shard": [self.shard_id.id, self.total],
            "intents": self.intents,
        }
        if self.presence is not None:
            d["presence"] = self.presence.to_payload()
        return {"op": int(Opcode.IDENTIFY), "d": d}
