"""The standalone sandbox listens on loopback only unless told otherwise (other programs may reach a
port on a shared host): checked on the real listening socket of the real command, not on a default."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")


def listening_addresses(pid: int) -> set[str]:
    """Local addresses ("127.0.0.1:PORT", "0.0.0.0:PORT", "v6:...") of the sockets ``pid`` listens on."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A = LISTEN
                continue
            address, port = fields[1].rsplit(":", 1)
            if table == "tcp":
                ip = ".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0))
            else:
                ip = "v6:" + address
            found.add(f"{ip}:{int(port, 16)}")
    return found


def start_and_read_urls(command: list[str], cwd: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    deadline = time.monotonic() + 30
    out = ""
    while "Press Ctrl+C" not in out:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError(f"sandbox did not start: {out!r} {proc.stderr.read()!r}")
        # Unbuffered reads: a buffered reader would hide lines select() no longer reports.
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            out += os.read(proc.stdout.fileno(), 4096).decode()
    return proc, out


@pytest.mark.parametrize(
    "command",
    [
        pytest.param([sys.executable, "-m", "shardtui", "sandbox", "--port", "0"], id="shardtui-sandbox"),
        pytest.param([sys.executable, "-m", "shardtui.sandbox", "--port", "0"], id="python-m-sandbox"),
    ],
)
def test_standalone_sandbox_listens_on_loopback_only_by_default(tmp_path: Path, command: list[str]) -> None:
    proc, out = start_and_read_urls(command, tmp_path)
    try:
        addresses = listening_addresses(proc.pid)
        assert addresses, out
        assert all(a.startswith("127.0.0.1:") for a in addresses), addresses
        assert "ws://127.0.0.1:" in out
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=15)
    assert proc.returncode in (0, -signal.SIGINT, 130)
