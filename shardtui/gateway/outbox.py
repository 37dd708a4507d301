"""The outgoing command box: gateway commands waiting to be sent, and the one task sending them
through the connection's ``CommandLimiter`` (which keeps the heartbeats' share of the budget).

Commands queued while the shard is not connected wait for the next session (at most
``MAX_DEFERRED_COMMANDS``, oldest dropped first). A presence change is held apart from the rest:
only the newest one matters, and it goes out before any other waiting command.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import orjson

from shardtui.gateway.connection import describe_exc
from shardtui.gateway.errors import PayloadTooLarge
from shardtui.gateway.models import ConnectionStage, Presence, ShardId, ShardRunnerInfo
from shardtui.gateway.payloads import presence_update
from shardtui.gateway.ratelimit import CommandLimiter, encode_command
from shardtui.gateway.shard import Shard
from shardtui.gateway.websocket import GatewaySocket

#: Commands held while disconnected; older ones are dropped beyond this.
MAX_DEFERRED_COMMANDS: Final = 1000


class SendResult(enum.Enum):
    SENT = "sent"
    #: Can never be sent (too large, not encodable); dropped with an error logged.
    REFUSED = "refused"
    NO_CONNECTION = "no connection"


class Outbox:
    """Sends gateway commands on the current connection, rate limited, in the order they came."""

    # One per shard: slots instead of an instance dict (issue #18: idle memory).
    __slots__ = (
        "_deferred",
        "_info",
        "_limiter",
        "_log",
        "_presence_pending",
        "_sender",
        "_shard",
        "_ws",
        "shard_id",
    )

    def __init__(
        self, shard_id: ShardId, shard: Shard, info: ShardRunnerInfo, log: Callable[[int, str], None]
    ) -> None:
        self.shard_id = shard_id
        self._shard = shard
        self._info = info
        self._log = log
        #: The connection commands go out on; None between connections.
        self._ws: GatewaySocket | None = None
        self._limiter = CommandLimiter()
        #: Made on first use: an empty deque is 0.75 KiB per shard.
        self._deferred: deque[dict[str, Any]] | None = None
        self._presence_pending: Presence | None = None
        self._sender: asyncio.Task[None] | None = None

    # -- the connection ---------------------------------------------------------------------------

    def connected(self, ws: GatewaySocket) -> None:
        """A new connection: a fresh limiter (Discord counts per connection)."""
        self._ws = ws
        self._limiter = CommandLimiter()

    def disconnected(self) -> None:
        self._ws = None

    def set_heartbeat_interval(self, interval: float) -> None:
        """HELLO told us the interval: reserve the heartbeats' share of the command budget."""
        self._limiter.set_heartbeat_interval(interval)

    def detach_sender(self) -> asyncio.Task[None] | None:
        """The sender task, forgotten here, for the caller to cancel (what it had not sent stays queued)."""
        sender, self._sender = self._sender, None
        return sender

    @property
    def sender(self) -> asyncio.Task[None] | None:
        return self._sender

    # -- queueing ---------------------------------------------------------------------------------

    def defer(self, payload: dict[str, Any]) -> None:
        deferred = self._deferred
        if deferred is None:
            deferred = self._deferred = deque()
        if len(deferred) >= MAX_DEFERRED_COMMANDS:
            deferred.popleft()
            self._log(logging.WARNING, "too many gateway commands waiting to be sent; dropped the oldest")
        deferred.append(payload)

    def want_presence(self, presence: Presence) -> None:
        self._presence_pending = presence

    def presence_sent_in_identify(self, presence: Presence | None) -> None:
        """IDENTIFY carried ``presence``: an op 3 waiting with the same presence is not needed."""
        if self._presence_pending == presence:
            self._presence_pending = None

    def kick(self) -> None:
        """Start the sender if something waits and the shard can send."""
        if self._presence_pending is None and not self._deferred:
            return
        if self._shard.stage is not ConnectionStage.CONNECTED or self._ws is None:
            return
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._flush(), name=f"shard-{self.shard_id}-send")

    # -- sending ----------------------------------------------------------------------------------

    async def send(self, payload: dict[str, Any], heartbeat: bool = False) -> SendResult:
        """Encode, wait for the limiter, send on the current connection."""
        ws = self._ws
        if ws is None or ws.closed:
            return SendResult.NO_CONNECTION
        try:
            data = encode_command(payload)
        except PayloadTooLarge as exc:
            self._log(logging.ERROR, str(exc))
            return SendResult.REFUSED
        except (orjson.JSONEncodeError, TypeError) as exc:
            self._log(logging.ERROR, f"gateway command op {payload.get('op')} could not be encoded: {exc}")
            return SendResult.REFUSED
        await self._limiter.acquire(heartbeat)
        if ws is not self._ws or ws.closed:
            return SendResult.NO_CONNECTION
        try:
            await ws.send_frame(data)
        except (ConnectionError, RuntimeError):
            return SendResult.NO_CONNECTION
        return SendResult.SENT

    async def _flush(self) -> None:
        try:
            await self._flush_inner()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep the exception from vanishing with the task
            self._log(logging.ERROR, f"sending a gateway command failed: {describe_exc(exc)}")

    async def _flush_inner(self) -> None:
        """Send what waits, in order, while the shard is connected; the rest waits for the next session."""
        while self._shard.stage is ConnectionStage.CONNECTED and self._ws is not None:
            presence = self._presence_pending
            if presence is not None:
                result = await self.send(presence_update(presence))
                if result is SendResult.NO_CONNECTION:
                    return
                if self._presence_pending is presence:
                    self._presence_pending = None
                if result is SendResult.SENT:
                    self._info.presence = presence
                continue
            deferred = self._deferred
            if not deferred:
                return
            payload = deferred[0]
            result = await self.send(payload)
            if result is SendResult.NO_CONNECTION:
                return
            if deferred and deferred[0] is payload:
                deferred.popleft()
