"""``python -m shardtui.fleet``: status and commands from a shell, in a separate OS process."""

from __future__ import annotations

import asyncio
import json
import sys

from redis.asyncio import Redis
from support.fleet import start_member, stop_member, wait_for_snapshot
from support.waiting import wait_until

from shardtui.fleet import FleetView
from shardtui.gateway.models import ShardId


async def fleet_cli(redis_url: str, cluster: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shardtui.fleet", "--redis-url", redis_url, "--cluster", cluster, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_status_and_commands_from_the_command_line(
    sandbox_factory, redis_url: str, redis: Redis, cluster_name: str
):
    sandbox = await sandbox_factory(shards=2, max_concurrency=1, identify_window=0.1)
    node, manager = await start_member(
        redis_url, cluster_name, "member", (0, 1), sandbox.rest_url, sandbox.token, 2
    )
    try:
        await wait_for_snapshot(FleetView(redis, node.keys), lambda s: s.stage_counts() == {"connected": 2})
        code, out, err = await fleet_cli(redis_url, cluster_name, "status", "--json")
        assert (code, err) == (0, "")
        status = json.loads(out)
        assert [p["name"] for p in status["processes"]] == ["member"]
        assert [(s["id"], s["stage"], s["process"]) for s in status["shards"]] == [
            (0, "connected", "member"),
            (1, "connected", "member"),
        ]
        code, out, _ = await fleet_cli(redis_url, cluster_name, "status")
        assert code == 0
        assert out.splitlines()[-1] == "2 shards in 1 processes: 2 connected"

        resumes = sandbox.stats()["shards"]["1"]["resumes"]
        code, out, err = await fleet_cli(redis_url, cluster_name, "restart", "1")
        assert (code, out.strip(), err) == (0, "restart of shard 1: done by process member", "")
        # Acknowledged once the restart is asked for, maybe before the manager saw the shard leave
        # CONNECTED (then wait_until_connected would return at once): wait for the resume itself.
        await wait_until(lambda: manager.runners[ShardId(1)].resumes == 1, what="shard 1 to resume")
        assert await manager.wait_until_connected(10)
        assert sandbox.stats()["shards"]["1"]["resumes"] == resumes + 1

        code, out, err = await fleet_cli(redis_url, cluster_name, "shutdown", "5")
        assert (code, out) == (1, "")
        assert err.strip() == "shutdown of shard 5 not sent: no process of the fleet runs shard 5"
    finally:
        await stop_member(node, manager)


async def test_unreachable_redis_is_its_own_exit_status(cluster_name: str):
    code, out, err = await fleet_cli("redis://:hunter2@127.0.0.1:1/0", cluster_name, "status")
    assert (code, out) == (3, "")
    assert err.startswith("shardtui fleet: Redis at redis://127.0.0.1:1/0 unreachable (")
    assert "hunter2" not in err
