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
- outage (process-wide): every running shard of this process is down at once, after at least one
  had connected; clears only when every running shard is connected again, so one incident covers
  the whole recovery instead of flapping as shards come back one by one.
- lost_process (fleet): raised and cleared through ``raise_alert`` / ``clear_alert`` by whatever
  watches the fleet's processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

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


@dataclass(frozen=True, slots=True)
class OpenIncident:
    kind: AlertKind
    shard_id: ShardId | None
    message: str
    since: float
    process: str | None = None


class AlertTracker:
    """Open incidents of one process; ``emit`` receives each ``AlertEvent`` / ``AlertClearedEvent``."""

    def __init__(self, emit: Callable[[ManagerEvent], None], wall: Callable[[], float] = time.time) -> None:
        self._emit = emit
        self._wall = wall
        self.open: dict[AlertKey, OpenIncident] = {}
        #: Set once any shard connected: an outage is "was up, now all down", not a slow start.
        self._was_up = False
        #: A bot-wide fatal error stopped every shard on purpose: its fatal alert says why they are
        #: down, so their going down is no outage until one connects again.
        self._stopped_by_fatal = False

    # -- explicit incidents ------------------------------------------------------------------------

    def raise_alert(
        self, kind: AlertKind, shard_id: ShardId | None, message: str, *, process: str | None = None
    ) -> bool:
        """Open an incident; False (and nothing emitted) when the same one is already open.
        ``process`` names the fleet process of a ``lost_process`` incident."""
        key = (kind, shard_id, process)
        if key in self.open:
            return False
        now = self._wall()
        self.open[key] = OpenIncident(kind, shard_id, message, now, process)
        self._emit(AlertEvent(kind, shard_id, message, now, process))
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

    def observe(self, event: ManagerEvent, runners: Mapping[ShardId, ShardRunnerInfo]) -> None:
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

    def _outage(self, runners: Mapping[ShardId, ShardRunnerInfo]) -> None:
        running = [i for i in runners.values() if i.running and i.fatal_error is None]
        if not running or self._stopped_by_fatal:
            return
        up = sum(1 for i in running if i.stage is ConnectionStage.CONNECTED)
        if up == 0 and self._was_up:
            self.raise_alert(
                AlertKind.OUTAGE, None, f"outage: all {len(running)} running shards of this process are down"
            )
        elif up == len(running):
            self.clear_alert(AlertKind.OUTAGE, None, f"all {len(running)} running shards are connected again")
