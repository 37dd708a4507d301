"""One set of shards: what a ``ShardManager`` runs, held as one object.

The infos, runners and their tasks, the queuer and monitor that pace and watch them, the HTTP
session, and the bookkeeping of stops, restarts and saved sessions all belong to one shard total.
A live reshard builds a second set and, at the switch, the manager swaps its set for the new one:
one reference, not a list of attributes to copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from shardtui.gateway.models import ShardId, ShardRunnerInfo
from shardtui.gateway.protocol import SESSION_ENDING_CLIENT_CLOSES

if TYPE_CHECKING:
    from shardtui.gateway.monitor import ShardManagerMonitor
    from shardtui.gateway.queuer import ShardQueuer
    from shardtui.gateway.runner import ShardRunner
    from shardtui.gateway.shard import SessionState


@dataclass(eq=False)
class ShardSet:
    #: The runners' queue to the monitor.
    manager_tx: asyncio.Queue[Any]
    monitor: ShardManagerMonitor
    #: The shard total (None = "auto" until /gateway/bot answers).
    total: int | None = None
    #: First..last shard id (inclusive) run here; None = all.
    range: tuple[int, int] | None = None
    #: The gateway url /gateway/bot advertised (no query).
    gateway_url: str | None = None
    #: Every shard in range, from the moment it is queued.
    runners: dict[ShardId, ShardRunnerInfo] = field(default_factory=dict)
    queuer: ShardQueuer | None = None
    session: aiohttp.ClientSession | None = None
    runner_objects: dict[ShardId, ShardRunner] = field(default_factory=dict)
    tasks: dict[ShardId, asyncio.Task[None]] = field(default_factory=dict)
    #: Shards asked to stop, and the close code they were asked to stop with.
    stopping: dict[ShardId, int] = field(default_factory=dict)
    #: Shards to boot again as soon as their runner is gone.
    boot_after_stop: set[ShardId] = field(default_factory=set)
    finished_waiters: dict[ShardId, list[asyncio.Future[None]]] = field(default_factory=dict)
    #: Sessions kept for the next start of a shard (it RESUMEs instead of identifying).
    resume_states: dict[ShardId, SessionState] = field(default_factory=dict)
    #: Crashes in a row per shard (a runner whose ``run()`` raised).
    crashes: dict[ShardId, int] = field(default_factory=dict)

    def running(self, shard_id: ShardId) -> bool:
        task = self.tasks.get(shard_id)
        return task is not None and not task.done()

    def stop_runner(self, shard_id: ShardId, code: int) -> None:
        """Stop a running shard: 1000/1001 end its session; any other code keeps it resumable."""
        self.stopping[shard_id] = code
        runner = self.runner_objects.get(shard_id)
        if code in SESSION_ENDING_CLIENT_CLOSES and runner is not None:
            runner.messenger.close(code, "shutdown")
            return
        # A cancelled runner closes its socket with a resumable code and keeps its session, which
        # the manager saves for the next boot; a Close message would reconnect instead.
        task = self.tasks.get(shard_id)
        if task is not None and not task.done():
            task.cancel()

    async def stop_runners(
        self,
        code: int,
        grace: float,
        *,
        on_stragglers: Callable[[list[ShardId]], None] | None = None,
        on_error: Callable[[ShardId], None] | None = None,
    ) -> None:
        """Stop every runner with ``code`` in parallel; after ``grace`` seconds cancel the rest
        (``on_stragglers`` hears which first)."""
        for shard_id in list(self.tasks):
            try:
                self.stop_runner(shard_id, code)
            except Exception:
                if on_error is None:
                    raise
                on_error(shard_id)
        tasks = [t for t in self.tasks.values() if not t.done()]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        if pending:
            if on_stragglers is not None:
                on_stragglers(sorted(sid for sid, t in self.tasks.items() if t in pending))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def keep_session(self, shard_id: ShardId, runner: ShardRunner | None) -> None:
        """Keep ``runner``'s session (if it has one) for the shard's next start."""
        state = None if runner is None else runner.session_state()
        if state is not None:
            self.resume_states[shard_id] = state

    def resolve_finished(self, shard_id: ShardId) -> None:
        for waiter in self.finished_waiters.pop(shard_id, []):
            if not waiter.done():
                waiter.set_result(None)

    async def close_session(self) -> None:
        session, self.session = self.session, None
        if session is not None and not session.closed:
            await session.close()
