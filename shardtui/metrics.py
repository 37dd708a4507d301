"""Prometheus metrics (``[metrics] listen = "HOST:PORT"``): text format on ``/metrics``.

Nothing is counted per event: ``ShardCollector`` reads ``ShardManager.runners`` when Prometheus
scrapes, and ``MetricsServer`` serves it from the event loop with aiohttp (no thread), through a
private ``CollectorRegistry`` so nothing of the process-global default registry leaks in.

Counters stay monotonic across restarts and reshards: a runner's counters live on its
``ShardRunnerInfo``, which a reshard replaces (and a counter could start over), so the collector
keeps a running total per shard and adds what the previous info had counted when it sees a new one.

Extra collectors join with ``MetricsServer.add_collector``: ``ProxyClientsCollector`` serves the
proxy's (``shardtui_proxy_*``: clients and sessions per shard, dispatches fanned out, slow clients cut,
sessions invalidated, ended and restored, REST calls forwarded, client protocol violations), read from
anything that answers ``ProxyClientSource``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shardtui.gateway.manager import ShardManager
from shardtui.gateway.models import ConnectionStage, ShardHealth, ShardId, ShardRunnerInfo
from shardtui.listen import bind_reason, probe_bind, split_listen

log = logging.getLogger(__name__)

_HEALTH_STATES = tuple(h.value for h in ShardHealth)


class MetricsError(Exception):
    """The metrics endpoint cannot be served (bad address, port in use); the text says which."""


def parse_listen(listen: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (IPv6 as ``"[::1]:9100"``) -> (host, port)."""
    address = split_listen(listen)
    if address is None:
        raise MetricsError(f'metrics listen address must be "HOST:PORT", got {listen!r}')
    return address


def _bind_error(host: str, port: int, exc: OSError) -> MetricsError:
    return MetricsError(f"cannot serve metrics on {host}:{port}: {bind_reason(exc)}")


def check_bindable(listen: str) -> None:
    """Raise ``MetricsError`` now when ``listen`` cannot be bound, so a front end can say so in one
    line before it takes the terminal (``MetricsServer.start`` checks again when it binds)."""
    host, port = parse_listen(listen)
    failure = probe_bind(host, port)
    if failure is not None:
        raise _bind_error(host, port, failure)


class _RunningTotal:
    """One monotonic counter per shard out of per-info counters that can start over."""

    __slots__ = ("_base", "_last")

    def __init__(self) -> None:
        self._base: dict[ShardId, float] = {}
        #: shard -> (the info last read, its value then)
        self._last: dict[ShardId, tuple[ShardRunnerInfo, float]] = {}

    def total(self, info: ShardRunnerInfo, value: float) -> float:
        sid = info.shard_id
        previous = self._last.get(sid)
        base = self._base.get(sid, 0.0)
        if previous is not None and (previous[0] is not info or value < previous[1]):
            # A new info (reshard) or a counter that went back: what was counted stays counted.
            base += previous[1]
            self._base[sid] = base
        self._last[sid] = (info, value)
        return base + value


class ShardCollector(Collector):
    """Per-shard and process metrics of one ``ShardManager``, read at scrape time."""

    def __init__(self, manager: Callable[[], ShardManager | None]) -> None:
        self._manager = manager
        self._events = _RunningTotal()
        self._identifies = _RunningTotal()
        self._resumes = _RunningTotal()

    def collect(self) -> Iterator[Metric]:
        manager = self._manager()
        infos = [] if manager is None else sorted(manager.runners.values(), key=lambda i: i.shard_id)
        connected = GaugeMetricFamily(
            "shardtui_shard_connected",
            "1 while the shard is connected to the gateway, else 0.",
            labels=["shard"],
        )
        latency = GaugeMetricFamily(
            "shardtui_shard_latency_seconds",
            "Last heartbeat round trip of the shard's current connection; NaN until measured.",
            labels=["shard"],
        )
        events = CounterMetricFamily(
            "shardtui_shard_dispatch_events_total",
            "Gateway dispatches received by the shard (kept across restarts and reshards).",
            labels=["shard"],
        )
        health = GaugeMetricFamily(
            "shardtui_shard_health",
            "1 for the shard's current health state (ok, quiet, wedged, failed, down), 0 for the others.",
            labels=["shard", "state"],
        )
        wedged_restarts = CounterMetricFamily(
            "shardtui_shard_wedged_restarts_total",
            "Restarts the wedged-shard healer made of this shard.",
            labels=["shard"],
        )
        identifies = resumes = 0.0
        for info in infos:
            shard = str(info.shard_id.id)
            connected.add_metric([shard], 1.0 if info.stage is ConnectionStage.CONNECTED else 0.0)
            latency.add_metric([shard], math.nan if info.latency is None else info.latency)
            events.add_metric([shard], self._events.total(info, info.events_received))
            current = info.health.value
            for state in _HEALTH_STATES:
                health.add_metric([shard, state], 1.0 if state == current else 0.0)
            wedged_restarts.add_metric([shard], info.wedged_restarts)
            identifies += self._identifies.total(info, info.identifies)
            resumes += self._resumes.total(info, info.resumes)
        yield from (connected, latency, events, health, wedged_restarts)
        yield CounterMetricFamily(
            "shardtui_identifies_total", "IDENTIFYs sent by this process's shards.", value=identifies
        )
        yield CounterMetricFamily(
            "shardtui_resumes_total", "Sessions this process's shards resumed.", value=resumes
        )
        budget = None if manager is None else manager.identify_budget()
        yield GaugeMetricFamily(
            "shardtui_session_start_remaining",
            "Session starts (identifies) left before Discord's daily reset; NaN when unknown.",
            value=math.nan if budget is None else float(budget),
        )
        if manager is not None:
            open_alerts = GaugeMetricFamily(
                "shardtui_alerts_open", "Open incidents by kind (see docs/metrics.md).", labels=["kind"]
            )
            counts: dict[str, int] = {}
            for kind, _shard, _process in manager.alerts.open:
                counts[kind.value] = counts.get(kind.value, 0) + 1
            for kind_name, count in sorted(counts.items()):
                open_alerts.add_metric([kind_name], count)
            yield open_alerts


class ProxyShardCounts(Protocol):
    """One shard's counters as the proxy keeps them (``shardtui.proxy.server.ShardCounters``)."""

    @property
    def shard_id(self) -> int: ...
    @property
    def dispatches(self) -> int: ...
    @property
    def cut_slow(self) -> int: ...
    @property
    def invalidated(self) -> int: ...


class ProxyProcessTotals(Protocol):
    """The proxy's process-wide counters (``shardtui.proxy.server.ProxyTotals``)."""

    @property
    def rest_forwarded(self) -> int: ...
    @property
    def violations(self) -> int: ...
    @property
    def sessions_expired(self) -> int: ...
    @property
    def sessions_evicted(self) -> int: ...
    @property
    def sessions_restored(self) -> int: ...


class ProxyClientSource(Protocol):
    """What ``/metrics`` reads of the proxy when Prometheus scrapes."""

    def clients_per_shard(self) -> Mapping[ShardId, int] | Mapping[int, int]: ...

    def sessions_per_shard(self) -> Mapping[int, int]: ...

    def shard_counters(self) -> Iterable[ProxyShardCounts]: ...

    def totals(self) -> ProxyProcessTotals: ...


class ProxyClientsCollector(Collector):
    """The proxy's metrics from a ``ProxyClientSource``; only registered with a proxy:
    ``shardtui_proxy_clients{shard}`` (sockets attached), ``shardtui_proxy_client_sessions{shard}``
    (resumable sessions too), per shard the dispatches fanned out, slow clients cut and sessions
    invalidated, and process-wide REST calls forwarded, client protocol violations and sessions
    ended (expired, evicted) or restored after a restart."""

    def __init__(self, source: ProxyClientSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        source = self._source
        clients = GaugeMetricFamily(
            "shardtui_proxy_clients", "Bot clients connected through the proxy, per shard.", labels=["shard"]
        )
        for sid, count in sorted(source.clients_per_shard().items()):
            clients.add_metric([str(int(sid))], float(count))
        yield clients
        sessions = GaugeMetricFamily(
            "shardtui_proxy_client_sessions",
            "Client sessions per shard: attached, or detached and still resumable.",
            labels=["shard"],
        )
        for sid, count in sorted(source.sessions_per_shard().items()):
            sessions.add_metric([str(sid)], float(count))
        yield sessions
        dispatches = CounterMetricFamily(
            "shardtui_proxy_dispatches",
            "Upstream dispatches fanned out to clients, per shard.",
            labels=["shard"],
        )
        cut = CounterMetricFamily(
            "shardtui_proxy_clients_cut_slow",
            "Clients cut with a resumable close because their backlog passed its bound, per shard.",
            labels=["shard"],
        )
        invalidated = CounterMetricFamily(
            "shardtui_proxy_sessions_invalidated",
            "Client sessions ended with op 9 (the upstream session was replaced), per shard.",
            labels=["shard"],
        )
        for counts in source.shard_counters():
            label = [str(counts.shard_id)]
            dispatches.add_metric(label, float(counts.dispatches))
            cut.add_metric(label, float(counts.cut_slow))
            invalidated.add_metric(label, float(counts.invalidated))
        yield from (dispatches, cut, invalidated)
        totals = source.totals()
        yield CounterMetricFamily(
            "shardtui_proxy_rest_requests",
            "REST requests passed through to the upstream API.",
            value=float(totals.rest_forwarded),
        )
        yield CounterMetricFamily(
            "shardtui_proxy_client_violations",
            "Client connections closed for breaking the gateway protocol (4001, 4002, 4005, 4008, ...).",
            value=float(totals.violations),
        )
        ended = CounterMetricFamily(
            "shardtui_proxy_sessions_ended",
            "Detached client sessions dropped: resume window passed (expired), table full (evicted).",
            labels=["reason"],
        )
        ended.add_metric(["expired"], float(totals.sessions_expired))
        ended.add_metric(["evicted"], float(totals.sessions_evicted))
        yield ended
        yield CounterMetricFamily(
            "shardtui_proxy_sessions_restored",
            "Client sessions taken over from the previous process after a restart with a state file.",
            value=float(totals.sessions_restored),
        )


class MetricsServer:
    """``GET /metrics`` on ``listen`` from the running event loop."""

    def __init__(self, listen: str, manager: Callable[[], ShardManager | None]) -> None:
        self.host, self.port = parse_listen(listen)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ShardCollector(manager))
        self._runner: web.AppRunner | None = None

    def add_collector(self, collector: Collector) -> None:
        """Serve another collector's metrics too (e.g. ``ProxyClientsCollector``)."""
        self.registry.register(collector)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        """Bind and serve; ``MetricsError`` (one line) when the address cannot be bound."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise _bind_error(self.host, self.port, exc) from None
        self._runner = runner
        if self.port == 0 and runner.addresses:
            self.port = int(runner.addresses[0][1])  # port 0 asked the OS for a free one
        log.info("serving Prometheus metrics at %s", self.url)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
