"""The Sandbox: one aiohttp application serving REST, the gateway and the control API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from typing import Any

from aiohttp import web

from shardtui.gateway.protocol import CloseCode, Opcode
from shardtui.server import GatewayServer, ServerOptions

from .accounting import DeliveryReport, SentEvent, compare_delivery
from .faults import FAULT_KINDS, inject, inject_random, run_schedule
from .gateway import SandboxBackend, control
from .payloads import EVENT_KINDS, generate
from .rest import RestApi
from .settings import SandboxSettings
from .state import SandboxState

log = logging.getLogger("shardtui.sandbox")


class Sandbox:
    """A local Discord gateway. See docs/architecture.md for the embedding contract."""

    def __init__(self, settings: SandboxSettings | None = None) -> None:
        self.settings = settings or SandboxSettings()
        self._scheme = "http"
        for rule in self.settings.faults:
            if rule.kind != "random" and rule.kind not in FAULT_KINDS:
                raise ValueError(
                    f"unknown sandbox fault {rule.kind!r} in schedule; known: {', '.join(FAULT_KINDS)}"
                )
            if rule.every <= 0:
                raise ValueError(f"sandbox fault {rule.kind!r}: every must be > 0 seconds, got {rule.every}")
            unknown = [kind for kind in rule.choices if kind not in FAULT_KINDS]
            if unknown:
                raise ValueError(
                    f"unknown sandbox fault {unknown[0]!r} in choices; known: {', '.join(FAULT_KINDS)}"
                )
        for kind in self.settings.event_mix:
            if kind not in EVENT_KINDS:
                raise ValueError(f"unknown event kind {kind!r} in event_mix; known: {', '.join(EVENT_KINDS)}")
        self._state = SandboxState(self.settings)
        self._fault_rng = random.Random(self._state.seed ^ 0xFA17)
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.host = ""
        self.port = 0

    def __repr__(self) -> str:
        return f"<Sandbox {self.rest_url or 'not started'} guilds={len(self._state.world.guilds)}>"

    # -- public surface ---------------------------------------------------------------------------

    @property
    def token(self) -> str:
        return self._state.token

    @property
    def rest_url(self) -> str:
        return f"{self._scheme}://{self._url_host}:{self.port}/api/v10" if self.port else ""

    @property
    def gateway_url(self) -> str:
        return self._state.gateway_url

    @property
    def resume_gateway_url(self) -> str:
        return self._state.resume_url

    @property
    def control_url(self) -> str:
        return f"{self._scheme}://{self._url_host}:{self.port}/sandbox" if self.port else ""

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def guild_ids(self) -> list[int]:
        return [g.id for g in self._state.world.guilds]

    @property
    def bot_user_id(self) -> int:
        return self._state.world.bot.id

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def guild_ids_for_shard(self, shard_id: int, num_shards: int) -> list[int]:
        return self._state.guild_ids_for(shard_id, num_shards)

    def stats(self, *, with_events: bool = False) -> dict[str, Any]:
        """JSON-ready accounting: totals, per shard (keys are str shard ids) and per session."""
        data = self._state.stats(with_events)
        data["rest_url"] = self.rest_url
        return data

    def sent_events(self, shard_id: int) -> list[SentEvent]:
        """Every dispatch given a seq on ``shard_id``, in send order (replays not repeated)."""
        stats = self._state.shard_stats.get(shard_id)
        return list(stats.sent) if stats else []

    def event_ids(self, shard_id: int) -> list[int]:
        return [e.event_id for e in self.sent_events(shard_id)]

    def presence(self, shard_id: int) -> dict[str, Any] | None:
        """The presence the bot last set on ``shard_id`` (identify or op 3), as Discord would hold it."""
        stats = self._state.shard_stats.get(shard_id)
        return stats.presence if stats else None

    def inject(self, kind: str, shard_id: int | None = None, **params: Any) -> int:
        """Inject a fault (see ``FAULT_KINDS``); returns the number of connections affected.

        ``shard_id=None`` hits every identified connection (for ``refuse``/``delay_hello``/``outage``
        the whole sandbox)."""
        return inject(self._state, kind, shard_id, **params)

    def inject_random(
        self, shard_id: int | None = None, choices: tuple[str, ...] = (), **params: Any
    ) -> tuple[str, dict[str, Any]] | None:
        """A random transient fault (deterministic for the settings' seed) on ``shard_id`` or a random
        live shard; returns (kind, params) as applied, or None when no shard is connected."""
        return inject_random(self._state, self._fault_rng, shard_id, choices, params)

    def delivery_report(self, shard_id: int, received_event_ids: list[int]) -> DeliveryReport:
        """Compare what the sandbox sent on ``shard_id`` with the event ids a handler received."""
        return compare_delivery(self.sent_events(shard_id), received_event_ids)

    def quiesce(self) -> None:
        """Stop generated traffic and scheduled faults and let refused/slow connections through, so a
        loss test can compare totals once clients caught up. Protocol enforcement goes on."""
        for task in [t for t in self._tasks if t.get_name() in ("sandbox-traffic", "sandbox-faults")]:
            task.cancel()
            self._tasks.remove(task)
        state = self._state
        state.refuse_until = 0.0
        state.pending_hello_delays.clear()

    def heal(self) -> int:
        """Undo wedge and zombie faults on live connections and send what they held back; returns the
        number of connections healed."""
        healed = 0
        for conn in self._state.connections_for(None):
            if conn.holds_dispatches and conn.session is not None:
                conn.zombie = conn.wedged = False
                conn.session.release_held()
                healed += 1
        return healed

    def emit(self, count: int = 1, kind: str | None = None) -> int:
        """Generate ``count`` traffic events now (kind from the event mix when None); returns deliveries."""
        delivered = 0
        for _ in range(count):
            delivered += self._emit_one(kind)
        return delivered

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        """Listen on ``host:port`` (0: any free port); with ``ssl_context``, over TLS (https/wss urls)."""
        if self._runner is not None:
            raise RuntimeError("sandbox already started")
        state = self._state
        app = web.Application()
        gateway = GatewayServer(SandboxBackend(state), self._server_options())
        RestApi(state, self.inject, lambda: self.rest_url).add_routes(app)
        app.router.add_get("/{tail:.*}", gateway.handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(exc.errno, f"sandbox cannot listen on {host}:{port}: {exc.strerror}") from None
        self._runner = runner
        sockets = site._server.sockets if site._server is not None else []  # type: ignore[union-attr]
        self.host = host
        self.port = sockets[0].getsockname()[1] if sockets else port
        state.started_at = state.now()
        self._scheme = "https" if ssl_context is not None else "http"
        ws_scheme = "wss" if ssl_context is not None else "ws"
        state.gateway_url = f"{ws_scheme}://{self._url_host}:{self.port}/"
        # Like Discord's resume_gateway_url: no trailing slash, no query.
        state.resume_url = f"{ws_scheme}://{self._url_host}:{self.port}"
        self._tasks.append(asyncio.create_task(self._sweeper(), name="sandbox-sweeper"))
        if self.settings.event_rate > 0:
            self._tasks.append(asyncio.create_task(self._traffic(), name="sandbox-traffic"))
        for rule in self.settings.faults:
            self._tasks.append(
                asyncio.create_task(run_schedule(state, rule, self._fault_rng), name="sandbox-faults")
            )
        log.info("sandbox listening on %s", self.rest_url)

    async def stop(self) -> None:
        """Close every connection and the server; no task is left behind."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        state = self._state
        state.refuse_until = float("inf")
        conns = list(state.connections.values())
        await asyncio.gather(*(c.shutdown(CloseCode.GOING_AWAY) for c in conns), return_exceptions=True)
        handlers = [c.handler_task for c in conns if c.handler_task is not None and not c.handler_task.done()]
        if handlers:
            _, pending = await asyncio.wait(handlers, timeout=1.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        await runner.cleanup()
        log.info("sandbox stopped")

    def _server_options(self) -> ServerOptions:
        settings = self.settings
        factor = settings.heartbeat_timeout_factor
        return ServerOptions(
            close_timeout=settings.close_timeout,
            command_window=settings.command_window,
            commands_per_window=settings.commands_per_window,
            heartbeat_timeout=settings.heartbeat_interval_ms / 1000 * factor if factor else None,
            task_prefix="sandbox",
            not_websocket=SandboxBackend.not_websocket,
        )

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- background work --------------------------------------------------------------------------

    def _emit_one(self, kind: str | None) -> int:
        state = self._state
        if kind is None:
            mix = self.settings.event_mix
            kinds = [k for k, w in mix.items() if w > 0]
            if not kinds:
                return 0
            kind = state.traffic_rng.choices(kinds, weights=[mix[k] for k in kinds])[0]
        event = generate(state.world, kind)
        return state.deliver(event) if event is not None else 0

    async def _traffic(self) -> None:
        rate = self.settings.event_rate
        loop = asyncio.get_running_loop()
        started = loop.time()
        emitted = 0
        tick = max(0.01, min(0.25, 1.0 / rate))
        while True:
            await asyncio.sleep(tick)
            due = int((loop.time() - started) * rate) - emitted
            for _ in range(max(0, due)):
                self._emit_one(None)
            emitted += max(0, due)

    async def _sweeper(self) -> None:
        """Session expiry, drops of clients that ignored op 7, and server-sent op 1 requests.

        (The missed-heartbeat rule is the server layer's, per connection.)"""
        state, settings = self._state, self.settings
        interval = settings.heartbeat_interval_ms / 1000
        tick = max(0.02, min(0.5, interval / 4, settings.resume_window / 4 or 0.5))
        last_request = state.now()
        while True:
            await asyncio.sleep(tick)
            now = state.now()
            state.expire_sessions()
            for conn in list(state.connections.values()):
                if (
                    conn.reconnect_deadline is not None
                    and now >= conn.reconnect_deadline
                    and not conn.closing
                ):
                    conn.abort()
            every = settings.server_heartbeat_request_every
            if every and now - last_request >= every:
                last_request = now
                for conn in state.connections_for(None):
                    conn.send(control(Opcode.HEARTBEAT))
