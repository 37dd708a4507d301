"""From a ``Config`` to a running ShardManager (and the embedded sandbox when there is one).

Both front ends — the Textual console and headless mode — use this, so they connect the same way:

    async with Runtime(config) as runtime:      # sandbox up, manager built, no shard started
        runtime.manager.subscribe(on_event)      # subscribe before starting so no event is missed
        await runtime.start()                    # manager.initialize()
"""

from __future__ import annotations

import importlib
import logging
import ssl
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from shardtui.config import DISCORD_REST_URL, Config, ConfigError, where_of
from shardtui.credentials import resolve_token
from shardtui.gateway.aio import run_to_end, wait_for
from shardtui.logsafe import register_secret

if TYPE_CHECKING:
    from shardtui.fleet import FleetNode
    from shardtui.gateway.manager import ShardManager, ShardManagerOptions
    from shardtui.metrics import MetricsServer
    from shardtui.proxy.server import Proxy
    from shardtui.sandbox import Sandbox

log = logging.getLogger(__name__)

#: Upper bound on a clean shutdown of every shard before the runtime stops waiting.
SHUTDOWN_TIMEOUT = 15.0


def load_event_handler(config: Config) -> Callable[..., Any] | None:
    """Import ``bot.event_handler`` ("module:callable"); a ConfigError says why it cannot be used."""
    spec = config.bot.event_handler
    if spec is None:
        return None
    where = where_of(config.provenance.get("bot.event_handler", config.source))
    module_name, _, attr_path = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            where, "bot.event_handler", 'an importable "module:callable"', f"{spec} ({exc})"
        ) from None
    except Exception as exc:  # the user's module crashed on import: still a one-line config error
        raise ConfigError(
            where,
            "bot.event_handler",
            'an importable "module:callable"',
            f"{spec} (importing {module_name} raised {type(exc).__name__}: {exc})",
        ) from None
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(
                where, "bot.event_handler", f"{module_name} to define {attr_path}", f"{spec} (no {part})"
            ) from None
    if not callable(target):
        raise ConfigError(where, "bot.event_handler", "a callable", f"{spec} is a {type(target).__name__}")
    return target


def tls_context(config: Config) -> ssl.SSLContext | None:
    """The TLS context for REST and gateway when ``gateway.ca_file`` is set: the system's CAs plus
    the file's (a private CA, a TLS-inspecting proxy, a sandbox behind TLS). ConfigError if unusable."""
    path = config.gateway.ca_file
    if path is None:
        return None
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError, ValueError) as exc:
        # An SSLError is also an OSError: its strerror is the useful part ("no certificate found"...).
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        where = where_of(config.provenance.get("gateway.ca_file", config.source))
        raise ConfigError(where, "gateway.ca_file", message=f"cannot use CA file {path}: {reason}") from None
    return context


def preflight(config: Config) -> None:
    """Raise ``ConfigError`` now for what ``Runtime.open()`` would refuse later (handler, token, CA
    file), so the CLI can say it in one line before a UI takes over the terminal."""
    load_event_handler(config)
    tls_context(config)
    if not config.embeds_sandbox():
        resolve_token(config)
    if config.metrics.listen is not None:
        from shardtui.metrics import MetricsError, check_bindable

        try:
            check_bindable(config.metrics.listen)
        except MetricsError as exc:
            where = where_of(config.provenance.get("metrics.listen", config.source))
            raise ConfigError(where, "metrics.listen", message=str(exc)) from None
    if config.proxy.listen is not None:
        from shardtui.proxy.server import ProxyError, check_bindable

        try:
            check_bindable(config.proxy.listen)
        except ProxyError as exc:
            where = where_of(config.provenance.get("proxy.listen", config.source))
            raise ConfigError(where, "proxy.listen", message=str(exc)) from None


def chain_handlers(first: Callable[[Any], Any], second: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """One event handler calling ``first`` (synchronous, e.g. the proxy's feed) then ``second`` (the
    user's, whose result — maybe awaitable — is returned). Without ``second``: ``first`` itself."""
    if second is None:
        return first

    def both(dispatch: Any) -> Any:
        first(dispatch)
        return second(dispatch)

    return both


def proxy_cache_path(state_file: str) -> str:
    """Where the proxy's guild cache is saved next to ``[gateway] state_file``."""
    return f"{state_file}.cache.json"


def proxy_sessions_path(state_file: str) -> str:
    """Where the proxy's client sessions are saved next to ``[gateway] state_file``."""
    return f"{state_file}.clients.json"


class Runtime:
    """Owns the embedded sandbox (if any) and the ShardManager for one run."""

    def __init__(self, config: Config, *, sandbox_host: str = "127.0.0.1", sandbox_port: int = 0) -> None:
        self.config = config
        self.mode: str = config.gateway.mode
        self.sandbox: Sandbox | None = None
        self._manager: ShardManager | None = None
        #: This process's membership in a ``[cluster]`` fleet (Redis), or None for one process alone.
        self.fleet: FleetNode | None = None
        #: Set once this process published itself, so closing removes only what it wrote (a
        #: refused start must not delete the live process that holds the same name).
        self._fleet_joined = False
        #: The ``/metrics`` endpoint when ``[metrics] listen`` is set.
        self.metrics: MetricsServer | None = None
        #: The gateway proxy bots connect to when ``[proxy] listen`` is set (serving from `open`).
        self.proxy: Proxy | None = None
        self._sandbox_host = sandbox_host
        self._sandbox_port = sandbox_port
        self._opened = False
        self._started = False
        self._closed = False

    @property
    def manager(self) -> ShardManager:
        if self._manager is None:
            raise RuntimeError("Runtime.open() has not been awaited yet")
        return self._manager

    @property
    def rest_url(self) -> str:
        if self.sandbox is not None:
            return str(self.sandbox.rest_url)
        return self.config.gateway.rest_url or DISCORD_REST_URL

    async def __aenter__(self) -> Runtime:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Start the embedded sandbox when the config asks for one and build the manager (no shard yet)."""
        if self._opened:
            return
        if self._closed:
            raise RuntimeError("a closed Runtime cannot be reopened")
        self._opened = True
        handler = load_event_handler(self.config)
        try:
            if self.config.embeds_sandbox():
                from shardtui.sandbox import Sandbox, SandboxSettings

                self.sandbox = Sandbox(SandboxSettings.from_config(self.config.sandbox))
                await self.sandbox.start(host=self._sandbox_host, port=self._sandbox_port)
                log.info("embedded sandbox listening at %s", self.sandbox.rest_url)
            token = resolve_token(self.config, self.sandbox)
            register_secret(token)
            self._manager = self._build_manager(self._options(token, handler))
            await self._start_metrics()
            await self._start_proxy(token, handler)
        except BaseException:
            await self.close()
            raise

    async def _start_metrics(self) -> None:
        """Serve ``/metrics`` before any shard starts, so a port in use stops the run up front."""
        listen = self.config.metrics.listen
        if listen is None:
            return
        from shardtui.metrics import MetricsError, MetricsServer

        server = MetricsServer(listen, lambda: self._manager)
        try:
            await server.start()
        except MetricsError as exc:
            where = where_of(self.config.provenance.get("metrics.listen", self.config.source))
            raise ConfigError(where, "metrics.listen", message=str(exc)) from None
        self.metrics = server

    async def _start_proxy(self, token: str, handler: Callable[..., Any] | None) -> None:
        """Serve the proxy before any shard starts (a port in use stops the run up front) and make it
        the first consumer of every dispatch: the cache and the clients, then the user's handler."""
        cfg = self.config.proxy
        if cfg.listen is None:
            return
        from shardtui.config.proxy import proxy_client_token
        from shardtui.metrics import ProxyClientsCollector, parse_listen
        from shardtui.proxy.cache import CacheOptions, GuildStateCache
        from shardtui.proxy.server import Proxy, ProxyError, ProxySettings
        from shardtui.proxy.session import SessionLimits
        from shardtui.proxy.sessions_file import take_sessions

        host, port = parse_listen(cfg.listen)
        cache_options = CacheOptions(members=cfg.cache_members, presences=cfg.cache_presences)
        state_file = self.config.gateway.state_file
        cache = (
            GuildStateCache.load_or_empty(proxy_cache_path(state_file), cache_options)
            if state_file is not None
            else GuildStateCache(cache_options)
        )
        client_token = proxy_client_token(self.config)
        if client_token is not None:
            register_secret(client_token)
        settings = ProxySettings(
            host=host,
            port=port,
            client_token=client_token,
            public_url=cfg.public_url,
            hold_heartbeat_ack=cfg.hold_heartbeat_ack,
            limits=SessionLimits(
                outbox_max_events=cfg.max_backlog_events,
                outbox_max_bytes=cfg.max_backlog_bytes,
                replay_max_events=cfg.max_backlog_events,
                replay_max_bytes=cfg.max_backlog_bytes,
                resume_window=cfg.resume_window,
                max_sessions=cfg.max_sessions,
            ),
            cache=cache_options,
        )
        proxy = Proxy(self.manager, token=token, rest_upstream=self.rest_url, settings=settings, cache=cache)
        try:
            await proxy.start()
        except ProxyError as exc:
            where = where_of(self.config.provenance.get("proxy.listen", self.config.source))
            raise ConfigError(where, "proxy.listen", message=str(exc)) from None
        self.proxy = proxy
        if state_file is not None:
            # Before the first upstream dispatch: what the upstream resume replays is numbered for them.
            proxy.restore_sessions(take_sessions(proxy_sessions_path(state_file), max_age=cfg.resume_window))
        self.manager.options.event_handler = chain_handlers(proxy.on_dispatch, handler)
        if self.metrics is not None:
            self.metrics.add_collector(ProxyClientsCollector(proxy))
        if self.fleet is not None:
            self.fleet.publish_clients(proxy.clients_per_shard)

    def _options(self, token: str, handler: Callable[..., Any] | None) -> ShardManagerOptions:
        from shardtui.gateway.health import HealthPolicy
        from shardtui.gateway.manager import ShardManagerOptions

        gw = self.config.gateway
        if gw.identify_window is not None:
            window = gw.identify_window
        elif self.sandbox is not None:
            window = self.config.sandbox.identify_window
        else:
            window = 5.0
        extra: dict[str, Any] = {}
        if gw.state_max_age is not None:
            extra["state_max_age"] = gw.state_max_age
        health = self.config.health
        if health.wedged_after is not None:
            extra["health_policy"] = HealthPolicy(min_wedged_seconds=health.wedged_after)
        return ShardManagerOptions(
            token=token,
            intents=self.config.intents(),
            rest_url=self.rest_url,
            shard_total=gw.shards,
            shard_range=gw.shard_range,
            compression=gw.compression,
            large_threshold=gw.large_threshold,
            presence=self.config.initial_presence(),
            event_handler=handler,
            identify_window=window,
            state_file=gw.state_file,
            ssl_context=tls_context(self.config),
            restart_wedged=health.restart_wedged,
            outage_grace=health.outage_after,
            **extra,
        )

    def _build_manager(self, options: ShardManagerOptions) -> ShardManager:
        if self.config.cluster is not None:
            from shardtui.fleet import FleetNode

            self.fleet = FleetNode(self.config.cluster)
            return self.fleet.build_manager(options)
        from shardtui.gateway.manager import ShardManager

        return ShardManager(options)

    async def start(self) -> None:
        """Open if needed, then queue every shard in range (``manager.initialize()``). Idempotent."""
        await self.open()
        if self._started:
            return
        self._started = True
        if self.fleet is not None:
            await self._join_fleet(self.fleet)
        await self.manager.initialize()

    async def _join_fleet(self, fleet: FleetNode) -> None:
        """Join the fleet before any shard starts; the ways it can refuse are ``ConfigError``s
        naming the ``[cluster]`` key to change, so both front ends say them in one line."""
        from redis.exceptions import RedisError

        from shardtui.fleet import NameInUseError, ShardRangeConflictError
        from shardtui.fleet.keys import UNREACHABLE_ERRORS, describe_redis_error

        where = where_of(self.config.provenance.get("cluster", self.config.source))
        try:
            # Redis may go away later (shards keep running, identifies wait), but a process that
            # cannot reach it at start could not even tell whether its name or shards are taken.
            await fleet.redis.ping()
        except UNREACHABLE_ERRORS as exc:
            raise ConfigError(
                where,
                "cluster.redis_url",
                message=f"{fleet.redis_description} unreachable ({describe_redis_error(exc)}): "
                "start Redis or point redis_url at it",
            ) from None
        except RedisError as exc:  # e.g. a wrong password: reachable, but it will not serve us
            raise ConfigError(
                where,
                "cluster.redis_url",
                message=f"{fleet.redis_description} refused the connection ({describe_redis_error(exc)})",
            ) from None
        try:
            await fleet.start()
        except NameInUseError as exc:
            raise ConfigError(where, "cluster.name", message=str(exc)) from None
        except ShardRangeConflictError as exc:
            raise ConfigError(where, "cluster.shard_range", message=str(exc)) from None
        self._fleet_joined = True

    def _save_proxy_cache(self) -> None:
        """After a clean stop that kept the upstream sessions: the cache the next start serves from."""
        state_file = self.config.gateway.state_file
        if self.proxy is None or state_file is None or not self._started:
            return
        path = proxy_cache_path(state_file)
        try:
            self.proxy.cache.save(path)
        except OSError as exc:
            log.error("could not save the proxy cache to %s: %s", path, exc.strerror or exc)
            return
        log.info("saved the proxy cache to %s", path)
        path = proxy_sessions_path(state_file)
        try:
            count = self.proxy.save_sessions(path)
        except OSError as exc:
            log.error("could not save the proxy's client sessions to %s: %s", path, exc.strerror or exc)
            return
        log.info("saved %d proxy client session(s) to %s", count, path)

    async def close(self) -> None:
        """Shut every shard down (bounded time), then stop the sandbox. Idempotent; never raises but
        a cancellation of the caller, which waits until the shutdown is done."""
        if self._closed:
            return
        self._closed = True
        await run_to_end(self._close())

    async def _close(self) -> None:
        if self.proxy is not None:
            # Clients first (a resumable close each), so none is told anything after its shard went.
            try:
                # With a state file the sessions stay (detached, still numbering what the shards deliver
                # until they stop) and are saved with the cache: the clients RESUME across the restart.
                keep = self.config.gateway.state_file is not None and self._started
                await self.proxy.stop(keep_sessions=keep)
            except Exception:
                log.exception("error while stopping the proxy")
        if self._manager is not None:
            try:
                await wait_for(self._manager.shutdown_all(), SHUTDOWN_TIMEOUT)
            except TimeoutError:
                log.warning("shards did not all shut down within %.0f s", SHUTDOWN_TIMEOUT)
            except Exception:
                log.exception("error while shutting the shards down")
            self._save_proxy_cache()
        if self.fleet is not None:
            try:
                # After the shards: their last stage changes are published, then the process
                # leaves the fleet view (a clean stop is not a loss).
                await self.fleet.close(forget=self._fleet_joined)
            except Exception:
                log.exception("error while leaving the fleet")
        if self.metrics is not None:
            await self.metrics.stop()
        if self.sandbox is not None:
            try:
                await self.sandbox.stop()
            except Exception:
                log.exception("error while stopping the embedded sandbox")
