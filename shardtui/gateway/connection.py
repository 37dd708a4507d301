"""One gateway connection's I/O: connecting, reading, closing.

The read side has two paths. The fast path (:meth:`Connection.open_fast_path`) runs inside the
socket's ``data_received`` while the reader waits with nothing queued: frame → inflate →
``Shard.receive_frame`` (the head only; ``d`` stays bytes until read) → delivery, with no task switch and
no extra call per event; a frame it declines is JSON-decoded and given to ``Shard.receive_dispatch``.
Anything that is not an ordinary in-order dispatch comes back decoded and is queued; the reader
(:meth:`Connection.read`) takes it in arrival order and hands it to the Shard and the runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Final

import orjson
import zstandard

from shardtui.gateway.aio import wait_for
from shardtui.gateway.compression import ZstdStreamInflater, make_inflater
from shardtui.gateway.delivery import GUILD_EVENTS, Delivery
from shardtui.gateway.errors import DecompressionError, FatalGatewayError
from shardtui.gateway.http import USER_AGENT
from shardtui.gateway.models import Dispatch
from shardtui.gateway.shard import RESUMABLE_CLOSE, Reconnect, Shard, ShardAction, Stop
from shardtui.gateway.websocket import (
    GatewaySocket,
    HandshakeError,
    Message,
    MessageKind,
    WebSocketProtocolError,
)
from shardtui.gateway.websocket import connect as ws_connect

#: Seconds to wait for the server's answer to our close frame before dropping the socket.
CLOSE_TIMEOUT: Final = 2.0
#: Seconds given to a server that stopped answering (zombie, no HELLO) to take our close frame.
UNRESPONSIVE_CLOSE_WAIT: Final = 0.2
DECODE_ERRORS: Final = (DecompressionError, zstandard.ZstdError, orjson.JSONDecodeError)

#: What ends a connection: reconnect, stop, or a fatal refusal.
Outcome = Reconnect | Stop | FatalGatewayError


async def open_socket(url: str, ssl_context: ssl.SSLContext | None, connect_timeout: float) -> GatewaySocket:
    """Connect and complete the WebSocket handshake within ``connect_timeout`` seconds."""
    return await wait_for(
        ws_connect(url, ssl=ssl_context, user_agent=USER_AGENT, close_timeout=CLOSE_TIMEOUT), connect_timeout
    )


async def close_quietly(ws: GatewaySocket, code: int, *, wait: float = CLOSE_TIMEOUT) -> None:
    """Close with ``code``, waiting at most ``wait`` seconds for the server's reply (then drop)."""
    with contextlib.suppress(Exception):
        await wait_for(ws.close(code=code), wait)


def close_wait_of(outcome: Outcome) -> float:
    return (
        UNRESPONSIVE_CLOSE_WAIT if isinstance(outcome, Reconnect) and outcome.unresponsive else CLOSE_TIMEOUT
    )


def close_code_of(outcome: Outcome) -> int:
    if isinstance(outcome, Reconnect | Stop):
        return outcome.close_code
    return RESUMABLE_CLOSE


def short_exc(exc: BaseException) -> str:
    return str(exc)[:200] or type(exc).__name__


def describe_exc(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, HandshakeError | WebSocketProtocolError):
        return str(exc)
    text = str(exc)[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Connection:
    """The reading side of one open socket, and what ends it (``outcome``, set once, from any task)."""

    __slots__ = ("closer", "feed", "outcome", "server_reason", "ws")

    def __init__(self, ws: GatewaySocket, compression: str) -> None:
        self.ws = ws
        self.outcome: Outcome | None = None
        #: The task closing the socket once an outcome is set; the reader awaits it.
        self.closer: asyncio.Task[None] | None = None
        #: The reason in the server's close frame, scrubbed.
        self.server_reason = ""
        inflater = make_inflater(compression)
        feed: Callable[[bytes], bytes] = inflater.feed
        if isinstance(inflater, ZstdStreamInflater):
            feed = inflater.decompress  # zstd's own method: no wrapper call per event; b"" = incomplete
        #: Inflates one binary message; b"" while a message is incomplete.
        self.feed = feed

    def open_fast_path(
        self,
        shard: Shard,
        delivery: Delivery,
        *,
        text: bool,
    ) -> None:
        """Install the socket's taker. ``text``: also take text frames (no transport compression)."""
        ws = self.ws
        feed = self.feed
        loads = orjson.loads
        receive_frame = shard.receive_frame
        receive_dispatch = shard.receive_dispatch
        decoded_kind = MessageKind.DECODED
        info = delivery.info
        guild_events = GUILD_EVENTS
        track_guilds = delivery.track_guilds
        wall_clock = time.time
        isawaitable = inspect.isawaitable

        def take(frame: bytes) -> Message | None:
            # The hot path, run inside the socket's data_received while the reader waits with
            # nothing queued: an ordinary dispatch is delivered here; anything else is handed
            # back decoded, to be queued for the reader (which keeps it in order).
            try:
                data = feed(frame)
                if not data:
                    return None
                # Only t/s/op read: d stays bytes until the handler reads it.
                dispatch = receive_frame(data)
                if dispatch is None:
                    payload = loads(data)
                    dispatch = receive_dispatch(payload)
                    if dispatch is None:
                        return Message(decoded_kind, payload)
            except DECODE_ERRORS as exc:
                ws.set_taker(None)  # the stream is broken: nothing after this is decoded
                return Message(MessageKind.DECODE_FAILED, short_exc(exc))
            # Delivery.deliver inlined (a dispatch here always has a seq): one Python call fewer per
            # event. The handler is read per event: a reshard's rebind may swap it mid-connection.
            info.events_received += 1
            info.last_seq = dispatch.seq
            info.last_dispatch_at = wall_clock()
            if dispatch.name in guild_events:
                track_guilds(dispatch)
            handler = delivery.handler
            if handler is not None:
                try:
                    result = handler(dispatch)
                except Exception as exc:
                    delivery.handler_failed(exc, dispatch.name)
                    return None
                if result is not None and isawaitable(result):
                    delivery.queue_awaitable(result)
            return None

        ws.set_taker(take, text=text)

    def close_fast_path(self) -> None:
        self.ws.set_taker(None)

    async def read(
        self,
        shard: Shard,
        deliver: Callable[[Dispatch], None],
        apply: Callable[[list[ShardAction]], Awaitable[None]],
        on_error: Callable[[str], None],
        scrub: Callable[[str], str],
    ) -> None:
        """Take messages in arrival order until the socket ends or ``outcome`` is set."""
        ws = self.ws
        feed = self.feed
        loads = orjson.loads
        receive_frame = shard.receive_frame
        receive_dispatch = shard.receive_dispatch
        receive = ws.receive
        decoded_kind = MessageKind.DECODED
        binary = MessageKind.BINARY
        text = MessageKind.TEXT
        while True:
            # An idle shard waits here for minutes: the last slow-path message (a READY, a whole
            # GUILD_CREATE) must not stay alive in this frame's locals meanwhile.
            msg = payload = data = dispatch = actions = None
            msg = await receive()
            kind = msg.kind
            try:
                if kind is decoded_kind:
                    payload = msg.data
                elif kind is binary or kind is text:
                    data = feed(msg.data) if kind is binary else msg.data
                    if not data:
                        continue
                    dispatch = receive_frame(data)
                    if dispatch is None:
                        payload = loads(data)
                elif kind is MessageKind.DECODE_FAILED:
                    await apply(shard.decode_failed(msg.data))
                    break
                else:
                    # CLOSE from the server (its reason in extra), CLOSING after our own close,
                    # CLOSED when the connection is gone, ERROR when the server broke the protocol.
                    if kind is MessageKind.CLOSE and msg.extra:
                        self.server_reason = scrub(msg.extra[:200])
                    elif kind is MessageKind.ERROR:
                        on_error(describe_exc(msg.data))
                    break
            except DECODE_ERRORS as exc:
                ws.set_taker(None)
                await apply(shard.decode_failed(short_exc(exc)))
                break
            if dispatch is None:
                dispatch = receive_dispatch(payload)
            if dispatch is not None:
                deliver(dispatch)
                if self.outcome is not None:
                    break
                continue
            actions = shard.receive(payload)
            if actions:
                if len(actions) == 1 and type(actions[0]) is Dispatch:
                    deliver(actions[0])
                    actions.clear()
                else:
                    batch = list(actions)
                    # The Shard reuses this list: emptied now, it no longer holds the READY (or any
                    # other payload) until the next message.
                    actions.clear()
                    await apply(batch)
                    del batch
            if self.outcome is not None:
                break
