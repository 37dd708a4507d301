"""The console's view model: shard rows and fleet stats, with no Textual import.

Manager events land here as they happen and only mark rows dirty; the app's timer asks for the dirty
rows' cells and pushes them into the table. Keeping this free of widgets lets the bench and the unit
tests drive it directly, and keeps per-event work to a dict lookup and a set insert.
"""

from __future__ import annotations

import enum
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from shardtui.gateway.errors import FATAL_CLOSE_KINDS
from shardtui.gateway.models import (
    ConnectionStage,
    FatalErrorEvent,
    Presence,
    ShardHealth,
    ShardId,
    ShardInfoUpdateEvent,
    ShardLogEvent,
    ShardRunnerInfo,
    ShardStageUpdateEvent,
)
from shardtui.gateway.protocol import CloseCode

Clock = Callable[[], float]

LOG_LINES_PER_SHARD = 200
LOG_LINES_FLEET = 2_000
LATENCY_SAMPLES = 60
DASH = "—"

#: Close codes after which the manager stops every shard (the token, the intents: Discord refuses
#: the bot, not one shard); any other fatal close stops only the shard that got it.
BOT_WIDE_CLOSE_CODES: tuple[int, ...] = (
    CloseCode.AUTHENTICATION_FAILED,
    CloseCode.INVALID_INTENTS,
    CloseCode.DISALLOWED_INTENTS,
)
#: Fatal errors that stop the whole console: one screen, not a toast. The bot-wide close kinds as
#: the gateway names them, plus the account's spent session start budget.
FLEET_FATAL_KINDS = frozenset(
    {FATAL_CLOSE_KINDS[code][0] for code in BOT_WIDE_CLOSE_CODES} | {"session_start_limit"}
)


@dataclass(frozen=True, slots=True)
class Cell:
    """One table cell: plain text (never markup) and an optional theme variable naming its colour."""

    text: str
    style: str | None = None
    bold: bool = False
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int
    #: Lower shows first when the terminal is narrow; columns are added in this order while they fit.
    priority: int


#: Display order. Widths are fixed so updates never re-measure the table, and leave room for the
#: sort arrow after each sortable column's label ("guilds▼").
COLUMNS: tuple[Column, ...] = (
    Column("id", "shard", 10, 0),
    Column("stage", "stage", 12, 0),
    Column("health", "health", 7, 0),
    Column("latency", "latency", 8, 1),
    Column("guilds", "guilds", 7, 2),
    Column("eps", "ev/s", 6, 3),
    Column("events", "events", 7, 5),
    Column("seq", "seq", 8, 8),
    Column("resumes", "res", 4, 6),
    Column("reconnects", "rec", 4, 7),
    Column("close", "close", 5, 4),
    Column("dispatch_age", "disp", 5, 4),
    Column("ack_age", "ack", 5, 9),
    Column("presence", "presence", 28, 10),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)
#: DataTable pads each cell by one column on both sides.
CELL_PADDING = 2


def shard_count(count: int) -> str:
    """``1 shard`` / ``8 shards``: dialogs read as sentences, not ``shard(s)``."""
    return f"{count} shard" + ("" if count == 1 else "s")


def shard_ids_phrase(ids: Iterable[int], limit: int = 12) -> str:
    """``shard 2`` / ``shards 1, 2`` / ``shards 0, 1, ... and 288 more``."""
    ids = list(ids)
    shown = ", ".join(str(i) for i in ids[:limit])
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ("shard " if len(ids) == 1 else "shards ") + shown + more


PRESENCE_GROWTH_STEP = 8
PRESENCE_MAX_WIDTH = 96


def columns_for_width(width: int, columns: tuple[Column, ...] = COLUMNS) -> tuple[Column, ...]:
    """The columns that fit ``width`` terminal cells, most important first, in display order."""
    chosen: set[str] = set()
    used = 2  # vertical scrollbar
    for column in sorted(columns, key=lambda c: (c.priority, columns.index(c))):
        need = column.width + CELL_PADDING
        if column.priority == 0 or used + need <= width:
            chosen.add(column.key)
            used += need
    shown = tuple(c for c in columns if c.key in chosen)
    # A wide terminal gives its spare cells to the presence text (the one free-form column) instead of
    # leaving them blank; in steps, so dragging a window edge rebuilds the table rarely.
    spare = (width - used) // PRESENCE_GROWTH_STEP * PRESENCE_GROWTH_STEP
    return tuple(
        replace(c, width=min(c.width + spare, PRESENCE_MAX_WIDTH)) if c.key == "presence" and spare > 0 else c
        for c in shown
    )


class SortKey(enum.Enum):
    ID = "id"
    STAGE = "stage"
    HEALTH = "health"
    LATENCY = "latency"
    GUILDS = "guilds"
    EVENTS_PER_SECOND = "ev/s"
    EVENTS = "events"
    RESUMES = "resumes"
    RECONNECTS = "reconnects"
    DISPATCH_AGE = "dispatch age"


SORT_ORDER: tuple[SortKey, ...] = tuple(SortKey)
#: The column each sort key orders by, for the header's arrow.
SORT_COLUMN: dict[SortKey, str] = {
    SortKey.ID: "id",
    SortKey.STAGE: "stage",
    SortKey.HEALTH: "health",
    SortKey.LATENCY: "latency",
    SortKey.GUILDS: "guilds",
    SortKey.EVENTS_PER_SECOND: "eps",
    SortKey.EVENTS: "events",
    SortKey.RESUMES: "resumes",
    SortKey.RECONNECTS: "reconnects",
    SortKey.DISPATCH_AGE: "dispatch_age",
}
SORT_ASCENDING = "\u25b2"
SORT_DESCENDING = "\u25bc"


def sort_arrow(key: SortKey) -> str:
    """▲ for the id (lowest first); ▼ for every other key, which puts the most, slowest, oldest or
    worst (failed, stopped, wedged ...) first."""
    return SORT_ASCENDING if key is SortKey.ID else SORT_DESCENDING


# Worst first: an operator sorting by stage or health wants the trouble at the top.
_STAGE_RANK = {
    "failed": 0,
    "stopped": 1,
    "disconnected": 2,
    "queued": 3,
    "resuming": 4,
    "identifying": 5,
    "handshake": 6,
    "connecting": 7,
    "connected": 8,
}
_HEALTH_RANK = {ShardHealth.FAILED: 0, ShardHealth.WEDGED: 1, ShardHealth.QUIET: 2, ShardHealth.OK: 3}


# ---------------------------------------------------------------------------------------------
# formatting


def format_latency(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    if seconds < 0.01:
        return f"{seconds * 1000.0:.1f} ms"
    if seconds < 1.0:
        return f"{seconds * 1000.0:.0f} ms"
    return f"{seconds:.1f} s"


def format_age(seconds: float | None) -> str:
    """Coarse ages: exact below 10 s, then 5 s steps, then minutes and hours (fewer cell updates)."""
    if seconds is None:
        return DASH
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{int(seconds)}s"
    if seconds < 60:
        return f"{int(seconds) // 5 * 5}s"
    if seconds < 3600:
        return f"{int(seconds) // 60}m"
    if seconds < 86400:
        return f"{int(seconds) // 3600}h"
    return f"{int(seconds) // 86400}d"


def format_count(value: int | None) -> str:
    if value is None:
        return DASH
    if value < 100_000:
        return str(value)
    if value < 10_000_000:
        return f"{value // 1000}k"
    return f"{value // 1_000_000}M"


def format_rate(value: float) -> str:
    if value <= 0:
        return "0"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:.0f}"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"
    return f"{int(seconds) // 3600}h{int(seconds) % 3600 // 60:02d}m"


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def describe_presence(presence: Presence | None) -> str:
    return DASH if presence is None else presence.describe()


# ---------------------------------------------------------------------------------------------
# rows


@dataclass(slots=True)
class LogLine:
    at: float
    level: int
    shard_id: int | None
    message: str

    def format(self) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.at))
        where = "fleet" if self.shard_id is None else f"shard {self.shard_id}"
        return f"{stamp} {logging.getLevelName(self.level):<7} {where}: {self.message}"


@dataclass(slots=True)
class ShardRow:
    """One shard as the console sees it: the live info plus what only the console keeps."""

    info: ShardRunnerInfo
    log: deque[LogLine] = field(default_factory=lambda: deque(maxlen=LOG_LINES_PER_SHARD))
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    #: What the console last sent with set_presence, shown until the runner reports it applied.
    sent_presence: Presence | None = None
    #: The info's fields as last seen by ``FleetModel.scan``.
    signature: tuple[Any, ...] = ()
    _last_sample_ack: float | None = None
    _last_latency: float | None = None

    @property
    def shard_id(self) -> int:
        return self.info.shard_id.id

    @property
    def presence(self) -> Presence | None:
        if self.sent_presence is not None:
            if self.info.presence == self.sent_presence:
                self.sent_presence = None
            else:
                return self.sent_presence
        return self.info.presence

    def sample_latency(self) -> None:
        latency = self.info.latency
        if latency is None:
            return
        ack = self.info.last_ack_at
        if ack != self._last_sample_ack or latency != self._last_latency:
            self._last_sample_ack = ack
            self._last_latency = latency
            self.latencies.append(latency * 1000.0)


def stage_word(info: ShardRunnerInfo, queued: bool = False) -> str:
    """The stage as one word. Adds three the library leaves implicit: failed, stopped and queued."""
    if info.fatal_error:
        return "failed"
    if info.stage is ConnectionStage.DISCONNECTED:
        if not info.running:
            return "stopped"
        if queued:
            return "queued"
    return info.stage.value


def health_cell(info: ShardRunnerInfo) -> Cell:
    health = ShardHealth.FAILED if info.fatal_error else info.health
    if health is ShardHealth.WEDGED:
        # The one verdict that must jump out of a thousand rows: shouted, bold and reversed.
        return Cell("WEDGED", "health-wedged", bold=True, reverse=True)
    if health is ShardHealth.FAILED:
        return Cell("failed", "health-failed", bold=True)
    return Cell(health.value, f"health-{health.value}")


def row_cells(row: ShardRow, now: float, *, marked: bool = False, queued: bool = False) -> dict[str, Cell]:
    info = row.info
    word = stage_word(info, queued)
    mark = "*" if marked else " "
    return {
        "id": Cell(f"{mark}{info.shard_id.id}/{info.total}", "marked" if marked else None, bold=marked),
        "stage": Cell(word, f"stage-{word}"),
        "health": health_cell(info),
        "latency": Cell(format_latency(info.latency)),
        "guilds": Cell(format_count(info.guilds)),
        "eps": Cell(format_rate(info.events_per_second)),
        "events": Cell(format_count(info.events_received)),
        "seq": Cell(format_count(info.last_seq)),
        "resumes": Cell(str(info.resumes)),
        "reconnects": Cell(str(info.reconnects)),
        "close": Cell(DASH if info.last_close_code is None else str(info.last_close_code)),
        "dispatch_age": Cell(
            format_age(None if info.last_dispatch_at is None else now - info.last_dispatch_at)
        ),
        "ack_age": Cell(format_age(None if info.last_ack_at is None else now - info.last_ack_at)),
        "presence": Cell(describe_presence(row.presence)),
    }


def sort_value(row: ShardRow, key: SortKey, now: float, queued: bool = False) -> tuple[Any, ...]:
    info = row.info
    sid = info.shard_id.id
    if key is SortKey.ID:
        return (sid,)
    if key is SortKey.STAGE:
        return (_STAGE_RANK.get(stage_word(info, queued), 9), sid)
    if key is SortKey.HEALTH:
        health = ShardHealth.FAILED if info.fatal_error else info.health
        return (_HEALTH_RANK[health], sid)
    if key is SortKey.LATENCY:
        # Slowest first; shards with no latency yet go last.
        return (info.latency is None, -(info.latency or 0.0), sid)
    if key is SortKey.GUILDS:
        return (-info.guilds, sid)
    if key is SortKey.EVENTS_PER_SECOND:
        return (-info.events_per_second, sid)
    if key is SortKey.EVENTS:
        return (-info.events_received, sid)
    if key is SortKey.RESUMES:
        return (-info.resumes, sid)
    if key is SortKey.RECONNECTS:
        return (-info.reconnects, sid)
    # Longest silence first: that is where a wedged shard hides.
    age = math.inf if info.last_dispatch_at is None else now - info.last_dispatch_at
    return (-age, sid)


#: ``field:value`` filters; anything else is plain text matched against every field but the id.
FILTER_FIELDS = ("id", "stage", "health", "close", "error")
_FIELD_QUERY = re.compile(r"([a-z]+):(.*)", re.DOTALL)


class FilterError(ValueError):
    """A filter the console cannot apply; the message is shown under the filter box as is."""


def parse_filter(query: str) -> tuple[str | None, str]:
    """``(field, value)`` for ``field:value``, ``(None, text)`` for plain text. Raises FilterError."""
    query = query.strip().lower()
    found = _FIELD_QUERY.fullmatch(query)
    if found is None:
        return None, query
    field, value = found.group(1), found.group(2).strip()
    if field not in FILTER_FIELDS:
        raise FilterError(f"unknown field {field!r} ({', '.join(FILTER_FIELDS)})")
    if field in ("id", "close") and value and not value.isdigit():
        raise FilterError(f"{field}: takes a number, not {value!r}")
    return field, value


def row_matches(row: ShardRow, query: str, queued: bool = False) -> bool:
    """Filter by shard id (a number), stage or health word, close code, or any error text; or by one
    field with ``stage:conn``, ``health:wedged``, ``close:4000``, ``id:3``, ``error:text``."""
    try:
        field, query = parse_filter(query)
    except FilterError:
        # The console never applies a bad filter; anything else calling this gets plain text.
        field, query = None, query.strip().lower()
    if not query:
        return True
    info = row.info
    close = "" if info.last_close_code is None else str(info.last_close_code)
    health = "wedged" if info.health is ShardHealth.WEDGED else info.health.value
    errors = " ".join((info.health_reason, info.last_close_reason, info.fatal_error or "")).lower()
    if field == "id":
        return int(query) == info.shard_id.id
    if field == "close":
        return close == query
    if field == "stage":
        return query in stage_word(info, queued)
    if field == "health":
        return query in health
    if field == "error":
        return query in errors
    if query.isdigit():
        return int(query) == info.shard_id.id or close == query
    return query in " ".join((stage_word(info, queued), health, errors))


# ---------------------------------------------------------------------------------------------
# fleet


@dataclass(frozen=True, slots=True)
class FleetStats:
    mode: str
    bot_user: str
    ready: int
    total: int
    queued: int
    identifying: int
    p50: float | None
    p95: float | None
    events_per_second: float
    next_slot_in: float | None
    starts_remaining: int | None
    starts_total: int | None
    starts_reset_in: float | None
    max_concurrency: int | None
    waiting_reason: str | None = None
    #: Shards that RESUMEd a saved session at start instead of identifying (state file).
    identifies_saved: int = 0

    def header_lines(self) -> tuple[str, str]:
        """Two lines that fit 80 columns for fleets up to thousands of shards."""
        bot = self.bot_user or "(not ready)"
        first = (
            f"{self.mode} · {bot} · ready {self.ready}/{self.total} · "
            f"p50 {format_latency(self.p50)} · p95 {format_latency(self.p95)} · "
            f"{format_rate(self.events_per_second)} ev/s"
        )
        slot = "" if not self.next_slot_in else f" next {format_duration(self.next_slot_in)}"
        if self.starts_remaining is None:
            starts = f"starts {DASH}"
        else:
            starts = (
                f"starts {self.starts_remaining}/{self.starts_total} "
                f"reset {format_duration(self.starts_reset_in)}"
            )
        second = f"identify {self.queued} queued {self.identifying} identifying{slot} · {starts}"
        if self.identifies_saved:
            second += f" · resumed {self.identifies_saved} saved sessions"
        if self.waiting_reason:
            second += f" · held: {self.waiting_reason}"
        return first, second


@dataclass(frozen=True, slots=True)
class StartupProgress:
    queued: int
    identifying: int
    ready: int
    total: int
    eta_seconds: float | None

    @property
    def done(self) -> bool:
        return self.total > 0 and self.ready >= self.total

    def label(self) -> str:
        eta = "" if self.eta_seconds is None else f" · ETA {format_duration(self.eta_seconds)}"
        return (
            f"start-up: {self.queued} queued → {self.identifying} identifying → "
            f"{self.ready}/{self.total} ready{eta}"
        )


def startup_eta(not_ready: int, max_concurrency: int, identify_window: float) -> float:
    """Shards identify one per bucket per window, buckets in parallel: ceil(n / buckets) windows."""
    if not_ready <= 0:
        return 0.0
    return math.ceil(not_ready / max(1, max_concurrency)) * identify_window


@dataclass(frozen=True, slots=True)
class QueueView:
    """The parts of the manager's queue status the console shows, read tolerant of its exact shape."""

    queued: frozenset[int]
    identifying: frozenset[int]
    next_slot_at: float | None
    #: Why the queuer holds starts back (e.g. the daily budget is spent), or None.
    waiting_reason: str | None = None

    @classmethod
    def from_status(cls, status: Any) -> QueueView:
        def ids(name: str) -> frozenset[int]:
            return frozenset(int(i) for i in (getattr(status, name, None) or ()))

        slots = getattr(status, "next_slot", None)
        if slots is None:
            slots = getattr(status, "next_slots", None)
        if isinstance(slots, Mapping):
            next_at = min(slots.values()) if slots else None
        elif isinstance(slots, int | float):
            next_at = float(slots)
        else:
            next_at = None
        reason = getattr(status, "waiting_reason", None)
        return cls(ids("queued"), ids("identifying"), next_at, str(reason) if reason else None)


EMPTY_QUEUE = QueueView(frozenset(), frozenset(), None)


class FleetModel:
    """All shard rows, the dirty set, marks, filter, sort and logs."""

    def __init__(self, *, clock: Clock = time.time, identify_window: float = 5.0) -> None:
        self.clock = clock
        self.identify_window = identify_window
        #: The table's columns (the fleet console adds a process column).
        self.columns: tuple[Column, ...] = COLUMNS
        self.rows: dict[int, ShardRow] = {}
        self.dirty: set[int] = set()
        self.marked: set[int] = set()
        self.filter_text = ""
        self.sort_key = SortKey.ID
        self.fleet_log: deque[LogLine] = deque(maxlen=LOG_LINES_FLEET)
        #: Log lines not yet written to the log pane.
        self.pending_log: list[LogLine] = []
        self.fatal: FatalErrorEvent | None = None
        self.fatal_is_new = False
        #: Per-shard failures to show once as notifications.
        self.alerts: list[str] = []
        self.queue = EMPTY_QUEUE
        self.mode = "sandbox"
        self.bot_user = ""
        self.session_start_limit: Any = None
        self.identifies_saved = 0

    # -- feeding -------------------------------------------------------------------------------

    def sync(self, runners: Mapping[ShardId, ShardRunnerInfo]) -> None:
        """Adopt shards the manager has queued since the last call (and drop ones it forgot)."""
        seen: set[int] = set()
        for shard_id, info in runners.items():
            sid = int(shard_id)
            seen.add(sid)
            row = self.rows.get(sid)
            if row is None or row.info is not info:
                row = ShardRow(info) if row is None else _rebind(row, info)
                row.sample_latency()
                self.rows[sid] = row
                self.dirty.add(sid)
        for sid in set(self.rows) - seen:
            del self.rows[sid]
            self.marked.discard(sid)
            self.dirty.add(sid)

    def apply(self, event: Any) -> None:
        """Take one manager event. Cheap on purpose: it runs once per event, not per frame."""
        if isinstance(event, ShardInfoUpdateEvent):
            sid = event.shard_id.id
            row = self.rows.get(sid)
            if row is not None:
                row.sample_latency()
            self.dirty.add(sid)
        elif isinstance(event, ShardStageUpdateEvent):
            sid = event.shard_id.id
            self.dirty.add(sid)
            self._log(
                LogLine(self.clock(), logging.INFO, sid, f"stage {event.old.value} → {event.new.value}")
            )
        elif isinstance(event, ShardLogEvent):
            sid = None if event.shard_id is None else event.shard_id.id
            self._log(LogLine(event.at, event.level, sid, event.message))
            if sid is not None:
                self.dirty.add(sid)
        elif isinstance(event, FatalErrorEvent):
            if event.kind not in FLEET_FATAL_KINDS and event.shard_ids:
                # One shard stopping is news, not the end: the rest of the fleet keeps running.
                self.alerts.append(event.message)
            else:
                # The manager reports each bot-wide failure once; a later one (after the operator
                # booted shards again) is news again.
                self.fatal = event
                self.fatal_is_new = True
            for shard_id in event.shard_ids:
                self.dirty.add(shard_id.id)
            self._log(LogLine(self.clock(), logging.CRITICAL, None, event.message))

    def note(self, message: str, level: int = logging.INFO, shard_id: int | None = None) -> None:
        """A console-side log line (an operator action and its outcome)."""
        self._log(LogLine(self.clock(), level, shard_id, message))

    def _log(self, line: LogLine) -> None:
        self.fleet_log.append(line)
        self.pending_log.append(line)
        if line.shard_id is not None:
            row = self.rows.get(line.shard_id)
            if row is not None:
                row.log.append(line)

    def scan(self) -> None:
        """Mark rows whose info changed in place without an event.

        Runners bump counters (events, seq, guilds, resumes, ...) on the info object directly and
        only stage and latency changes arrive as events, so the tick compares one tuple per row.
        """
        for sid, row in self.rows.items():
            info = row.info
            signature = (
                info.stage,
                info.latency,
                info.health,
                info.events_received,
                info.events_per_second,
                info.last_seq,
                info.guilds,
                info.resumes,
                info.reconnects,
                info.last_close_code,
                info.presence,
                info.fatal_error,
                info.running,
            )
            if signature != row.signature:
                row.signature = signature
                row.sample_latency()
                self.dirty.add(sid)

    def take_dirty(self) -> set[int]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    def take_log(self) -> list[LogLine]:
        lines, self.pending_log = self.pending_log, []
        return lines

    def mark_all_dirty(self) -> None:
        self.dirty.update(self.rows)

    # -- presentation --------------------------------------------------------------------------

    def cells(self, sid: int) -> dict[str, Cell]:
        row = self.rows[sid]
        return row_cells(row, self.clock(), marked=sid in self.marked, queued=sid in self.queue.queued)

    def age_cells(self, sid: int) -> dict[str, Cell]:
        """Only the time-driven cells, which change without any event."""
        info = self.rows[sid].info
        now = self.clock()
        return {
            "dispatch_age": Cell(
                format_age(None if info.last_dispatch_at is None else now - info.last_dispatch_at)
            ),
            "ack_age": Cell(format_age(None if info.last_ack_at is None else now - info.last_ack_at)),
        }

    def matches(self, sid: int) -> bool:
        return row_matches(self.rows[sid], self.filter_text, sid in self.queue.queued)

    def visible_ids(self) -> list[int]:
        """Shards passing the filter, in the current sort order."""
        now = self.clock()
        key = self.sort_key
        ids = [sid for sid in self.rows if self.matches(sid)]
        ids.sort(key=lambda sid: sort_value(self.rows[sid], key, now, sid in self.queue.queued))
        return ids

    def sort_value(self, sid: int) -> tuple[Any, ...]:
        return sort_value(self.rows[sid], self.sort_key, self.clock(), sid in self.queue.queued)

    def cycle_sort(self, step: int) -> SortKey:
        index = SORT_ORDER.index(self.sort_key)
        self.sort_key = SORT_ORDER[(index + step) % len(SORT_ORDER)]
        return self.sort_key

    def toggle_mark(self, sid: int) -> bool:
        self.dirty.add(sid)
        if sid in self.marked:
            self.marked.discard(sid)
            return False
        self.marked.add(sid)
        return True

    def clear_marks(self) -> None:
        self.dirty.update(self.marked)
        self.marked.clear()

    def targets(self, selected: int | None) -> list[int]:
        """Marked shards if any are marked, else the selected one."""
        if self.marked:
            return sorted(self.marked)
        return [] if selected is None or selected not in self.rows else [selected]

    def record_sent_presence(self, sid: int, presence: Presence) -> None:
        row = self.rows.get(sid)
        if row is not None:
            row.sent_presence = presence
            self.dirty.add(sid)

    def is_live(self) -> bool:
        """True while any shard runs (queued, connecting or connected): quitting would cut them off."""
        return any(
            r.info.running or r.info.stage is not ConnectionStage.DISCONNECTED for r in self.rows.values()
        )

    # -- fleet ---------------------------------------------------------------------------------

    def stats(self) -> FleetStats:
        now = self.clock()
        infos = [r.info for r in self.rows.values()]
        ready = sum(1 for i in infos if i.stage is ConnectionStage.CONNECTED)
        latencies = [
            i.latency for i in infos if i.stage is ConnectionStage.CONNECTED and i.latency is not None
        ]
        limit = self.session_start_limit
        identifying = len(self.queue.identifying) or sum(
            1 for i in infos if i.stage is ConnectionStage.IDENTIFYING
        )
        return FleetStats(
            mode=self.mode,
            bot_user=self.bot_user,
            ready=ready,
            total=len(infos),
            queued=len(self.queue.queued),
            identifying=identifying,
            p50=percentile(latencies, 50),
            p95=percentile(latencies, 95),
            events_per_second=sum(i.events_per_second for i in infos),
            next_slot_in=None if self.queue.next_slot_at is None else max(0.0, self.queue.next_slot_at - now),
            starts_remaining=None if limit is None else limit.remaining,
            starts_total=None if limit is None else limit.total,
            starts_reset_in=None if limit is None else max(0.0, limit.reset_at - now),
            max_concurrency=None if limit is None else limit.max_concurrency,
            waiting_reason=self.queue.waiting_reason,
            identifies_saved=self.identifies_saved,
        )

    def startup(self) -> StartupProgress:
        stats = self.stats()
        not_ready = stats.total - stats.ready
        eta = startup_eta(not_ready, stats.max_concurrency or 1, self.identify_window)
        return StartupProgress(stats.queued, stats.identifying, stats.ready, stats.total, eta)

    def set_bot_user(self, user: Mapping[str, Any] | None) -> None:
        if not user:
            self.bot_user = ""
            return
        name = str(user.get("username", "?"))
        discriminator = user.get("discriminator")
        if discriminator and discriminator != "0":
            name = f"{name}#{discriminator}"
        self.bot_user = name


def _rebind(row: ShardRow, info: ShardRunnerInfo) -> ShardRow:
    # A rebooted shard gets a fresh info object; keep the console's history of it.
    return ShardRow(info, log=row.log, latencies=row.latencies, sent_presence=row.sent_presence)
