"""Start-up against the identify rate-limit floor.

For N shards and max_concurrency mc, Discord admits one IDENTIFY per bucket (shard_id % mc) per
window, so no client can have every shard connected sooner than ``(ceil(N / mc) - 1) * window``.
This starts a ShardManager against a sandbox (own process) enforcing the same window and reports
the time from ``initialize()`` to every shard CONNECTED, its ratio to the floor, and the sandbox's
count of identify-limit violations (must be 0).

    python3 bench/startup.py [--window 0.05] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time

from common import SandboxProcess, machine, sandbox_manager, table


async def one_run(shards: int, concurrency: int, window: float) -> dict[str, float | int]:
    async with SandboxProcess(
        guilds=shards,
        shards=shards,
        max_concurrency=concurrency,
        identify_window=window,
        event_rate=0.0,
        members_per_guild=4,
        seed=7,
    ) as sandbox:
        manager = sandbox_manager(sandbox, shards, concurrency, window)
        started = time.perf_counter()
        await manager.initialize()
        connected = await manager.wait_until_connected(timeout=60 + 2 * shards * window)
        elapsed = time.perf_counter() - started
        stats = await sandbox.call("stats")
        await manager.shutdown_all()
    if not connected:
        raise SystemExit(f"startup: {shards} shards at max_concurrency {concurrency} never all connected")
    floor = (math.ceil(shards / concurrency) - 1) * window
    return {
        "seconds": elapsed,
        "floor": floor,
        "over": elapsed - floor,
        "violations": stats["identify_violations"],
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=0.05, help="identify window in seconds")
    parser.add_argument("--quick", action="store_true", help="tiny fleet (smoke test)")
    args = parser.parse_args()
    sizes = [4, 8] if args.quick else [16, 64, 256]
    concurrencies = [1, 4] if args.quick else [1, 4, 16]
    print(f"startup bench: identify window {args.window} s; {machine()}")
    rows = []
    worst_over = 0.0
    violations = 0
    for shards in sizes:
        for concurrency in concurrencies:
            r = await one_run(shards, concurrency, args.window)
            worst_over = max(worst_over, r["over"])
            violations += int(r["violations"])
            ratio = f"{r['seconds'] / r['floor']:.2f}" if r["floor"] else "-"
            rows.append(
                [
                    shards,
                    concurrency,
                    f"{r['seconds']:.3f}",
                    f"{r['floor']:.3f}",
                    f"{r['over']:+.3f}",
                    ratio,
                    r["violations"],
                ]
            )
            print(
                f"  N={shards} mc={concurrency}: {r['seconds']:.3f} s (floor {r['floor']:.3f} s)", flush=True
            )
    print(table(["shards", "max_conc", "seconds", "floor", "over floor", "ratio", "violations"], rows))
    verdict = "OK" if worst_over < 1.0 and violations == 0 else "MISSED"
    print(
        f"SUMMARY startup: worst {worst_over:+.3f} s over the floor (target < 1 s), "
        f"{violations} identify violations (must be 0): {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
