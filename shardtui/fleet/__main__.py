"""``python -m shardtui.fleet``: look at a fleet and send commands to its shards from a shell.

    python -m shardtui.fleet --redis-url redis://127.0.0.1:6379/0 --cluster mybot status [--json]
    python -m shardtui.fleet ... restart 11 [--force-identify]
    python -m shardtui.fleet ... shutdown 11 [--code 4000]
    python -m shardtui.fleet ... boot 11
    python -m shardtui.fleet ... forget worker-3      (a lost process that will not come back)

Exit status: 0 done, 1 the command failed or went unacknowledged, 2 usage, 3 Redis unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from typing import TextIO

import orjson
from redis.exceptions import RedisError

from shardtui.config import default_process_name, describe_redis_url
from shardtui.fleet.commands import CommandStatus
from shardtui.fleet.keys import FleetKeys, describe_redis_error
from shardtui.fleet.node import FleetControl, connect_redis
from shardtui.fleet.state import FleetSnapshot, FleetView

# (2, a usage error, is argparse's own exit status.)
EXIT_OK, EXIT_FAILED, EXIT_UNREACHABLE = 0, 1, 3


def format_snapshot(snapshot: FleetSnapshot, now: float) -> str:
    lines = []
    for process in snapshot.processes:
        beat = (
            "never" if process.heartbeat_at is None else f"{max(0.0, now - process.heartbeat_at):.1f} s ago"
        )
        stages = (
            ", ".join(f"{count} {stage}" for stage, count in sorted(process.stages.items())) or "no shards"
        )
        lines.append(f"{process.name:<20} {process.state.value:<6} heartbeat {beat:<12} {stages}")
    if lines:
        lines.append("")
    for shard in snapshot.shards:
        latency = shard.info.get("latency_ms")
        latency_text = "-" if latency is None or shard.lost else f"{latency:.0f} ms"
        lines.append(f"shard {shard.shard_id:<5} {shard.stage:<13} {latency_text:>8}  {shard.process}")
    counts = ", ".join(f"{count} {stage}" for stage, count in sorted(snapshot.stage_counts().items()))
    lines.append(f"{len(snapshot.shards)} shards in {len(snapshot.processes)} processes: {counts or 'none'}")
    return "\n".join(lines)


def snapshot_json(snapshot: FleetSnapshot) -> bytes:
    return orjson.dumps(
        {
            "processes": [
                {
                    "name": p.name,
                    "state": p.state.value,
                    "host": p.host,
                    "pid": p.pid,
                    "heartbeat_at": p.heartbeat_at,
                    "shard_ids": list(p.shard_ids),
                    "stages": dict(p.stages),
                }
                for p in snapshot.processes
            ],
            "shards": [{**s.info, "process": s.process, "stage": s.stage} for s in snapshot.shards],
        }
    )


async def run(args: argparse.Namespace, out: TextIO) -> int:
    redis = connect_redis(args.redis_url)
    description = f"Redis at {describe_redis_url(args.redis_url)}"
    keys = FleetKeys(args.cluster)
    view = FleetView(redis, keys, redis_description=description)
    try:
        if args.command == "status":
            snapshot = await view.snapshot()
            if snapshot.problem is not None:
                print(f"shardtui fleet: {snapshot.problem}", file=sys.stderr)
                return EXIT_UNREACHABLE
            if args.json:
                out.write(snapshot_json(snapshot).decode() + "\n")
            else:
                print(format_snapshot(snapshot, time.time()), file=out)
            return EXIT_OK
        if args.command == "forget":
            try:
                removed = await view.forget(args.process)
            except ValueError as exc:
                print(f"shardtui fleet: {exc}", file=sys.stderr)
                return EXIT_FAILED
            print(f"process {args.process} {'forgotten' if removed else 'was not in the fleet'}", file=out)
            return EXIT_OK
        control = FleetControl(
            redis, keys, view, sender=f"cli-{default_process_name()}", timeout=args.timeout,
            redis_description=description,
        )  # fmt: skip
        if args.command == "shutdown":
            result = await control.shutdown(args.shard, args.code)
        elif args.command == "restart":
            result = await control.restart(args.shard, force_identify=args.force_identify)
        else:
            result = await control.boot(args.shard, force_identify=args.force_identify)
        print(result.message, file=out if result.ok else sys.stderr)
        if result.ok:
            return EXIT_OK
        return EXIT_UNREACHABLE if result.status is CommandStatus.UNREACHABLE else EXIT_FAILED
    except (RedisError, OSError) as exc:
        print(f"shardtui fleet: {description} unreachable ({describe_redis_error(exc)})", file=sys.stderr)
        return EXIT_UNREACHABLE
    finally:
        await redis.aclose()


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m shardtui.fleet", description="Look at and command a fleet.")
    top.add_argument("--redis-url", required=True, help="the fleet's Redis, e.g. redis://127.0.0.1:6379/0")
    top.add_argument("--cluster", default="shardtui", help="fleet name ([cluster] cluster); default shardtui")
    top.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an acknowledgement")
    sub = top.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="every process and shard of the fleet")
    status.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    for name in ("restart", "boot"):
        cmd = sub.add_parser(name, help=f"{name} one shard, wherever it runs")
        cmd.add_argument("shard", type=int)
        cmd.add_argument("--force-identify", action="store_true", help="a fresh IDENTIFY instead of a RESUME")
    shutdown = sub.add_parser("shutdown", help="stop one shard, wherever it runs")
    shutdown.add_argument("shard", type=int)
    shutdown.add_argument("--code", type=int, default=1000, help="close code; not 1000 keeps the session")
    forget = sub.add_parser(
        "forget", help="drop a lost (decommissioned) process and its shards from the view"
    )
    forget.add_argument("process")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Results are printed; the library's warnings would only say the same thing twice.
    logging.basicConfig(level=logging.ERROR, format="shardtui fleet: %(message)s")
    return asyncio.run(run(args, sys.stdout))


if __name__ == "__main__":
    sys.exit(main())
