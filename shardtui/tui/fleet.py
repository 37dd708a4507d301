"""The fleet console: one table over every shard of every ``[cluster]`` process, read from Redis.

Two ways to run it. A *member* (``[cluster]`` without ``[ui] fleet``) runs its own shards through a
``Runtime`` and shows the whole fleet next to them; a *viewer* (``shardtui --fleet``) runs no shard
and only watches. Either way a worker reads ``FleetView.snapshot()`` once per refresh and every
action (restart, shutdown, boot, presence, rolling restart) goes through the app's control, a
``FleetShardControl`` (``fleet_control.py``), so it reaches whichever process owns the shard and comes
back as a ``CommandResult`` the operator sees.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Static
from textual.worker import Worker

from shardtui.config import Config, ConfigError
from shardtui.gateway.alerts import AlertTracker
from shardtui.gateway.models import AlertKind, ShardId, ShardRunnerInfo
from shardtui.tui.app import RuntimeFactory, ShardTUI
from shardtui.tui.clients import show_clients_column
from shardtui.tui.columns import COLUMNS, Cell, Column
from shardtui.tui.filtering import row_matches
from shardtui.tui.fleet_control import FleetShardControl
from shardtui.tui.formatting import DASH, format_age, shard_ids_phrase
from shardtui.tui.model import EMPTY_QUEUE, Clock, ConsoleModel, OverviewStats
from shardtui.tui.screens import ConfirmScreen

if TYPE_CHECKING:
    from shardtui.fleet import FleetNode, FleetProcess, FleetSnapshot
    from shardtui.fleet.state import FleetShard

log = logging.getLogger("shardtui.tui.fleet")

#: Exit status when this process could not join the fleet (same as any configuration error).
EXIT_CONFIG = 2
#: Processes listed in the summary before it says "and N more".
SUMMARY_LINES = 6
PROCESS_COLUMN = Column("process", "process", 14, 0)
#: The shard id first, then who runs it, then everything the one-process console shows.
FLEET_COLUMNS: tuple[Column, ...] = (COLUMNS[0], PROCESS_COLUMN, *COLUMNS[1:])

NodeFactory = Callable[[Config], "FleetNode"]


def _default_node_factory(config: Config) -> FleetNode:
    from shardtui.fleet import FleetNode

    return FleetNode(config.cluster)


class FleetConsoleModel(ConsoleModel):
    """The view model plus what only a fleet has: each shard's process, lost processes, and the
    presence other processes publish as text."""

    def __init__(self, *, clock: Clock = time.time, identify_window: float = 5.0) -> None:
        super().__init__(clock=clock, identify_window=identify_window)
        self.columns = FLEET_COLUMNS
        #: Shard id -> the process that runs it.
        self.owners: dict[int, str] = {}
        #: Shards whose process stopped sending heartbeats.
        self.lost: set[int] = set()
        #: Presence text published by other processes (their Presence objects stay there).
        self.presence_text: dict[int, str] = {}
        #: Other processes' shards they have queued for an identify slot (this process's own
        #: queued shards come from its manager's queue status).
        self.remote_queued: frozenset[int] = frozenset()
        #: Processes alive in the fleet (the header names them while no bot user is known here).
        self.processes_alive = 0

    def stats(self) -> OverviewStats:
        stats = super().stats()
        if stats.bot_user:
            return stats
        alive = self.processes_alive
        return dataclasses.replace(stats, bot_user=f"{alive} process{'es' if alive != 1 else ''} alive")

    def cells(self, sid: int) -> dict[str, Cell]:
        cells = super().cells(sid)
        owner = self.owners.get(sid)
        if sid in self.lost:
            cells["process"] = Cell(owner or DASH, "health-failed", bold=True)
            cells["stage"] = Cell("lost", "stage-failed", bold=True)
        else:
            cells["process"] = Cell(owner or DASH)
        text = self.presence_text.get(sid)
        if text is not None and self.rows[sid].presence is None:
            cells["presence"] = Cell(text)
        return cells

    def matches(self, sid: int) -> bool:
        query = self.filter_text.strip().lower()
        if query and query in self.owners.get(sid, "").lower():
            return True
        if query == "lost":
            return sid in self.lost
        return row_matches(self.rows[sid], self.filter_text, sid in self.queue.queued)


def replaced_processes(snapshot: FleetSnapshot, seen: Iterable[str] = ()) -> set[str]:
    """Lost processes whose every shard a live process runs now (nothing of theirs is missing), and
    those of ``seen`` (replaced earlier) that are still lost: a replacement that is lost in turn does
    not bring them back."""
    live = {sid for p in snapshot.processes if p.alive for sid in p.shard_ids}
    earlier = set(seen)
    return {
        p.name for p in snapshot.processes if not p.alive and (set(p.shard_ids) <= live or p.name in earlier)
    }


def clashes(snapshot: FleetSnapshot) -> dict[str, dict[str, list[int]]]:
    """For each live process, the shards another live process claims too, by that other process."""
    found: dict[str, dict[str, list[int]]] = {}
    alive = [p for p in snapshot.processes if p.alive]
    for process in alive:
        mine = set(process.shard_ids)
        for other in alive:
            if other is not process:
                shared = sorted(mine & set(other.shard_ids))
                if shared:
                    found.setdefault(process.name, {})[other.name] = shared
    return found


def summary_line(process: FleetProcess, now: float) -> str:
    """One process: name, alive or LOST, its range, shards per stage and its heartbeat's age."""
    state = "alive" if process.alive else "LOST"
    if process.shard_range is not None:
        shards = f"shards {process.shard_range[0]}-{process.shard_range[1]}"
    else:
        shards = f"{len(process.shard_ids)} shards"
    stages = " ".join(f"{stage} {count}" for stage, count in sorted(process.stages.items())) or "no shards"
    age = None if process.heartbeat_at is None else now - process.heartbeat_at
    where = f" ({process.host}:{process.pid})" if process.host else ""
    held = f" · held: {process.waiting_reason}" if process.waiting_reason else ""
    return f"{process.name}{where} · {state} · {shards} · {stages} · heartbeat {format_age(age)} ago{held}"


class FleetConsole(ShardTUI):
    """``ShardTUI`` over the whole fleet. ``member`` (default: ``not config.ui.fleet``) runs this
    process's shards too; a viewer runs none. ``startup_error`` holds the one line to print when
    this process was refused by the fleet (the app then exits with status 2)."""

    BINDINGS = [
        *ShardTUI.BINDINGS,
        Binding("F", "forget_lost", "Forget lost", id="forget_lost", key_display="F", show=False),
    ]

    CSS = """
    #fleet-banner {
        display: none;
        height: auto;
        padding: 0 1;
        background: $error;
        color: $text;
        text-style: bold;
    }
    #fleet-banner.visible {
        display: block;
    }
    #processes {
        height: auto;
        max-height: 7;
        padding: 0 1;
        background: $surface;
        color: $foreground;
    }
    """

    def __init__(
        self,
        config: Config,
        *,
        readonly: bool = False,
        member: bool | None = None,
        runtime_factory: RuntimeFactory | None = None,
        node_factory: NodeFactory | None = None,
        clock: Clock | None = None,
        themes_dir: Path | None = None,
    ) -> None:
        if config.cluster is None:
            raise ValueError("the fleet console needs a [cluster] table (redis_url)")
        super().__init__(
            config, readonly=readonly, runtime_factory=runtime_factory, clock=clock, themes_dir=themes_dir
        )
        self.member = (not config.ui.fleet) if member is None else member
        self.model = FleetConsoleModel(
            identify_window=self.model.identify_window, **({"clock": clock} if clock else {})
        )
        self.model.mode = f"fleet {config.cluster.cluster}" + ("" if self.member else " (viewer)")
        self.control = FleetShardControl(self)
        self._node_factory = node_factory or _default_node_factory
        self.fleet: FleetNode | None = None
        self.startup_error: str | None = None
        #: The last snapshot that reached Redis, and what is wrong now (None: all well).
        self.snapshot: FleetSnapshot | None = None
        self.fleet_problem: str | None = None
        self._snapshot_at: float | None = None
        #: Other processes' shards as stable info objects, updated in place so the model's scan
        #: sees what changed (a fresh object per poll would redraw every row).
        self._remote: dict[ShardId, ShardRunnerInfo] = {}
        self.polls = 0
        self._poller: Worker[None] | None = None
        #: Lost-process incidents when no manager runs here (a viewer); a member uses its manager's.
        self._own_alerts = AlertTracker(self.model.apply)
        #: Lost processes with an open lost_process incident (raised through the alert tracker).
        self.lost_alerted: set[str] = set()
        #: Lost processes seen replaced: out of the summary until they beat again or expire.
        self.replaced: set[str] = set()
        #: The fleet banner and process summary, once mounted.
        self._banner: Static | None = None
        self._processes: Static | None = None

    # -- layout ----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            yield widget
            if isinstance(widget, Widget) and widget.id == "fleet":
                yield Static(id="fleet-banner")
                yield Static(id="processes")

    def on_mount(self) -> None:
        self._banner = self.query_one("#fleet-banner", Static)
        self._processes = self.query_one("#processes", Static)
        super().on_mount()

    # -- the fleet worker ------------------------------------------------------------------------

    shutdown_note = "shutting down this process's shards"

    async def _run(self) -> None:
        if self.member:
            await self._run_runtime()
        else:
            await self._run_viewer()

    async def _run_viewer(self) -> None:
        node = self._node_factory(self.config)
        self.fleet = node
        try:
            poller = self._poll_fleet(node)
            await self._quit_requested.wait()
            poller.cancel()
        finally:
            await node.close()

    def _adopt_runtime(self, runtime: Any) -> None:
        # The mode stays the fleet's ("fleet NAME"), not the runtime's.
        self.runtime = runtime
        self.manager = runtime.manager
        self.fleet = runtime.fleet

    def _start_failed(self, exc: Exception) -> bool:
        if isinstance(exc, ConfigError):
            # Refused by the fleet (Redis away, name or shards taken): the CLI says it in one line
            # once the terminal is back.
            self.startup_error = str(exc)
            self._exit_code = EXIT_CONFIG
            return False
        return super()._start_failed(exc)

    def _runtime_started(self) -> None:
        self._poller = self._poll_fleet(self.fleet) if self.fleet is not None else None

    def _runtime_stopping(self) -> None:
        if self._poller is not None:
            self._poller.cancel()

    @work(group="fleet-poll", exit_on_error=False, name="fleet-poll")
    async def _poll_fleet(self, node: FleetNode) -> None:
        while not self._quit_requested.is_set():
            snapshot = await node.view.snapshot()
            self.adopt(snapshot)
            if snapshot.problem is None and self.manager is None:
                # A viewer has no gate of its own: the shared gate's count in Redis is the fleet's.
                self.model.session_start_limit = await node.view.session_budget()
            self._tick()
            await asyncio.sleep(self.refresh_interval)

    def adopt(self, snapshot: FleetSnapshot) -> None:
        """Take one snapshot into the model. When Redis is away the last good picture stays, under
        the banner, instead of the table going blank."""
        self.polls += 1
        self.fleet_problem = snapshot.problem
        if snapshot.problem is not None:
            return
        self.snapshot = snapshot
        self._snapshot_at = time.time()
        model = self.model
        local = self.local_name()
        self.replaced = replaced_processes(snapshot, self.replaced)
        seen: set[ShardId] = set()
        shown = [s for s in snapshot.shards if not (s.lost and s.process in self.replaced)]
        for shard in shown:
            sid = shard.shard_id
            owner_changed = model.owners.get(sid) != shard.process
            lost_changed = (sid in model.lost) != shard.lost
            model.owners[sid] = shard.process
            if shard.lost:
                model.lost.add(sid)
            else:
                model.lost.discard(sid)
            if owner_changed or lost_changed:
                model.dirty.add(sid)
            if shard.process == local and not shard.lost:
                continue  # this process's own shards come live from its manager
            key = ShardId(sid)
            seen.add(key)
            fresh = shard.to_info()
            current = self._remote.get(key)
            if current is None:
                self._remote[key] = fresh
            else:
                for item in dataclasses.fields(ShardRunnerInfo):
                    setattr(current, item.name, getattr(fresh, item.name))
            text = shard.info.get("presence")
            if isinstance(text, str) and model.presence_text.get(sid) != text:
                model.presence_text[sid] = text
                model.dirty.add(sid)
        for key in set(self._remote) - seen:
            del self._remote[key]
        self._adopt_client_counts(shown, local)
        remote_queued = frozenset(sid for sid in snapshot.queued() if ShardId(sid) in seen)
        # The queued word is not in the info (a queued shard reads as disconnected): redraw the
        # rows whose queued state changed.
        model.dirty.update(remote_queued ^ model.remote_queued)
        model.remote_queued = remote_queued
        known = {shard.shard_id for shard in shown}
        if self.manager is not None:
            known.update(int(sid) for sid in self.manager.runners)
        for sid in set(model.owners) - known:
            del model.owners[sid]
            model.lost.discard(sid)
            model.presence_text.pop(sid, None)
        model.processes_alive = sum(1 for p in snapshot.processes if p.alive)
        self._watch_processes(snapshot)

    def _adopt_client_counts(self, shown: Iterable[FleetShard], local: str | None) -> None:
        """Other processes' proxy clients as they publish them (this process's own come from its
        proxy at every tick); the column appears once any process of the fleet runs a proxy."""
        counts = {s.shard_id: s.clients for s in shown if s.process != local or s.lost}
        if self.model.client_counts is None:
            if all(count is None for count in counts.values()):
                return
            show_clients_column(self.model)
            self._table.refresh_columns()
        self.model.set_client_counts(counts)

    def _alert_tracker(self) -> AlertTracker:
        return self._own_alerts if self.manager is None else self.manager.alerts

    def _watch_processes(self, snapshot: FleetSnapshot) -> None:
        """One lost_process incident per lost process, cleared when it is back, replaced or forgotten."""
        tracker = self._alert_tracker()
        replaced = self.replaced
        lost = {p.name: p for p in snapshot.processes if not p.alive and p.name not in replaced}
        for name, process in lost.items():
            if name not in self.lost_alerted:
                shards = shard_ids_phrase(list(process.shard_ids)) if process.shard_ids else "no shards"
                message = f"process {name} lost (no heartbeat): {shards} unaccounted for"
                tracker.raise_alert(AlertKind.LOST_PROCESS, None, message, process=name)
                self.lost_alerted.add(name)
        for name in sorted(self.lost_alerted - set(lost)):
            process = snapshot.process(name)
            if name in replaced:
                how = "replaced: its shards run in live processes"
            elif process is not None and process.alive:
                how = "back (heartbeat again)"
            else:
                how = "forgotten"
            tracker.clear_alert(AlertKind.LOST_PROCESS, None, f"process {name} {how}", process=name)
            self.lost_alerted.discard(name)

    def local_name(self) -> str | None:
        return None if self.fleet is None or self.manager is None else self.fleet.name

    def shard_infos(self) -> dict[ShardId, ShardRunnerInfo]:
        """Other processes' shards as last read from Redis, this process's own ones live."""
        infos = dict(self._remote)
        if self.manager is not None:
            local = self.fleet.name if self.fleet is not None else None
            model = self.model
            for sid, info in self.manager.runners.items():
                infos[sid] = info
                # Known before this process's first publication reaches Redis.
                if local is not None and model.owners.get(int(sid)) != local:
                    model.owners[int(sid)] = local
                    model.lost.discard(int(sid))
                    model.dirty.add(int(sid))
        return infos

    def _shard_infos(self) -> Mapping[ShardId, Any] | None:
        return self.shard_infos()

    def _sync_model(self) -> None:
        super()._sync_model()
        # Queued shards of the whole fleet: this process's own from its manager (set just above),
        # the others' as their processes published them, so both read "queued", not "disconnected".
        model = self.model
        if self.manager is None:
            model.queue = dataclasses.replace(EMPTY_QUEUE, queued=model.remote_queued)
            return
        own = {int(sid) for sid in self.manager.runners}
        model.queue = dataclasses.replace(
            model.queue, queued=model.queue.queued | (model.remote_queued - own)
        )

    # -- header ----------------------------------------------------------------------------------

    def _update_header(self) -> None:
        super()._update_header()
        banner, processes = self._banner, self._processes
        if banner is None or processes is None:  # not mounted yet
            return
        problem = self.fleet_problem
        if problem is None and self.fleet is not None and self.manager is not None:
            problem = self.fleet.problem
        if problem:
            if self._snapshot_at is not None:
                stamp = time.strftime("%H:%M:%S", time.localtime(self._snapshot_at))
                shown = f"the table shows the fleet as of {stamp}"
            else:
                shown = "no fleet state yet"
            if self.manager is not None:
                reach = "commands reach only this process's shards (which keep running), not other processes'"
            else:
                reach = "commands cannot be sent"
            banner.update(Text(f"FLEET: {problem} — {shown}; {reach}"))
            banner.add_class("visible")
        else:
            banner.remove_class("visible")
        processes.update(Text(self.summary_text()))

    def summary_text(self) -> str:
        snapshot = self.snapshot
        if snapshot is None:
            return "processes: waiting for the fleet's state from Redis"
        # A lost process whose shards all run elsewhere now has nothing left to report.
        replaced = self.replaced
        processes = [p for p in snapshot.processes if p.name not in replaced]
        if not processes:
            return "processes: none has joined the fleet yet"
        now = time.time()
        alive = sum(1 for p in processes if p.alive)
        head = f"processes: {alive} alive, {len(processes) - alive} lost"
        if alive < len(processes):
            head += " (F forgets a lost one)"
        clashing = clashes(snapshot)
        lines = [head]
        for process in processes[:SUMMARY_LINES]:
            lines.append(summary_line(process, now))
            for other, shared in sorted(clashing.get(process.name, {}).items()):
                lines.append(f"  ⚠ shard range clash: {shard_ids_phrase(shared)} also claimed by {other}")
        if len(processes) > SUMMARY_LINES:
            lines.append(f"… and {len(processes) - SUMMARY_LINES} more")
        return "\n".join(lines)

    # -- forgetting lost processes -----------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "forget_lost" and self.readonly:
            return False
        return super().check_action(action, parameters)

    def forget_candidates(self) -> list[str]:
        """The lost process of the selected shard, else every lost process still shown."""
        snapshot = self.snapshot
        if snapshot is None:
            return []
        lost = [p.name for p in snapshot.processes if not p.alive and p.name not in self.replaced]
        selected = self.table.selected_shard
        owner = None if selected is None else self.model.owners.get(selected)
        return [owner] if owner in lost else lost

    def action_forget_lost(self) -> None:
        names = self.forget_candidates()
        if self.fleet is None or not names:
            self.notify("No lost process to forget.", severity="warning")
            return
        them = ", ".join(names)
        body = (
            f"Forget lost process{'es' if len(names) > 1 else ''} {them}? Its shards leave the table; "
            "do this for a process that was decommissioned or replaced. A process that comes back "
            "publishes itself again."
        )

        def done(answer: bool | None) -> None:
            if answer:
                self._forget(names)

        self.push_screen(ConfirmScreen("Forget lost processes", body, yes="Forget"), done)

    @work(group="actions", exit_on_error=False)
    async def _forget(self, names: list[str]) -> None:
        assert self.fleet is not None
        forgotten: list[str] = []
        for name in names:
            try:
                if await self.fleet.view.forget(name):
                    forgotten.append(name)
            except ValueError as exc:  # it came back meanwhile
                self.notify(str(exc), title="Not forgotten", severity="warning")
            except Exception as exc:
                self.notify(f"{name}: {exc}", title="Not forgotten", severity="error")
        if forgotten:
            self.model.note(f"forgot lost process{'es' if len(forgotten) > 1 else ''} {', '.join(forgotten)}")
            self.notify(f"Forgot {', '.join(forgotten)}", timeout=5)


__all__ = ["FLEET_COLUMNS", "FleetConsole", "FleetConsoleModel", "summary_line"]
