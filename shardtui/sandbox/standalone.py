"""``shardtui sandbox``: run the sandbox on its own until cancelled or interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import sys
from typing import TextIO

from .server import Sandbox
from .settings import SandboxSettings


def server_tls_context(cert_file: str, key_file: str | None = None) -> ssl.SSLContext:
    """A server context from a PEM certificate chain and its key (``key_file`` None: in ``cert_file``).

    Raises ``ValueError`` naming the file and the problem."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        files = cert_file if key_file is None else f"{cert_file} / {key_file}"
        reason = exc.strerror if exc.strerror else str(exc)
        raise ValueError(f"cannot use the TLS certificate and key {files}: {reason}") from None
    return context


async def run_standalone(
    host: str = "127.0.0.1",
    port: int = 0,
    settings: SandboxSettings | None = None,
    *,
    out: TextIO | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Start, print the REST base URL, gateway URL and token, serve until SIGINT/SIGTERM or cancel.

    With ``ssl_context`` (see :func:`server_tls_context`) it serves TLS: https:// and wss:// urls."""
    out = out or sys.stdout
    sandbox = Sandbox(settings)
    await sandbox.start(host=host, port=port, ssl_context=ssl_context)
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
