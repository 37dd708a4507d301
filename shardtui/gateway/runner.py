"""``ShardRunner``: one shard's life around the sans-I/O :class:`Shard`, orchestrating the parts that
do the work: :mod:`~shardtui.gateway.connection` (connect, the socket, the fast path from frame to
dispatch), :mod:`~shardtui.gateway.delivery` (the user's handler), :mod:`~shardtui.gateway.outbox`
(commands out through the limiter). The runner feeds the Shard and carries out the actions it answers
with — send, identify through the gate, reconnect, stop — and reports to the manager.

Tasks, all owned by :meth:`ShardRunner.run` and gone when it returns: the connection reader (``run``
itself), a timer per connection (heartbeats, zombie check, events/s), the inbox reader (messenger
commands), an identify task while waiting on the gate, a closer while a close handshake runs, the
outbox's sender while commands wait, and the delivery task while an async handler has work queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final

from shardtui.gateway.aio import wait_for
from shardtui.gateway.connection import (
    Connection,
    Outcome,
    close_code_of,
    close_quietly,
    close_wait_of,
    describe_exc,
    open_socket,
)
from shardtui.gateway.delivery import Delivery
from shardtui.gateway.errors import FatalGatewayError, fatal_error_for_close
from shardtui.gateway.gate import AcquireOnly, IdentifyGate, as_identify_gate
from shardtui.gateway.inbox import RunnerInbox
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
from shardtui.gateway.outbox import Outbox, SendResult
from shardtui.gateway.payloads import request_guild_members
from shardtui.gateway.protocol import COMPRESSIONS, GatewayIntents, Opcode, describe_close_code
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
from shardtui.gateway.websocket import GatewaySocket, HandshakeError

#: Longest wait a Retry-After on a refused upgrade may impose before the next try.
MAX_RETRY_AFTER: Final = 300.0
#: Refused WebSocket handshakes in a row after which the refusal is reported as an error (wrong url?).
REPEATED_REFUSALS: Final = 3
#: The same for refusals with a 5xx status: the server is there and says it cannot take us now (a deploy,
#: an overload, Discord's 503 with Retry-After), which a few in a row do not make an operator's problem.
REPEATED_UNAVAILABLE: Final = 10
#: Seconds allowed for queued async handler work to finish when the runner stops cleanly.
DRAIN_TIMEOUT: Final = 5.0
#: One generator for every runner of the process: a Random's state is 2.5 KiB per shard otherwise.
_SHARED_RNG: Final = random.Random()


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


class ShardRunner:
    """Runs one shard until it is shut down or refused for good. :meth:`run` never raises (except
    ``CancelledError`` when cancelled, after closing the socket and ending every task it started)."""

    # One per shard: slots instead of an instance dict of ~25 attributes (issue #18: idle memory).
    __slots__ = (
        "_conn",
        "_connects",
        "_delivery",
        "_emit_cb",
        "_failures",
        "_final",
        "_identify_task",
        "_inbox",
        "_manager_tx",
        "_outbox",
        "_rate_mark",
        "_refusals",
        "_rng",
        "_shard",
        "_timer_conn",
        "_timer_handle",
        "_timer_task",
        "_wake",
        "_ws",
        "info",
        "messenger",
        "options",
        "shard_id",
        "total",
    )

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
        self._inbox: RunnerInbox[ShardRunnerMessageT] = RunnerInbox()
        #: The handle for commands to this shard; others reach it through ``ShardManager.messenger(id)``.
        self.messenger = ShardMessenger(shard_id, self._inbox)
        self._rng = _SHARED_RNG
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
        self._delivery = Delivery(
            shard_id, info, options.event_handler, self._log, resumed_saved_session=options.resume is not None
        )
        self._outbox = Outbox(shard_id, self._shard, info, self._log)
        self._ws: GatewaySocket | None = None
        #: The current connection, or the last one between connections (its outcome is set by then).
        self._conn: Connection | None = None
        #: What ends the run: set by a stop request or a fatal refusal.
        self._final: Stop | FatalGatewayError | None = None
        #: Set only while _wait sleeps between connections (an idle Event is 0.75 KiB per shard).
        self._wake: asyncio.Event | None = None
        self._identify_task: asyncio.Task | None = None
        #: The connection's timer: a loop callback between ticks, a task only while a tick's actions run.
        self._timer_conn: Connection | None = None
        self._timer_handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._timer_task: asyncio.Task | None = None
        self._failures = 0
        #: WebSocket handshakes refused in a row (an HTTP answer other than 101).
        self._refusals = 0
        self._connects = 0
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

    def rebind(self, emit: Callable[[ManagerEvent], None], handler: Callable[[Dispatch], Any] | None) -> None:
        """Report to another manager from now on: its event sink and its dispatch handler (the
        reshard's switch hands the new set's running shards to the manager that stays)."""
        self._emit_cb = emit
        self._delivery.handler = handler

    async def run(self) -> None:
        info = self.info
        info.running = True
        info.fatal_error = None
        clean = False
        try:
            # Commands are handled by a loop callback per put, not a task waiting on the inbox: a
            # command waiting for the rate limiter never holds up a close or restart queued behind it
            # (the sender task does the waiting), and an idle shard keeps no task for its inbox.
            self._inbox.consume(self._on_message)
            await self._main_loop()
            clean = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug of ours must still end with ShutdownFinished, never a traceback
            self._log(logging.ERROR, f"runner stopped on an unexpected error: {type(exc).__name__}: {exc}")
        finally:
            await self._cleanup(clean)

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
                await close_quietly(ws, self._final_close_code())
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
        the operator must see where we knocked. Repeated refusals become an error on the shard: after 3 of
        a status that says the url is wrong, after 10 of a 5xx (the gateway is there but unavailable)."""
        if not isinstance(exc, HandshakeError) or exc.status is None:
            # Named with the url too: an untrusted certificate or a dead host is only actionable when the
            # operator sees which host it was (the REST host and the gateway host can differ).
            self._log(
                logging.WARNING,
                f"could not connect to the gateway at {url} ({describe_exc(exc)}); retrying in {delay:.1f} s",
            )
            return
        self._refusals += 1
        self.info.last_close_reason = self._scrub(f"{exc} at {url}")
        unavailable = exc.status >= 500
        if self._refusals < (REPEATED_UNAVAILABLE if unavailable else REPEATED_REFUSALS):
            self._log(
                logging.WARNING,
                f"could not connect to the gateway at {url} ({exc}); retrying in {delay:.1f} s",
            )
            return
        hint = "is the gateway down or overloaded?" if unavailable else "is the gateway url right?"
        self._log(
            logging.ERROR,
            f"could not connect to the gateway at {url} ({exc}, {self._refusals} times in a row): "
            f"{hint} retrying in {delay:.1f} s",
        )

    def _final_close_code(self) -> int:
        return self._final.close_code if isinstance(self._final, Stop) else RESUMABLE_CLOSE

    def _backoff(self) -> float:
        """Exponential backoff with jitter for connections that failed: 0.5-1 s, 1-2 s, 2-4 s, ..."""
        ceiling = min(self.options.max_backoff, 2.0 ** min(self._failures - 1, 16))
        return ceiling * (0.5 + 0.5 * self._rng.random())

    async def _wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds unless a stop or restart request cuts it short."""
        wake = self._wake = asyncio.Event()
        if self._final is not None:
            return
        with contextlib.suppress(TimeoutError):
            await wait_for(wake.wait(), delay)
        self._wake = None

    async def _connect(self, url: str) -> GatewaySocket:
        return await open_socket(url, self.options.ssl_context, self.options.connect_timeout)

    # -- one connection ---------------------------------------------------------------------------------

    async def _run_connection(self, ws: GatewaySocket) -> Outcome:
        shard = self._shard
        conn = Connection(ws, self.options.compression)
        self._ws = ws
        self._conn = conn
        self._outbox.connected(ws)
        deliver = self._delivery.deliver
        self._apply_sync(shard.connection_opened(time.monotonic()))
        self._start_timer(conn)
        # With transport compression only binary frames are compressed; a text frame (never sent by
        # Discord then) goes the slow way, which decodes it as it is.
        conn.open_fast_path(shard, self._delivery, text=self.options.compression == "none")
        try:
            await conn.read(shard, deliver, self._apply, self._connection_failed, self._scrub)
        finally:
            conn.close_fast_path()
            # The identify and the command sender belong to this connection (and its limiter); what
            # they had not sent yet stays queued for the next session.
            self._stop_timer()
            owned = (self._timer_task, self._identify_task, self._outbox.detach_sender())
            helpers = [t for t in owned if t is not None]
            self._timer_task = self._identify_task = None
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        outcome = conn.outcome
        if outcome is None:
            # The server or the network ended it.
            if not ws.closed:
                await close_quietly(ws, RESUMABLE_CLOSE)
            code = ws.close_code
            if code is None or code == 0:
                code = 1006
            server_reason = conn.server_reason
            self.info.last_close_code = code
            self.info.last_close_reason = server_reason or describe_close_code(code)
            self._log(
                logging.WARNING if code not in (1000, 1001) else logging.INFO,
                f"gateway closed the connection: {describe_close_code(code)}"
                + (f" ({server_reason})" if server_reason else ""),
            )
            await self._apply(shard.connection_closed(code, server_reason))
            outcome = conn.outcome
        else:
            closer = conn.closer
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer
            elif not ws.closed:
                await close_quietly(ws, close_code_of(outcome), wait=close_wait_of(outcome))
        self._ws = None
        self._outbox.disconnected()
        conn.closer = None
        self.info.session_id = shard.session_id
        self.info.resume_gateway_url = shard.resume_gateway_url
        if outcome is None:  # defensive: the Shard always answers a close with an action
            outcome = Reconnect(
                shard.has_session, shard.connect_url(), RESUMABLE_CLOSE, "closed", failure=True
            )
        return outcome

    def _connection_failed(self, failure: str) -> None:
        self._log(logging.WARNING, f"gateway connection failed: {failure}")

    def _end_connection(self, outcome: Outcome) -> None:
        """Record what ends this connection and make the reader stop (from any task)."""
        conn = self._conn
        if conn is None or conn.outcome is not None:
            return
        conn.outcome = outcome
        if isinstance(outcome, Reconnect):
            how = "resuming" if outcome.resume else "identifying"
            self._log(logging.WARNING, f"reconnecting ({outcome.reason}); {how}")
        ws = self._ws
        if ws is not None and not ws.closed:
            # We are the ones closing: that is the close the operator should see.
            if isinstance(outcome, Reconnect | Stop):
                self.info.last_close_code = outcome.close_code
                self.info.last_close_reason = outcome.reason
            if conn.closer is None:
                # Closing wakes the reader (it is in ws.receive()); the reader awaits this task.
                conn.closer = asyncio.create_task(
                    close_quietly(ws, close_code_of(outcome), wait=close_wait_of(outcome)),
                    name=f"shard-{self.shard_id}-close",
                )

    def _start_timer(self, conn: Connection) -> None:
        self._timer_conn = conn
        # First tick on the next loop turn, as a timer task's first step would be: a HELLO that came with
        # the handshake's bytes is handled by then, so the first wait is for the first heartbeat.
        self._timer_handle = asyncio.get_running_loop().call_soon(self._on_timer)

    def _stop_timer(self) -> None:
        self._timer_conn = None
        if self._timer_handle is not None:
            self._timer_handle.cancel()
            self._timer_handle = None

    def _on_timer(self) -> None:
        """Heartbeats, the zombie check and events/s for one connection. A loop callback rather than a task
        that sleeps: an idle shard's timer then costs one TimerHandle instead of a task, its coroutine and
        a sleep future (~1.2 KiB per shard); a task runs only while a tick's actions are applied."""
        self._timer_handle = None
        conn = self._timer_conn
        if conn is None or conn.outcome is not None or self._ws is not conn.ws:
            return
        shard = self._shard
        try:
            now = time.monotonic()
            self._update_rate(now)
            deadline = shard.next_deadline()
            if deadline is not None and now >= deadline:
                actions = list(shard.tick(now))  # a copy: the Shard may reuse its list
                self._timer_task = asyncio.create_task(
                    self._apply_tick(conn, actions), name=f"shard-{self.shard_id}-timer"
                )
                return
            wait = 1.0 if deadline is None else min(1.0, deadline - now)
            self._timer_handle = asyncio.get_running_loop().call_later(wait, self._on_timer)
        except Exception as exc:
            self._timer_failed(exc)

    async def _apply_tick(self, conn: Connection, actions: list[ShardAction]) -> None:
        try:
            await self._apply(actions)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._timer_task = None
            self._timer_failed(exc)
            return
        self._timer_task = None
        if self._timer_conn is conn:
            self._on_timer()  # at once, as a loop would: a tick may leave another deadline already due

    def _timer_failed(self, exc: Exception) -> None:
        # Without the timer there are no heartbeats: drop the connection.
        shard = self._shard
        self._log(logging.ERROR, f"heartbeat timer failed: {describe_exc(exc)}; reconnecting")
        self._end_connection(
            Reconnect(shard.has_session, shard.connect_url(), RESUMABLE_CLOSE, "timer failed", failure=True)
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
                self._delivery.deliver(action)
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
            self._outbox.set_heartbeat_interval(self._shard.heartbeat_interval)
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
        self._outbox.kick()

    def _start_identify(self) -> None:
        if self._identify_task is None or self._identify_task.done():
            task = self._identify_task = asyncio.create_task(
                self._identify(self._ws), name=f"shard-{self.shard_id}-identify"
            )
            task.add_done_callback(self._identify_done)

    def _identify_done(self, task: asyncio.Task[None]) -> None:
        # A finished task kept for the connection's life is ~0.4 KiB per idle shard for nothing.
        if self._identify_task is task:
            self._identify_task = None
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._log(logging.ERROR, f"identify failed: {describe_exc(exc)}")

    async def _identify(self, ws: GatewaySocket | None) -> None:
        shard = self._shard
        try:
            await self.options.identify_gate.acquire(self.shard_id)
        except FatalGatewayError as exc:
            self._end_connection(exc)
            return
        except Exception as exc:
            self._log(logging.ERROR, f"identify gate failed: {describe_exc(exc)}")
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
            result = await self._outbox.send(payload)
        except Exception as exc:
            self._log(logging.ERROR, f"sending IDENTIFY failed: {describe_exc(exc)}")
            self._end_connection(
                Reconnect(False, shard.connect_url(), RESUMABLE_CLOSE, "identify failed", failure=True)
            )
            return
        if result is SendResult.SENT:
            self.options.identify_gate.sent(self.shard_id)
            self.info.identifies += 1
            self.info.presence = presence
            self._outbox.presence_sent_in_identify(presence)
            self._log(logging.INFO, "identifying")

    async def _send_protocol(self, action: Send) -> None:
        result = await self._outbox.send(action.payload, action.heartbeat)
        if result is SendResult.SENT and action.payload.get("op") == Opcode.RESUME:
            self._log(logging.INFO, f"resuming session from seq {self._shard.seq}")

    # -- inbox ------------------------------------------------------------------------------------------

    def _on_message(self, message: ShardRunnerMessageT | object) -> None:
        try:
            self._handle_message(message)
        except Exception as exc:
            self._log(logging.ERROR, f"could not carry out {type(message).__name__}: {describe_exc(exc)}")

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
            self._outbox.defer(
                request_guild_members(
                    message.guild_id,
                    query=message.query,
                    limit=message.limit,
                    user_ids=message.user_ids,
                    presences=message.presences,
                    nonce=message.nonce,
                )
            )
        elif isinstance(message, ShardRunnerMessage.Message):
            self._outbox.defer(message.payload)
        else:
            self._log(logging.WARNING, f"ignored an unknown runner message {type(message).__name__}")
            return
        self._outbox.kick()

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
            if self._wake is not None:
                self._wake.set()  # between connections: cut the wait short
        self.info.session_id = self._shard.session_id

    def _current_presence(self) -> Presence:
        return self._shard.presence or Presence()

    def _set_presence(self, presence: Presence) -> None:
        self._shard.presence = presence  # the next IDENTIFY carries it
        self._outbox.want_presence(presence)

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

    async def _cleanup(self, clean: bool) -> None:
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

        self._inbox.consume(None)  # commands after the end wait in the inbox, unhandled
        tasks = [t for t in (self._identify_task, self._outbox.sender) if t is not None]
        for task in tasks:
            task.cancel()
        ws = self._ws
        if ws is not None and not ws.closed:
            # Cancelled mid-connection: keep the session resumable (session_state() can be saved).
            await settle(close_quietly(ws, RESUMABLE_CLOSE))
        closer = None if self._conn is None else self._conn.closer
        if closer is not None:
            tasks.append(closer)
        await finish(tasks)
        self._ws = None
        self._outbox.disconnected()
        delivery = self._delivery.task
        if delivery is not None:
            if clean and not cancelled:
                await settle(wait_for(asyncio.shield(delivery), DRAIN_TIMEOUT))
            delivery.cancel()
            await finish([delivery])
        self._delivery.discard_pending()
        if self._shard.stage is not ConnectionStage.DISCONNECTED:
            old = self._shard.stage
            self._shard.stage = ConnectionStage.DISCONNECTED
            self._stage_changed(StageChange(old, ConnectionStage.DISCONNECTED))
        self.info.running = False
        self.info.events_per_second = 0.0
        self._put_manager(ShardManagerMessage.ShutdownFinished(self.shard_id))
        if cancelled:
            raise asyncio.CancelledError
