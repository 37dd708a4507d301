"""Helpers shared by the bench scripts: a sandbox child process, RSS, percentiles, the machine line."""

from __future__ import annotations

import asyncio
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

import orjson

from shardtui.gateway.manager import ShardManager, ShardManagerOptions
from shardtui.gateway.protocol import GatewayIntents

HERE = Path(__file__).resolve().parent


class SandboxProcess:
    """``async with SandboxProcess(settings) as sb:`` a sandbox in a child process (see sandbox_child.py)."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.proc: asyncio.subprocess.Process | None = None
        self.rest_url = self.gateway_url = self.token = ""
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> SandboxProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE / "sandbox_child.py"),
            orjson.dumps(self.settings).decode(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )
        hello = await self._read()
        self.rest_url, self.gateway_url, self.token = hello["rest_url"], hello["gateway_url"], hello["token"]
        return self

    async def _read(self) -> Any:
        assert self.proc is not None and self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the sandbox child process ended early (see its stderr above)")
        return orjson.loads(line)

    async def call(self, op: str, **fields: Any) -> Any:
        assert self.proc is not None and self.proc.stdin is not None
        async with self._lock:
            self.proc.stdin.write(orjson.dumps({"op": op, **fields}) + b"\n")
            await self.proc.stdin.drain()
            return await self._read()

    def send_nowait(self, op: str, **fields: Any) -> None:
        """Fire a request whose answer the caller collects later with ``answer()``."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps({"op": op, **fields}) + b"\n")

    async def answer(self) -> Any:
        return await self._read()

    async def __aexit__(self, *exc: object) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        try:
            assert proc.stdin is not None
            proc.stdin.write(b'{"op": "quit"}\n')
            await proc.stdin.drain()
            await asyncio.wait_for(proc.wait(), 10)
        except (TimeoutError, ConnectionError):
            proc.kill()
            await proc.wait()


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain fixed-width table (also valid Markdown)."""
    cells = [headers] + [[str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def sandbox_manager(
    sandbox: SandboxProcess, shards: int, concurrency: int, window: float, **options: Any
) -> ShardManager:
    """A manager for every shard of ``sandbox`` (or ``shard_range=``), with its health check off."""
    return ShardManager(
        ShardManagerOptions(
            token=sandbox.token,
            intents=GatewayIntents.default(),
            rest_url=sandbox.rest_url,
            shard_total=shards,
            max_concurrency=concurrency,
            identify_window=window,
            health_interval=0.0,
            **options,
        )
    )


def new_event_loop(name: str = "asyncio") -> asyncio.AbstractEventLoop:
    """A fresh event loop: the standard one, or uvloop's (``pip install shardtui[fast]``)."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    if name != "asyncio":
        raise ValueError(f"unknown event loop {name!r} (asyncio or uvloop)")
    return asyncio.new_event_loop()
