"""The sandbox's record of one gateway socket: its session, shard and the faults it is under.

The socket itself (compression, ordered writer, close handshake) is `shardtui.server`'s
`GatewaySocket`; this wraps it with what only the fake Discord needs.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from shardtui.server import GatewaySocket

if TYPE_CHECKING:
    from .session import Session


class Connection:
    """Server side of one gateway WebSocket, as the sandbox's world sees it."""

    __slots__ = ("_session", "id", "last_dispatch_seq", "reconnect_deadline", "shard_id", "socket", "wedged")

    def __init__(self, socket: GatewaySocket) -> None:
        self.socket = socket
        self.id = socket.id
        self._session: Session | None = None
        #: Shard of the last IDENTIFY on this connection (kept after the session dies, for accounting).
        self.shard_id: int | None = None
        #: Wedged: ACKs continue, dispatches stay in the session's replay buffer.
        self.wedged = False
        #: Seq of the last dispatch queued on this socket (what a wedge or zombie holds back is above it).
        self.last_dispatch_seq = 0
        #: Loop time after which the sandbox drops a client that ignored op 7.
        self.reconnect_deadline: float | None = None

    @property
    def session(self) -> Session | None:
        return self._session

    @session.setter
    def session(self, session: Session | None) -> None:
        # A session that ends under a live socket lets the client IDENTIFY again on it.
        if session is None and self._session is not None:
            self.socket.deauthenticate()
        self._session = session

    # -- the socket's state, under the names the world and the faults use -------------------------

    @property
    def request(self) -> web.Request:
        return self.socket.request

    @property
    def version(self) -> int:
        return self.socket.version

    @property
    def compression(self) -> str | None:
        return self.socket.compression

    @property
    def zombie(self) -> bool:
        """Nothing at all leaves the server any more (no ACKs, no dispatches)."""
        return self.socket.muted

    @zombie.setter
    def zombie(self, value: bool) -> None:
        self.socket.muted = value

    @property
    def split_next(self) -> bool:
        """zlib-stream only: write the next payload as two WebSocket frames."""
        return self.socket.writer.split_next

    @split_next.setter
    def split_next(self, value: bool) -> None:
        self.socket.writer.split_next = value

    @property
    def closing(self) -> bool:
        return self.socket.closing

    @property
    def last_heartbeat(self) -> float | None:
        return self.socket.protocol.last_heartbeat

    @property
    def handler_task(self) -> asyncio.Task[Any] | None:
        return self.socket.handler_task

    @property
    def holds_dispatches(self) -> bool:
        return self.socket.muted or self.wedged

    # -- outbound ---------------------------------------------------------------------------------

    def send(self, payload: dict[str, Any]) -> None:
        """Queue a payload; a zombie or closing connection swallows it."""
        self.socket.send(payload)

    def send_raw(self, data: bytes, *, truncated: bool = False) -> None:
        self.socket.send_raw(data, truncated=truncated)

    def close(self, code: int, reason: str = "") -> None:
        self.socket.close(code, reason)

    def abort(self) -> None:
        self.socket.abort()

    async def shutdown(self, code: int) -> None:
        """Close for Sandbox.stop: a close handshake if the client answers in time, else a drop."""
        await self.socket.shutdown(code, "Sandbox stopping.")
