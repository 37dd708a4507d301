"""`GatewayBackend`: what a gateway server (the sandbox's world, the proxy's upstream) decides.

The server layer (`shardtui.server.websocket.GatewayServer`) owns the protocol; a backend owns
sessions, seqs, READY and everything the client is told besides HELLO, op 11, op 9 and closes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from .connection import CommandReceived
from .validate import IdentifyRequest, ResumeRequest

if TYPE_CHECKING:
    from .websocket import GatewaySocket


@dataclass(frozen=True, slots=True)
class Accepted:
    """The IDENTIFY/RESUME is accepted: the backend has queued READY (or the replay and RESUMED)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """Close the connection with ``code`` (e.g. 4004, 4009, 4010, 4011, 4014) and ``reason``."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class InvalidSession:
    """Answer op 9 with ``d=resumable`` and keep the socket open, unauthenticated (the client may
    IDENTIFY again on it)."""

    resumable: bool = False


AuthResult = Accepted | Rejected | InvalidSession


class GatewayBackend(Protocol):
    """Implemented by the sandbox (`shardtui.sandbox.gateway.SandboxBackend`) and the proxy.

    Calls for one socket never overlap: the server awaits ``identify``/``resume``/``command``
    before reading the client's next message. Synchronous hooks must not block."""

    @property
    def heartbeat_interval_ms(self) -> int:
        """The interval sent in HELLO."""
        ...

    def before_upgrade(self, request: web.Request) -> web.StreamResponse | None:
        """A response instead of the WebSocket upgrade (e.g. 503 while refusing), or None."""
        ...

    def opened(self, socket: GatewaySocket) -> None:
        """A WebSocket was accepted (query not yet checked; HELLO not yet sent)."""
        ...

    async def before_hello(self, socket: GatewaySocket) -> dict[str, Any] | None:
        """Wait, if the backend wants to, and return extra fields for HELLO's ``d`` (usually {});
        None sends no HELLO (a misbehaving server that sent op 7 or closed instead)."""
        ...

    async def identify(self, socket: GatewaySocket, request: IdentifyRequest) -> AuthResult:
        """A well-formed IDENTIFY; on Accepted the backend has already queued READY with
        ``socket.send`` (seq 1 of a new session: the backend numbers dispatches)."""
        ...

    async def resume(self, socket: GatewaySocket, request: ResumeRequest) -> AuthResult:
        """A well-formed RESUME; on Accepted the backend has queued the missed dispatches with
        their original seqs, then RESUMED. Unknown/expired session: InvalidSession(False)."""
        ...

    def heartbeat(self, socket: GatewaySocket, seq: int | None) -> None:
        """An op 1 (``d`` = the client's last seq); the server answers op 11 itself."""
        ...

    async def command(self, socket: GatewaySocket, command: CommandReceived) -> Rejected | None:
        """An authenticated op 3/4/8/31/43 with a valid shape; Rejected closes the connection."""
        ...

    def violation(self, socket: GatewaySocket, code: int, reason: str) -> None:
        """The server is closing the socket because the client broke the protocol (4001, 4002,
        4003, 4005, 4008, missed heartbeats: 4000...). ``closed`` follows."""
        ...

    def closed(self, socket: GatewaySocket, code: int, *, by_client: bool) -> None:
        """Exactly once per socket, as soon as its end is decided: ``by_client`` with the client's
        close code (1006 for a vanished peer), else the code the server sent (1006 for a drop)."""
        ...

    def finished(self, socket: GatewaySocket) -> None:
        """The socket's handler is done (after ``closed``): forget it."""
        ...
