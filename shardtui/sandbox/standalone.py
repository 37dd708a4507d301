"""``shardtui sandbox``: run the sandbox on its own until cancelled or interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import TextIO

from .server import Sandbox
from .settings import SandboxSettings


async def run_standalone(
    host: str = "127.0.0.1",
    port: int = 0,
    settings: SandboxSettings | None = None,
    *,
    out: TextIO | None = None,
) -> None:
    """Start, print the REST base URL, gateway URL and token, serve until SIGINT/SIGTERM or cancel."""
    out = out or sys.stdout
    sandbox = Sandbox(settings)
    await sandbox.start(host=host, port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        # The operator asked for the token: printing it here is the point of the command.
        print(f"REST base URL: {sandbox.rest_url}", file=out)
        print(f"Gateway URL:   {sandbox.gateway_url}", file=out)
        print(f"Bot token:     {sandbox.token}", file=out)
        print(f"Control API:   {sandbox.control_url} (loopback only)", file=out)
        print("Press Ctrl+C to stop.", file=out, flush=True)
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await sandbox.stop()
