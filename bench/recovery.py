"""Recovery: time from a dropped connection, and from a zombied one, back to RESUMED.

A ShardManager runs a few shards against the sandbox (own process). For a drop the sandbox cuts the
TCP connection with no close frame; for a zombie it keeps the socket open but stops answering (no
ACKs, no dispatches), which the client can only notice by a missing heartbeat ACK, so that figure is
bounded below by the heartbeat interval. Each sample is the time from the fault (just before the
request to the sandbox) to the shard's stage going back to CONNECTED with its ``resumes`` counter
up by one and ``last_start == "resume"``.

    python3 bench/recovery.py [--drops 40] [--zombies 12] [--heartbeat-ms 1000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from common import SandboxProcess, machine, percentile, sandbox_manager, table

from shardtui.gateway.manager import ShardManager
from shardtui.gateway.models import ConnectionStage, ShardId, ShardStageUpdateEvent

SHARDS = 4


async def measure(
    sandbox: SandboxProcess, manager: ShardManager, kind: str, shard: int, within: float
) -> float:
    info = manager.runners[ShardId(shard)]
    resumes = info.resumes
    back = asyncio.Event()

    def watch(event: object) -> None:
        if (
            isinstance(event, ShardStageUpdateEvent)
            and event.shard_id.id == shard
            and event.new is ConnectionStage.CONNECTED
        ):
            back.set()

    unsubscribe = manager.subscribe(watch)
    try:
        started = time.perf_counter()
        answer = await sandbox.call("inject", kind=kind, shard=shard)
        if answer.get("affected") != 1:
            raise SystemExit(f"recovery: the sandbox could not {kind} shard {shard}: {answer}")
        await asyncio.wait_for(back.wait(), within)
        elapsed = time.perf_counter() - started
    finally:
        unsubscribe()
    if info.resumes != resumes + 1 or info.last_start != "resume":
        raise SystemExit(
            f"recovery: shard {shard} came back after a {kind} without resuming ({info.last_start})"
        )
    return elapsed


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drops", type=int, default=40)
    parser.add_argument("--zombies", type=int, default=12)
    parser.add_argument("--heartbeat-ms", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="a few samples (smoke test)")
    args = parser.parse_args()
    drops, zombies = (4, 2) if args.quick else (args.drops, args.zombies)
    heartbeat = args.heartbeat_ms / 1000
    print(f"recovery bench: {SHARDS} shards, heartbeat {args.heartbeat_ms} ms; {machine()}")
    samples: dict[str, list[float]] = {"drop": [], "zombie": []}
    async with SandboxProcess(
        guilds=SHARDS * 2,
        shards=SHARDS,
        max_concurrency=SHARDS,
        identify_window=0.05,
        heartbeat_interval_ms=args.heartbeat_ms,
        event_rate=20.0,
        members_per_guild=4,
        seed=5,
    ) as sandbox:
        manager = sandbox_manager(sandbox, SHARDS, SHARDS, 0.05)
        await manager.initialize()
        if not await manager.wait_until_connected(timeout=20):
            raise SystemExit("recovery: the shards never connected")
        try:
            for i in range(drops):
                samples["drop"].append(await measure(sandbox, manager, "drop", i % SHARDS, 10))
                await asyncio.sleep(0.05)
            for i in range(zombies):
                samples["zombie"].append(
                    await measure(sandbox, manager, "zombie", i % SHARDS, 10 + 4 * heartbeat)
                )
        finally:
            stats = await sandbox.call("stats")
            await manager.shutdown_all()
    rows = []
    for kind, values in samples.items():
        rows.append(
            [
                kind,
                len(values),
                f"{statistics.median(values) * 1000:.1f}",
                f"{percentile(values, 95) * 1000:.1f}",
                f"{max(values) * 1000:.1f}",
            ]
        )
    print(table(["fault", "samples", "median ms", "p95 ms", "max ms"], rows))
    print(
        f"  sandbox: {stats['identify_violations']} identify violations, resumes counted by the sandbox: "
        f"{sum(s['resumes'] for s in stats['shards'].values())}"
    )
    drop_median = statistics.median(samples["drop"])
    verdict = "OK" if drop_median < 1.0 else "MISSED"
    print(
        f"SUMMARY recovery: drop->RESUMED median {drop_median * 1000:.1f} ms (target < 1000 ms): {verdict}; "
        f"zombie->RESUMED median {statistics.median(samples['zombie']) * 1000:.0f} ms "
        f"with {args.heartbeat_ms} ms heartbeats"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
