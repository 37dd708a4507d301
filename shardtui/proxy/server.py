"""The proxy wired together: `ProxyBackend` serves Discord's gateway to bots from a running
`ShardManager` (the upstream), `Proxy` owns the HTTP port (gateway WebSocket + `RestProxy`).

Data flow::

    upstream shard -> ShardManager event handler -> Proxy.on_dispatch:
        cache.feed(dispatch)            # first: a snapshot taken after this call includes the event
        hubs[shard].publish(dispatch)   # then the fan-out to every client session of the shard
    client socket  <- pump task: link.wait_frames() -> socket.send_encoded(frame), only while the
                      socket's writer has room (the session's own bounded outbox holds the rest and
                      cuts a client that falls too far behind with a resumable 4000)
    client command -> that shard's ShardMessenger (its outgoing limiter): op 3 as set_presence,
                      op 8 with the hub's nonce, op 4 after making the session the voice owner

Nothing here imports the sandbox; the server layer owns the protocol (HELLO, op 11, 4001/4002/4005/
4008, heartbeats), this module owns who may attach to which shard and what they are told.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from shardtui.gateway.aio import wait_for
from shardtui.gateway.models import (
    ConnectionStage,
    Dispatch,
    ManagerEvent,
    Presence,
    ReshardSwitchEvent,
    ShardId,
)
from shardtui.gateway.protocol import CloseCode, Opcode
from shardtui.listen import bind_reason, probe_bind, split_listen
from shardtui.server import (
    Accepted,
    AuthResult,
    CommandReceived,
    GatewayServer,
    GatewaySocket,
    IdentifyRequest,
    InvalidSession,
    Rejected,
    ResumeRequest,
    ServerOptions,
)

from .cache import CacheOptions, GuildStateCache
from .hub import CacheSnapshots, HubStats, ShardHub, library_of
from .rest import RestProxy, json_response
from .session import ClientStats, Link, LinkEnd, SessionLimits, SessionState, SessionTable
from .sessions_file import save_sessions

if TYPE_CHECKING:
    from shardtui.gateway.manager import ShardManager
    from shardtui.gateway.messenger import ShardMessenger

log = logging.getLogger("shardtui.proxy")

#: Discord's own heartbeat interval; clients get the same from the proxy.
HEARTBEAT_INTERVAL_MS: Final = 41_250
#: Frames handed to a socket's writer before the pump waits for the client to read some.
PUMP_HIGH: Final = 256
PUMP_LOW: Final = 64
#: Clients are on loopback or a LAN: zlib's fastest level halves the cost per message and client.
PROXY_ZLIB_LEVEL: Final = 1
#: The close for a stopping proxy: every library resumes (or re-identifies) after it.
STOP_CODE: Final = int(CloseCode.UNKNOWN_ERROR)
#: Seconds a stop waits for HTTP requests still in flight.
STOP_GRACE: Final = 2.0
#: The close for the clients of a shard total that is gone (a live reshard). No library resumes or
#: re-identifies after it: the bot stops, and started again (AutoShardedClient, GatewayBot, discord.js's
#: "auto") it reads /gateway/bot and gets the new total. 4000 would only lead it to RESUME (op 9),
#: IDENTIFY with the old total and 4010.
RESHARD_CODE: Final = int(CloseCode.SHARDING_REQUIRED)


def reshard_reason(total: int) -> str:
    return f"Resharded to {total} shards: reconnect with the count from /gateway/bot."


#: Bind addresses that name no host a bot could be told to connect to.
WILDCARD_HOSTS: Final = frozenset({"", "0.0.0.0", "::"})
#: A Host header fit to be echoed in a URL: a name or IPv4 address, or a bracketed IPv6 one, and a port.
_HOST_HEADER: Final = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?"
)


class ProxyError(Exception):
    """The proxy cannot be served (port in use, address not local); the text says which."""


def _bind_error(host: str, port: int, exc: OSError) -> ProxyError:
    return ProxyError(f"cannot serve the proxy on {host}:{port}: {bind_reason(exc)}")


def check_bindable(listen: str) -> None:
    """`ProxyError` now when ``"HOST:PORT"`` cannot be bound (a front end says it before it takes the
    terminal; `Proxy.start` binds for real). The config has checked the shape already."""
    address = split_listen(listen)
    if address is None:
        raise ProxyError(f'proxy listen address must be "HOST:PORT", got {listen!r}')
    failure = probe_bind(*address)
    if failure is not None:
        raise _bind_error(*address, failure)


@dataclass(frozen=True, slots=True)
class ProxySettings:
    host: str = "127.0.0.1"
    #: 0: any free port (tests); see `Proxy.port` for the bound one.
    port: int = 0
    #: A token bot code may hold instead of the real one (IDENTIFY and REST); None: the bot token only.
    client_token: str | None = None
    limits: SessionLimits = field(default_factory=SessionLimits)
    cache: CacheOptions = field(default_factory=CacheOptions)
    heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS
    #: Seconds an IDENTIFY waits for its shard's first upstream READY before it gets op 9.
    ready_timeout: float = 30.0
    #: Seconds between sweeps of expired client sessions.
    sweep_interval: float = 5.0
    #: The ws:// or wss:// URL bots are told to connect to (``/gateway/bot``, READY's
    #: ``resume_gateway_url``): a TLS front end or a name for another host. None: the bound address,
    #: or for a wildcard bind (0.0.0.0, ::) the Host the bot's own request named.
    public_url: str | None = None
    #: Answer a client's op 1 after its upstream shard's measured latency (at most half the client's
    #: heartbeat interval), so the bot's own latency shows the shard's.
    hold_heartbeat_ack: bool = False


@dataclass(frozen=True, slots=True)
class ShardCounters:
    """One shard's proxy counters for ``/metrics`` (monotonic while the process runs)."""

    shard_id: int
    dispatches: int = 0
    cut_slow: int = 0
    invalidated: int = 0

    def plus(self, stats: HubStats) -> ShardCounters:
        """These counters with a hub's own added."""
        return ShardCounters(
            self.shard_id,
            self.dispatches + stats.events_total,
            self.cut_slow + stats.cut_slow_total,
            self.invalidated + stats.invalidated_total,
        )


@dataclass(frozen=True, slots=True)
class ProxyTotals:
    """The proxy's process-wide counters for ``/metrics``."""

    rest_forwarded: int
    violations: int
    sessions_expired: int
    sessions_evicted: int
    sessions_restored: int


@dataclass(frozen=True, slots=True)
class ClientAttached:
    shard_id: int
    session_id: str
    address: str
    library: str
    resumed: bool


@dataclass(frozen=True, slots=True)
class ClientDetached:
    shard_id: int
    session_id: str
    #: The socket's close code; None: the session ended under a socket that stays open (op 9 sent).
    code: int | None
    by_client: bool


ClientEvent = ClientAttached | ClientDetached


@dataclass(slots=True)
class _Conn:
    socket: GatewaySocket
    link: Link | None = None
    pump: asyncio.Task[None] | None = None


def _token_matches(sent: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(sent.encode(), expected.encode())


def _presence_of(d: dict[str, Any]) -> Presence | None:
    """A client's validated op 3 as the library's Presence (None: not expressible, forward it raw)."""
    activities = d.get("activities") or []
    try:
        return Presence.from_dict(
            {
                "status": d.get("status", "online"),
                "activity": activities[0] if activities else None,
                "afk": d.get("afk", False),
                "since": d.get("since"),
            }
        )
    except ValueError:
        return None


class ProxyBackend:
    """`shardtui.server.GatewayBackend` over a `Proxy`'s hubs, cache and upstream manager."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self._conns: dict[int, _Conn] = {}

    @property
    def heartbeat_interval_ms(self) -> int:
        return self.proxy.settings.heartbeat_interval_ms

    def before_upgrade(self, request: web.Request) -> web.StreamResponse | None:
        return None

    def opened(self, socket: GatewaySocket) -> None:
        self._conns[socket.id] = _Conn(socket)

    async def before_hello(self, socket: GatewaySocket) -> dict[str, Any]:
        return {}

    def sockets(self) -> list[GatewaySocket]:
        return [conn.socket for conn in self._conns.values()]

    # -- authentication ---------------------------------------------------------------------------

    def _token_ok(self, token: str) -> bool:
        proxy = self.proxy
        return _token_matches(token, proxy.token) or _token_matches(token, proxy.settings.client_token)

    async def identify(self, socket: GatewaySocket, request: IdentifyRequest) -> AuthResult:
        proxy = self.proxy
        if not self._token_ok(request.token):
            return Rejected(CloseCode.AUTHENTICATION_FAILED, "Authentication failed.")
        total = await proxy.wait_total()
        if total is None:
            return InvalidSession(False)
        if request.shard is None:
            if total > 1:
                return Rejected(
                    CloseCode.SHARDING_REQUIRED, f"Sharding required: this proxy runs {total} shards."
                )
            shard_id, shard_total = 0, 1
        else:
            shard_id, shard_total = request.shard
        if shard_total != total or not proxy.runs(shard_id):
            return Rejected(CloseCode.INVALID_SHARD, proxy.shard_reason(shard_id, shard_total))
        if not await proxy.wait_ready(shard_id) or socket.closing:
            return InvalidSession(False)
        hub = proxy.hub(shard_id)
        link = await hub.identify(
            proxy.snapshots,
            intents=request.intents,
            address=_peer(socket),
            library=library_of(request.raw),
            resume_gateway_url=proxy.ws_url_for(socket.request.headers.get("Host")),
        )
        self._start(socket, link, resumed=False)
        return Accepted()

    async def resume(self, socket: GatewaySocket, request: ResumeRequest) -> AuthResult:
        if not self._token_ok(request.token):
            return Rejected(CloseCode.AUTHENTICATION_FAILED, "Authentication failed.")
        outcome = self.proxy.table.resume(request.session_id, request.seq)
        if outcome.link is None:
            return InvalidSession(False)
        self._start(socket, outcome.link, resumed=True)
        return Accepted()

    def _start(self, socket: GatewaySocket, link: Link, *, resumed: bool) -> None:
        conn = self._conns[socket.id]
        conn.link = link
        session = link.session
        conn.pump = asyncio.create_task(
            self._pump(conn, link), name=f"proxy-shard-{session.shard_id}-conn-{socket.id}-pump"
        )
        self.proxy._emit(
            ClientAttached(session.shard_id, session.session_id, session.address, session.library, resumed)
        )

    async def _pump(self, conn: _Conn, link: Link) -> None:
        socket = conn.socket
        writer = socket.writer
        while frames := await link.wait_frames():
            for frame in frames:
                if not socket.send_encoded(frame):
                    return  # the socket is closing; the session stays resumable (detached in `closed`)
            if writer.queued_messages >= PUMP_HIGH:
                await _first_of(writer.wait_room(PUMP_LOW), link.wait_end())
        code = link.close_code
        if code is None:
            # op 9 was the last frame: the client may IDENTIFY again on this socket, as on Discord.
            if conn.link is link:
                conn.link = None
                session = link.session
                self.proxy._emit(ClientDetached(session.shard_id, session.session_id, None, False))
            socket.deauthenticate()
            return
        if link.end is LinkEnd.CUT_SLOW:
            log.info("proxy: cut a slow client of shard %s (%s)", link.session.shard_id, link.reason)
        # A handshake if the client answers, else a drop: a client that stopped reading gets cut.
        await socket.shutdown(code, link.reason)

    # -- commands ---------------------------------------------------------------------------------

    def heartbeat(self, socket: GatewaySocket, seq: int | None) -> None:
        conn = self._conns.get(socket.id)
        link = conn.link if conn is not None else None
        if link is not None:
            link.session.confirm(seq)
        if self.proxy.settings.hold_heartbeat_ack:
            # The server sends op 11 after this hook, ``ack_delay`` seconds late.
            socket.ack_delay = 0.0 if link is None else self.proxy.held_ack_delay(link.session.shard_id)

    async def command(self, socket: GatewaySocket, command: CommandReceived) -> Rejected | None:
        conn = self._conns.get(socket.id)
        link = conn.link if conn is not None else None
        if link is None:
            return Rejected(CloseCode.NOT_AUTHENTICATED, "Not authenticated.")
        session = link.session
        hub = session.hub
        messenger = self.proxy.messenger(session.shard_id)
        if messenger is None:
            log.debug("proxy: op %s for shard %s dropped: the shard is not running", command.op, hub.shard_id)
            return None
        op, d = command.op, command.d
        try:
            if op == Opcode.PRESENCE_UPDATE:
                presence = _presence_of(command.parsed) if isinstance(command.parsed, dict) else None
                if presence is not None:
                    messenger.set_presence(presence)
                else:
                    messenger.websocket_message({"op": int(op), "d": d})
            elif op == Opcode.REQUEST_GUILD_MEMBERS:
                messenger.websocket_message({"op": int(op), "d": hub.request_members(session, d)})
            elif op == Opcode.VOICE_STATE_UPDATE:
                hub.voice_state(session, d)
                messenger.websocket_message({"op": int(op), "d": d})
            else:
                messenger.websocket_message({"op": int(op), "d": d})
        except ValueError as exc:
            # Shapes are checked by the server layer; what the library still refuses is a bad command.
            return Rejected(CloseCode.DECODE_ERROR, f"Command refused: {exc}"[:120])
        return None

    def violation(self, socket: GatewaySocket, code: int, reason: str) -> None:
        self.proxy.violations += 1

    def closed(self, socket: GatewaySocket, code: int, *, by_client: bool) -> None:
        conn = self._conns.get(socket.id)
        if conn is None:
            return
        link, conn.link = conn.link, None
        if conn.pump is not None and not conn.pump.done() and conn.pump is not asyncio.current_task():
            conn.pump.cancel()
        if link is None:
            return
        session = link.session
        if link.end is None:
            link.detach()
            if by_client and code in (1000, 1001):
                # What Discord does: a clean close by the client ends its session.
                session.invalidate(f"client closed with {code}")
        self.proxy._emit(ClientDetached(session.shard_id, session.session_id, code, by_client))

    def finished(self, socket: GatewaySocket) -> None:
        self._conns.pop(socket.id, None)


async def _first_of(*aws: Any) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _peer(socket: GatewaySocket) -> str:
    peer = socket.request.remote
    return peer or ""


class Proxy:
    """The gateway proxy of one process: serve bots from ``manager``'s shards on one HTTP port.

    ``on_dispatch`` must be the manager's event handler (or called by it, before any other consumer
    that may be slow). ``start()`` binds and serves, ``stop()`` closes every client with a resumable
    code and releases the port. The read API (`clients`, `clients_per_shard`, `disconnect`, `stats`)
    is what the console and metrics use."""

    def __init__(
        self,
        manager: ShardManager,
        *,
        token: str,
        rest_upstream: str,
        settings: ProxySettings | None = None,
        cache: GuildStateCache | None = None,
    ) -> None:
        self.manager = manager
        self.token = token
        self.settings = settings = settings or ProxySettings()
        self.cache = cache if cache is not None else GuildStateCache(settings.cache)
        self.snapshots = CacheSnapshots(self.cache.shard)
        self.table = SessionTable(settings.limits)
        self.hubs: dict[int, ShardHub] = {}
        self.backend = ProxyBackend(self)
        self.server = GatewayServer(
            self.backend,
            ServerOptions(
                heartbeat_timeout=settings.heartbeat_interval_ms / 1000 * 1.5,
                task_prefix="proxy",
                zlib_level=PROXY_ZLIB_LEVEL,
                not_websocket=lambda _request: json_response(
                    {"message": "404: Not Found", "code": 0}, status=404
                ),
            ),
        )
        self.rest = RestProxy(
            upstream=rest_upstream,
            token=token,
            ws_url=self.ws_url_for,
            shard_count=lambda: self.served_total() or 1,
            health=self.health,
            client_token=settings.client_token,
        )
        self.violations = 0
        #: Client sessions taken over from a previous process (`restore_sessions`).
        self.restored_total = 0
        #: Per shard id, the counters of hubs a reshard replaced: the metrics stay monotonic.
        self._retired: dict[int, ShardCounters] = {}
        self._listeners: list[Callable[[ClientEvent], Any]] = []
        self._ready_waiters: dict[int, asyncio.Event] = {}
        self._total_known = asyncio.Event()
        #: The shard total and ids the cache's layout, the hubs and IDENTIFY checks are for (None
        #: before the first dispatch). A live reshard switches them before the manager's own total.
        self._layout_total: int | None = None
        self._layout_ids: frozenset[int] | None = None
        #: The total a live reshard left, while the manager still reports it (until its old set is closed).
        self._switched_from: int | None = None
        manager.subscribe(self._on_manager_event)
        self._runner: web.AppRunner | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._port: int | None = None

    def __repr__(self) -> str:
        return f"<Proxy {self.ws_url if self._port is not None else 'not serving'} hubs={sorted(self.hubs)}>"

    # -- addresses --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the proxy is not serving")
        return self._port

    @property
    def ws_url(self) -> str:
        """The WebSocket URL bots are told (``public_url`` when set; see :meth:`ws_url_for`)."""
        if self.settings.public_url is not None:
            return self.settings.public_url
        host = self.settings.host
        if host in WILDCARD_HOSTS:
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.port}"

    def ws_url_for(self, host_header: str | None) -> str:
        """The URL to tell the bot whose request named ``host_header``: behind a wildcard bind the
        address a bot reached is the one it can reach again (127.0.0.1 would be wrong on another host)."""
        if (
            self.settings.public_url is None
            and self.settings.host in WILDCARD_HOSTS
            and host_header is not None
            and _HOST_HEADER.fullmatch(host_header)
        ):
            return f"ws://{host_header}"
        return self.ws_url

    @property
    def http_url(self) -> str:
        return "http" + self.ws_url[2:]

    @property
    def rest_url(self) -> str:
        """The REST base bots use (``/api/v10`` on the proxy)."""
        return f"{self.http_url}/api/v10"

    # -- upstream ---------------------------------------------------------------------------------

    def on_dispatch(self, dispatch: Dispatch) -> None:
        """One upstream dispatch: the cache first, then the clients (the hub's ordering contract)."""
        total = self.manager.shard_total
        if total != self._layout_total:
            if total == self._switched_from:
                pass  # a live reshard switched the layout already; the manager catches up at adopt
            else:
                self._switched_from = None
                self._relayout(total, None)
        self.cache.feed(dispatch)
        sid = dispatch.shard_id.id
        hub = self.hubs.get(sid)
        if hub is None:
            hub = self.hub(sid)
        hub.publish(dispatch)
        if dispatch.name == "READY":
            self._total_known.set()
            waiter = self._ready_waiters.pop(sid, None)
            if waiter is not None:
                waiter.set()

    def _on_manager_event(self, event: ManagerEvent) -> None:
        if isinstance(event, ReshardSwitchEvent):
            self._switched_from = event.old_total
            self._relayout(event.new_total, range(event.new_total))

    def _relayout(self, total: int | None, ids: range | None) -> None:
        """The shard total changed (a live reshard's switch; or the first dispatch): every client of
        the old total is closed with 4011 (restarted, a bot reads /gateway/bot; one that reconnects with
        the old count gets 4010 naming the new total) and the cache moves each guild to the shard that
        owns it under the new total. ``ids``: the shards served from now on (None: the manager's)."""
        previous, self._layout_total = self._layout_total, total
        served = (sid.id for sid in self.manager.runners) if ids is None else ids
        self._layout_ids = frozenset(served)
        if previous is None:
            # Hubs restored from a previous process under another total: their sessions cannot go on.
            for sid in [sid for sid, hub in self.hubs.items() if hub.shard_total != total]:
                self.hub(sid)
        if previous is None or total is None or previous == total:
            return
        closed = sum(hub.close_all(RESHARD_CODE, reshard_reason(total)) for hub in self.hubs.values())
        for hub in self.hubs.values():
            self._retire(hub)
        self.hubs.clear()
        self.cache.rebucket(total, sorted(self._layout_ids))
        log.info(
            "proxy: resharded from %s to %s shards; %d client session(s) of the old total closed with %d",
            previous, total, closed, RESHARD_CODE,
        )  # fmt: skip

    def served_total(self) -> int | None:
        """The shard total bots must identify with (a live reshard's new one from its switch on)."""
        return self._layout_total if self._layout_total is not None else self.manager.shard_total

    def hub(self, shard_id: int) -> ShardHub:
        """The hub of ``shard_id`` (created on first use, with the served total)."""
        total = self.served_total() or 1
        hub = self.hubs.get(shard_id)
        if hub is not None and hub.shard_total == total:
            return hub
        if hub is not None:
            hub.close_all(RESHARD_CODE, reshard_reason(total))
            self._retire(hub)
        hub = self.hubs[shard_id] = ShardHub(
            shard_id,
            total,
            self.table,
            resume_gateway_url=self.ws_url if self._port is not None else "",
        )
        return hub

    def _served_ids(self) -> frozenset[int]:
        if self._layout_ids is not None:
            return self._layout_ids
        return frozenset(sid.id for sid in self.manager.runners)

    def runs(self, shard_id: int) -> bool:
        return shard_id in self._served_ids()

    def shard_reason(self, shard_id: int, shard_total: int) -> str:
        total = self.served_total()
        ids = sorted(self._served_ids())
        span = f"{ids[0]}..{ids[-1]}" if ids else "none"
        reason = f"Invalid shard [{shard_id}, {shard_total}]: expected total {total}, shards here {span}."
        return reason[:120]

    async def wait_total(self) -> int | None:
        """The served shard total, waiting (bounded) while it is not known yet."""
        total = self.served_total()
        if total is not None:
            return total
        with contextlib.suppress(TimeoutError):
            await wait_for(self._total_known.wait(), self.settings.ready_timeout)
        return self.served_total()

    async def wait_ready(self, shard_id: int) -> bool:
        """True once the cache of ``shard_id`` has seen an upstream READY (now or from a saved cache)."""
        cache = self.cache.shard(shard_id)
        if cache.ready_seen:
            return True
        waiter = self._ready_waiters.setdefault(shard_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await wait_for(waiter.wait(), self.settings.ready_timeout)
        return cache.ready_seen

    def held_ack_delay(self, shard_id: int) -> float:
        """How long a client's op 11 waits with ``hold_heartbeat_ack``: the upstream shard's last
        measured latency, capped at half the client's interval so no library thinks it a zombie."""
        info = self.manager.runners.get(ShardId(shard_id))
        latency = info.latency if info is not None else None
        if latency is None or latency <= 0:
            return 0.0
        return min(latency, self.settings.heartbeat_interval_ms / 2000)

    def messenger(self, shard_id: int) -> ShardMessenger | None:
        """The shard's messenger (its outgoing limiter); None while the shard has no runner."""
        return self.manager.messenger(ShardId(shard_id))

    # -- serving ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and serve; `ProxyError` (nothing left running) when the address cannot be served."""
        if self._runner is not None:
            return
        app = web.Application()
        self.rest.add_routes(app)
        app.router.add_get("/{tail:.*}", self.server.handle)
        # A stop waits this long at most for requests still running (a REST call streaming through).
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=STOP_GRACE)
        await runner.setup()
        host, port = self.settings.host, self.settings.port
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise _bind_error(host, port, exc) from None
        self._runner = runner
        self._port = runner.addresses[0][1] if runner.addresses else port
        for hub in self.hubs.values():
            hub.resume_gateway_url = self.ws_url
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="proxy-sweep")
        log.info("proxy serving bots at %s (REST %s)", self.ws_url, self.rest_url)

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval)
            self.table.sweep()

    async def stop(self, *, keep_sessions: bool = False) -> None:
        """Close every client with a resumable code and release the port. Idempotent.

        ``keep_sessions``: the sessions stay, detached, and go on numbering what the upstream shards
        still deliver until they stop, for :meth:`save_sessions` (a restart the clients RESUME across)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        runner = self._runner
        if runner is not None:
            # Stop listening before the clients are closed: a bot resumes at once on a 4000, and one
            # that reached this stopping process would be attached to it again (and held until the
            # stop's grace ran out) instead of finding the port closed and retrying the next process.
            for site in list(runner.sites):
                await site.stop()
        for hub in self.hubs.values():
            if keep_sessions:
                hub.release_all(STOP_CODE, "proxy restarting: resume")
            else:
                hub.close_all(STOP_CODE, "proxy stopping")
        sockets = self.backend.sockets()
        if sockets:
            await asyncio.gather(
                *(s.shutdown(STOP_CODE, "proxy stopping") for s in sockets), return_exceptions=True
            )
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self.rest.close()

    def save_sessions(self, path: str) -> int:
        """Write the resumable client sessions for the next process (after the upstream shards stopped,
        so they hold every event up to the saved upstream seq). OSError when it cannot be written."""
        return save_sessions(self.hubs.values(), path)

    def restore_sessions(self, shards: list[dict[str, Any]]) -> int:
        """Take over the client sessions a previous process saved (`take_sessions`), before the first
        upstream dispatch: each shard's hub is made for the saved total (replaced, its sessions dropped,
        if the first dispatch comes under another). Returns how many sessions were restored."""
        restored = 0
        for form in shards:
            sid, total = form.get("shard_id"), form.get("shard_total")
            if type(sid) is not int or type(total) is not int or not 0 <= sid < total:
                continue
            known = self.manager.shard_total
            if (known is not None and known != total) or sid in self.hubs:
                continue
            hub = self.hubs[sid] = ShardHub(
                sid, total, self.table, resume_gateway_url=self.ws_url if self._port is not None else ""
            )
            restored += hub.restore(form)
        self.restored_total += restored
        if restored:
            log.info("proxy: restored %d client session(s) of the previous run; they may resume", restored)
        return restored

    # -- read API (console, metrics, headless) ----------------------------------------------------

    def subscribe(self, listener: Callable[[ClientEvent], Any]) -> Callable[[], None]:
        """Client attach/detach events; returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, event: ClientEvent) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("proxy client listener failed")

    def clients(self, shard_id: int | None = None) -> list[ClientStats]:
        """Every client session (live, or detached and still resumable), of one shard or all."""
        hubs = self.hubs.values() if shard_id is None else [h for h in (self.hubs.get(shard_id),) if h]
        return [stats for hub in hubs for stats in hub.clients()]

    def clients_per_shard(self) -> dict[int, int]:
        """Clients with a socket attached, per shard this process runs (0 included)."""
        counts = {sid.id: 0 for sid in self.manager.runners}
        for sid, hub in self.hubs.items():
            counts[sid] = hub.stats().live
        return counts

    def disconnect(self, session_id: str) -> bool:
        """Close a client's socket with a resumable 4000 and end its session (the console's kick)."""
        session = self.table.get(session_id)
        if session is None or session.state is SessionState.CLOSED:
            return False
        session.close(STOP_CODE, "disconnected by the operator")
        return True

    def stats(self) -> dict[str, Any]:
        """Counts for the headless report."""
        hub_stats = [hub.stats() for hub in self.hubs.values()]
        return {
            "url": self.ws_url if self._port is not None else None,
            "clients": sum(s.live for s in hub_stats),
            "sessions": len(self.table),
            "cut_slow": sum(s.cut_slow_total for s in hub_stats),
            "invalidated": sum(s.invalidated_total for s in hub_stats),
            "violations": self.violations,
            "rest_forwarded": self.rest.forwarded,
        }

    def _retire(self, hub: ShardHub) -> None:
        sid = hub.shard_id
        self._retired[sid] = self._retired.get(sid, ShardCounters(sid)).plus(hub.stats())

    def shard_counters(self) -> list[ShardCounters]:
        """Per shard id ever served: dispatches fanned out, clients cut for being slow, sessions
        invalidated — since this process started, across reshards (for ``/metrics``)."""
        out = dict(self._retired)
        for sid, hub in self.hubs.items():
            out[sid] = out.get(sid, ShardCounters(sid)).plus(hub.stats())
        return [out[sid] for sid in sorted(out)]

    def sessions_per_shard(self) -> dict[int, int]:
        """Client sessions per shard: attached, detached and still resumable, or awaiting READY."""
        return {sid: len(hub.sessions()) for sid, hub in self.hubs.items()}

    def totals(self) -> ProxyTotals:
        table = self.table
        return ProxyTotals(
            rest_forwarded=self.rest.forwarded,
            violations=self.violations,
            sessions_expired=table.expired_total,
            sessions_evicted=table.evicted_total,
            sessions_restored=self.restored_total,
        )

    def health(self) -> tuple[bool, dict[str, Any]]:
        """``GET /health``: ok only when every shard of this process is connected upstream."""
        runners = self.manager.runners
        counts = self.clients_per_shard()
        shards = {
            str(sid.id): {
                "stage": info.stage.value,
                "connected": info.stage is ConnectionStage.CONNECTED,
                "clients": counts.get(sid.id, 0),
            }
            for sid, info in sorted(runners.items())
        }
        ok = bool(runners) and all(s["connected"] for s in shards.values())
        return ok, {"shards": shards}
