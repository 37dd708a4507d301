"""Headless runs with ``gateway.state_file``: the first run's clean stop keeps and saves the sessions,
the second run RESUMEs every shard and its report says so (identifies saved, per-shard start)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
from pathlib import Path
from typing import Any

from shardtui.config import Config, load_config
from shardtui.headless import run_headless
from shardtui.runtime import Runtime


def connected_first(then: Any = None) -> Any:
    """A runtime factory whose ``start`` returns only once every shard is connected (then calls
    ``then``), so a run's clock starts with live sessions rather than racing the connects."""

    def factory(config: Config) -> Runtime:
        runtime = Runtime(config)
        start = runtime.start

        async def start_and_connect() -> None:
            await start()
            if not await runtime.manager.wait_until_connected(15):
                raise RuntimeError("the shards did not connect")
            if then is not None:
                then()

        runtime.start = start_and_connect  # type: ignore[method-assign]
        return runtime

    return factory


async def test_second_headless_run_resumes_from_the_state_file(sandbox_factory: Any, tmp_path: Path):
    sandbox = await sandbox_factory(shards=2, max_concurrency=2, identify_window=0.05)
    state_file = tmp_path / "sessions.json"
    config = load_config(
        None,
        {
            "gateway.rest_url": sandbox.rest_url,
            "sandbox.token": sandbox.token,
            "gateway.identify_window": "0.05",
            "gateway.state_file": str(state_file),
        },
        environ={},
    )
    first_report = tmp_path / "first.json"
    status = await run_headless(
        config,
        duration=0.5,
        report_path=str(first_report),
        out=io.StringIO(),
        runtime_factory=connected_first(),
    )
    assert status == 0
    assert state_file.exists()
    assert json.loads(first_report.read_text())["sessions"]["identifies_saved"] == 0

    # The second run is stopped by SIGTERM, like a service manager's deploy would, once it resumed.
    second_report = tmp_path / "second.json"
    loop = asyncio.get_running_loop()
    status = await run_headless(
        config,
        duration=30,
        report_path=str(second_report),
        out=io.StringIO(),
        runtime_factory=connected_first(lambda: loop.call_soon(os.kill, os.getpid(), signal.SIGTERM)),
    )
    assert status == 0
    report = json.loads(second_report.read_text())
    assert report["stopped_by"] == "signal SIGTERM"
    assert report["sessions"]["identifies_saved"] == 2
    assert report["sessions"]["resumed"] == [0, 1]
    assert [s["last_start"] for s in report["shards"]] == ["resume", "resume"]
    stats = sandbox.stats()
    assert {k: (v["identifies"], v["resumes"]) for k, v in stats["shards"].items()} == {
        "0": (1, 1),
        "1": (1, 1),
    }
    # SIGTERM saved the sessions again for the next deploy.
    assert len(json.loads(state_file.read_text())["sessions"]) == 2
