"""``ShardRunner``: one shard's WebSocket, timers and command sending around the sans-I/O :class:`Shard`.

The runner owns the I/O and nothing else: it opens the connection, inflates and decodes frames,
feeds them to the Shard, and carries out the actions it answers with — send, identify through the
gate, reconnect, stop. Dispatches go to the user's handler in seq order, each exactly once.

Tasks, all owned by :meth:`ShardRunner.run` and gone when it returns: the connection reader (``run``
itself), a timer per connection (heartbeats, zombie check, events/s), the inbox reader (messenger
commands), an identify task while waiting on the gate, a closer while a close handshake runs, and a
delivery task while an async handler has work queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final

import orjson
import zstandard

from shardtui.gateway.aio import wait_for
from shardtui.gateway.compression import ZstdStreamInflater, make_inflater
from shardtui.gateway.errors import (
    DecompressionError,
    FatalGatewayError,
    PayloadTooLarge,
    fatal_error_for_close,
)
from shardtui.gateway.gate import AcquireOnly, IdentifyGate, as_identify_gate
from shardtui.gateway.http import USER_AGENT
from shardtui.gateway.messages import (
    ShardManagerMessage,
    ShardRunnerMessage,
    ShardRunnerMessageT,
    fatal_message,
)
from shardtui.gateway.messenger import ShardMessenger
from shardtui.gateway.models import (
    ConnectionStage,
    Dispatch,
    ManagerEvent,
    Presence,
    ShardId,
    ShardLogEvent,
    ShardRunnerInfo,
)
from shardtui.gateway.protocol import COMPRESSIONS, GatewayIntents, Opcode, describe_close_code
from shardtui.gateway.ratelimit import CommandLimiter, encode_command
from shardtui.gateway.shard import (
    RESUMABLE_CLOSE,
    Fatal,
    HeartbeatAcked,
    Identify,
    Log,
    Reconnect,
    Send,
    SessionStarted,
    SessionState,
    Shard,
    ShardAction,
    StageChange,
    Stop,
)
from shardtui.gateway.websocket import (
    GatewaySocket,
    HandshakeError,
    Message,
    MessageKind,
    WebSocketProtocolError,
)
from shardtui.gateway.websocket import connect as ws_connect

#: Longest wait a Retry-After on a refused upgrade may impose before the next try.
MAX_RETRY_AFTER: Final = 300.0
#: Refused WebSocket handshakes in a row after which the refusal is reported as an error (wrong url?).
REPEATED_REFUSALS: Final = 3
#: Seconds to wait for the server's answer to our close frame before dropping the socket.
CLOSE_TIMEOUT: Final = 2.0
#: Seconds given to a server that stopped answering (zombie, no HELLO) to take our close frame.
UNRESPONSIVE_CLOSE_WAIT: Final = 0.2
#: Seconds allowed for queued async handler work to finish when the runner stops cleanly.
DRAIN_TIMEOUT: Final = 5.0
#: Commands held while disconnected; older ones are dropped beyond this.
MAX_DEFERRED_COMMANDS: Final = 1000
#: Handler errors are logged at most once per this many seconds (the rest are counted).
HANDLER_ERROR_LOG_INTERVAL: Final = 5.0
#: Queued async handler calls at which the operator is told the handler cannot keep up.
HANDLER_BACKLOG_WARNING: Final = 10_000
_GUILD_EVENTS: Final = frozenset({"READY", "GUILD_CREATE", "GUILD_DELETE"})
_DECODE_ERRORS: Final = (DecompressionError, zstandard.ZstdError, orjson.JSONDecodeError)


@dataclass
class ShardRunnerOptions:
    token: str = field(repr=False)
    #: The advertised gateway url, e.g. "wss://gateway.discord.gg/" or "ws://host:PORT/gateway"; its path
    #: and query are kept, v/encoding/compress are added (replacing any it has).
    gateway_url: str
    intents: GatewayIntents
    #: Any gate with ``acquire``; one without the rest of ``IdentifyGate`` is wrapped.
    identify_gate: IdentifyGate | AcquireOnly
    compression: str = "zstd-stream"
    large_threshold: int = 250
    presence: Presence | None = None
    event_handler: Callable[[Dispatch], Any] | None = None
    #: TLS settings for a ``wss://`` gateway; None uses the system's CA store.
    ssl_context: ssl.SSLContext | None = None
    #: A saved session to RESUME first.
    resume: SessionState | None = None
    api_version: int = 10
    connect_timeout: float = 10.0
    max_backoff: float = 60.0
    #: Random wait (seconds) before identifying again after a non-resumable op 9; tests shorten it.
    invalid_session_delay: tuple[float, float] = (1.0, 5.0)

    def __post_init__(self) -> None:
        self.identify_gate = as_identify_gate(self.identify_gate)
        if self.compression not in COMPRESSIONS:
            raise ValueError(
                f"unknown gateway compression {self.compression!r} (use {', '.join(COMPRESSIONS)})"
            )
        if not (50 <= self.large_threshold <= 250):
            raise ValueError(f"large_threshold must be within 50..250, got {self.large_threshold}")
        low, high = self.invalid_session_delay
        if not (0 <= low <= high):
            raise ValueError(
                f"invalid_session_delay must be (low, high) with 0 <= low <= high, got {low, high}"
            )


class _Result(enum.Enum):
    SENT = "sent"
    #: Can never be sent (too large, not encodable); dropped with an error logged.
    REFUSED = "refused"
    NO_CONNECTION = "no connection"


class ShardRunner:
    """Runs one shard until it is shut down or refused for good. :meth:`run` never raises (except
    ``CancelledError`` when cancelled, after closing the socket and ending every task it started)."""

    def __init__(
        self,
        shard_id: ShardId,
        total: int,
        options: ShardRunnerOptions,
        info: ShardRunnerInfo,
        manager_tx: asyncio.Queue,
        emit: Callable[[ManagerEvent], None],
    ) -> None:
        self.shard_id = shard_id
        self.total = total
        self.options = options
        self.info = info
        self._manager_tx = manager_tx
        self._emit_cb = emit
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.messenger = ShardMessenger(shard_id, self._inbox)
        info.runner_tx = self.messenger
        self._rng = random.Random()
        self._shard = Shard(
            shard_id,
            total,
            token=options.token,
            intents=options.intents,
            gateway_url=options.gateway_url,
            compression=options.compression,
            large_threshold=options.large_threshold,
            presence=options.presence,
            resume=options.resume,
            api_version=options.api_version,
            hello_timeout=options.connect_timeout,
            invalid_session_delay=options.invalid_session_delay,
            rng=self._rng,
        )
        self._handler = options.event_handler
        self._ws: GatewaySocket | None = None
        self._limiter = CommandLimiter()
        #: What ends the current connection (set once per connection) — or, between connections, the run.
        self._outcome: Reconnect | Stop | FatalGatewayError | None = None
        self._final: Stop | FatalGatewayError | None = None
        self._wake = asyncio.Event()
        self._closer: asyncio.Task | None = None
        self._identify_task: asyncio.Task | None = None
        self._flush_task: asyncio.Task | None = None
        self._delivery_task: asyncio.Task | None = None
        self._pending_awaitables: deque[Awaitable[Any]] = deque()
        self._deferred: deque[dict[str, Any]] = deque()
        self._presence_pending: Presence | None = None
        self._failures = 0
        #: WebSocket handshakes refused in a row (an HTTP answer other than 101).
        self._refusals = 0
        self._connects = 0
        #: Guild ids this session holds; None after resuming a saved session (READY, with the list, was
        #: seen by an earlier runner), when only leaving a guild can still be counted.
        self._guild_ids: set[object] | None = None if options.resume is not None else set()
        self._handler_errors = 0
        self._handler_error_logged_at = -HANDLER_ERROR_LOG_INTERVAL
        self._rate_mark: tuple[float, int] | None = None

    def __repr__(self) -> str:
        return f"ShardRunner(shard_id={self.shard_id}, total={self.total}, stage={self._shard.stage.value})"

    # -- public ---------------------------------------------------------------------------------------

    @property
    def stage(self) -> ConnectionStage:
        return self._shard.stage

    def session_state(self) -> SessionState | None:
        """The session a later runner could RESUME, or None."""
        return self._shard.session_state()

    async def run(self) -> None:
        info = self.info
        info.running = True
        info.fatal_error = None
        inbox_task: asyncio.Task | None = None
        clean = False
        try:
            inbox_task = asyncio.create_task(self._inbox_loop(), name=f"shard-{self.shard_id}-inbox")
            await self._main_loop()
            clean = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug of ours must still end with ShutdownFinished, never a traceback
            self._log(logging.ERROR, f"runner stopped on an unexpected error: {type(exc).__name__}: {exc}")
        finally:
            await self._cleanup(inbox_task, clean)

    # -- main loop ------------------------------------------------------------------------------------

    async def _main_loop(self) -> None:
        shard = self._shard
        while self._final is None:
            url = shard.connect_url()
            if self._connects:
                self.info.reconnects += 1
            self._connects += 1
            self._apply_sync(shard.begin_connect())
            try:
                ws = await self._connect(url)
            except Exception as exc:
                self._failures += 1
                self._apply_sync(shard.connect_failed())
                delay = self._backoff()
                if isinstance(exc, HandshakeError) and exc.retry_after is not None:
                    # A 429 (or 503) on the upgrade says when to come back; sooner only earns more 429s.
                    delay = max(delay, min(exc.retry_after, MAX_RETRY_AFTER))
                self._connect_failed(exc, url, delay)
                await self._wait(delay)
                continue
            self._refusals = 0
            if self._final is not None:  # asked to stop while connecting
                await self._close_quietly(ws, self._final_close_code())
                break
            outcome = await self._run_connection(ws)
            self.info.events_per_second = 0.0
            self._rate_mark = None
            if isinstance(outcome, Stop):
                self._final = outcome
            elif isinstance(outcome, FatalGatewayError):
                self._final = outcome
                self._report_fatal(outcome)
            elif isinstance(outcome, Reconnect):
                delay = outcome.delay
                if outcome.failure:
                    self._failures += 1
                    delay = max(delay, self._backoff())
                if delay > 0 and self._final is None:
                    self._log(logging.INFO, f"reconnecting in {delay:.1f} s")
                    await self._wait(delay)
        if isinstance(self._final, Stop):
            self._log(logging.INFO, f"stopped: {self._final.reason}")

    def _connect_failed(self, exc: Exception, url: str, delay: float) -> None:
        """Report a failed connect. A refused handshake names the status and the url (which holds no
        token): a server or proxy that routes another path answers 404 or a plain 200 for ever, and
        the operator must see where we knocked. Repeated refusals become an error on the shard."""
        if not isinstance(exc, HandshakeError) or exc.status is None:
            self._log(
                logging.WARNING,
                f"could not connect to the gateway ({_describe_exc(exc)}); retrying in {delay:.1f} s",
            )
            return
        self._refusals += 1
        self.info.last_close_reason = self._scrub(f"{exc} at {url}")
        if self._refusals < REPEATED_REFUSALS:
            self._log(
                logging.WARNING,
                f"could not connect to the gateway at {url} ({exc}); retrying in {delay:.1f} s",
            )
            return
        self._log(
            logging.ERROR,
            f"could not connect to the gateway at {url} ({exc}, {self._refusals} times in a row): "
            f"is the gateway url right? retrying in {delay:.1f} s",
        )

    def _final_close_code(self) -> int:
        return self._final.close_code if isinstance(self._final, Stop) else RESUMABLE_CLOSE

    def _backoff(self) -> float:
        """Exponential backoff with jitter for connections that failed: 0.5-1 s, 1-2 s, 2-4 s, ..."""
        ceiling = min(self.options.max_backoff, 2.0 ** min(self._failures - 1, 16))
        return ceiling * (0.5 + 0.5 * self._rng.random())

    async def _wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds unless a stop or restart request cuts it short."""
        self._wake.clear()
        if self._final is not None:
            return
        with contextlib.suppress(TimeoutError):
            await wait_for(self._wake.wait(), delay)

    async def _connect(self, url: str) -> GatewaySocket:
        return await wait_for(
            ws_connect(url, ssl=self.options.ssl_context, user_agent=USER_AGENT, close_timeout=CLOSE_TIMEOUT),
            self.options.connect_timeout,
        )

    # -- one connection ---------------------------------------------------------------------------------

    async def _run_connection(self, ws: GatewaySocket) -> Reconnect | Stop | FatalGatewayError:
        shard = self._shard
        self._ws = ws
        self._outcome = None
        self._closer = None
        self._limiter = CommandLimiter()
        inflater = make_inflater(self.options.compression)
        feed = inflater.feed
        loads = orjson.loads
        receive_dispatch = shard.receive_dispatch
        on_dispatch = self._on_dispatch
        decoded_kind = MessageKind.DECODED
        if isinstance(inflater, ZstdStreamInflater):
            feed = inflater.decompress  # zstd's own method: no wrapper call per event; b"" = incomplete

        def take(frame: bytes) -> Message | None:
            # The hot path, run inside the socket's data_received while the loop below waits with
            # nothing queued: an ordinary dispatch goes to the handler here; anything else is handed
            # back decoded, to be queued for the loop below (which keeps it in order).
            try:
                data = feed(frame)
                if not data:
                    return None
                payload = loads(data)
            except _DECODE_ERRORS as exc:
                ws.set_taker(None)  # the stream is broken: nothing after this is decoded
                return Message(MessageKind.DECODE_FAILED, _short_exc(exc))
            dispatch = receive_dispatch(payload)
            if dispatch is None:
                return Message(decoded_kind, payload)
            on_dispatch(dispatch)
            return None

        self._apply_sync(shard.connection_opened(time.monotonic()))
        timer = asyncio.create_task(self._timer_loop(ws), name=f"shard-{self.shard_id}-timer")
        server_reason = ""
        receive = ws.receive
        binary = MessageKind.BINARY
        text = MessageKind.TEXT
        # With transport compression only binary frames are compressed; a text frame (never sent by
        # Discord then) goes the slow way, which decodes it as it is.
        ws.set_taker(take, text=self.options.compression == "none")
        try:
            while True:
                msg = await receive()
                kind = msg.kind
                try:
                    if kind is decoded_kind:
                        payload = msg.data
                    elif kind is binary:
                        data = feed(msg.data)
                        if not data:
                            continue
                        payload = loads(data)
                    elif kind is text:
                        payload = loads(msg.data)
                    elif kind is MessageKind.DECODE_FAILED:
                        await self._apply(shard.decode_failed(msg.data))
                        break
                    else:
                        # CLOSE from the server (its reason in extra), CLOSING after our own close,
                        # CLOSED when the connection is gone, ERROR when the server broke the protocol.
                        if kind is MessageKind.CLOSE and msg.extra:
                            server_reason = self._scrub(msg.extra[:200])
                        elif kind is MessageKind.ERROR:
                            failure = _describe_exc(msg.data)
                            self._log(logging.WARNING, f"gateway connection failed: {failure}")
                        break
                except _DECODE_ERRORS as exc:
                    ws.set_taker(None)
                    await self._apply(shard.decode_failed(_short_exc(exc)))
                    break
                dispatch = receive_dispatch(payload)
                if dispatch is not None:
                    on_dispatch(dispatch)
                    if self._outcome is not None:
                        break
                    continue
                actions = shard.receive(payload)
                if actions:
                    if len(actions) == 1 and type(actions[0]) is Dispatch:
                        on_dispatch(actions[0])
                    else:
                        await self._apply(list(actions))
                if self._outcome is not None:
                    break
        finally:
            ws.set_taker(None)
            # The identify and the command sender belong to this connection (and its limiter); what
            # they had not sent yet stays queued for the next session.
            helpers = [t for t in (timer, self._identify_task, self._flush_task) if t is not None]
            self._identify_task = self._flush_task = None
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        outcome = self._outcome
        if outcome is None:
            # The server or the network ended it.
            if not ws.closed:
                await self._close_quietly(ws, RESUMABLE_CLOSE)
            code = ws.close_code
            if code is None or code == 0:
                code = 1006
            self.info.last_close_code = code
            self.info.last_close_reason = server_reason or describe_close_code(code)
            self._log(
                logging.WARNING if code not in (1000, 1001) else logging.INFO,
                f"gateway closed the connection: {describe_close_code(code)}"
                + (f" ({server_reason})" if server_reason else ""),
            )
            await self._apply(shard.connection_closed(code, server_reason))
            outcome = self._outcome
        else:
            closer = self._closer
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer
            elif not ws.closed:
                await self._close_quietly(ws, _close_code_of(outcome), wait=_close_wait_of(outcome))
        self._ws = None
        self._closer = None
        self.info.session_id = shard.session_id
        self.info.resume_gateway_url = shard.resume_gateway_url
        if outcome is None:  # defensive: the Shard always answers a close with an action
            outcome = Reconnect(
                shard.has_session, shard.connect_url(), RESUMABLE_CLOSE, "closed", failure=True
            )
        return outcome

    async def _close_quietly(self, ws: GatewaySocket, code: int, *, wait: float = CLOSE_TIMEOUT) -> None:
        """Close with ``code``, waiting at most ``wait`` seconds for the server's reply (then drop)."""
        with contextlib.suppress(Exception):
            await wait_for(ws.close(code=code), wait)

    def _end_connection(self, outcome: Reconnect | Stop | FatalGatewayError) -> None:
        """Record what ends this connection and make the reader stop (from any task)."""
        if self._outcome is not None:
            return
        self._outcome = outcome
        if isinstance(outcome, Reconnect):
            how = "resuming" if outcome.resume else "identifying"
            self._log(logging.WARNING, f"reconnecting ({outcome.reason}); {how}")
        ws = self._ws
        if ws is not None and not ws.closed:
            # We are the ones closing: that is the close the operator should see.
            if isinstance(outcome, Reconnect | Stop):
                self.info.last_close_code = outcome.close_code
                self.info.last_close_reason = outcome.reason
            if self._closer is None:
                # Closing wakes the reader (it is in ws.receive()); the reader awaits this task.
                self._closer = asyncio.create_task(
                    self._close_quietly(ws, _close_code_of(outcome), wait=_close_wait_of(outcome)),
                    name=f"shard-{self.shard_id}-close",
                )

    async def _timer_loop(self, ws: GatewaySocket) -> None:
        shard = self._shard
        try:
            while self._outcome is None and self._ws is ws:
                now = time.monotonic()
                self._update_rate(now)
                deadline = shard.next_deadline()
                if deadline is not None and now >= deadline:
                    await self._apply(shard.tick(now))
                    continue
                wait = 1.0 if deadline is None else min(1.0, deadline - now)
                await asyncio.sleep(wait)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # without this task there are no heartbeats: drop the connection
            self._log(logging.ERROR, f"heartbeat timer failed: {_describe_exc(exc)}; reconnecting")
            self._end_connection(
                Reconnect(
                    shard.has_session, shard.connect_url(), RESUMABLE_CLOSE, "timer failed", failure=True
                )
            )

    def _update_rate(self, now: float) -> None:
        received = self.info.events_received
        mark = self._rate_mark
        if mark is None:
            self._rate_mark = (now, received)
            return
        elapsed = now - mark[0]
        if elapsed < 1.0:
            return
        rate = (received - mark[1]) / elapsed
        # A short EWMA: steady enough to read, quick enough to show a burst ending.
        self.info.events_per_second = 0.5 * self.info.events_per_second + 0.5 * rate
        self._rate_mark = (now, received)

    # -- actions ----------------------------------------------------------------------------------------

    def _apply_sync(self, actions: list[ShardAction]) -> None:
        for action in actions:
            if isinstance(action, StageChange):
                self._stage_changed(action)
            elif isinstance(action, Log):
                self._log(action.level, action.message)

    async def _apply(self, actions: list[ShardAction]) -> None:
        for action in actions:
            if isinstance(action, Dispatch):
                self._on_dispatch(action)
            elif isinstance(action, Send):
                await self._send_protocol(action)
            elif isinstance(action, StageChange):
                self._stage_changed(action)
            elif isinstance(action, HeartbeatAcked):
                self.info.last_ack_at = time.time()
                self._put_manager(
                    ShardManagerMessage.ShardUpdate(self.shard_id, action.latency, self._shard.stage)
                )
            elif isinstance(action, SessionStarted):
                self._session_started(action)
            elif isinstance(action, Identify):
                self._start_identify()
            elif isinstance(action, Reconnect | Stop):
                self._end_connection(action)
            elif isinstance(action, Fatal):
                self._end_connection(fatal_error_for_close(action.code, action.reason))
            elif isinstance(action, Log):
                self._log(action.level, action.message)

    def _stage_changed(self, change: StageChange) -> None:
        self._put_manager(ShardManagerMessage.ShardUpdate(self.shard_id, self._shard.latency, change.new))
        if change.old is ConnectionStage.HANDSHAKE and self._shard.heartbeat_interval is not None:
            # HELLO told us the interval: reserve the heartbeats' share of the command budget.
            self._limiter.set_heartbeat_interval(self._shard.heartbeat_interval)
        if change.new is ConnectionStage.DISCONNECTED:
            self.info.connected_since = None

    def _session_started(self, started: SessionStarted) -> None:
        info = self.info
        shard = self._shard
        self._failures = 0
        info.last_start = started.kind
        info.session_id = shard.session_id
        info.resume_gateway_url = shard.resume_gateway_url
        info.connected_since = time.time()
        if started.kind == "resume":
            info.resumes += 1
            self._log(logging.INFO, f"resumed session at seq {shard.seq}")
        else:
            self._log(logging.INFO, "identified: new session ready")
            # READY proves the server has processed our IDENTIFY: the gate may count its window from now.
            self.options.identify_gate.identified(self.shard_id)
        self._kick_flush()

    def _start_identify(self) -> None:
        if self._identify_task is None or self._identify_task.done():
            self._identify_task = asyncio.create_task(
                self._identify(self._ws), name=f"shard-{self.shard_id}-identify"
            )

    async def _identify(self, ws: GatewaySocket | None) -> None:
        shard = self._shard
        try:
            await self.options.identify_gate.acquire(self.shard_id)
        except FatalGatewayError as exc:
            self._end_connection(exc)
            return
        except Exception as exc:
            self._log(logging.ERROR, f"identify gate failed: {_describe_exc(exc)}")
            self._end_connection(
                Reconnect(False, shard.connect_url(), RESUMABLE_CLOSE, "identify gate failed", failure=True)
            )
            return
        if ws is None or self._ws is not ws or ws.closed:
            self._log(logging.INFO, "connection ended while waiting to identify; an identify slot was unused")
            return
        payload = shard.identify_payload()
        if payload is None:
            return
        presence = shard.presence
        try:
            result = await self._send(payload)
        except Exception as exc:
            self._log(logging.ERROR, f"sending IDENTIFY failed: {_describe_exc(exc)}")
            self._end_connection(
                Reconnect(False, shard.connect_url(), RESUMABLE_CLOSE, "identify failed", failure=True)
            )
            return
        if result is _Result.SENT:
            self.options.identify_gate.sent(self.shard_id)
            self.info.identifies += 1
            self.info.presence = presence
            if self._presence_pending == presence:
                self._presence_pending = None
            self._log(logging.INFO, "identifying")

    async def _send_protocol(self, action: Send) -> None:
        result = await self._send(action.payload, action.heartbeat)
        if result is _Result.SENT and action.payload.get("op") == Opcode.RESUME:
            self._log(logging.INFO, f"resuming session from seq {self._shard.seq}")

    async def _send(self, payload: dict[str, Any], heartbeat: bool = False) -> _Result:
        ws = self._ws
        if ws is None or ws.closed:
            return _Result.NO_CONNECTION
        try:
            data = encode_command(payload)
        except PayloadTooLarge as exc:
            self._log(logging.ERROR, str(exc))
            return _Result.REFUSED
        except (orjson.JSONEncodeError, TypeError) as exc:
            self._log(logging.ERROR, f"gateway command op {payload.get('op')} could not be encoded: {exc}")
            return _Result.REFUSED
        await self._limiter.acquire(heartbeat)
        if ws is not self._ws or ws.closed:
            return _Result.NO_CONNECTION
        try:
            await ws.send_frame(data)
        except (ConnectionError, RuntimeError):
            return _Result.NO_CONNECTION
        return _Result.SENT

    # -- dispatches --------------------------------------------------------------------------------------

    def _on_dispatch(self, dispatch: Dispatch) -> None:
        info = self.info
        info.events_received += 1
        if dispatch.seq is not None:
            info.last_seq = dispatch.seq
        info.last_dispatch_at = time.time()
        if dispatch.name in _GUILD_EVENTS:
            self._track_guilds(dispatch)
        handler = self._handler
        if handler is None:
            return
        try:
            result = handler(dispatch)
        except Exception as exc:
            self._handler_failed(exc, dispatch.name)
            return
        if result is not None and inspect.isawaitable(result):
            pending = self._pending_awaitables
            pending.append(result)
            if len(pending) == HANDLER_BACKLOG_WARNING:
                self._log(
                    logging.WARNING,
                    f"the async event handler is {HANDLER_BACKLOG_WARNING} events behind; "
                    "events wait in memory until it catches up",
                )
            if self._delivery_task is None:
                self._delivery_task = asyncio.create_task(
                    self._deliver_loop(), name=f"shard-{self.shard_id}-delivery"
                )

    async def _deliver_loop(self) -> None:
        """Awaits queued handler coroutines one at a time, in the order the dispatches arrived."""
        pending = self._pending_awaitables
        try:
            while pending:
                awaitable = pending.popleft()
                try:
                    await awaitable
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._handler_failed(exc, "an event")
        finally:
            self._delivery_task = None

    def _handler_failed(self, exc: Exception, name: str) -> None:
        self._handler_errors += 1
        now = time.monotonic()
        if now - self._handler_error_logged_at >= HANDLER_ERROR_LOG_INTERVAL:
            self._handler_error_logged_at = now
            more = f" ({self._handler_errors} handler errors so far)" if self._handler_errors > 1 else ""
            self._log(logging.ERROR, f"event handler raised on {name}: {type(exc).__name__}: {exc}{more}")

    def _track_guilds(self, dispatch: Dispatch) -> None:
        data = dispatch.data
        if type(data) is not dict:
            return
        name = dispatch.name
        ids = self._guild_ids
        if name == "READY":
            ids = self._guild_ids = set()
            guilds = data.get("guilds")
            if type(guilds) is list:
                for guild in guilds:
                    if type(guild) is dict and "id" in guild:
                        ids.add(guild["id"])
        elif ids is None:
            # Resumed without the guild list: a GUILD_CREATE may be a known guild coming back, so only
            # a real leave (GUILD_DELETE without "unavailable") changes the count we inherited.
            if name == "GUILD_DELETE" and data.get("unavailable") is not True and self.info.guilds > 0:
                self.info.guilds -= 1
            return
        elif name == "GUILD_CREATE":
            if "id" in data:
                ids.add(data["id"])
        elif data.get("unavailable") is not True:  # GUILD_DELETE without unavailable: we left it
            ids.discard(data.get("id"))
        self.info.guilds = len(ids)

    # -- inbox ------------------------------------------------------------------------------------------

    async def _inbox_loop(self) -> None:
        # Never awaits anything but the next message: a command waiting for the rate limiter must not
        # hold up a close or restart queued behind it (the sender task does the waiting).
        while True:
            message = await self._inbox.get()
            try:
                self._handle_message(message)
            except Exception as exc:
                self._log(
                    logging.ERROR, f"could not carry out {type(message).__name__}: {_describe_exc(exc)}"
                )

    def _handle_message(self, message: ShardRunnerMessageT | object) -> None:
        shard = self._shard
        if isinstance(message, ShardRunnerMessage.Close):
            self._control(shard.close_requested(message.code, message.reason))
            return
        elif isinstance(message, ShardRunnerMessage.Restart):
            self._control(shard.restart_requested(message.force_identify))
            return
        elif isinstance(message, ShardRunnerMessage.SetPresence):
            self._set_presence(message.presence)
        elif isinstance(message, ShardRunnerMessage.SetActivity):
            self._set_presence(replace(self._current_presence(), activity=message.activity))
        elif isinstance(message, ShardRunnerMessage.SetStatus):
            self._set_presence(replace(self._current_presence(), status=message.status))
        elif isinstance(message, ShardRunnerMessage.ChunkGuild):
            wants_all = message.user_ids is None and not message.query
            if wants_all and not GatewayIntents(self.options.intents) & GatewayIntents.GUILD_MEMBERS:
                # Discord would close the connection with 4001 for it: refuse here, with the reason.
                self._log(
                    logging.ERROR,
                    f"not requesting all members of guild {message.guild_id}: that needs the "
                    "guild_members intent, which this bot does not use",
                )
                return
            self._defer(_chunk_payload(message))
        elif isinstance(message, ShardRunnerMessage.Message):
            self._defer(message.payload)
        else:
            self._log(logging.WARNING, f"ignored an unknown runner message {type(message).__name__}")
            return
        self._kick_flush()

    def _control(self, actions: list[ShardAction]) -> None:
        """A close or restart request: applied now, whether connected or not."""
        for action in actions:
            if isinstance(action, StageChange):
                self._stage_changed(action)
            elif isinstance(action, Log):
                self._log(action.level, action.message)
            elif isinstance(action, Stop | Reconnect):
                if isinstance(action, Stop):
                    # Remembered apart from the connection's outcome: a stop must win even if the
                    # connection is already ending for another reason.
                    self._final = action
                if self._ws is not None:
                    self._end_connection(action)
        if self._ws is None:
            self._wake.set()  # between connections: cut the wait short
        self.info.session_id = self._shard.session_id

    def _current_presence(self) -> Presence:
        return self._shard.presence or Presence()

    def _set_presence(self, presence: Presence) -> None:
        self._shard.presence = presence  # the next IDENTIFY carries it
        self._presence_pending = presence

    def _defer(self, payload: dict[str, Any]) -> None:
        if len(self._deferred) >= MAX_DEFERRED_COMMANDS:
            self._deferred.popleft()
            self._log(logging.WARNING, "too many gateway commands waiting to be sent; dropped the oldest")
        self._deferred.append(payload)

    def _kick_flush(self) -> None:
        """Start the sender if something waits and the shard can send."""
        if self._presence_pending is None and not self._deferred:
            return
        if self._shard.stage is not ConnectionStage.CONNECTED or self._ws is None:
            return
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.create_task(self._flush_commands(), name=f"shard-{self.shard_id}-send")

    async def _flush_commands(self) -> None:
        try:
            await self._flush_commands_inner()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep the exception from vanishing with the task
            self._log(logging.ERROR, f"sending a gateway command failed: {_describe_exc(exc)}")

    async def _flush_commands_inner(self) -> None:
        """Send what waits, in order, while the shard is connected; the rest waits for the next session."""
        while self._shard.stage is ConnectionStage.CONNECTED and self._ws is not None:
            presence = self._presence_pending
            if presence is not None:
                result = await self._send({"op": int(Opcode.PRESENCE_UPDATE), "d": presence.to_payload()})
                if result is _Result.NO_CONNECTION:
                    return
                if self._presence_pending is presence:
                    self._presence_pending = None
                if result is _Result.SENT:
                    self.info.presence = presence
                continue
            if not self._deferred:
                return
            payload = self._deferred[0]
            result = await self._send(payload)
            if result is _Result.NO_CONNECTION:
                return
            if self._deferred and self._deferred[0] is payload:
                self._deferred.popleft()

    # -- reporting ----------------------------------------------------------------------------------------

    def _report_fatal(self, error: FatalGatewayError) -> None:
        info = self.info
        text = self._scrub(error.message)
        info.fatal_error = text
        if error.code is not None:
            info.last_close_code = error.code
            info.last_close_reason = text
        self._log(logging.ERROR, f"stopped for good: {text}")
        message = fatal_message(self.shard_id, error.code, text)
        self._put_manager(message)

    def _put_manager(self, message: Any) -> None:
        try:
            self._manager_tx.put_nowait(message)
        except asyncio.QueueFull:
            self._log(logging.ERROR, f"manager queue full; dropped {type(message).__name__}")

    def _scrub(self, text: str) -> str:
        """Remove the token from text that came from elsewhere (a hostile server may echo it back)."""
        token = self.options.token
        return text.replace(token, "[token]") if token and token in text else text

    def _log(self, level: int, message: str) -> None:
        message = self._scrub(message)
        try:
            self._emit_cb(ShardLogEvent(self.shard_id, level, message))
        except Exception:  # a broken log sink must not take the shard down
            logging.getLogger(__name__).exception("shard %s: log callback failed", self.shard_id)

    # -- shutdown ---------------------------------------------------------------------------------------

    async def _cleanup(self, inbox_task: asyncio.Task | None, clean: bool) -> None:
        """End every task, close the socket, report ShutdownFinished. A cancellation arriving during any
        step (a manager's shutdown timeout) is held until the end, so the steps still all run."""
        cancelled = False

        async def settle(awaitable: Awaitable[Any]) -> None:
            nonlocal cancelled
            try:
                await awaitable
            except asyncio.CancelledError:
                cancelled = True
            except Exception:
                pass

        async def finish(tasks: list[asyncio.Task]) -> None:
            # asyncio.wait, unlike gather, leaves the tasks alone if we are cancelled meanwhile: wait again.
            for _ in range(3):
                pending = [t for t in tasks if not t.done()]
                if not pending:
                    break
                await settle(asyncio.wait(pending))
            for task in tasks:
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved, so Python does not warn about it

        tasks = [t for t in (inbox_task, self._identify_task, self._flush_task) if t is not None]
        for task in tasks:
            task.cancel()
        ws = self._ws
        if ws is not None and not ws.closed:
            # Cancelled mid-connection: keep the session resumable (session_state() can be saved).
            await settle(self._close_quietly(ws, RESUMABLE_CLOSE))
        if self._closer is not None:
            tasks.append(self._closer)
        await finish(tasks)
        self._ws = None
        delivery = self._delivery_task
        if delivery is not None:
            if clean and not cancelled:
                await settle(wait_for(asyncio.shield(delivery), DRAIN_TIMEOUT))
            delivery.cancel()
            await finish([delivery])
        while self._pending_awaitables:  # never awaited: close them so Python does not warn
            leftover = self._pending_awaitables.popleft()
            close = getattr(leftover, "close", None)
            if close is not None:
                close()
        if self._shard.stage is not ConnectionStage.DISCONNECTED:
            old = self._shard.stage
            self._shard.stage = ConnectionStage.DISCONNECTED
            self._stage_changed(StageChange(old, ConnectionStage.DISCONNECTED))
        self.info.running = False
        self.info.events_per_second = 0.0
        self._put_manager(ShardManagerMessage.ShutdownFinished(self.shard_id))
        if cancelled:
            raise asyncio.CancelledError


def _chunk_payload(message: ShardRunnerMessage.ChunkGuild) -> dict[str, Any]:
    d: dict[str, Any] = {"guild_id": str(message.guild_id), "presences": message.presences}
    if message.user_ids is not None:
        d["user_ids"] = [str(u) for u in message.user_ids]
        if message.limit is not None:
            d["limit"] = message.limit
    else:
        d["query"] = message.query or ""
        d["limit"] = message.limit if message.limit is not None else 0
    if message.nonce is not None:
        d["nonce"] = message.nonce
    return {"op": int(Opcode.REQUEST_GUILD_MEMBERS), "d": d}


def _close_wait_of(outcome: Reconnect | Stop | FatalGatewayError) -> float:
    return (
        UNRESPONSIVE_CLOSE_WAIT if isinstance(outcome, Reconnect) and outcome.unresponsive else CLOSE_TIMEOUT
    )


def _close_code_of(outcome: Reconnect | Stop | FatalGatewayError) -> int:
    if isinstance(outcome, Reconnect | Stop):
        return outcome.close_code
    return RESUMABLE_CLOSE


def _short_exc(exc: BaseException) -> str:
    return str(exc)[:200] or type(exc).__name__


def _describe_exc(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, HandshakeError | WebSocketProtocolError):
        return str(exc)
    text = str(exc)[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
