"""Console: cost of one table flush at fleet scale, and key press -> action reaching the runner.

Flush: the real ShardTUI (headless ``run_test()``) shows a fleet of 1,000 or 5,000 shard infos
behind a minimal manager; the bench changes 1% or 100% of the rows in place (as runners do) and
times one console tick (``sync`` + ``scan`` + keyed-diff flush into the DataTable + header, inside
``batch_update``), and the repaint that follows: ``pilot.pause()`` after the tick minus an idle
``pilot.pause()`` with nothing changed (Textual's own message round trip).

Key press: the same app on a real ShardManager with shards connected to the sandbox (own process);
the cursor is put on a shard and ``r`` pressed; the sample ends when the Restart message lands in
that shard's runner inbox.

    python3 bench/console.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from common import SandboxProcess, machine, percentile, sandbox_manager, table

from shardtui.config import Config
from shardtui.gateway.alerts import AlertTracker
from shardtui.gateway.gate import SessionStartLimit
from shardtui.gateway.messages import ShardRunnerMessage
from shardtui.gateway.models import ConnectionStage, ShardId, ShardRunnerInfo
from shardtui.gateway.queuer import QueueStatus
from shardtui.tui.app import ShardTUI
from shardtui.tui.table import ShardTable

SIZE = (160, 50)


@dataclass(frozen=True)
class Plan:
    text: str


class StaticManager:
    """The read side of a ShardManager over infos the bench mutates itself (what the console's
    ``ConsoleManager`` protocol reads; it never acts)."""

    can_reshard = False

    def __init__(self, count: int) -> None:
        now = time.time()
        self.runners = {
            ShardId(i): ShardRunnerInfo(
                ShardId(i),
                count,
                stage=ConnectionStage.CONNECTED,
                latency=0.04,
                guilds=10,
                events_received=1000,
                last_seq=1000,
                identifies=1,
                running=True,
                last_dispatch_at=now,
                last_ack_at=now,
                session_id=f"s{i}",
                last_start="identify",
            )
            for i in range(count)
        }
        self.bot_user = {"username": "bench", "discriminator": "0", "id": "1"}
        self.session_start_limit = SessionStartLimit(
            total=1000, remaining=1000, reset_at=now + 3600, max_concurrency=1
        )
        self.fatal_error = None
        self.identifies_saved = 0
        self.shard_total: int | None = count
        self.rolling_status = None
        self.alerts = AlertTracker(lambda _event: None)

    def messenger(self, shard_id: ShardId) -> None:
        return None

    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]:
        return lambda: None

    def queue_status(self) -> QueueStatus:
        return QueueStatus(queued=(), identifying=())

    def plan(self, action: str, shard_ids: Iterable[ShardId]) -> Plan:
        return Plan(f"{action}: bench")

    async def initialize(self) -> None:
        return None

    async def shutdown_all(self, **_: Any) -> None:
        for info in self.runners.values():
            info.running = False


class RestartSpy:
    """A ``CommandInbox`` in front of a runner's inbox that notes when a Restart arrives."""

    def __init__(self, inner: Any, on_restart: Callable[[], None]) -> None:
        self._inner = inner
        self._on_restart = on_restart

    def put_nowait(self, message: Any, /) -> None:
        if isinstance(message, ShardRunnerMessage.Restart):
            self._on_restart()
        self._inner.put_nowait(message)


class BenchRuntime:
    mode = "sandbox"
    sandbox = None
    proxy = None

    def __init__(self, manager: Any) -> None:
        self.manager = manager

    async def __aenter__(self) -> BenchRuntime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.manager.shutdown_all()

    async def start(self) -> None:
        await self.manager.initialize()


async def wait_for(predicate: Callable[[], bool], within: float) -> None:
    deadline = time.perf_counter() + within
    while not predicate():
        if time.perf_counter() > deadline:
            raise SystemExit("console: the app never reached the expected state")
        await asyncio.sleep(0.005)


async def flush_cost(count: int, fraction: float, rounds: int) -> tuple[float, float, int]:
    """Median tick seconds, median repaint seconds (beyond an idle ``pilot.pause()``), cells per tick."""
    manager = StaticManager(count)
    # A frozen clock: ages would otherwise roll over mid-run and count as changed cells.
    frozen = time.time()
    app = ShardTUI(Config(), runtime_factory=lambda _c: BenchRuntime(manager), clock=lambda: frozen)
    ticks, repaints, idle, written = [], [], [], 0
    async with app.run_test(size=SIZE) as pilot:
        table_widget = app.query_one(ShardTable)
        await wait_for(lambda: table_widget.row_count == count, 60)
        app._tick_timer.pause()  # the bench drives the ticks itself
        await pilot.pause()
        infos = list(manager.runners.values())
        step = max(1, round(1 / fraction))
        for _ in range(rounds):
            started = time.perf_counter()
            await pilot.pause()
            idle.append(time.perf_counter() - started)
        for round_no in range(rounds):
            for info in infos[round_no % step :: step]:
                info.events_received += 1
                info.last_seq = (info.last_seq or 0) + 1
            before = table_widget.cell_updates
            started = time.perf_counter()
            app._refresh_view()
            ticked = time.perf_counter()
            await pilot.pause()
            repainted = time.perf_counter()
            ticks.append(ticked - started)
            repaints.append(repainted - ticked)
            written = table_widget.cell_updates - before
        await pilot.press("q")
    return statistics.median(ticks), max(0.0, statistics.median(repaints) - statistics.median(idle)), written


async def key_to_runner(shards: int, samples: int) -> list[float]:
    async with SandboxProcess(
        guilds=shards,
        shards=shards,
        max_concurrency=shards,
        identify_window=0.05,
        event_rate=10.0,
        members_per_guild=4,
        seed=9,
    ) as sandbox:
        manager = sandbox_manager(sandbox, shards, shards, 0.05)
        app = ShardTUI(Config(), runtime_factory=lambda _c: BenchRuntime(manager))
        arrived: dict[int, float] = {}
        delays = []
        async with app.run_test(size=SIZE) as pilot:
            table_widget = app.query_one(ShardTable)
            await wait_for(lambda: app.manager is manager, 10)
            if not await manager.wait_until_connected(timeout=20):
                raise SystemExit("console: the shards never connected")
            await wait_for(lambda: table_widget.row_count == shards, 10)
            for i in range(samples):
                sid = i % shards
                info = manager.runners[ShardId(sid)]
                await wait_for(lambda info=info: info.stage is ConnectionStage.CONNECTED, 10)
                messenger = manager.messenger(ShardId(sid))
                assert messenger is not None
                inbox = messenger._inbox
                # The runner's inbox has __slots__: the messenger's reference is swapped for a spy.
                messenger._inbox = RestartSpy(
                    inbox, lambda sid=sid: arrived.__setitem__(sid, time.perf_counter())
                )
                table_widget.select_shard(sid)
                await pilot.pause()
                arrived.pop(sid, None)
                started = time.perf_counter()
                await pilot.press("r")
                await wait_for(lambda sid=sid: sid in arrived, 5)
                delays.append(arrived[sid] - started)
                messenger._inbox = inbox
                await wait_for(lambda info=info: info.stage is ConnectionStage.CONNECTED, 10)
            await pilot.press("q")
            await pilot.pause()
    return delays


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small fleets (smoke test)")
    args = parser.parse_args()
    sizes = [100, 200] if args.quick else [1000, 5000]
    rounds = 3 if args.quick else 10
    print(f"console bench: terminal {SIZE[0]}x{SIZE[1]}; {machine()}")
    rows, worst = [], 0.0
    for count in sizes:
        for fraction in (0.01, 1.0):
            tick, repaint, written = await flush_cost(count, fraction, rounds)
            rows.append([count, f"{fraction:.0%}", written, f"{tick * 1000:.2f}", f"{repaint * 1000:.2f}"])
            if fraction == 0.01 and count == sizes[-1]:
                worst = tick
            print(f"  {count} shards, {fraction:.0%} changed: tick {tick * 1000:.2f} ms", flush=True)
    print(table(["shards", "changed", "cells written", "tick ms", "repaint ms"], rows))
    delays = await key_to_runner(4 if args.quick else 16, 3 if args.quick else 20)
    print(
        f"  key 'r' -> Restart in the runner's inbox: median {statistics.median(delays) * 1000:.2f} ms, "
        f"p95 {percentile(delays, 95) * 1000:.2f} ms over {len(delays)} presses"
    )
    verdict = "OK" if worst < 0.020 else "MISSED"
    print(
        f"SUMMARY console: {sizes[-1]}-shard tick with 1% changed {worst * 1000:.2f} ms "
        f"(target < 20 ms): {verdict}; "
        f"key->runner median {statistics.median(delays) * 1000:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
