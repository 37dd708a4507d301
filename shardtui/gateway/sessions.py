"""Persisted sessions: what a clean shutdown saves so the next process RESUMEs instead of identifying.

The state file holds, per shard, the session id, last seq, resume url, shard id/total and when it was
saved — never the token. It is written atomically (a temporary file in the same directory, then
``os.replace``) and readable only by its owner (0600), because a session id lets whoever holds the
token take the session over. On start a session is used only when the shard total matches and it is
younger than ``max_age`` (Discord keeps a disconnected session for a short while only; a RESUME of
a dead one costs a round trip and then an identify anyway). The file is consumed on load: a process
that crashes later must not resume from an old seq and replay what it already handled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from shardtui.gateway.models import ShardId
from shardtui.gateway.shard import SessionState

log = logging.getLogger("shardtui.gateway.sessions")

STATE_FILE_VERSION = 1
#: Default age limit of a saved session. Discord does not document how long a disconnected session
#: stays resumable; sessions are observed to survive a few minutes, so stay a bit under that.
DEFAULT_MAX_AGE_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class SavedSession:
    shard_id: int
    total: int
    session_id: str
    seq: int | None
    resume_gateway_url: str | None
    saved_at: float
    #: Guilds the session held (READY is not seen again on RESUME, so the count is carried over).
    guilds: int | None = None

    def state(self) -> SessionState:
        return SessionState(self.session_id, self.seq, self.resume_gateway_url)

    def as_dict(self) -> dict[str, object]:
        return {
            "shard_id": self.shard_id,
            "total": self.total,
            "session_id": self.session_id,
            "seq": self.seq,
            "resume_gateway_url": self.resume_gateway_url,
            "saved_at": self.saved_at,
            "guilds": self.guilds,
        }


@dataclass(slots=True)
class LoadedSessions:
    """What a state file gave this start: sessions to RESUME and why others were left out."""

    usable: dict[ShardId, SessionState] = field(default_factory=dict)
    #: Guild counts of the usable sessions (when saved).
    guilds: dict[ShardId, int] = field(default_factory=dict)
    #: Shard ids whose saved session was too old.
    stale: list[int] = field(default_factory=list)
    #: Shard ids saved with another shard total.
    other_total: list[int] = field(default_factory=list)
    #: One operator sentence when the file could not be used at all (unreadable, corrupt).
    warning: str | None = None


def write_private(target: Path, payload: bytes) -> None:
    """Write ``payload`` to ``target`` atomically (a crash leaves the old file or the new), mode 0600
    from the first byte: session ids and cached guild data are nobody else's to read."""
    directory = target.parent if str(target.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600, so the session ids are never readable by others, not even briefly.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        os.chmod(target, 0o600)


def save_sessions(path: str | os.PathLike[str], sessions: Iterable[SavedSession]) -> int:
    """Write ``sessions`` to ``path`` atomically with mode 0600; returns how many were written."""
    target = Path(path)
    items = sorted(sessions, key=lambda s: s.shard_id)
    payload = orjson.dumps(
        {"version": STATE_FILE_VERSION, "sessions": [s.as_dict() for s in items]},
        option=orjson.OPT_INDENT_2,
    )
    write_private(target, payload)
    return len(items)


def _parse_entry(entry: object) -> SavedSession:
    if not isinstance(entry, dict):
        raise ValueError("a session entry is not an object")
    shard_id, total, session_id = entry.get("shard_id"), entry.get("total"), entry.get("session_id")
    seq, url, saved_at = entry.get("seq"), entry.get("resume_gateway_url"), entry.get("saved_at")
    if not isinstance(shard_id, int) or not isinstance(total, int) or not 0 <= shard_id < total:
        raise ValueError(f"bad shard id/total {shard_id!r}/{total!r}")
    if not isinstance(session_id, str) or not session_id:
        raise ValueError("missing session_id")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
        raise ValueError(f"bad seq {seq!r}")
    if url is not None and not isinstance(url, str):
        raise ValueError("bad resume_gateway_url")
    if not isinstance(saved_at, int | float) or isinstance(saved_at, bool):
        raise ValueError("missing saved_at")
    guilds = entry.get("guilds")
    if guilds is not None and (not isinstance(guilds, int) or isinstance(guilds, bool) or guilds < 0):
        raise ValueError(f"bad guild count {guilds!r}")
    return SavedSession(shard_id, total, session_id, seq, url, float(saved_at), guilds)


def read_sessions(path: str | os.PathLike[str]) -> list[SavedSession]:
    """Every session in the file. Raises ``FileNotFoundError`` when there is none and ``ValueError``
    (with the reason) when it cannot be used."""
    raw = Path(path).read_bytes()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("version") != STATE_FILE_VERSION:
        raise ValueError(f"not a version {STATE_FILE_VERSION} session state file")
    entries = data.get("sessions")
    if not isinstance(entries, list):
        raise ValueError("no session list")
    return [_parse_entry(entry) for entry in entries]


def load_sessions(
    path: str | os.PathLike[str],
    *,
    total: int,
    shard_ids: Iterable[ShardId],
    now: float,
    max_age: float = DEFAULT_MAX_AGE_SECONDS,
    consume: bool = True,
) -> LoadedSessions:
    """The saved sessions worth a RESUME for ``shard_ids`` of ``total``. Never raises: a missing file
    is simply no sessions; an unreadable or corrupt one gives ``warning`` and no sessions."""
    result = LoadedSessions()
    wanted = {int(s) for s in shard_ids}
    try:
        saved = read_sessions(path)
    except FileNotFoundError:
        return result
    except (OSError, ValueError) as exc:
        result.warning = (
            f"session state file {os.fspath(path)} cannot be used ({exc}); every shard identifies"
        )
        _remove(path)
        return result
    for entry in saved:
        if entry.shard_id not in wanted:
            continue
        if entry.total != total:
            result.other_total.append(entry.shard_id)
        elif now - entry.saved_at > max_age or entry.saved_at > now + 60.0:
            result.stale.append(entry.shard_id)
        else:
            result.usable[ShardId(entry.shard_id)] = entry.state()
            if entry.guilds is not None:
                result.guilds[ShardId(entry.shard_id)] = entry.guilds
    if consume:
        _remove(path)
    return result


def _remove(path: str | os.PathLike[str]) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def sessions_to_save(
    states: Mapping[ShardId, SessionState | None],
    total: int,
    now: float,
    guilds: Mapping[ShardId, int] | None = None,
) -> list[SavedSession]:
    counts = guilds or {}
    return [
        SavedSession(
            int(sid), total, state.session_id, state.seq, state.resume_gateway_url, now, counts.get(sid)
        )
        for sid, state in sorted(states.items())
        if state is not None and state.session_id
    ]


@dataclass(slots=True)
class SessionRestore:
    """Which shards started from a saved session, and whether the server took the RESUME."""

    loaded: LoadedSessions = field(default_factory=LoadedSessions)
    #: Shard id -> "resume" | "identify": how its first session after the start began.
    outcome: dict[ShardId, str] = field(default_factory=dict)

    @property
    def attempted(self) -> list[ShardId]:
        return sorted(self.loaded.usable)

    def first_start(self, shard_id: ShardId, kind: str | None) -> None:
        if kind is not None and shard_id in self.loaded.usable and shard_id not in self.outcome:
            self.outcome[shard_id] = kind

    @property
    def identifies_saved(self) -> int:
        return sum(1 for kind in self.outcome.values() if kind == "resume")

    @property
    def rejected(self) -> list[ShardId]:
        """Saved sessions the server no longer knew (they identified instead)."""
        return sorted(sid for sid, kind in self.outcome.items() if kind == "identify")

    def summary(self) -> dict[str, object]:
        return {
            "identifies_saved": self.identifies_saved,
            "resumed": [int(s) for s in sorted(self.outcome) if self.outcome[s] == "resume"],
            "rejected": [int(s) for s in self.rejected],
            "stale": sorted(self.loaded.stale),
            "other_total": sorted(self.loaded.other_total),
            "pending": [int(s) for s in self.attempted if s not in self.outcome],
        }
