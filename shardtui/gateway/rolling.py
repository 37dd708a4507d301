"""Rolling restart: every shard reconnects, a round at a time, without taking the bot down.

A round holds at most one shard of each identify bucket (``shard_id % max_concurrency``), so only
``max_concurrency`` shards are ever down at once and a round that must identify uses exactly one
slot per bucket; the identify gate still decides every IDENTIFY's moment, so the one-per-bucket-
per-window rule holds even when a resume is refused and the shard identifies instead. Each round
must be back CONNECTED before the next starts. Restarts RESUME (no identify spent) unless
``force_identify``. Progress is a :class:`RollingRestartStatus` plus a log line per round, and
``abort()`` stops before the next round (shards already restarting finish by themselves).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from shardtui.gateway.aio import cancel_and_wait
from shardtui.gateway.events import EventBus
from shardtui.gateway.gate import describe_duration
from shardtui.gateway.models import (
    ConnectionStage,
    FatalErrorEvent,
    ManagerEvent,
    ShardId,
    ShardRunnerInfo,
    ShardStageUpdateEvent,
)
from shardtui.gateway.planner import GateOutlook, Plan, format_shard_ids
from shardtui.gateway.protocol import bucket_for_shard


class RollingHost(Protocol):
    """What a rolling restart needs of the manager."""

    max_concurrency: int | None
    events: EventBus

    @property
    def runners(self) -> Mapping[ShardId, ShardRunnerInfo]: ...

    def plan(self, action: str, shard_ids: Iterable[ShardId]) -> Plan: ...

    def gate_outlook(self) -> GateOutlook: ...

    def subscribe(self, callback: Callable[[ManagerEvent], Any]) -> Callable[[], None]: ...

    async def restart(self, shard_id: ShardId, *, force_identify: bool = False) -> None: ...


#: A round that is not back after its planned time plus this long has failed.
ROUND_GRACE_SECONDS = 30.0


class RollingState(enum.Enum):
    RUNNING = "running"
    FINISHED = "finished"
    ABORTED = "aborted"
    FAILED = "failed"


@dataclass(slots=True)
class RollingRestartStatus:
    """Where a rolling restart is; the console and the headless stream read it."""

    force_identify: bool
    rounds: list[tuple[ShardId, ...]]
    state: RollingState = RollingState.RUNNING
    #: Index of the round in progress (== len(rounds) once every round is done).
    round_index: int = 0
    done: list[ShardId] = field(default_factory=list)
    resumes: int = 0
    identifies: int = 0
    #: Running shards left out (stopped ones are not restarted).
    skipped: list[ShardId] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    #: Why it failed or was aborted; empty otherwise.
    reason: str = ""

    @property
    def total(self) -> int:
        return sum(len(r) for r in self.rounds)

    @property
    def current(self) -> tuple[ShardId, ...]:
        if self.state is RollingState.RUNNING and self.round_index < len(self.rounds):
            return self.rounds[self.round_index]
        return ()

    def describe(self) -> str:
        head = f"rolling restart {self.state.value}: {len(self.done)}/{self.total} shards"
        head += f" ({self.resumes} resumed, {self.identifies} identified)"
        if self.current:
            head += f", round {self.round_index + 1}/{len(self.rounds)}: {format_shard_ids(self.current)}"
        if self.reason:
            head += f"; {self.reason}"
        return head


def plan_rounds(shard_ids: Iterable[ShardId], max_concurrency: int) -> list[tuple[ShardId, ...]]:
    """Rounds of at most one shard per identify bucket, in shard order within each bucket."""
    buckets: dict[int, list[ShardId]] = {}
    for sid in sorted({ShardId(int(s)) for s in shard_ids}):
        buckets.setdefault(bucket_for_shard(sid.id, max_concurrency), []).append(sid)
    depth = max((len(line) for line in buckets.values()), default=0)
    return [tuple(sorted(line[i] for line in buckets.values() if i < len(line))) for i in range(depth)]


def plan_rolling_restart(manager: RollingHost, shard_ids: Iterable[ShardId], *, force_identify: bool) -> Plan:
    """The cost of a rolling restart of ``shard_ids``: the restart plan's counts, done round by round."""
    ids = sorted({ShardId(int(s)) for s in shard_ids})
    running = [s for s in ids if s in manager.runners and manager.runners[s].running]
    base = manager.plan("restart_identify" if force_identify else "restart", ids)
    mc = manager.max_concurrency or 1
    rounds = plan_rounds(running, mc)
    window = manager.gate_outlook().window
    per_round = window if force_identify or base.identifies else 0.0
    seconds = max(base.seconds, len(rounds) * max(per_round, 0.5))
    action = "rolling_restart_identify" if force_identify else "rolling_restart"
    target = format_shard_ids(ids) if ids else "no shards"
    text = f"rolling restart of {target} in {len(rounds)} rounds of up to {mc}: "
    text += base.text.split(": ", 1)[1] if ": " in base.text else base.text
    if len(running) < len(ids):
        text += f"; {format_shard_ids(set(ids) - set(running))} not running (left alone)"
    return replace(base, action=action, seconds=seconds, text=text)


class RollingRestart:
    def __init__(
        self,
        manager: RollingHost,
        shard_ids: Iterable[ShardId],
        *,
        force_identify: bool = False,
        round_grace: float = ROUND_GRACE_SECONDS,
    ) -> None:
        self._manager = manager
        ids = sorted({ShardId(int(s)) for s in shard_ids})
        running = [s for s in ids if manager.runners[s].running]
        self.status = RollingRestartStatus(force_identify, plan_rounds(running, manager.max_concurrency or 1))
        self.status.skipped = [s for s in ids if s not in running]
        self._round_grace = round_grace
        self._aborted = asyncio.Event()
        self._waiting: dict[ShardId, asyncio.Future[str]] = {}

    def abort(self) -> bool:
        """Stop before the next round; True when a restart was running."""
        if self.status.state is not RollingState.RUNNING or self._aborted.is_set():
            return False
        self._aborted.set()
        return True

    def _on_event(self, event: ManagerEvent) -> None:
        if isinstance(event, ShardStageUpdateEvent) and event.new is ConnectionStage.CONNECTED:
            future = self._waiting.get(event.shard_id)
            if future is not None and not future.done():
                info = self._manager.runners.get(event.shard_id)
                future.set_result((info.last_start if info is not None else None) or "resume")
        elif isinstance(event, FatalErrorEvent):
            for sid in event.shard_ids or tuple(self._waiting):
                future = self._waiting.get(sid)
                if future is not None and not future.done():
                    future.set_exception(RuntimeError(f"shard {sid} failed: {event.message}"))

    async def run(self) -> RollingRestartStatus:
        """Run every round; raises ``RuntimeError`` before touching a shard when the identifies it
        needs are beyond today's session start budget."""
        manager, status = self._manager, self.status
        ids = [sid for round_ids in status.rounds for sid in round_ids]
        plan = plan_rolling_restart(manager, ids, force_identify=status.force_identify)
        if plan.over_budget:
            status.state, status.reason = RollingState.FAILED, f"not started: {plan.text}"
            status.finished_at = time.time()
            manager.events.log(None, logging.WARNING, status.describe())
            raise RuntimeError(f"not restarting: {plan.text}")
        manager.events.log(None, logging.INFO, plan.text)
        unsubscribe = manager.subscribe(self._on_event)
        try:
            for index, round_ids in enumerate(status.rounds):
                if self._aborted.is_set():
                    break
                status.round_index = index
                manager.events.log(
                    None,
                    logging.INFO,
                    f"rolling restart: round {index + 1}/{len(status.rounds)}: {format_shard_ids(round_ids)}",
                )
                if not await self._restart_round(round_ids):
                    break
            else:
                status.round_index = len(status.rounds)
        except Exception as exc:
            status.state, status.reason = RollingState.FAILED, str(exc)
        finally:
            unsubscribe()
            for future in self._waiting.values():
                future.cancel()
            self._waiting.clear()
        if status.state is RollingState.RUNNING:
            if self._aborted.is_set() and len(status.done) < status.total:
                status.state = RollingState.ABORTED
                status.reason = status.reason or (
                    f"aborted by the operator; {status.total - len(status.done)} shards not restarted"
                )
            else:
                status.state = RollingState.FINISHED
        status.finished_at = time.time()
        level = logging.INFO if status.state is RollingState.FINISHED else logging.WARNING
        manager.events.log(None, level, status.describe())
        return status

    async def _restart_round(self, round_ids: tuple[ShardId, ...]) -> bool:
        manager, status = self._manager, self.status
        loop = asyncio.get_running_loop()
        plan = manager.plan("restart_identify" if status.force_identify else "restart", round_ids)
        for sid in round_ids:
            self._waiting[sid] = loop.create_future()
        for sid in round_ids:
            await manager.restart(sid, force_identify=status.force_identify)
        pending = [self._waiting[sid] for sid in round_ids]
        aborted = asyncio.ensure_future(self._aborted.wait())
        deadline = loop.time() + plan.seconds + self._round_grace
        try:
            while not aborted.done():
                remaining = [f for f in pending if not f.done()]
                failed = any(f.done() and f.exception() is not None for f in pending)
                left = deadline - loop.time()
                if not remaining or failed or left <= 0:
                    break
                await asyncio.wait([*remaining, aborted], timeout=left, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(aborted)
        for sid in round_ids:
            future = self._waiting.pop(sid)
            if future.done() and not future.cancelled():
                if future.exception() is not None:
                    status.state, status.reason = RollingState.FAILED, str(future.exception())
                    return False
                status.done.append(sid)
                if future.result() == "identify":
                    status.identifies += 1
                else:
                    status.resumes += 1
            else:
                future.cancel()
        if self._aborted.is_set():
            return False
        missing = [sid for sid in round_ids if sid not in status.done]
        if missing:
            status.state = RollingState.FAILED
            status.reason = (
                f"{format_shard_ids(missing)} not back within "
                f"{describe_duration(plan.seconds + self._round_grace)}; stopping"
            )
            return False
        return True
