"""``Runtime`` with ``[cluster]``: shards through the Redis gate, state in Redis, clean leave; and the
CLI's one-line refusals (name in use, shards taken, Redis unreachable)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from fleet.conftest import free_port
from redis.asyncio import Redis
from support.fleet import wait_for_snapshot
from support.waiting import wait_until

from shardtui.config import Config, ConfigError, load_config
from shardtui.fleet import ClusterConfig, FleetKeys, FleetView, ProcessState, RedisIdentifyGate
from shardtui.gateway.models import ShardId
from shardtui.runtime import Runtime


def member(sandbox, redis_url: str, cluster: str, name: str, shard_range: tuple[int, int]) -> Runtime:
    config = Config()
    config.gateway.mode = "sandbox"
    config.gateway.rest_url = sandbox.rest_url
    config.gateway.shards = 4
    config.gateway.identify_window = 0.1
    config.sandbox.token = sandbox.token
    config.cluster = ClusterConfig(
        redis_url=redis_url,
        name=name,
        cluster=cluster,
        shard_range=shard_range,
        heartbeat_interval=0.2,
        heartbeat_ttl=1.0,
    )
    return Runtime(config)


async def test_runtimes_with_cluster_share_the_gate_publish_and_leave_cleanly(
    sandbox_factory, redis_url: str, redis: Redis, cluster_name: str
):
    sandbox = await sandbox_factory(shards=4, max_concurrency=2, identify_window=0.1)
    alpha = member(sandbox, redis_url, cluster_name, "alpha", (0, 1))
    beta = member(sandbox, redis_url, cluster_name, "beta", (2, 3))
    view = FleetView(redis, FleetKeys(cluster_name))
    async with alpha, beta:
        await asyncio.gather(alpha.start(), beta.start())
        for runtime in (alpha, beta):
            assert runtime.fleet is not None
            assert isinstance(runtime.fleet.gate, RedisIdentifyGate)
            assert runtime.fleet.gate.source is runtime.manager
            assert await runtime.manager.wait_until_connected(10)
        # Each process ran only its own range, and every identify was granted by the Redis gate.
        assert sorted(int(i) for i in alpha.manager.runners) == [0, 1]
        assert sorted(int(i) for i in beta.manager.runners) == [2, 3]
        assert sorted(int(sid) for sid, _ in alpha.fleet.gate.admitted) == [0, 1]
        assert sorted(int(sid) for sid, _ in beta.fleet.gate.admitted) == [2, 3]
        assert sandbox.stats()["identify_violations"] == 0

        snapshot = await wait_for_snapshot(view, lambda s: s.stage_counts() == {"connected": 4})
        assert snapshot.owners() == {0: "alpha", 1: "alpha", 2: "beta", 3: "beta"}
        assert [(p.name, p.state, p.shard_range) for p in snapshot.processes] == [
            ("alpha", ProcessState.ALIVE, (0, 1)),
            ("beta", ProcessState.ALIVE, (2, 3)),
        ]

        # A command from one Runtime's fleet reaches the other's shard.
        result = await alpha.fleet.control.restart(3)
        assert result.ok, result.message
        # Acknowledged once the restart is asked for, maybe before beta's manager saw the shard
        # leave CONNECTED (then wait_until_connected would return at once): wait for the resume.
        await wait_until(lambda: beta.manager.runners[ShardId(3)].resumes == 1, what="shard 3 to resume")
        assert await beta.manager.wait_until_connected(10)

        await beta.close()
        # A clean stop is not a loss: the process is gone from the view at once, not "lost".
        snapshot = await view.snapshot()
        assert [p.name for p in snapshot.processes] == ["alpha"]
        assert snapshot.owners() == {0: "alpha", 1: "alpha"}
    assert (await view.snapshot()).processes == ()


def test_cluster_shard_range_must_fit_the_shard_total(tmp_path: Path):
    path = tmp_path / "shards.toml"
    path.write_text(
        '[gateway]\nshards = 8\n[cluster]\nredis_url = "redis://127.0.0.1:6379/0"\nshard_range = "4-9"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), environ={})
    assert str(caught.value) == (
        f"{path}: cluster.shard_range: expected shard ids within 0..7 (gateway.shards = 8), found 4-9"
    )


def test_fleet_console_needs_a_cluster(tmp_path: Path):
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"ui.fleet": True}, flags={"ui.fleet": "--fleet"}, environ={})
    assert str(caught.value) == (
        "command line --fleet: ui.fleet: expected a [cluster] table with the fleet's redis_url "
        "(the fleet console reads it from Redis), found no [cluster]"
    )


async def run_cli(config: Path, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shardtui", "--config", str(config), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def cluster_toml(tmp_path: Path, sandbox, redis_url: str, cluster: str, name: str, shard_range: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f"""
[gateway]
mode = "sandbox"
rest_url = "{sandbox.rest_url}"
shards = 4
identify_window = 0.1
[sandbox]
token = "{sandbox.token}"
[cluster]
redis_url = "{redis_url}"
cluster = "{cluster}"
name = "{name}"
shard_range = "{shard_range}"
heartbeat_interval = 0.2
heartbeat_ttl = 1.0
"""
    )
    return path


async def test_cli_refusals_are_one_line_with_status_2(
    sandbox_factory, tmp_path: Path, redis_url: str, redis: Redis, cluster_name: str
):
    sandbox = await sandbox_factory(shards=4, max_concurrency=2, identify_window=0.1)
    async with member(sandbox, redis_url, cluster_name, "alpha", (0, 1)) as alpha:
        await alpha.start()
        headless = ("run", "--headless", "--duration", "5")

        taken = cluster_toml(tmp_path, sandbox, redis_url, cluster_name, "alpha", "2-3")
        code, _, err = await run_cli(taken, *headless)
        assert code == 2, err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith(
            f"shardtui: {taken}: cluster.name: process name 'alpha' is in use by a live process"
        )
        assert err.rstrip().endswith("give this process another [cluster] name")

        overlap = cluster_toml(tmp_path, sandbox, redis_url, cluster_name, "gamma", "1-2")
        code, _, err = await run_cli(overlap, *headless)
        assert (code, err) == (
            2,
            f"shardtui: {overlap}: cluster.shard_range: process gamma would run shards 1-2, but live "
            "process alpha runs shards 0-1: give each process its own [cluster] shard_range\n",
        )

        port = free_port()
        away = cluster_toml(
            tmp_path, sandbox, f"redis://:s3cret@127.0.0.1:{port}/0", cluster_name, "delta", "2-3"
        )
        code, out, err = await run_cli(away, *headless)
        assert code == 2
        assert err.count("\n") == 1 and "Traceback" not in err and "s3cret" not in err + out
        assert err.startswith(
            f"shardtui: {away}: cluster.redis_url: Redis at redis://127.0.0.1:{port}/0 unreachable ("
        )
        assert err.rstrip().endswith("start Redis or point redis_url at it")

        # None of the refused processes touched the fleet: alpha alone, still running its shards.
        snapshot = await FleetView(redis, FleetKeys(cluster_name)).snapshot()
        assert [(p.name, p.state) for p in snapshot.processes] == [("alpha", ProcessState.ALIVE)]
        assert snapshot.owners() == {0: "alpha", 1: "alpha"}
        assert sandbox.stats()["identify_violations"] == 0


def test_headless_refuses_the_fleet_console_switch(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from shardtui.cli import main

    path = tmp_path / "shards.toml"
    path.write_text('[cluster]\nredis_url = "redis://127.0.0.1:6379/0"\n[ui]\nfleet = true\n')
    assert main(["--config", str(path), "run", "--headless", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "shardtui: ui.fleet (--fleet) is the fleet console, which runs no shards; "
        "drop it to run this process's shards\n"
    )
