"""One fleet process for the multi-process tests: runs a shard range until SIGTERM.

``python fleet_worker.py REDIS_URL CLUSTER NAME FIRST-LAST TOTAL REST_URL`` with the bot token in
``SHARDTUI_FLEET_TOKEN`` (never on the command line, where ``ps`` would show it). Prints
``listening`` once commands sent from then on are seen and its shards are queued.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

# Run as a script (its folder on the path, not tests/): the shared helpers live in tests/support.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from support.fleet import member_options

from shardtui.fleet import ClusterConfig, FleetNode


async def main(argv: list[str]) -> int:
    redis_url, cluster, name, shard_range, total, rest_url = argv
    first, last = (int(part) for part in shard_range.split("-"))
    config = ClusterConfig(
        redis_url=redis_url,
        name=name,
        cluster=cluster,
        shard_range=(first, last),
        heartbeat_interval=0.2,
        heartbeat_ttl=1.0,
    )
    node = FleetNode(config)
    manager = node.build_manager(
        member_options(rest_url, os.environ["SHARDTUI_FLEET_TOKEN"], int(total), window=0.2)
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await node.start()
        await node.wait_listening()
        await manager.initialize()
        print("listening", flush=True)
        await stop.wait()
    finally:
        await manager.shutdown_all()
        await node.close()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sys.exit(asyncio.run(main(sys.argv[1:])))
