"""`ServerConnection`: the server side of one gateway connection, without I/O.

The twin of the client's sans-I/O `Shard`: fed what the client sent (`receive`) and the clock
(`tick`), it returns events for the driver and the backend. It owns everything that is protocol
and not world: HELLO, op 1 answered with op 11, the 120-per-60 s command budget (heartbeats
count), payload size and decoding, opcode checks, IDENTIFY/RESUME shapes, 4003 before and 4005
after authentication, command shapes, and the missed-heartbeat rule.

Sequence numbers are NOT assigned here: they belong to the backend's session, which outlives a
connection (a RESUME replays the session's dispatches with their original seqs on a new socket).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

from shardtui.gateway.protocol import CLIENT_OPCODES, MAX_CLIENT_PAYLOAD_BYTES, CloseCode, Opcode

from .validate import (
    IdentifyRequest,
    Parsed,
    ProtocolViolation,
    ResumeRequest,
    is_int,
    parse_shard,
    validate_command,
    validate_identify,
    validate_resume,
)


def control(op: int, d: Any = None) -> dict[str, Any]:
    """A non-dispatch payload (``t`` and ``s`` null)."""
    return {"t": None, "s": None, "op": op, "d": d}


HEARTBEAT_ACK: dict[str, Any] = control(Opcode.HEARTBEAT_ACK)


class AuthState(enum.Enum):
    #: No accepted IDENTIFY or RESUME yet: only op 1, 2 and 6 are allowed.
    UNAUTHENTICATED = "unauthenticated"
    #: An IDENTIFY or RESUME was handed to the backend and not answered yet.
    PENDING = "pending"
    AUTHENTICATED = "authenticated"
    CLOSED = "closed"


# -- events (what `receive` and `tick` return) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendPayload:
    """Send this control payload to the client (the op 11 for a heartbeat)."""

    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CloseConnection:
    """Close with ``code``: the client broke the protocol or stopped heartbeating."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class HeartbeatReceived:
    #: The client's last seen seq (``d`` of op 1), or None.
    seq: int | None


@dataclass(frozen=True, slots=True)
class IdentifyReceived:
    request: IdentifyRequest


@dataclass(frozen=True, slots=True)
class ResumeReceived:
    request: ResumeRequest


@dataclass(frozen=True, slots=True)
class CommandReceived:
    """An authenticated op 3/4/8/31/43 whose shape Discord accepts; ``parsed`` per `validate_command`."""

    op: int
    d: Any
    parsed: Parsed


Event = (
    SendPayload | CloseConnection | HeartbeatReceived | IdentifyReceived | ResumeReceived | CommandReceived
)


class ServerConnection:
    """Protocol state of one client connection. Times are the caller's monotonic seconds."""

    def __init__(
        self,
        *,
        heartbeat_interval_ms: int,
        heartbeat_timeout: float | None = None,
        command_window: float = 60.0,
        commands_per_window: int = 120,
        max_payload_bytes: int = MAX_CLIENT_PAYLOAD_BYTES,
        auto_ack: bool = True,
    ) -> None:
        """``heartbeat_timeout``: seconds without op 1 after which an authenticated client is
        closed (None: never). ``auto_ack=False`` leaves the op 11 to the caller (`ack`), for a
        server that delays or withholds it."""
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.heartbeat_timeout = heartbeat_timeout
        self.auto_ack = auto_ack
        self._window = command_window
        self._budget = commands_per_window
        self._max_payload = max_payload_bytes
        self._commands: deque[float] = deque()
        self.state = AuthState.UNAUTHENTICATED
        #: Time of the last op 1 (or of authentication); None before authentication.
        self.last_heartbeat: float | None = None
        #: The shard array of the last IDENTIFY that got that far, even if it was then refused.
        self.identify_shard: tuple[int, int] | None = None
        self.close_code: int | None = None

    def __repr__(self) -> str:
        return f"<ServerConnection {self.state.value}>"

    @property
    def authenticated(self) -> bool:
        return self.state is AuthState.AUTHENTICATED

    def hello(self, **extra: Any) -> dict[str, Any]:
        """The op 10 to send first."""
        return control(Opcode.HELLO, {"heartbeat_interval": self.heartbeat_interval_ms, **extra})

    # -- the backend's answers --------------------------------------------------------------------

    def accept(self, now: float) -> None:
        """The backend accepted the pending IDENTIFY or RESUME: commands are allowed from now."""
        if self.state is not AuthState.CLOSED:
            self.state = AuthState.AUTHENTICATED
            self.last_heartbeat = now

    def reset(self) -> None:
        """Back to unauthenticated (refused IDENTIFY/RESUME answered with op 9, or the session
        ended under a live socket): the client may IDENTIFY again on this socket."""
        if self.state is not AuthState.CLOSED:
            self.state = AuthState.UNAUTHENTICATED
            self.last_heartbeat = None

    def closed(self, code: int) -> None:
        """The connection is ending (either side); nothing is processed any more."""
        if self.state is not AuthState.CLOSED:
            self.state = AuthState.CLOSED
            self.close_code = code

    # -- input ------------------------------------------------------------------------------------

    def receive(self, data: bytes | str, now: float) -> list[Event]:
        """One received WebSocket message (text or binary JSON)."""
        if self.state is AuthState.CLOSED:
            return []
        try:
            return self._receive(data.encode() if isinstance(data, str) else data, now)
        except ProtocolViolation as exc:
            self.closed(exc.code)
            return [CloseConnection(exc.code, exc.reason)]

    def tick(self, now: float) -> list[Event]:
        """The missed-heartbeat rule; call at least every few seconds."""
        timeout = self.heartbeat_timeout
        if (
            timeout is not None
            and self.state is AuthState.AUTHENTICATED
            and self.last_heartbeat is not None
            and now - self.last_heartbeat > timeout
        ):
            self.closed(CloseCode.UNKNOWN_ERROR)
            return [CloseConnection(CloseCode.UNKNOWN_ERROR, "Heartbeat missed.")]
        return []

    def heartbeat_deadline(self) -> float | None:
        """When `tick` would close the connection if no op 1 arrives first (None: no deadline)."""
        if self.heartbeat_timeout is None or self.last_heartbeat is None or not self.authenticated:
            return None
        return self.last_heartbeat + self.heartbeat_timeout

    def _count(self, now: float) -> bool:
        commands = self._commands
        window_start = now - self._window
        while commands and commands[0] <= window_start:
            commands.popleft()
        commands.append(now)
        return len(commands) <= self._budget

    def _receive(self, raw: bytes, now: float) -> list[Event]:
        if not self._count(now):
            raise ProtocolViolation(CloseCode.RATE_LIMITED, "You are being rate limited.")
        if len(raw) > self._max_payload:
            raise ProtocolViolation(CloseCode.DECODE_ERROR, "Payload too large.")
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ProtocolViolation(CloseCode.DECODE_ERROR, "Error while decoding payload.") from None
        if not isinstance(payload, dict):
            raise ProtocolViolation(CloseCode.DECODE_ERROR, "Error while decoding payload.")
        op = payload.get("op")
        if not is_int(op) or op not in CLIENT_OPCODES:
            raise ProtocolViolation(CloseCode.UNKNOWN_OPCODE, "Unknown opcode.")
        d = payload.get("d")
        if op == Opcode.HEARTBEAT:
            if d is not None and not is_int(d):
                raise ProtocolViolation(
                    CloseCode.UNKNOWN_OPCODE, "Heartbeat payload must be the last sequence or null."
                )
            if self.last_heartbeat is not None:
                self.last_heartbeat = now
            if self.auto_ack:
                return [HeartbeatReceived(d), SendPayload(HEARTBEAT_ACK)]
            return [HeartbeatReceived(d)]
        state = self.state
        if op == Opcode.IDENTIFY or op == Opcode.RESUME:
            if state is not AuthState.UNAUTHENTICATED:
                raise ProtocolViolation(CloseCode.ALREADY_AUTHENTICATED, "You're already authenticated.")
            if op == Opcode.IDENTIFY:
                if isinstance(d, dict):
                    try:
                        self.identify_shard = parse_shard(d)
                    except ProtocolViolation:
                        pass  # reported in order by validate_identify
                event: Event = IdentifyReceived(validate_identify(d))
            else:
                event = ResumeReceived(validate_resume(d))
            self.state = AuthState.PENDING
            return [event]
        if state is not AuthState.AUTHENTICATED:
            raise ProtocolViolation(CloseCode.NOT_AUTHENTICATED, "Not authenticated.")
        return [CommandReceived(op, d, validate_command(op, d))]
