"""``FleetShardControl``: the console's ``ShardControl`` over the Redis fleet.

Every command goes through ``FleetNode.control`` (``shardtui.fleet``), so it reaches whichever process
owns the shard — this process's own shards directly, others' through Redis — and comes back as a
``CommandResult`` the operator sees, worst outcome first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from shardtui.gateway.models import ConnectionStage, Presence, ShardId, ShardRunnerInfo
from shardtui.tui.control import ControlHost, starts
from shardtui.tui.formatting import shard_count, shard_ids_phrase

if TYPE_CHECKING:
    from textual.notifications import SeverityLevel

    from shardtui.fleet import CommandResult, FleetControl, FleetNode
    from shardtui.gateway.rolling import RollingRestartStatus
    from shardtui.tui.fleet import FleetConsoleModel

#: How long the fleet's rolling restart waits for one shard to come back before moving on.
ROLLING_SHARD_TIMEOUT = 60.0


class FleetHost(ControlHost, Protocol):
    """The fleet console as its control sees it: the fleet node (None until joined) and every
    shard of the fleet, this process's own live."""

    fleet: FleetNode | None
    model: FleetConsoleModel  # type: ignore[assignment]

    def shard_infos(self) -> dict[ShardId, ShardRunnerInfo]: ...

    def local_name(self) -> str | None: ...


def result_severity(result: CommandResult) -> SeverityLevel:
    from shardtui.fleet import CommandStatus

    if result.status is CommandStatus.OK:
        return "information"
    if result.status is CommandStatus.UNACKNOWLEDGED:
        return "warning"
    return "error"


class FleetShardControl:
    """Sends each command to the process that owns the shard and reports the acknowledgements."""

    no_boot_target = "Only a stopped shard of a live process can be booted; select or mark one."

    def __init__(self, host: FleetHost) -> None:
        self.host = host
        #: The fleet rolling restart in progress (or the last one), shown in the header while it runs.
        self.rolling: RollingRestartStatus | None = None
        self._abort = False

    def _control(self) -> FleetControl:
        assert self.host.fleet is not None
        return self.host.fleet.control

    def unavailable(self) -> str | None:
        return "Not connected to the fleet yet." if self.host.fleet is None else None

    def plan_text(self, action: str, ids: Sequence[int]) -> str:
        control = self.host.fleet.control if self.host.fleet is not None else None
        local = [i for i in ids if control is not None and control.is_local(i)]
        remote = [i for i in ids if i not in local]
        parts = []
        if local:
            parts.append(f"This process runs {shard_ids_phrase(local)}: done here directly, without Redis.")
        if remote:
            owners = sorted({self.host.model.owners.get(i, "?") for i in remote})
            who = ("process " if len(owners) == 1 else "processes ") + ", ".join(owners)
            which = "" if not local else f" ({shard_ids_phrase(remote)})"
            each = "acknowledges" if len(owners) == 1 else "acknowledge"
            parts.append(f"Sent through Redis to {who}{which}, which {each} each command.")
        return " ".join(parts)

    def shutdown_title(self, count: int) -> str:
        return "Shut down shard" if count == 1 else "Shut down shards"

    def bootable(self, sid: int, running: bool) -> bool:
        return not running and sid not in self.host.model.lost

    async def restart(self, ids: Sequence[int], *, force_identify: bool = False) -> None:
        self.host.model.note(f"restart {shard_ids_phrase(ids)} (resume first) through the fleet")
        control = self._control()
        await self.send_each("restart", ids, lambda sid: control.restart(sid, force_identify=force_identify))

    async def shutdown(self, ids: Sequence[int]) -> None:
        self.host.model.note(f"shut down {shard_ids_phrase(ids)} through the fleet")
        control = self._control()
        await self.send_each("shutdown", ids, control.shutdown)

    async def boot(self, ids: Sequence[int]) -> None:
        self.host.model.note(f"boot {shard_ids_phrase(ids)} through the fleet")
        control = self._control()
        await self.send_each("boot", ids, control.boot)

    async def set_presence(self, ids: Sequence[int], presence: Presence) -> None:
        # Same editor and scopes as a single process; only the delivery differs: through the fleet.
        model = self.host.model
        model.note(f"presence {presence.describe()!r} to {shard_ids_phrase(ids)}")
        for sid in ids:
            model.record_sent_presence(sid, presence)
        control = self._control()
        await self.send_each("presence", ids, lambda sid: control.set_presence(sid, presence))

    async def send_each(
        self, verb: str, ids: Sequence[int], call: Callable[[int], Awaitable[CommandResult]]
    ) -> list[CommandResult]:
        """Send to every shard at once (each waits for its own acknowledgement) and show what
        became of them: one notification per command, worst outcome first (the command itself is
        already a line in the log pane, so no "sending…" toast goes before it)."""
        results = await asyncio.gather(*(call(sid) for sid in ids))
        self.show_results(verb, results)
        return list(results)

    def show_results(self, verb: str, results: Iterable[CommandResult]) -> None:
        from shardtui.fleet import CommandStatus

        results = list(results)
        if not results:
            return
        order = {"error": 0, "warning": 1, "information": 2}
        results.sort(key=lambda r: (order[result_severity(r)], r.shard_id))
        severity = result_severity(results[0])
        model = self.host.model
        # Commands Redis could not carry fail for one reason (the error text may differ per
        # attempt): one line for all their shards.
        unsent = [r for r in results if r.status is CommandStatus.UNREACHABLE and r.reason]
        lines: list[str] = []
        if unsent:
            ids = [r.shard_id for r in unsent]
            line = f"{verb} of {shard_ids_phrase(ids)} not sent: {unsent[0].reason}"
            lines.append(line)
            model.note(line, logging.ERROR, ids[0] if len(ids) == 1 else None)
        for result in results:
            if any(result is r for r in unsent):
                continue
            level = {"error": logging.ERROR, "warning": logging.WARNING}.get(
                result_severity(result), logging.INFO
            )
            model.note(result.message, level, result.shard_id)
            lines.append(result.message)
        if len(lines) > 8:
            lines = [*lines[:8], f"… and {len(lines) - 8} more (see the log pane)"]
        failed = sum(1 for r in results if not r.ok)
        unacked = sum(1 for r in results if result_severity(r) == "warning")
        if not failed:
            title = f"{verb}: acknowledged"
        elif unacked == failed:
            title = f"{verb}: {unacked} unacknowledged"
        else:
            title = f"{verb}: {failed} of {len(results)} not done"
        self.host.notify("\n".join(lines), title=title, severity=severity, timeout=10)

    def rolling_targets(self) -> list[int]:
        model = self.host.model
        return sorted(sid for sid in model.rows if sid not in model.lost)

    def rolling_question(self, ids: Sequence[int]) -> str:
        if len(ids) == 1:
            question = f"Restart the fleet's one live shard ({ids[0]})?"
        else:
            question = (
                f"Restart all {len(ids)} live shards of the fleet, one at a time, each back before the next?"
            )
        return f"{question}\n\n{self.plan_text('restart', ids)}\n\n{self.rolling_plan(ids)}"

    def rolling_plan(self, ids: Sequence[int]) -> str:
        """The batches in order: one shard per batch, listed per process as they come."""
        owners = self.host.model.owners
        runs: list[tuple[str, list[int]]] = []
        for sid in ids:
            owner = owners.get(sid, "?")
            if runs and runs[-1][0] == owner:
                runs[-1][1].append(sid)
            else:
                runs.append((owner, [sid]))
        lines = [f"Plan: {len(ids)} batches of one shard, each back before the next:"]
        first = 1
        for owner, run in runs[:8]:
            last = first + len(run) - 1
            which = f"batch {first}" if first == last else f"batches {first}-{last}"
            lines.append(f"  {which}: {shard_ids_phrase(run)} on {owner}")
            first = last + 1
        if len(runs) > 8:
            lines.append(f"  … then {len(ids) - first + 1} more shards")
        lines.append("Press R again while it runs to stop it after the current shard.")
        return "\n".join(lines)

    def rolling_progress(self) -> RollingRestartStatus | None:
        from shardtui.gateway.rolling import RollingState

        status = self.rolling
        return status if status is not None and status.state is RollingState.RUNNING else None

    def abort_rolling_restart(self) -> bool:
        from shardtui.gateway.rolling import RollingState

        status = self.rolling_progress()
        if status is None:
            return False
        # The loop stops before its next shard; the one being restarted comes back first.
        status.reason = "abort requested"
        self._abort = True
        return status.state is RollingState.RUNNING

    async def rolling_restart(self, ids: Sequence[int]) -> None:
        """One shard at a time, wherever it runs, each back before the next; stops at the first
        command that was not done."""
        from shardtui.gateway.rolling import RollingRestartStatus, RollingState

        model = self.host.model
        model.note(f"rolling restart of {shard_count(len(ids))} of the fleet")
        control = self._control()
        status = RollingRestartStatus(force_identify=False, rounds=[(ShardId(sid),) for sid in ids])
        self.rolling = status
        self._abort = False
        for sid in ids:
            if self._abort:
                status.state = RollingState.ABORTED
                status.finished_at = time.time()
                model.note(status.describe(), logging.WARNING)
                self.host.notify(status.describe(), title="Rolling restart", severity="warning")
                return
            before = starts(self.host.shard_infos(), sid)
            result = await control.restart(sid)
            if not result.ok:
                status.state = RollingState.FAILED
                status.reason = result.message
                status.finished_at = time.time()
                self.show_results("rolling restart stopped", [result])
                return
            await self._wait_back(sid, before, ROLLING_SHARD_TIMEOUT)
            info = self.host.shard_infos().get(ShardId(sid))
            status.done.append(ShardId(sid))
            status.round_index += 1
            if info is not None and info.last_start == "identify":
                status.identifies += 1
            else:
                status.resumes += 1
        status.state = RollingState.FINISHED
        status.finished_at = time.time()
        model.note("rolling restart finished")
        self.host.notify("Rolling restart finished")

    async def _wait_back(self, sid: int, before: int, limit: float) -> None:
        """Until the shard began a new session and shows as connected (or time ran out)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while loop.time() < deadline:
            infos: Mapping[ShardId, ShardRunnerInfo] = self.host.shard_infos()
            info = infos.get(ShardId(sid))
            if info is None or info.fatal_error:
                return
            if starts(infos, sid) > before and info.stage is ConnectionStage.CONNECTED:
                return
            await asyncio.sleep(0.05)

    def reshard_unavailable(self) -> str | None:
        # A live reshard replaces one manager's whole shard set; a fleet's set spans processes.
        return (
            "Live reshard is not available in a fleet: its shards belong to several processes. "
            "Change gateway.shards and each process's [cluster] shard_range, then restart them one by one."
        )

    def shard_total(self) -> int | None:
        return None

    def reshard_plan(self, total: int) -> str:
        raise ValueError(self.reshard_unavailable())

    async def reshard(self, total: int) -> None:
        raise RuntimeError(self.reshard_unavailable())

    def quit_question(self) -> str | None:
        manager = self.host.manager
        running = 0 if manager is None else sum(1 for info in manager.runners.values() if info.running)
        if not running:
            return None  # a viewer runs no shard: nothing to ask about
        them, are = ("it", "is") if running == 1 else ("them", "are")
        return (
            f"{shard_count(running)} of this process ({self.host.local_name()}) {are} live. Quit and shut "
            f"{them} down cleanly (close 1000)? The other processes of the fleet keep running."
        )


__all__ = ["FleetHost", "FleetShardControl", "result_severity"]
