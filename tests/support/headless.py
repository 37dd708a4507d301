"""A shards.toml for headless runs against the embedded sandbox: fast shards, zlib-stream, and the
test's own extra sections (faults, health, metrics) appended."""

from __future__ import annotations

from pathlib import Path


def sandbox_config(
    tmp_path: Path,
    token: str,
    extra: str = "",
    *,
    guilds: int = 6,
    shards: int = 2,
    event_rate: float = 20.0,
) -> Path:
    path = tmp_path / "shards.toml"
    path.write_text(
        f"""
[gateway]
compression = "zlib-stream"
[sandbox]
guilds = {guilds}
shards = {shards}
max_concurrency = {shards}
identify_window = 0.05
heartbeat_interval_ms = 300
event_rate = {event_rate}
token = "{token}"
{extra}
"""
    )
    return path
