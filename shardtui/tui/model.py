"""The console's model: shard rows and the overview, with no Textual import.

Manager events land here as they happen and only mark rows dirty; the app's timer asks for the dirty
rows' cells and pushes them into the table. Keeping this free of widgets lets the bench and the unit
tests drive it directly, and keeps per-event work to a dict lookup and a set insert.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shardtui.gateway.closecodes import Scope, scope_of
from shardtui.gateway.models import (
    AlertClearedEvent,
    AlertEvent,
    AlertKind,
    ConnectionStage,
    FatalErrorEvent,
    Presence,
    ShardId,
    ShardInfoUpdateEvent,
    ShardLogEvent,
    ShardRunnerInfo,
    ShardStageUpdateEvent,
)
from shardtui.tui.columns import COLUMNS, SORT_ORDER, Cell, Column, SortKey, row_cells, sort_value
from shardtui.tui.filtering import row_matches
from shardtui.tui.formatting import DASH, format_age, format_duration, format_latency, format_rate, percentile

if TYPE_CHECKING:
    from shardtui.gateway.queuer import QueueStatus

Clock = Callable[[], float]

LOG_LINES_PER_SHARD = 200
LOG_LINES_CONSOLE = 2_000
LATENCY_SAMPLES = 60
#: How loud each incident is as a toast (and in the log pane).
ALERT_SEVERITY: dict[AlertKind, str] = {
    AlertKind.WEDGED: "warning",
    AlertKind.ZOMBIE: "warning",
    AlertKind.FATAL: "error",
    AlertKind.OUTAGE: "error",
    AlertKind.LOST_PROCESS: "error",
}
_LOG_LEVEL = {"warning": logging.WARNING, "error": logging.ERROR, "information": logging.INFO}
#: Fleet-wide chart samples: one per FLEET_SAMPLE_INTERVAL seconds, ten minutes of them.
FLEET_SAMPLE_INTERVAL = 2.0
FLEET_SAMPLES = 300


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


@dataclass(frozen=True, slots=True)
class Toast:
    """One notification the app shows at its next tick (the model has no widgets to show it on)."""

    title: str
    message: str
    severity: str
    timeout: float
    #: A newly raised incident (rings the terminal bell when ``[ui] bell`` is on); a clearing does not.
    raised: bool = False


def alert_title(event: AlertEvent | AlertClearedEvent) -> str:
    where = f" · shard {int(event.shard_id)}" if event.shard_id is not None else ""
    if event.process is not None:
        where = f" · process {event.process}"
    if isinstance(event, AlertClearedEvent):
        return f"Cleared: {event.kind.value}{where} (after {format_duration(event.duration)})"
    return f"Alert: {event.kind.value}{where}"


@dataclass(slots=True)
class ShardRow:
    """One shard as the console sees it: the live info plus what only the console keeps."""

    info: ShardRunnerInfo
    log: deque[LogLine] = field(default_factory=lambda: deque(maxlen=LOG_LINES_PER_SHARD))
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    #: What the console last sent with set_presence, shown until the runner reports it applied.
    sent_presence: Presence | None = None
    #: Bot clients attached through this process's proxy (None: no proxy, or another process's shard).
    clients: int | None = None
    #: The info's fields as last seen by ``ConsoleModel.scan``.
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


@dataclass(frozen=True, slots=True)
class FleetSample:
    """The whole fleet at one tick, for the chart view."""

    at: float
    events_per_second: float
    #: Over connected shards with a measured latency (seconds); None when there are none.
    mean_latency: float | None
    max_latency: float | None


@dataclass(frozen=True, slots=True)
class OverviewStats:
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
        """Two lines that fit 80 columns for up to thousands of shards."""
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
    """The parts of the manager's queue status the console shows."""

    queued: frozenset[int]
    identifying: frozenset[int]
    next_slot_at: float | None
    #: Why the queuer holds starts back (e.g. the daily budget is spent), or None.
    waiting_reason: str | None = None

    @classmethod
    def from_status(cls, status: QueueStatus) -> QueueView:
        slots = status.next_slots
        return cls(
            frozenset(int(i) for i in status.queued),
            frozenset(int(i) for i in status.identifying),
            min(slots.values()) if slots else None,
            status.waiting_reason or None,
        )


EMPTY_QUEUE = QueueView(frozenset(), frozenset(), None)


class ConsoleModel:
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
        #: Sort the other way round (lowest, fastest, best first; the highest id first).
        self.sort_reverse = False
        #: Columns the operator hid with the column chooser (kept for the session).
        self.hidden_columns: set[str] = set()
        self.fleet_samples: deque[FleetSample] = deque(maxlen=FLEET_SAMPLES)
        self.fleet_sample_interval = FLEET_SAMPLE_INTERVAL
        self.console_log: deque[LogLine] = deque(maxlen=LOG_LINES_CONSOLE)
        #: Log lines not yet written to the log pane.
        self.pending_log: list[LogLine] = []
        self.fatal: FatalErrorEvent | None = None
        self.fatal_is_new = False
        #: Notifications (alerts and their clearing) the app has not shown yet.
        self.toasts: list[Toast] = []
        #: Open incidents by (kind, shard, process), as the manager's alert events reported them.
        self.open_alerts: dict[tuple[AlertKind, int | None, str | None], AlertEvent] = {}
        self.queue = EMPTY_QUEUE
        self.mode = "sandbox"
        self.bot_user = ""
        self.session_start_limit: Any = None
        self.identifies_saved = 0
        #: Live proxy clients per shard, None when this process runs no proxy (no clients column).
        self.client_counts: dict[int, int] | None = None

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
                if self.client_counts is not None:
                    row.clients = self.client_counts.get(sid)
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
        elif isinstance(event, AlertEvent | AlertClearedEvent):
            self._alert(event)
        elif isinstance(event, FatalErrorEvent):
            # The close-code table says what a fatal error stops; the console stops with the bot only.
            # One shard stopping is news, not the end (its "fatal" alert is the toast); a bot-wide
            # stop is the fatal screen.
            if scope_of(event.kind, event.shard_ids) is not Scope.SHARD:
                # The manager reports each bot-wide failure once; a later one (after the operator
                # booted shards again) is news again.
                self.fatal = event
                self.fatal_is_new = True
            for shard_id in event.shard_ids:
                self.dirty.add(shard_id.id)
            self._log(LogLine(self.clock(), logging.CRITICAL, None, event.message))

    def _alert(self, event: AlertEvent | AlertClearedEvent) -> None:
        sid = None if event.shard_id is None else int(event.shard_id)
        key = (event.kind, sid, event.process)
        title = alert_title(event)
        if isinstance(event, AlertEvent):
            self.open_alerts[key] = event
            severity = ALERT_SEVERITY.get(event.kind, "warning")
            self.toasts.append(Toast(title, event.message, severity, 15.0, raised=True))
            self._log(
                LogLine(event.at, _LOG_LEVEL[severity], sid, f"ALERT {event.kind.value}: {event.message}")
            )
        else:
            self.open_alerts.pop(key, None)
            self.toasts.append(Toast(title, event.message, "information", 5.0))
            self._log(
                LogLine(
                    event.at,
                    logging.INFO,
                    sid,
                    f"cleared {event.kind.value} after {format_duration(event.duration)}: {event.message}",
                )
            )
        if sid is not None:
            self.dirty.add(sid)

    @property
    def outage(self) -> AlertEvent | None:
        """The open outage incident (every shard down), or None."""
        for (kind, _sid, _process), event in self.open_alerts.items():
            if kind is AlertKind.OUTAGE:
                return event
        return None

    def take_toasts(self) -> list[Toast]:
        toasts, self.toasts = self.toasts, []
        return toasts

    def note(self, message: str, level: int = logging.INFO, shard_id: int | None = None) -> None:
        """A console-side log line (an operator action and its outcome)."""
        self._log(LogLine(self.clock(), level, shard_id, message))

    def _log(self, line: LogLine) -> None:
        self.console_log.append(line)
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
        self.sample_fleet()

    def sample_fleet(self) -> FleetSample | None:
        """Record the fleet's events/s and latency if the last sample is old enough (the tick runs
        far more often than the charts need a point)."""
        now = self.clock()
        samples = self.fleet_samples
        if samples and now - samples[-1].at < self.fleet_sample_interval:
            return None
        latencies = [
            r.info.latency
            for r in self.rows.values()
            if r.info.stage is ConnectionStage.CONNECTED and r.info.latency is not None
        ]
        sample = FleetSample(
            at=now,
            events_per_second=sum(r.info.events_per_second for r in self.rows.values()),
            mean_latency=sum(latencies) / len(latencies) if latencies else None,
            max_latency=max(latencies) if latencies else None,
        )
        samples.append(sample)
        return sample

    def set_client_counts(self, counts: Mapping[int, int | None]) -> None:
        """Live proxy clients per shard (this process's proxy at the tick; other fleet processes' from
        their published state); None: not known (a dash). Marks the rows whose count changed."""
        known = self.client_counts
        if known is None:
            return
        for sid, count in counts.items():
            if known.get(sid) != count:
                if count is None:
                    known.pop(sid, None)
                else:
                    known[sid] = count
                row = self.rows.get(sid)
                if row is not None:
                    row.clients = count
                self.dirty.add(sid)

    def take_dirty(self) -> set[int]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    def delivered_log(self) -> list[LogLine]:
        """The console log without the lines still waiting for ``take_log`` (a view opened now gets
        those from the next tick, and must not show them twice)."""
        lines = list(self.console_log)
        return lines[: max(0, len(lines) - len(self.pending_log))]

    def take_log(self) -> list[LogLine]:
        lines, self.pending_log = self.pending_log, []
        return lines

    # -- presentation --------------------------------------------------------------------------

    def cells(self, sid: int) -> dict[str, Cell]:
        row = self.rows[sid]
        cells = row_cells(row, self.clock(), marked=sid in self.marked, queued=sid in self.queue.queued)
        if self.client_counts is not None:
            count = self.client_counts.get(sid)
            cells["clients"] = Cell(DASH if count is None else str(count))
        return cells

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
        ids.sort(
            key=lambda sid: sort_value(self.rows[sid], key, now, sid in self.queue.queued),
            reverse=self.sort_reverse,
        )
        return ids

    def shown_columns(self) -> tuple[Column, ...]:
        """The table's columns minus the ones the operator hid."""
        hidden = self.hidden_columns
        return tuple(c for c in self.columns if c.key not in hidden)

    def sort_value(self, sid: int) -> tuple[Any, ...]:
        return sort_value(self.rows[sid], self.sort_key, self.clock(), sid in self.queue.queued)

    def cycle_sort(self, step: int) -> SortKey:
        # Without a proxy there is no clients column to sort by.
        order = SORT_ORDER
        if self.client_counts is None:
            order = tuple(k for k in SORT_ORDER if k is not SortKey.CLIENTS)
        index = order.index(self.sort_key) if self.sort_key in order else 0
        self.sort_key = order[(index + step) % len(order)]
        return self.sort_key

    def reverse_sort(self) -> bool:
        self.sort_reverse = not self.sort_reverse
        return self.sort_reverse

    def mark_all(self) -> int:
        """Mark every shard, filtered out or not. Returns how many are marked."""
        self.dirty.update(self.rows)
        self.marked.update(self.rows)
        return len(self.marked)

    def mark_visible(self) -> int:
        """Mark the shards the filter shows (added to any already marked). Returns how many it added."""
        matching = {sid for sid in self.rows if self.matches(sid)}
        added = matching - self.marked
        self.marked |= matching
        self.dirty.update(added)
        return len(added)

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

    # -- overview ---------------------------------------------------------------------------------

    def stats(self) -> OverviewStats:
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
        return OverviewStats(
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
