"""Memory: RSS per connected idle shard, with 100 and 1,000 shards in one process.

Each fleet size runs in a fresh child process so freed memory of one size cannot hide the next. The
child connects shard 0 first (so every code path and the shared HTTP session are loaded), takes
that RSS as the baseline, then connects shards 1..N-1 with a second manager and reports
``(RSS - baseline) / (N - 1)``. Heartbeats are long (41.25 s, Discord's) so the fleet is idle.

    python3 bench/memory.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys

from common import SandboxProcess, machine, rss_bytes, sandbox_manager, table

from shardtui.gateway.manager import ShardManager

CONCURRENCY = 32
WINDOW = 0.05


def manager_for(sandbox: SandboxProcess, shards: int, first: int, last: int) -> ShardManager:
    return sandbox_manager(sandbox, shards, CONCURRENCY, WINDOW, shard_range=(first, last))


async def child(shards: int) -> dict[str, float]:
    async with SandboxProcess(
        guilds=shards,
        shards=shards,
        max_concurrency=CONCURRENCY,
        identify_window=WINDOW,
        event_rate=0.0,
        members_per_guild=4,
        heartbeat_interval_ms=41_250,
        seed=3,
    ) as sandbox:
        first = manager_for(sandbox, shards, 0, 0)
        await first.initialize()
        if not await first.wait_until_connected(timeout=30):
            raise SystemExit("memory: shard 0 never connected")
        await asyncio.sleep(0.5)
        gc.collect()
        baseline = rss_bytes()
        rest = manager_for(sandbox, shards, 1, shards - 1)
        await rest.initialize()
        if not await rest.wait_until_connected(timeout=120):
            raise SystemExit(f"memory: {shards - 1} shards never all connected")
        await asyncio.sleep(1.0)  # let the READY/GUILD_CREATE burst be handled and freed
        gc.collect()
        after = rss_bytes()
        await rest.shutdown_all()
        await first.shutdown_all()
    return {
        "shards": shards,
        "baseline": baseline,
        "after": after,
        "per_shard": (after - baseline) / (shards - 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 and 20 shards (smoke test)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.child))))
        return 0
    sizes = [10, 20] if args.quick else [100, 1000]
    print(f"memory bench: idle shards, heartbeat 41.25 s; {machine()}")
    rows, worst = [], 0.0
    for shards in sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(shards)], capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            raise SystemExit(f"memory: the {shards}-shard child failed (exit {out.returncode})")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        kib = r["per_shard"] / 1024
        worst = max(worst, kib)
        rows.append([shards, f"{r['baseline'] / 2**20:.1f}", f"{r['after'] / 2**20:.1f}", f"{kib:.1f}"])
        print(f"  {shards} shards: {kib:.1f} KiB per shard", flush=True)
    print(table(["shards", "RSS with 1 shard (MiB)", "RSS with all (MiB)", "KiB per idle shard"], rows))
    verdict = "OK" if worst < 100 else "MISSED"
    print(f"SUMMARY memory: {worst:.1f} KiB RSS per idle shard at worst (target < 100 KiB): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
