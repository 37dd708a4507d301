"""Incidents: one ``AlertEvent`` when something goes wrong, one ``AlertClearedEvent`` when it is over.

The tracker watches the manager's own events (stage changes, info updates, fatal errors) and keeps
the set of open incidents, so a condition that persists across many health checks or info updates
is reported once. Incidents and when they clear:

- wedged (per shard): health turned "wedged"; clears when the shard is connected and receiving
  again (health ok or quiet) or is no longer running. A restart's reconnect does not clear it.
- zombie (per shard): a connected shard dropped its connection because heartbeats went
  unacknowledged; clears when it is connected again.
- fatal (per shard, or process-wide when several shards stopped on one error): clears when the
  shard (any shard, for a process-wide one) connects again.
- outage (process-wide): every running shard of this process has been down at once for the grace
  period (``[health] outage_after``), after at least one had connected; clears only when every
  running shard is connected again, so one incident covers the whole recovery instead of flapping as
  shards come back one by one. The grace keeps a routine reconnect (a one-shard bot's op 7, a resume)
  from being an incident; the alert's ``since`` is still the moment the last shard went down.
- lost_process (fleet): raised and cleared through ``raise_alert`` / ``clear_alert`` by whatever
  watches the fleet's processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Protocol

from shardtui.gateway.closecodes import Scope, scope_of
from shardtui.gateway.models import (
    AlertClearedEvent,
    AlertEvent,
    AlertKind,
    ConnectionStage,
    FatalErrorEvent,
    ManagerEvent,
    ShardHealth,
    ShardId,
    ShardInfoUpdateEvent,
    ShardRunnerInfo,
    ShardStageUpdateEvent,
)

#: The close reason the Shard records when it leaves a connection whose heartbeats went unACKed.
ZOMBIE_REASON: Final = "zombie connection"
_RECOVERED: Final = frozenset({ShardHealth.OK, ShardHealth.QUIET})

#: (kind, shard, fleet process): one open incident per key.
AlertKey = tuple[AlertKind, ShardId | None, str | None]


class Cancellable(Protocol):
    def cancel(self) -> None: ...


#: ``schedule(delay, callback)``: run ``callback`` once after ``delay`` seconds (``loop.call_later``).
Scheduler = Callable[[float, Callable[[], None]], Cancellable]


@dataclass(frozen=True, slots=True)
class OpenIncident:
    kind: AlertKind
    shard_id: ShardId | None
    message: str
    since: float
    process: str | None = None


class AlertTracker:
    """Open incidents of one process; ``emit`` receives each ``AlertEvent`` / ``AlertClearedEvent``.

    ``outage_grace`` > 0 needs ``schedule``: the outage is raised only if every shard is still down
    when the grace has passed."""

    def __init__(
        self,
        emit: Callable[[ManagerEvent], None],
        wall: Callable[[], float] = time.time,
        *,
        outage_grace: float = 0.0,
        schedule: Scheduler | None = None,
    ) -> None:
        if outage_grace > 0 and schedule is None:
            raise ValueError("an outage grace period needs a scheduler")
        self._emit = emit
        self._wall = wall
        self._outage_grace = outage_grace
        self._schedule = schedule
        #: When every running shard went down, while the grace runs; and the pending re-check.
        self._down_since: float | None = None
        self._pending: Cancellable | None = None
        self._runners: Mapping[ShardId, ShardRunnerInfo] = {}
        self.open: dict[AlertKey, OpenIncident] = {}
        #: Set once any shard connected: an outage is "was up, now all down", not a slow start.
        self._was_up = False
        #: A bot-wide fatal error stopped every shard on purpose: its fatal alert says why they are
        #: down, so their going down is no outage until one connects again.
        self._stopped_by_fatal = False

    # -- explicit incidents ------------------------------------------------------------------------

    def raise_alert(
        self,
        kind: AlertKind,
        shard_id: ShardId | None,
        message: str,
        *,
        process: str | None = None,
        since: float | None = None,
    ) -> bool:
        """Open an incident; False (and nothing emitted) when the same one is already open.
        ``process`` names the fleet process of a ``lost_process`` incident; ``since`` when the
        condition began, if before now."""
        key = (kind, shard_id, process)
        if key in self.open:
            return False
        began = self._wall() if since is None else since
        self.open[key] = OpenIncident(kind, shard_id, message, began, process)
        self._emit(AlertEvent(kind, shard_id, message, began, process))
        return True

    def clear_alert(
        self, kind: AlertKind, shard_id: ShardId | None, message: str, *, process: str | None = None
    ) -> bool:
        """Close an open incident; False when there was none."""
        incident = self.open.pop((kind, shard_id, process), None)
        if incident is None:
            return False
        now = self._wall()
        self._emit(AlertClearedEvent(kind, shard_id, message, max(0.0, now - incident.since), now, process))
        return True

    # -- from manager events -----------------------------------------------------------------------

    def cancel_pending(self) -> None:
        """Forget an outage still in its grace period (the manager is stopping or resharding: every
        shard going down then is no outage)."""
        if self._pending is not None:
            self._pending.cancel()
        self._pending = None
        self._down_since = None

    def observe(self, event: ManagerEvent, runners: Mapping[ShardId, ShardRunnerInfo]) -> None:
        self._runners = runners
        if isinstance(event, ShardInfoUpdateEvent):
            info = runners.get(event.shard_id)
            if info is not None:
                self._wedged(info)
        elif isinstance(event, ShardStageUpdateEvent):
            info = runners.get(event.shard_id)
            if info is not None:
                self._stage(event, info)
            self._outage(runners)
        elif isinstance(event, FatalErrorEvent):
            shard = event.shard_ids[0] if len(event.shard_ids) == 1 else None
            self.raise_alert(AlertKind.FATAL, shard, event.message)
            if scope_of(event.kind, event.shard_ids) is Scope.BOT:
                self._stopped_by_fatal = True
                self.cancel_pending()
                self.clear_alert(AlertKind.OUTAGE, None, f"the shards were stopped: {event.message}")

    def _wedged(self, info: ShardRunnerInfo) -> None:
        sid = info.shard_id
        if info.health is ShardHealth.WEDGED:
            self.raise_alert(AlertKind.WEDGED, sid, f"shard {sid} is wedged: {info.health_reason}")
        elif (AlertKind.WEDGED, sid, None) in self.open and (info.health in _RECOVERED or not info.running):
            how = "receiving events again" if info.running else "stopped"
            self.clear_alert(AlertKind.WEDGED, sid, f"shard {sid} is {how}")

    def _stage(self, event: ShardStageUpdateEvent, info: ShardRunnerInfo) -> None:
        sid = event.shard_id
        if event.new is ConnectionStage.CONNECTED:
            self._was_up = True
            self._stopped_by_fatal = False
            self.clear_alert(AlertKind.ZOMBIE, sid, f"shard {sid} is connected again")
            self.clear_alert(AlertKind.FATAL, sid, f"shard {sid} is connected again")
            self.clear_alert(AlertKind.FATAL, None, f"shard {sid} connected again")
        elif event.old is ConnectionStage.CONNECTED and info.last_close_reason == ZOMBIE_REASON:
            self.raise_alert(
                AlertKind.ZOMBIE, sid, f"shard {sid}: heartbeats went unacknowledged; reconnecting"
            )

    def _outage(self, runners: Mapping[ShardId, ShardRunnerInfo], *, grace_over: bool = False) -> None:
        running = [i for i in runners.values() if i.running and i.fatal_error is None]
        if not running or self._stopped_by_fatal:
            self.cancel_pending()
            return
        up = sum(1 for i in running if i.stage is ConnectionStage.CONNECTED)
        if up == 0 and self._was_up:
            if self._down_since is None:
                self._down_since = self._wall()
            if self._outage_grace <= 0 or grace_over:
                self._raise_outage(len(running))
            elif self._pending is None and (AlertKind.OUTAGE, None, None) not in self.open:
                assert self._schedule is not None
                self._pending = self._schedule(self._outage_grace, self._grace_over)
            return
        self.cancel_pending()
        if up == len(running):
            self.clear_alert(AlertKind.OUTAGE, None, f"all {len(running)} running shards are connected again")

    def _grace_over(self) -> None:
        self._pending = None
        if self._down_since is not None:
            self._outage(self._runners, grace_over=True)

    def _raise_outage(self, running: int) -> None:
        self.raise_alert(
            AlertKind.OUTAGE,
            None,
            f"outage: all {running} running shards of this process are down",
            since=self._down_since,
        )
