"""``shardtui sandbox``: a standalone gateway a bot can use with the URL and token it prints."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp

REPO_ROOT = Path(__file__).resolve().parent.parent


async def _read_until(stream: asyncio.StreamReader, marker: str, lines: list[str]) -> None:
    while True:
        raw = await asyncio.wait_for(stream.readline(), 20)
        if not raw:
            raise AssertionError("sandbox exited early: " + "".join(lines))
        lines.append(raw.decode())
        if marker in lines[-1]:
            return


async def test_standalone_sandbox_serves_with_the_printed_url_and_token(tmp_path: Path) -> None:
    config = tmp_path / "shards.toml"
    config.write_text("[sandbox]\nshards = 3\nguilds = 9\nmax_concurrency = 3\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shardtui", "--config", str(config), "sandbox", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        await _read_until(proc.stdout, "Press Ctrl+C", lines)
        fields = dict(line.split(":", 1) for line in lines if ":" in line)
        rest_url = fields["REST base URL"].strip()
        gateway_url = fields["Gateway URL"].strip()
        token = fields["Bot token"].strip()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{rest_url}/gateway/bot", headers={"Authorization": f"Bot {token}"}) as resp:
                assert resp.status == 200
                body = await resp.json()
            async with http.get(f"{rest_url}/gateway/bot", headers={"Authorization": "Bot wrong"}) as resp:
                assert resp.status == 401
        assert body["url"].rstrip("/") == gateway_url.rstrip("/")
        assert body["shards"] == 3
        assert body["session_start_limit"]["max_concurrency"] == 3
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(proc.wait(), 20)
    assert status == 0
    assert proc.stderr is not None
    assert "Traceback" not in (await proc.stderr.read()).decode()


async def test_ctrl_c_during_a_soak_is_one_line_and_status_130(tmp_path: Path) -> None:
    # Ctrl+C mid-run used to end in a KeyboardInterrupt traceback from asyncio.run.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shardtui", "soak", "--shards", "2", "--duration", "30", "--log-level", "info",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        await _read_until(proc.stderr, "starting shards", lines)  # mid-run: the shards are starting
        proc.send_signal(signal.SIGINT)
        status = await asyncio.wait_for(proc.wait(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = "".join(lines) + (await proc.stderr.read()).decode()
    assert status == 130
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "shardtui: interrupted"
