"""Client sessions across a restart of the proxy itself: written on a clean stop next to
``[gateway] state_file``, read once by the next start.

A bot whose proxy restarts is closed with 4000 and RESUMEs, as it would after any drop. For that
RESUME to succeed, the next process must know the session: its id, its seq, and the frames after the
last seq the client confirmed (its heartbeat ``d``). The upstream shard resumes too, so what happened
while the proxy was down is replayed upstream and numbered for the restored sessions like any live
event; an upstream that must identify again invalidates them (op 9), as it would have without a restart.

The file is consumed: it is removed once read, so a crash of the next process never restores the same
sessions twice. A file older than the resume window restores nothing (its clients have given up).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import orjson

from shardtui.gateway.sessions import write_private

from .hub import ShardHub

log = logging.getLogger("shardtui.proxy")

VERSION: Final = 1


def save_sessions(hubs: Iterable[ShardHub], path: str | os.PathLike[str], *, now: float | None = None) -> int:
    """Write every hub's resumable sessions to ``path`` atomically, mode 0600 (they hold events' content);
    returns how many were written.
    Raises OSError when the file cannot be written."""
    shards = [form for hub in hubs if (form := hub.saved_form())["sessions"]]
    count = sum(len(form["sessions"]) for form in shards)
    saved_at = time.time() if now is None else now
    write_private(Path(path), orjson.dumps({"version": VERSION, "saved_at": saved_at, "shards": shards}))
    return count


def take_sessions(
    path: str | os.PathLike[str], *, max_age: float, now: float | None = None
) -> list[dict[str, Any]]:
    """The saved shards' session forms (for `ShardHub.restore`), and the file removed. Nothing when there
    is no file, and one warning naming the file and the problem when it cannot be used."""
    target = Path(path)
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("proxy client sessions not restored: cannot read %s: %s", path, exc.strerror or exc)
        return []
    try:
        target.unlink()
    except OSError as exc:
        # Restoring sessions a later start would restore again is worse than not restoring them.
        log.warning("proxy client sessions not restored: cannot remove %s: %s", path, exc.strerror or exc)
        return []
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        log.warning("proxy client sessions not restored: %s is not JSON (%s)", path, exc)
        return []
    if type(data) is not dict or data.get("version") != VERSION or type(data.get("shards")) is not list:
        log.warning("proxy client sessions not restored: %s is not a sessions file of this version", path)
        return []
    saved_at = data.get("saved_at")
    if not isinstance(saved_at, int | float):
        log.warning("proxy client sessions not restored: %s has no saved_at time", path)
        return []
    if (time.time() if now is None else now) - saved_at > max_age:
        log.info("proxy client sessions in %s are older than the resume window: not restored", path)
        return []
    return [shard for shard in data["shards"] if type(shard) is dict]
