"""End to end: the real ``shardtui`` command in a tmux pane, read back as screen text.

Starts the console on the embedded sandbox, waits for every shard to show connected, restarts
shard 1 with ``r`` and watches it resume (in its row and in the log pane), then quits through the
confirmation and checks the exit status is 0. A fatal close (4004) leaves its reason on the terminal
after the screen closes, with exit status 3.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("shardtui.gateway.manager", reason="the ShardManager has not landed yet")

TMUX = shutil.which("tmux")
pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (.ci/run installs it)")

CONFIG = """\
[gateway]
mode = "sandbox"
shards = 3

[sandbox]
shards = 3
guilds = 6
identify_window = 0.05
heartbeat_interval_ms = 500
event_rate = 5.0

[ui]
refresh_interval = 0.2
"""

ROW = re.compile(r"^\s*\*?(\d+)/3\s+(\S+)")


class Pane:
    def __init__(self, socket: str, session: str) -> None:
        self.socket = socket
        self.session = session

    def tmux(self, *args: str) -> str:
        result = subprocess.run(
            [TMUX or "tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return result.stdout

    def text(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.session)

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.session, *keys)

    def stages(self) -> dict[int, str]:
        found: dict[int, str] = {}
        for line in self.text().splitlines():
            match = ROW.match(line)
            if match:
                found[int(match.group(1))] = match.group(2)
        return found

    def wait(self, condition: Callable[[str], bool], what: str, limit: float = 30.0) -> str:
        deadline = time.monotonic() + limit
        screen = ""
        while time.monotonic() < deadline:
            screen = self.text()
            if condition(screen):
                return screen
            time.sleep(0.05)
        pytest.fail(f"timed out waiting for {what}; screen was:\n{screen}")


def shardtui_command() -> list[str]:
    exe = shutil.which("shardtui")
    return [exe] if exe else [sys.executable, "-m", "shardtui"]


def start_console(
    tmp_path: Path, name: str, config_text: str = CONFIG, *, linger: bool = False
) -> tuple[Pane, Path]:
    """``linger`` keeps the pane open after shardtui exits, to read what it left on the terminal."""
    config = tmp_path / "shards.toml"
    config.write_text(config_text)
    status = tmp_path / "status"
    command = " ".join(shlex.quote(part) for part in [*shardtui_command(), "--config", str(config)])
    script = f"{command}; echo $? > {shlex.quote(str(status))}" + ("; sleep 60" if linger else "")
    pane = Pane(f"shardtui-{name}-{os.getpid()}", "console")
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("TMUX", None)
    subprocess.run(
        [TMUX or "tmux", "-L", pane.socket, "-f", "/dev/null", "new-session", "-d", "-s", pane.session,
         "-x", "120", "-y", "30", "-c", str(tmp_path), "sh", "-c", script],
        check=True, env=env, timeout=10,
    )  # fmt: skip
    return pane, status


def wait_status(status: Path, what: str) -> str:
    deadline = time.monotonic() + 30
    while not status.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status.exists(), f"shardtui did not exit after {what}"
    return status.read_text().strip()


def test_console_in_tmux_restart_and_quit(tmp_path: Path) -> None:
    pane, status = start_console(tmp_path, "quit")
    try:
        pane.wait(
            lambda _s: pane.stages() == {0: "connected", 1: "connected", 2: "connected"},
            "all three shards connected",
        )
        pane.keys("l")  # the log pane shows each stage change as it happens
        pane.keys("Down")
        pane.keys("r")
        seen: list[str] = []

        def resumed(screen: str) -> bool:
            seen.append(screen)
            history = "\n".join(seen)
            return (
                re.search(r"shard 1: stage \w+ → resuming", history) is not None
                and "shard 1: stage resuming → connected" in history
                and pane.stages().get(1) == "connected"
            )

        pane.wait(resumed, "shard 1 to go through resuming back to connected")
        pane.keys("q")
        pane.wait(lambda s: "Quit shardtui" in s, "the quit confirmation")
        pane.keys("y")
        assert wait_status(status, "the confirmed quit") == "0"
    finally:
        pane.tmux("kill-server")


def test_sigterm_closes_the_console_cleanly(tmp_path: Path) -> None:
    pane, status = start_console(tmp_path, "term")
    try:
        pane.wait(
            lambda _s: pane.stages() == {0: "connected", 1: "connected", 2: "connected"},
            "all three shards connected",
        )
        shell_pid = pane.tmux("display-message", "-p", "-t", pane.session, "#{pane_pid}").strip()
        children = subprocess.run(
            ["pgrep", "-P", shell_pid], capture_output=True, text=True, timeout=10, check=False
        ).stdout.split()
        assert children, "could not find the shardtui process under the pane's shell"
        for pid in children:
            os.kill(int(pid), signal.SIGTERM)
        # Killed by the signal the status would be 143; a clean shutdown exits 0.
        assert wait_status(status, "SIGTERM") == "0"
    finally:
        pane.tmux("kill-server")


FATAL_CONFIG = CONFIG.replace(
    "[ui]",
    """[[sandbox.faults]]
kind = "close"
every = 1.5
shard = 0
code = 4004

[ui]""",
)


def test_a_fatal_stop_leaves_its_reason_on_the_terminal_and_exits_3(tmp_path: Path) -> None:
    pane, status = start_console(tmp_path, "fatal", FATAL_CONFIG, linger=True)
    try:
        pane.wait(lambda s: "rejected the bot token" in s, "the fatal screen")
        pane.keys("q")
        answered = False
        deadline = time.monotonic() + 30
        while not status.exists() and time.monotonic() < deadline:
            if not answered and "Quit shardtui" in pane.text():
                pane.keys("y")
                answered = True
            time.sleep(0.05)
        assert wait_status(status, "quitting after the fatal error") == "3"
        # The UI is gone (alternate screen left); its reason is what stays on the terminal.
        screen = pane.wait(lambda s: "shardtui: fatal" in s, "the fatal reason on the terminal")
        text = " ".join(screen.split())
        assert "shardtui: fatal authentication (close code 4004):" in text, screen
        assert "token was rejected" in text
    finally:
        pane.tmux("kill-server")
