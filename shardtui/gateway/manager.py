"""``ShardManager``: the user's handle on every shard this process runs.

It reads ``GET /gateway/bot``, keeps a ``ShardRunnerInfo`` for every shard in range from the moment
it is queued, boots shards through the ``ShardQueuer`` (identify buckets, session start budget),
and owns the monitor task that keeps those infos true. Restarts resume when the session is alive
(``force_identify`` for a fresh IDENTIFY), shutdown acknowledgements are matched by shard id,
``shutdown_all()`` closes every shard in parallel in bounded time and leaves no task behind, and
a fatal authentication or intents error stops everything and is reported once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Protocol, runtime_checkable

import aiohttp

from shardtui.gateway.aio import wait_for
from shardtui.gateway.alerts import AlertTracker
from shardtui.gateway.errors import FatalGatewayError, GatewayError
from shardtui.gateway.events import EventBus
from shardtui.gateway.gate import (
    SYSTEM_CLOCK,
    AcquireOnly,
    Clock,
    IdentifyGate,
    InMemoryIdentifyGate,
    SessionStartLimit,
    as_identify_gate,
    describe_duration,
    describe_wall_time,
)
from shardtui.gateway.healing import WedgedHealer
from shardtui.gateway.health import RateTracker, assess_health, connection_verdict
from shardtui.gateway.http import fetch_gateway_bot
from shardtui.gateway.messages import ShardManagerMessage, ShardManagerMessageT, ShardQueuerMessage
from shardtui.gateway.messenger import ShardMessenger
from shardtui.gateway.models import (
    ConnectionStage,
    Dispatch,
    FatalErrorEvent,
    ManagerEvent,
    ShardHealth,
    ShardId,
    ShardInfoUpdateEvent,
    ShardLogEvent,
    ShardRunnerInfo,
    ShardStageUpdateEvent,
)
from shardtui.gateway.monitor import ShardManagerMonitor
from shardtui.gateway.options import ShardManagerOptions
from shardtui.gateway.planner import GateOutlook, Plan, format_shard_ids, gate_outlook, make_plan
from shardtui.gateway.protocol import (
    SESSION_ENDING_CLIENT_CLOSES,
    bucket_for_shard,
)
from shardtui.gateway.queuer import QueueStatus, ShardQueuer
from shardtui.gateway.reshard import DEDUPE_GRACE_SECONDS, ReshardResult, plan_reshard, run_reshard
from shardtui.gateway.rolling import RollingRestart, RollingRestartStatus, RollingState, plan_rolling_restart
from shardtui.gateway.sessions import (
    SessionRestore,
    load_sessions,
    save_sessions,
    sessions_to_save,
)
from shardtui.gateway.shardset import ShardSet

log = logging.getLogger("shardtui.gateway.manager")

#: A runner that crashed (raised out of ``run()``) this many times in a row is not started again.
MAX_CRASH_RESTARTS = 3


class ShardManager:
    def __init__(
        self,
        options: ShardManagerOptions,
        *,
        gate: IdentifyGate | AcquireOnly | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.options = options
        self.clock = clock
        #: READY's ``user`` once a shard is ready.
        self.bot_user: dict[str, Any] | None = None
        self.session_start_limit: SessionStartLimit | None = None
        #: Set once when Discord refused the bot (bad token, intents): every shard is stopped.
        self.fatal_error: FatalErrorEvent | None = None
        self.max_concurrency: int | None = options.max_concurrency
        self._gate: IdentifyGate | None = (
            None if gate is None else as_identify_gate(gate, options.identify_window)
        )
        #: Stage changes, info updates, log lines and fatal errors, for the console and the user.
        self.events = EventBus(log, after=self._after_event)
        # First subscriber: the manager's own bookkeeping sees each event before anyone else.
        self.events.subscribe(self._track)
        manager_tx: asyncio.Queue[Any] = asyncio.Queue()
        self._shards = ShardSet(
            manager_tx,
            ShardManagerMonitor(self, manager_tx),
            total=options.shard_total,
            range=options.shard_range,
        )
        #: Shards asked to restart whose stage has not moved since: still shown CONNECTED, but not
        #: connected in the sense ``wait_until_connected`` waits for.
        self._restarting: set[ShardId] = set()
        self._aux_tasks: set[asyncio.Task[Any]] = set()
        self._health_task: asyncio.Task[None] | None = None
        self._rates = RateTracker()
        #: Open incidents; emits AlertEvent / AlertClearedEvent on the event bus.
        self.alerts = AlertTracker(
            self.events.emit,
            clock.wall,
            outage_grace=options.outage_grace,
            schedule=lambda delay, callback: asyncio.get_running_loop().call_later(delay, callback),
        )
        self._healer = WedgedHealer(base_backoff=max(5.0, options.health_policy.min_wedged_seconds))
        self._stage_event = asyncio.Event()
        self._initialized = False
        self._closing = False
        self._closed = False
        self._closed_event = asyncio.Event()
        #: Which shards started from the state file and whether their RESUME was taken.
        self.session_restore = SessionRestore()
        self._rolling: RollingRestart | None = None
        self._resharding = False

    # -- the shard set (shardset.py); a reshard swaps it for the new set's ---------------------------

    @property
    def runners(self) -> dict[ShardId, ShardRunnerInfo]:
        """Every shard in range, from the moment it is queued."""
        return self._shards.runners

    @property
    def shard_total(self) -> int | None:
        return self._shards.total

    @shard_total.setter
    def shard_total(self, total: int | None) -> None:
        self._shards.total = total

    @property
    def gateway_url(self) -> str | None:
        """The gateway url /gateway/bot advertised (no query)."""
        return self._shards.gateway_url

    @property
    def _session(self) -> aiohttp.ClientSession | None:
        return self._shards.session

    @property
    def _queuer(self) -> ShardQueuer | None:
        return self._shards.queuer

    @property
    def _manager_tx(self) -> asyncio.Queue[Any]:
        return self._shards.manager_tx

    @property
    def _runner_objects(self) -> dict[ShardId, Any]:
        return self._shards.runner_objects

    def __repr__(self) -> str:
        return (
            f"ShardManager(rest_url={self.options.rest_url!r}, shards={len(self.runners)}, "
            f"total={self.shard_total})"
        )

    # -- events -----------------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[ManagerEvent], Any]) -> Callable[[], None]:
        """Call ``callback(event)`` for every manager event; returns a function that unsubscribes."""
        return self.events.subscribe(callback)

    def _track(self, event: ManagerEvent) -> None:
        if isinstance(event, ShardStageUpdateEvent):
            self._restarting.discard(event.shard_id)
            info = self.runners.get(event.shard_id)
            if info is not None:
                # Every stage change passes here first: health follows the connection before anyone
                # hears of it.
                down = connection_verdict(info)
                if down is not None:
                    info.health, info.health_reason = down.health, down.reason
            if event.new is ConnectionStage.CONNECTED and info is not None:
                self.session_restore.first_start(event.shard_id, info.last_start)

    def _after_event(self, event: ManagerEvent) -> None:
        # After every subscriber heard of the event, so an alert never arrives before its cause.
        if not (self._closing or self._resharding):
            # Not while shutting down or swapping shard sets: every shard going down then is no outage.
            self.alerts.observe(event, self.runners)

    def stage_changed(self) -> None:
        self._stage_event.set()
        self._stage_event = asyncio.Event()

    # -- start ------------------------------------------------------------------------------------

    def set_shards(self, index: int, init: int, total: int) -> None:
        """Run shards ``index .. index+init-1`` of ``total`` (call before ``initialize()``)."""
        if self._initialized:
            raise RuntimeError("set_shards() must be called before initialize()")
        if total < 1 or init < 1 or index < 0 or index + init > total:
            raise ValueError(f"cannot run {init} shards from {index} out of {total}")
        self._shards.range = (index, index + init - 1)
        self._shards.total = total

    async def initialize(self) -> None:
        """Read /gateway/bot, then queue every shard in range. Raises ``FatalGatewayError`` when
        the token is rejected and ``GatewayError`` when the gateway cannot be found."""
        if self._initialized:
            return
        if self._closing or self._closed:
            raise RuntimeError("this ShardManager was shut down; make a new one")
        self._initialized = True
        self._shards.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ssl=self.options.ssl_context or True)
        )
        try:
            bot = await fetch_gateway_bot(
                self._shards.session,
                self.options.rest_url,
                self.options.token,
                request_timeout=self.options.request_timeout,
                clock=self.clock,
            )
        except FatalGatewayError as exc:
            self.fatal_error = FatalErrorEvent(exc.kind, exc.message, (), exc.code)
            await self._close_session()
            self._initialized = False
            raise
        except BaseException:
            # Nothing was started: a later initialize() may try again (e.g. once the network is back).
            await self._close_session()
            self._initialized = False
            raise
        self._shards.gateway_url = bot.url
        self.session_start_limit = bot.session_start_limit
        total = self.shard_total or bot.shards
        self._shards.total = total
        if self.max_concurrency is None:
            limit = bot.session_start_limit
            self.max_concurrency = limit.max_concurrency if limit is not None else 1
        first, last = self._shards.range if self._shards.range is not None else (0, total - 1)
        if last >= total:
            await self._close_session()
            self._initialized = False
            raise GatewayError(
                f"shard range {first}..{last} does not fit in the {total} shards /gateway/bot recommends; "
                "set the shard total explicitly"
            )
        ids = [ShardId(i) for i in range(first, last + 1)]

        gate = self._gate
        if gate is None:
            gate = InMemoryIdentifyGate(
                self.max_concurrency, self.options.identify_window, self.session_start_limit, self.clock
            )
            self._gate = gate
        elif isinstance(gate, InMemoryIdentifyGate) and self.session_start_limit is not None:
            gate.update_limit(self.session_start_limit)
        # Any gate that can say why identifies wait (the fleet's Redis gate too) tells the console.
        gate.on_waiting_change = self._on_waiting_change
        if isinstance(gate, InMemoryIdentifyGate):
            # The gate counts the budget down from here; keep the manager's view the same object.
            self.session_start_limit = gate.limit

        self._shards.queuer = ShardQueuer(
            gate,
            self._spawn_runner,
            self._stop_runner,
            max_concurrency=self.max_concurrency,
            clock=self.clock,
            on_dequeued=self._on_dequeued,
            on_waiting_change=self._on_waiting_change,
            costs_identify=self._start_costs_identify,
        )
        self._shards.monitor.start()
        self._shards.queuer.start()
        if self.options.health_interval > 0:
            self._health_task = asyncio.create_task(self._health_loop(), name="shardtui-health")

        for shard_id in ids:
            self.runners[shard_id] = ShardRunnerInfo(shard_id, total, running=True, health=ShardHealth.DOWN)
        self._restore_sessions(ids, total)
        self.events.log(
            None,
            logging.INFO,
            f"starting {format_shard_ids(ids)} of {total} (max_concurrency {self.max_concurrency}, "
            f"gateway {bot.url})",
        )
        limit = self.session_start_limit
        if limit is not None and limit.remaining < len(ids):
            self.events.log(
                None,
                logging.WARNING,
                f"{len(ids)} shards to start but only {limit.remaining} session starts left today: "
                f"{max(0, limit.remaining)} start now, the rest wait for the reset at "
                f"{describe_wall_time(limit.reset_at)} "
                f"(in {describe_duration(limit.reset_at - self.clock.wall())})",
            )
        for shard_id in ids:
            self.events.emit(ShardInfoUpdateEvent(shard_id))
            self._shards.queuer.send(ShardQueuerMessage.Start(shard_id, total))

    def _restore_sessions(self, ids: list[ShardId], total: int) -> None:
        """Take the sessions a clean shutdown saved: those shards RESUME instead of identifying."""
        path = self.options.state_file
        if path is None:
            return
        loaded = load_sessions(
            path, total=total, shard_ids=ids, now=self.clock.wall(), max_age=self.options.state_max_age
        )
        self.session_restore = SessionRestore(loaded)
        if loaded.warning is not None:
            self.events.log(None, logging.WARNING, loaded.warning)
        self._shards.resume_states.update(loaded.usable)
        for shard_id, count in loaded.guilds.items():
            self.runners[shard_id].guilds = count
        if loaded.usable:
            self.events.log(
                None,
                logging.INFO,
                f"resuming {format_shard_ids(loaded.usable)} from saved sessions ({path})",
            )
        if loaded.stale:
            self.events.log(
                None,
                logging.INFO,
                f"saved sessions of {format_shard_ids(loaded.stale)} are older than "
                f"{describe_duration(self.options.state_max_age)}; they identify",
            )
        if loaded.other_total:
            self.events.log(
                None,
                logging.INFO,
                f"saved sessions of {format_shard_ids(loaded.other_total)} belong to another shard "
                f"total; they identify",
            )

    @property
    def identifies_saved(self) -> int:
        """Shards that RESUMEd a saved session at start instead of identifying."""
        return self.session_restore.identifies_saved

    def _start_costs_identify(self, start: ShardQueuerMessage.Start) -> bool:
        """False when the start will RESUME a kept or saved session (no session start needed)."""
        return start.force_identify or start.shard_id not in self._shards.resume_states

    def _on_waiting_change(self, reason: str | None) -> None:
        if reason is not None:
            self.events.emit(ShardLogEvent(None, logging.WARNING, reason))
        else:
            self.events.emit(ShardLogEvent(None, logging.INFO, "identifies may go again"))

    # -- runners ----------------------------------------------------------------------------------

    def _handle_dispatch(self, dispatch: Dispatch) -> Awaitable[Any] | None:
        if dispatch.name == "READY" and isinstance(dispatch.data, dict):
            user = dispatch.data.get("user")
            if isinstance(user, dict):
                self.bot_user = user
        handler = self.options.event_handler
        if handler is None:
            return None
        return handler(dispatch)

    def _spawn_runner(self, start: ShardQueuerMessage.Start, gate: IdentifyGate) -> None:
        from shardtui.gateway.runner import ShardRunner, ShardRunnerOptions

        info = self.runners.get(start.shard_id)
        if info is None or self._closing:
            raise RuntimeError(f"shard {start.shard_id} is not run by this manager")
        if self.gateway_url is None:
            raise RuntimeError("initialize() has not read the gateway url yet")
        resume = None if start.force_identify else self._shards.resume_states.pop(start.shard_id, None)
        options = ShardRunnerOptions(
            token=self.options.token,
            gateway_url=self.gateway_url,
            intents=self.options.intents,
            identify_gate=gate,
            compression=self.options.compression,
            large_threshold=self.options.large_threshold,
            presence=self.options.presence,
            event_handler=self._handle_dispatch,
            ssl_context=self.options.ssl_context,
            resume=resume,
        )
        shards = self._shards
        runner = ShardRunner(start.shard_id, start.total, options, info, shards.manager_tx, self.events.emit)
        info.running = True
        self._shards.runner_objects[start.shard_id] = runner
        self._shards.tasks[start.shard_id] = asyncio.create_task(
            self._run_runner(start.shard_id, runner), name=f"shardtui-shard-{start.shard_id}"
        )

    async def _run_runner(self, shard_id: ShardId, runner: Any) -> None:
        try:
            await runner.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            # run() promises never to raise; if it does, the shard still has to be accounted for.
            log.exception("shard %s runner crashed", shard_id)
            self._shards.crashes[shard_id] = self._shards.crashes.get(shard_id, 0) + 1
            self._shards.manager_tx.put_nowait(_crash_finished(shard_id))

    def _stop_runner(self, shard_id: ShardId, code: int) -> None:
        self._shards.stop_runner(shard_id, code)

    def _on_dequeued(self, shard_id: ShardId) -> None:
        info = self.runners.get(shard_id)
        if info is not None and shard_id not in self._shards.tasks:
            info.running = False
            self.events.emit(ShardInfoUpdateEvent(shard_id))
        self._resolve_finished(shard_id)

    def _resolve_finished(self, shard_id: ShardId) -> None:
        self._shards.resolve_finished(shard_id)

    def _mark_disconnected(self, info: ShardRunnerInfo) -> bool:
        """The shard's runner is gone: show it stopped and tell subscribers; True when its stage changed."""
        old = info.stage
        info.running = False
        info.latency = None
        info.stage = ConnectionStage.DISCONNECTED
        if old is not ConnectionStage.DISCONNECTED:
            self.events.emit(ShardStageUpdateEvent(info.shard_id, old, ConnectionStage.DISCONNECTED))
        self.events.emit(ShardInfoUpdateEvent(info.shard_id))
        return old is not ConnectionStage.DISCONNECTED

    async def runner_finished(self, shard_id: ShardId) -> None:
        """The monitor saw ``ShutdownFinished(shard_id)``: the runner is gone."""
        task = self._shards.tasks.get(shard_id)
        if task is None:
            # A second acknowledgement for a runner already accounted for (one we had to cancel
            # also reports itself): nothing left to do, and certainly no restart.
            self._resolve_finished(shard_id)
            return
        if not task.done():
            # The runner's last act is the ShutdownFinished message; its task ends right after.
            await asyncio.wait({task}, timeout=1.0)
            if not task.done():
                log.debug("shard %s sent ShutdownFinished but is still running", shard_id)
                return
        self._shards.tasks.pop(shard_id, None)
        runner = self._shards.runner_objects.pop(shard_id, None)
        info = self.runners.get(shard_id)
        requested = shard_id in self._shards.stopping
        code = self._shards.stopping.pop(shard_id, None)
        if code is not None and code not in SESSION_ENDING_CLIENT_CLOSES:
            self._shards.keep_session(shard_id, runner)
        if info is not None and self._mark_disconnected(info):
            self.stage_changed()
        self._resolve_finished(shard_id)
        if self._shards.queuer is None or self._closing:
            return
        fatal = info is not None and info.fatal_error is not None
        if shard_id in self._shards.boot_after_stop:
            self._shards.boot_after_stop.discard(shard_id)
            self._queue_start(shard_id, force_identify=False)
        elif not requested and not fatal and self.fatal_error is None:
            crashes = self._shards.crashes.get(shard_id, 0)
            if crashes >= MAX_CRASH_RESTARTS and info is not None:
                info.fatal_error = f"the runner crashed {crashes} times in a row; not starting it again"
                info.health, info.health_reason = ShardHealth.FAILED, info.fatal_error
                self.events.emit(FatalErrorEvent("gateway", info.fatal_error, (shard_id,), None))
                self._shards.queuer.notify_finished(shard_id, retry=False)
                return
            self.events.log(shard_id, logging.WARNING, "runner ended unexpectedly; starting it again")
            if info is not None:
                info.running = True
            self._shards.queuer.notify_finished(shard_id, retry=True)
            return
        self._shards.queuer.notify_finished(shard_id, retry=False)

    def _queue_start(self, shard_id: ShardId, *, force_identify: bool) -> None:
        assert self._shards.queuer is not None and self.shard_total is not None
        info = self.runners[shard_id]
        info.running = True
        info.fatal_error = None
        if info.stage is not ConnectionStage.CONNECTED:
            info.health, info.health_reason = ShardHealth.DOWN, ""
        self._shards.crashes.pop(shard_id, None)
        self.events.emit(ShardInfoUpdateEvent(shard_id))
        self._shards.queuer.send(ShardQueuerMessage.Start(shard_id, self.shard_total, force_identify))

    def stop_everything(self) -> None:
        """After a bot-wide fatal error: drop the queue and stop every runner; nothing retries."""
        if self._shards.queuer is not None:
            for shard_id in self._shards.queuer.status().queued:
                self._shards.queuer.send(ShardQueuerMessage.ShutdownShard(shard_id, 1000))
        self._shards.boot_after_stop.clear()
        for shard_id in list(self._shards.tasks):
            self._stop_runner(shard_id, 1000)

    def spawn_background(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._aux_tasks.add(task)
        task.add_done_callback(self._aux_tasks.discard)

    # -- operator actions -------------------------------------------------------------------------

    def _check_shard(self, shard_id: ShardId) -> ShardId:
        shard_id = ShardId(int(shard_id))
        if shard_id not in self.runners:
            raise ValueError(
                f"shard {shard_id} is not run by this process (it runs {format_shard_ids(self.runners)})"
            )
        return shard_id

    async def restart(self, shard_id: ShardId, *, force_identify: bool = False) -> None:
        """Reconnect a shard: RESUME when its session is alive (no identify spent), a fresh
        IDENTIFY through the gate when ``force_identify`` or when it has no session."""
        shard_id = self._check_shard(shard_id)
        if self._closing:
            return
        shards = self._shards
        runner = shards.runner_objects.get(shard_id)
        if runner is not None and shards.running(shard_id) and shard_id not in shards.stopping:
            how = "with a fresh identify" if force_identify else "resuming if the session is alive"
            self.events.log(shard_id, logging.INFO, f"restart requested ({how})")
            self._restarting.add(shard_id)
            runner.messenger.restart(force_identify)
            return
        await self.boot(shard_id, force_identify=force_identify)

    def request_shutdown(self, shard_id: ShardId, code: int = 1000) -> bool:
        """Ask a shard to stop without waiting; True when there is something to wait for."""
        if self._shards.queuer is not None and self._shards.queuer.is_queued(shard_id):
            self._shards.queuer.send(ShardQueuerMessage.ShutdownShard(shard_id, code))
            return True
        self._shards.boot_after_stop.discard(shard_id)
        if shard_id in self._shards.tasks:
            self.events.log(shard_id, logging.INFO, f"shutting down (close {code})")
            self._stop_runner(shard_id, code)
            return True
        return False

    async def shutdown(self, shard_id: ShardId, code: int = 1000) -> None:
        """Stop one shard and wait (bounded) until its runner is gone. 1000 ends the session; any
        other code keeps it resumable for a later ``boot``."""
        shard_id = self._check_shard(shard_id)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._shards.finished_waiters.setdefault(shard_id, []).append(waiter)
        if not self.request_shutdown(shard_id, code):
            self._resolve_finished(shard_id)
        try:
            await wait_for(asyncio.shield(waiter), self.options.shutdown_timeout)
        except TimeoutError:
            task = self._shards.tasks.get(shard_id)
            if task is not None and not task.done():
                self.events.log(shard_id, logging.WARNING, "did not close in time; cancelling its runner")
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                self._shards.manager_tx.put_nowait(_crash_finished(shard_id))
                await wait_for(asyncio.shield(waiter), 1.0)

    async def boot(self, shard_id: ShardId, *, force_identify: bool = False) -> None:
        """Start a stopped shard through the queuer (it identifies, or resumes a kept session)."""
        shard_id = self._check_shard(shard_id)
        if self._shards.queuer is None or self._closing:
            raise RuntimeError("the manager is not running (call initialize() first)")
        if self._shards.queuer.is_queued(shard_id):
            return
        if shard_id in self._shards.tasks:
            if shard_id in self._shards.stopping:
                self._shards.boot_after_stop.add(shard_id)
            return
        if force_identify:
            self._shards.resume_states.pop(shard_id, None)
        if self.fatal_error is not None:
            # The operator chose to try again (say, after enabling an intent in the portal); a new
            # failure is reported afresh.
            self.events.log(None, logging.WARNING, f"retrying after: {self.fatal_error.message}")
            self.fatal_error = None
        self.events.log(shard_id, logging.INFO, "booting")
        self._queue_start(shard_id, force_identify=force_identify)

    async def shutdown_all(self, *, keep_sessions: bool | None = None) -> None:
        """Close every shard in parallel, wait at most ``shutdown_timeout`` (then cancel the rest),
        stop the queuer, monitor and health tasks and close the HTTP session. Idempotent.

        ``keep_sessions`` (default: True when ``state_file`` is set) closes with 4000 so every
        session stays resumable, and writes them to the state file for the next process."""
        if self._closed or self._closing:
            await self._closed_event.wait()
            return
        if keep_sessions is None:
            keep_sessions = self.options.state_file is not None
        self._closing = True
        self.alerts.cancel_pending()
        self._abort_background_work()
        try:
            self.events.emit(ShardLogEvent(None, logging.INFO, "shutting down all shards"))
            if self._shards.queuer is not None:
                await self._shards.queuer.close()
            code = 4000 if keep_sessions else 1000

            def cancelling(stragglers: list[ShardId]) -> None:
                self.events.log(
                    None,
                    logging.WARNING,
                    f"{format_shard_ids(stragglers)} did not close within "
                    f"{describe_duration(self.options.shutdown_timeout)}; cancelling",
                )

            await self._shards.stop_runners(
                code,
                self.options.shutdown_timeout,
                on_stragglers=cancelling,
                on_error=lambda sid: log.exception("asking shard %s to stop failed", sid),
            )
            await self._shards.monitor.close()
            for shard_id in list(self._shards.tasks):
                self._shards.tasks.pop(shard_id, None)
                runner = self._shards.runner_objects.pop(shard_id, None)
                if keep_sessions:
                    self._shards.keep_session(shard_id, runner)
            if keep_sessions:
                self._save_sessions()
            for shard_id, info in self.runners.items():
                if info.running or info.stage is not ConnectionStage.DISCONNECTED:
                    self._mark_disconnected(info)
                self._resolve_finished(shard_id)
            await self._cancel_background()
            await self._close_session()
        finally:
            self._closed = True
            self._closed_event.set()
            self.stage_changed()

    def _save_sessions(self) -> None:
        path = self.options.state_file
        if path is None or self.shard_total is None:
            return
        states = {sid: st for sid, st in self._shards.resume_states.items() if sid in self.runners}
        try:
            guilds = {sid: info.guilds for sid, info in self.runners.items()}
            saved = sessions_to_save(states, self.shard_total, self.clock.wall(), guilds)
            written = save_sessions(path, saved)
        except OSError as exc:
            self.events.log(None, logging.ERROR, f"could not save sessions to {path}: {exc}")
            return
        self.events.log(None, logging.INFO, f"saved {written} resumable sessions to {path}")

    def _abort_background_work(self) -> None:
        rolling = self._rolling
        if rolling is not None:
            rolling.abort()

    async def _cancel_background(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in (self._health_task, *self._aux_tasks) if t is not None and t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._health_task = None

    async def _close_session(self) -> None:
        await self._shards.close_session()

    # -- the host interface of monitor.py, rolling.py and reshard.py (their declared protocols) ------

    @property
    def closing(self) -> bool:
        """True once ``shutdown_all`` has begun."""
        return self._closing

    def runner_connected(self, shard_id: ShardId) -> None:
        """The monitor saw the shard reach CONNECTED: its crash count resets, its bucket moves on."""
        self._shards.crashes.pop(shard_id, None)
        if self._shards.queuer is not None:
            self._shards.queuer.notify_progress(shard_id)

    def request_shutdown_all(self) -> None:
        """``shutdown_all()`` in the background (a runner asked for it; it must not wait on itself)."""
        self.spawn_background(self.shutdown_all(), "shardtui-shutdown-all")

    def new_shard_set(self, options: ShardManagerOptions) -> ShardManager:
        """A manager for a second set of shards sharing this one's gate, clock and max_concurrency
        (a reshard's new set); ``adopt`` later makes its shards this manager's."""
        other = ShardManager(options, gate=self._gate, clock=self.clock)
        other.max_concurrency = self.max_concurrency
        return other

    async def close_shard_set(self) -> None:
        """Close every shard (1000: those sessions are done), the queuer, the monitor and the HTTP
        session of the current set, leaving the manager itself open for a set to ``adopt``."""
        shards = self._shards
        if shards.queuer is not None:
            await shards.queuer.close()
        await shards.stop_runners(1000, self.options.shutdown_timeout)
        await shards.monitor.close()
        await shards.close_session()

    def adopt(self, other: ShardManager) -> None:
        """Make ``other``'s set of shards this manager's (the reshard's switch). ``other`` is an empty
        shell afterwards and must not be used again."""
        shards = other._shards
        self._shards = shards
        shards.monitor.host = self
        # Event rates were measured on the old set's counters; the new set starts its own.
        self._rates = RateTracker()
        if shards.queuer is not None:
            shards.queuer.rebind(
                spawn=self._spawn_runner,
                stop=self._stop_runner,
                on_dequeued=self._on_dequeued,
                on_waiting_change=self._on_waiting_change,
            )
        for runner in shards.runner_objects.values():
            runner.rebind(self.events.emit, self._handle_dispatch)
        if other.session_start_limit is not None:
            # The new set read /gateway/bot just now: its budget is the one the header must show.
            self.session_start_limit = other.session_start_limit
        self.reclaim_gate()
        other.events.clear()
        other._closed = True
        other._closed_event.set()

    def reclaim_gate(self) -> None:
        """Point the gate's waiting reasons back at this manager (a second set borrowed the gate)."""
        if self._gate is not None:
            self._gate.on_waiting_change = self._on_waiting_change

    # -- queries ----------------------------------------------------------------------------------

    def has(self, shard_id: ShardId) -> bool:
        """True while the shard has a runner (connecting, connected or reconnecting)."""
        task = self._shards.tasks.get(ShardId(int(shard_id)))
        return task is not None and not task.done()

    def messenger(self, shard_id: ShardId) -> ShardMessenger | None:
        """The handle for commands to the shard's runner (presence, chunking, raw commands), or None
        while the shard has no runner (queued, stopped)."""
        runner = self._shards.runner_objects.get(ShardId(int(shard_id)))
        return None if runner is None else runner.messenger

    def shards_instantiated(self) -> list[ShardId]:
        return sorted(sid for sid, task in self._shards.tasks.items() if not task.done())

    def queue_status(self) -> QueueStatus:
        if self._shards.queuer is None:
            return QueueStatus(queued=(), identifying=())
        return self._shards.queuer.status()

    def plan(self, action: str, shard_ids: Iterable[ShardId]) -> Plan:
        """What ``action`` on ``shard_ids`` would cost, before doing it (see :mod:`planner`).
        Also "rolling_restart" / "rolling_restart_identify" (:mod:`rolling`) and "reshard", whose
        ids are the NEW set's (``range(new_total)``, see :mod:`reshard`)."""
        if action in ("rolling_restart", "rolling_restart_identify"):
            return plan_rolling_restart(self, shard_ids, force_identify=action == "rolling_restart_identify")
        if action == "reshard":
            return plan_reshard(self, shard_ids)
        mc = self.max_concurrency or 1
        outlook = self.gate_outlook()
        status = self.queue_status()
        if outlook.waiting is not None:
            # Shards not spawned yet plus those already waiting at the gate go first.
            ahead = dict(outlook.waiting)
            for shard in status.queued:
                bucket = bucket_for_shard(shard.id, mc)
                ahead[bucket] = ahead.get(bucket, 0) + 1
        else:
            ahead = status.queued_per_bucket(mc)
        return make_plan(
            action,
            shard_ids,
            infos=self.runners,
            max_concurrency=mc,
            window=outlook.window + outlook.margin,
            bucket_free_in=outlook.bucket_free_in,
            queued_ahead=ahead,
            budget_remaining=outlook.budget_remaining,
            reset_in=outlook.reset_in,
        )

    def gate_outlook(self) -> GateOutlook:
        """The identify gate's slots, budget and window as plans read them."""
        return gate_outlook(
            self._gate,
            now=self.clock.wall(),
            limit=self.session_start_limit,
            max_concurrency=self.max_concurrency or 1,
            default_window=self.options.identify_window,
        )

    # -- zero-downtime operations (rolling.py, reshard.py) ----------------------------------------

    async def rolling_restart(
        self, *, force_identify: bool = False, shard_ids: Iterable[ShardId] | None = None
    ) -> RollingRestartStatus:
        """Restart every running shard (or ``shard_ids``) a round at a time, one shard per identify
        bucket per round, each round back before the next; returns the final
        ``RollingRestartStatus``. ``abort_rolling_restart()`` stops it before the next round."""
        if self._shards.queuer is None or self._closing:
            raise RuntimeError("the manager is not running (call initialize() first)")
        if self._rolling is not None and self._rolling.status.state is RollingState.RUNNING:
            raise RuntimeError("a rolling restart is already running")
        if self._resharding:
            raise RuntimeError("a reshard is in progress; restart after it finished")
        ids = list(self.runners) if shard_ids is None else [self._check_shard(s) for s in shard_ids]
        self._rolling = RollingRestart(self, ids, force_identify=force_identify)
        return await self._rolling.run()

    def abort_rolling_restart(self) -> bool:
        """Stop a running rolling restart before its next round; False when none is running."""
        return self._rolling is not None and self._rolling.abort()

    @property
    def rolling_status(self) -> RollingRestartStatus | None:
        """The current or last ``RollingRestartStatus``, or None."""
        return None if self._rolling is None else self._rolling.status

    @property
    def can_reshard(self) -> bool:
        """A ShardManager implements live resharding (whether a given reshard is possible, e.g. the
        budget or a partial shard range, ``reshard`` and ``plan("reshard", ...)`` say)."""
        return True

    async def reshard(self, new_total: int, *, dedupe_grace: float | None = None) -> ReshardResult:
        """Move to ``new_total`` shards live: a complete new set identifies alongside the old one,
        the old set delivers until every new shard is CONNECTED, then delivery switches over (each
        event once, deduplicated by Discord identity) and the old set closes. Raises
        ``RuntimeError`` when the daily budget cannot pay for it (see ``plan("reshard", ...)``) or
        the new set does not connect (the old set keeps running). Returns a ``ReshardResult``."""
        if self._shards.queuer is None or self._closing or self.shard_total is None:
            raise RuntimeError("the manager is not running (call initialize() first)")
        if isinstance(new_total, bool) or not isinstance(new_total, int) or new_total < 1:
            raise ValueError(f"the new shard total must be a positive integer, got {new_total!r}")
        if new_total == self.shard_total:
            raise ValueError(f"already running {new_total} shards")
        shard_range = self._shards.range
        if shard_range is not None and shard_range != (0, self.shard_total - 1):
            raise RuntimeError(
                f"this process runs only shards {shard_range[0]}..{shard_range[1]}; a live reshard "
                "needs one process running every shard"
            )
        if self._resharding:
            raise RuntimeError("a reshard is already running")
        if self._rolling is not None and self._rolling.status.state is RollingState.RUNNING:
            raise RuntimeError("a rolling restart is running; reshard after it finished")
        self._resharding = True
        self.alerts.cancel_pending()
        try:
            grace = DEDUPE_GRACE_SECONDS if dedupe_grace is None else dedupe_grace
            return await run_reshard(self, new_total, dedupe_grace=grace)
        finally:
            self._resharding = False

    async def wait_until_connected(self, timeout: float) -> bool:  # noqa: ASYNC109 - the contract's name
        """Wait until every shard in range is CONNECTED; False on timeout, or at once when a shard
        stopped on a fatal error (it will not connect by itself). A shard asked to ``restart`` counts
        as connected again only once it has reconnected, not while it still shows its old connection."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.fatal_error is not None or any(i.fatal_error for i in self.runners.values()):
                return False
            if (
                self.runners
                and all(i.stage is ConnectionStage.CONNECTED for i in self.runners.values())
                and self._restarting.isdisjoint(self.runners)
            ):
                return True
            if self._closed:
                return False
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            event = self._stage_event
            with contextlib.suppress(TimeoutError):
                await wait_for(event.wait(), remaining)

    # -- health -----------------------------------------------------------------------------------

    async def _health_loop(self) -> None:
        while True:
            await self.clock.sleep(self.options.health_interval)
            try:
                self.check_health()
            except Exception:
                log.exception("health check failed")

    def check_health(self) -> None:
        """One wedged-shard check over every shard; emits info updates for verdicts that changed."""
        now = self.clock.wall()
        infos = list(self.runners.values())
        # Smoothed over tens of seconds: the runner's own events/s reacts too fast to judge silence.
        rates = self._rates.update(infos, now)
        verdicts = assess_health(infos, now, rates, self.options.health_policy)
        for info in infos:
            if info.health is ShardHealth.FAILED and not info.running:
                continue  # a stopped, failed shard keeps saying why until it is booted again
            changed = False
            verdict = verdicts[info.shard_id]
            if (verdict.health, verdict.reason) != (info.health, info.health_reason):
                was = info.health
                info.health, info.health_reason = verdict.health, verdict.reason
                changed = True
                if verdict.health is ShardHealth.WEDGED and was is not ShardHealth.WEDGED:
                    self.events.log(info.shard_id, logging.WARNING, f"wedged: {verdict.reason}")
                elif was is ShardHealth.WEDGED and verdict.health is ShardHealth.OK:
                    self.events.log(info.shard_id, logging.INFO, "no longer wedged")
            if changed:
                self.events.emit(ShardInfoUpdateEvent(info.shard_id))
        if self.options.restart_wedged and not (self._closing or self._resharding):
            self._healer.check(
                infos,
                now,
                restart=lambda sid: self.spawn_background(self.restart(sid), f"shardtui-heal-{sid}"),
                budget=self.identify_budget(),
                log=self.events.log,
            )

    def identify_budget(self) -> int | None:
        """Session starts left before the daily reset as the identify gate counts them (fleet-wide
        in a fleet), or None when unknown."""
        gate = self._gate
        if isinstance(gate, _ReportsBudget):
            return gate.budget_remaining()
        limit = self.session_start_limit
        return None if limit is None else limit.remaining


@runtime_checkable
class _ReportsBudget(Protocol):
    def budget_remaining(self) -> int | None: ...


def _crash_finished(shard_id: ShardId) -> ShardManagerMessageT:
    return ShardManagerMessage.ShutdownFinished(shard_id)
