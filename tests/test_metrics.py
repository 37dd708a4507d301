"""``[metrics] listen``: Prometheus text on /metrics, scraped with prometheus-client's own parser while
real sandbox shards connect, restart and reshard; a port in use or a bad address is one clear error."""

from __future__ import annotations

import json
import math
import re
import socket
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.headless import sandbox_config
from support.waiting import eventually

from shardtui.cli import main
from shardtui.config import ConfigError, load_config
from shardtui.gateway.manager import ShardManager, ShardManagerOptions
from shardtui.gateway.models import (
    AlertKind,
    ConnectionStage,
    ShardHealth,
    ShardId,
    ShardRunnerInfo,
    ShardStageUpdateEvent,
)
from shardtui.gateway.protocol import GatewayIntents
from shardtui.metrics import MetricsServer, ProxyClientsCollector
from shardtui.proxy.server import ProxyTotals, ShardCounters
from shardtui.runtime import Runtime
from shardtui.sandbox.tokens import make_token

TOKEN = make_token(1234567890123456789)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _config_file(tmp_path: Path, extra: str = "") -> Path:
    extra = '[metrics]\nlisten = "127.0.0.1:0"\n' + extra
    return sandbox_config(tmp_path, TOKEN, extra, guilds=8, event_rate=40.0)


async def scrape(url: str) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def per_shard(samples: Samples, name: str) -> dict[str, float]:
    return {dict(labels)["shard"]: v for (n, labels), v in samples.items() if n == name}


async def test_scrapes_follow_shards_connecting_and_restarting(tmp_path: Path) -> None:
    config = load_config(str(_config_file(tmp_path)), {}, environ={})
    async with Runtime(config) as runtime:
        assert runtime.metrics is not None
        url = runtime.metrics.url
        before = await scrape(url)
        assert per_shard(before, "shardtui_shard_connected") == {}
        assert math.isnan(value(before, "shardtui_session_start_remaining"))

        await runtime.start()
        manager = runtime.manager
        assert await manager.wait_until_connected(15.0)
        await eventually(lambda: all(i.latency is not None for i in manager.runners.values()))
        await eventually(lambda: all(i.events_received > 3 for i in manager.runners.values()))
        up = await scrape(url)
        assert per_shard(up, "shardtui_shard_connected") == {"0": 1.0, "1": 1.0}
        assert all(0.0 <= v < 5.0 for v in per_shard(up, "shardtui_shard_latency_seconds").values())
        assert all(v > 3 for v in per_shard(up, "shardtui_shard_dispatch_events_total").values())
        assert value(up, "shardtui_identifies_total") == 2.0
        assert value(up, "shardtui_resumes_total") == 0.0
        limit = manager.session_start_limit
        assert limit is not None
        assert value(up, "shardtui_session_start_remaining") == float(limit.remaining)
        for shard in ("0", "1"):
            assert value(up, "shardtui_shard_health", shard=shard, state="ok") == 1.0
            assert value(up, "shardtui_shard_health", shard=shard, state="down") == 0.0
        # Only with a proxy: no source, no metric.
        assert per_shard(up, "shardtui_proxy_clients") == {}

        # A resume: the shard reconnects, its latency is unknown until the new connection's first ACK.
        seen: list[tuple[ConnectionStage, float | None, float | None, ShardHealth]] = []

        def on_event(event: object) -> None:
            if isinstance(event, ShardStageUpdateEvent) and event.shard_id == ShardId(0):
                info = manager.runners[ShardId(0)]
                seen.append((event.new, info.latency, info.last_ack_at, info.health))

        manager.subscribe(on_event)
        await manager.restart(ShardId(0))
        await eventually(lambda: bool(seen) and seen[-1][0] is ConnectionStage.CONNECTED)
        away = [entry for entry in seen if entry[0] is not ConnectionStage.CONNECTED]
        assert away, seen
        assert all(
            latency is None and ack is None and health is ShardHealth.DOWN for _, latency, ack, health in away
        )
        assert await manager.wait_until_connected(15.0)
        after = await scrape(url)
        assert value(after, "shardtui_resumes_total") == 1.0
        assert value(after, "shardtui_identifies_total") == 2.0
        events_up = per_shard(up, "shardtui_shard_dispatch_events_total")
        events_after = per_shard(after, "shardtui_shard_dispatch_events_total")
        assert all(events_after[s] >= events_up[s] for s in events_up)
    # The endpoint goes away with the runtime.
    with pytest.raises(aiohttp.ClientConnectionError):
        await scrape(url)


def _options() -> ShardManagerOptions:
    return ShardManagerOptions(token="x", intents=GatewayIntents.default(), rest_url="http://127.0.0.1:9/api")


def _info(shard: int, total: int, *, events: int, identifies: int, resumes: int) -> ShardRunnerInfo:
    info = ShardRunnerInfo(ShardId(shard), total, stage=ConnectionStage.CONNECTED, running=True)
    info.events_received, info.identifies, info.resumes = events, identifies, resumes
    return info


async def test_counters_stay_monotonic_when_a_reshard_replaces_every_info() -> None:
    manager = ShardManager(_options())
    manager.runners.update({ShardId(i): _info(i, 2, events=100, identifies=1, resumes=2) for i in range(2)})
    server = MetricsServer("127.0.0.1:0", lambda: manager)
    await server.start()
    try:
        first = await scrape(server.url)
        assert per_shard(first, "shardtui_shard_dispatch_events_total") == {"0": 100.0, "1": 100.0}
        assert value(first, "shardtui_identifies_total") == 2.0
        # Live reshard to 3: a new set of infos whose counters start over.
        manager.runners.clear()
        manager.runners.update({ShardId(i): _info(i, 3, events=5, identifies=1, resumes=0) for i in range(3)})
        second = await scrape(server.url)
        assert per_shard(second, "shardtui_shard_dispatch_events_total") == {"0": 105.0, "1": 105.0, "2": 5.0}
        assert value(second, "shardtui_identifies_total") == 5.0
        assert value(second, "shardtui_resumes_total") == 4.0
        # A counter that goes back on the same info (a reset) is not a decrease either.
        manager.runners[ShardId(2)].events_received = 1
        third = await scrape(server.url)
        assert per_shard(third, "shardtui_shard_dispatch_events_total")["2"] == 6.0
    finally:
        await server.stop()


class _Proxy:
    def __init__(self) -> None:
        self.clients = {ShardId(0): 3, ShardId(1): 0}
        self.counters = [ShardCounters(0, dispatches=40, cut_slow=1, invalidated=2), ShardCounters(1)]

    def clients_per_shard(self) -> dict[ShardId, int]:
        return self.clients

    def sessions_per_shard(self) -> dict[int, int]:
        return {0: 4, 1: 0}

    def shard_counters(self) -> list[ShardCounters]:
        return self.counters

    def totals(self) -> ProxyTotals:
        return ProxyTotals(
            rest_forwarded=7, violations=1, sessions_expired=2, sessions_evicted=0, sessions_restored=3
        )


async def test_an_added_collector_is_served_with_the_shard_metrics() -> None:
    manager = ShardManager(_options())
    server = MetricsServer("127.0.0.1:0", lambda: manager)
    proxy = _Proxy()
    server.add_collector(ProxyClientsCollector(proxy))
    await server.start()
    try:
        assert per_shard(await scrape(server.url), "shardtui_proxy_clients") == {"0": 3.0, "1": 0.0}
        proxy.clients[ShardId(1)] = 2
        scraped = await scrape(server.url)
        assert per_shard(scraped, "shardtui_proxy_clients") == {"0": 3.0, "1": 2.0}
        assert per_shard(scraped, "shardtui_proxy_client_sessions") == {"0": 4.0, "1": 0.0}
        assert per_shard(scraped, "shardtui_proxy_dispatches_total") == {"0": 40.0, "1": 0.0}
        assert per_shard(scraped, "shardtui_proxy_clients_cut_slow_total") == {"0": 1.0, "1": 0.0}
        assert per_shard(scraped, "shardtui_proxy_sessions_invalidated_total") == {"0": 2.0, "1": 0.0}
        assert scraped[("shardtui_proxy_rest_requests_total", ())] == 7.0
        assert scraped[("shardtui_proxy_client_violations_total", ())] == 1.0
        assert scraped[("shardtui_proxy_sessions_ended_total", (("reason", "expired"),))] == 2.0
        assert scraped[("shardtui_proxy_sessions_restored_total", ())] == 3.0
    finally:
        await server.stop()


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    "front_end", [["run", "--headless", "--duration", "5"], ["run"]], ids=["headless", "console"]
)
def test_a_port_in_use_is_one_line_and_status_2_before_any_shard_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], front_end: list[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = _config_file(tmp_path)
        status = main(["--config", str(config), "--metrics-listen", f"127.0.0.1:{port}", *front_end])
    captured = capsys.readouterr()
    assert status == 2
    line = _one_line_error(captured.err)
    assert "metrics.listen" in line and "port is in use" in line and str(port) in line
    assert '"event":"stage"' not in captured.out  # no shard ever started


async def test_the_runtime_refuses_a_port_in_use_before_building_shards(tmp_path: Path) -> None:
    """The same check where the port is taken between the CLI's preflight and the runtime's bind."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = load_config(str(_config_file(tmp_path)), {"metrics.listen": f"127.0.0.1:{port}"}, environ={})
        runtime = Runtime(config)
        with pytest.raises(ConfigError, match="port is in use"):
            await runtime.open()
        assert runtime.sandbox is not None and not runtime.sandbox.running
        assert runtime.metrics is None


def test_a_malformed_listen_address_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["--config", str(_config_file(tmp_path)), "--metrics-listen", "9100", "run", "--headless"])
    assert status == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "--metrics-listen" in line and "HOST:PORT" in line
    with pytest.raises(ConfigError, match="SHARDTUI_METRICS_LISTEN"):
        load_config(None, {}, environ={"SHARDTUI_METRICS_LISTEN": "localhost:99999"}, check_token=False)


async def test_the_grafana_dashboard_uses_exactly_the_served_metric_names() -> None:
    manager = ShardManager(_options())
    manager.runners.update({ShardId(0): _info(0, 1, events=1, identifies=1, resumes=0)})
    manager.alerts.raise_alert(AlertKind.WEDGED, ShardId(0), "shard 0 is wedged")
    server = MetricsServer("127.0.0.1:0", lambda: manager)
    server.add_collector(ProxyClientsCollector(_Proxy()))
    await server.start()
    try:
        served = {name for name, _labels in await scrape(server.url)}
    finally:
        await server.stop()
    dashboard = json.loads((Path(__file__).parent.parent / "docs" / "grafana-dashboard.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"shardtui_[a-z_]+", target["expr"])
    }
    assert used <= served, used - served
    required = {
        "shardtui_shard_connected",
        "shardtui_shard_latency_seconds",
        "shardtui_shard_dispatch_events_total",
        "shardtui_shard_health",
        "shardtui_identifies_total",
        "shardtui_resumes_total",
        "shardtui_session_start_remaining",
    }
    assert required <= used, required - used
    assert 'rate(shardtui_shard_dispatch_events_total{job=~"$job", instance=~"$instance"}[1m])' in json.dumps(
        dashboard
    ).replace('\\"', '"')
