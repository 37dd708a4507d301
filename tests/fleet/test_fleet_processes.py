"""Three real OS processes x 8 shards against one standalone sandbox, coordinated through Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
from redis.asyncio import Redis
from support.fleet import wait_for_snapshot

from shardtui.fleet import LOST, CommandStatus, FleetControl, FleetKeys, FleetView, ProcessState

HERE = Path(__file__).resolve().parent
SANDBOX_TOML = """
[sandbox]
shards = 24
max_concurrency = 4
identify_window = 0.2
guilds = 24
heartbeat_interval_ms = 1000
event_rate = 0
"""
RANGES = {"proc-a": "0-7", "proc-b": "8-15", "proc-c": "16-23"}


async def _read_until(stream: asyncio.StreamReader, pattern: re.Pattern[str], within: float) -> re.Match[str]:
    async def scan() -> re.Match[str]:
        while True:
            line = await stream.readline()
            if not line:
                raise AssertionError(f"process ended before printing {pattern.pattern!r}")
            match = pattern.search(line.decode())
            if match:
                return match

    return await asyncio.wait_for(scan(), within)


async def _stop(process: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


async def test_three_processes_share_identify_buckets_commands_and_loss(
    tmp_path: Path, redis_url: str, redis: Redis, cluster_name: str
):
    config = tmp_path / "sandbox.toml"
    config.write_text(SANDBOX_TOML)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    sandbox = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shardtui", "sandbox", "--config", str(config), "--port", "0",
        stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    workers: dict[str, asyncio.subprocess.Process] = {}
    try:
        assert sandbox.stdout is not None
        rest_url = (await _read_until(sandbox.stdout, re.compile(r"REST base URL: (\S+)"), 20)).group(1)
        token = (await _read_until(sandbox.stdout, re.compile(r"Bot token:\s+(\S+)"), 5)).group(1)
        control_url = rest_url.split("/api/")[0] + "/sandbox"
        for name, shard_range in RANGES.items():
            workers[name] = await asyncio.create_subprocess_exec(
                sys.executable, str(HERE / "fleet_worker.py"),
                redis_url, cluster_name, name, shard_range, "24", rest_url,
                stdout=asyncio.subprocess.PIPE, env={**env, "SHARDTUI_FLEET_TOKEN": token},
            )  # fmt: skip
        for process in workers.values():
            assert process.stdout is not None
            await _read_until(process.stdout, re.compile("listening"), 20)

        keys = FleetKeys(cluster_name)
        view = FleetView(redis, keys)
        snapshot = await wait_for_snapshot(view, lambda s: s.stage_counts() == {"connected": 24}, within=30)
        assert {p.name: p.shard_ids for p in snapshot.processes} == {
            "proc-a": tuple(range(8)),
            "proc-b": tuple(range(8, 16)),
            "proc-c": tuple(range(16, 24)),
        }

        async with aiohttp.ClientSession() as http:

            async def stats() -> dict:
                async with http.get(f"{control_url}/stats") as response:
                    return await response.json()

            before = await stats()
            assert before["identify_violations"] == 0
            assert sum(shard["identifies"] for shard in before["shards"].values()) == 24

            # From this (fourth) process, restart a shard that proc-b owns.
            control = FleetControl(redis, keys, view, sender="test-operator", timeout=5)
            result = await control.restart(11)
            assert result.status is CommandStatus.OK, result.message
            assert result.process == "proc-b"
            for _ in range(200):
                after = await stats()
                if after["shards"]["11"]["resumes"] == before["shards"]["11"]["resumes"] + 1:
                    break
                await asyncio.sleep(0.05)
            assert after["shards"]["11"]["resumes"] == before["shards"]["11"]["resumes"] + 1
            await wait_for_snapshot(
                view, lambda s: s.shard(11).stage == "connected" and s.shard(11).info["resumes"] == 1
            )

            # proc-c dies without a goodbye: its shards show as lost once its heartbeat expires.
            await _stop(workers["proc-c"], signal.SIGKILL)
            snapshot = await wait_for_snapshot(view, lambda s: s.stage_counts().get(LOST) == 8, within=5)
            assert [s.shard_id for s in snapshot.shards if s.stage == LOST] == list(range(16, 24))
            assert snapshot.process("proc-c").state is ProcessState.LOST
            assert snapshot.stage_counts() == {"connected": 16, LOST: 8}

            assert (await stats())["identify_violations"] == 0
    finally:
        for process in workers.values():
            await _stop(process)
        await _stop(sandbox)
    assert all(process.returncode == 0 for name, process in workers.items() if name != "proc-c")
