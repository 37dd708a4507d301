"""Helpers for the shard runner tests: a tiny identify gate and a harness around one ShardRunner."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from shardtui.gateway.messages import ShardManagerMessage
from shardtui.gateway.models import (
    ConnectionStage,
    Dispatch,
    ManagerEvent,
    ShardId,
    ShardLogEvent,
    ShardRunnerInfo,
)
from shardtui.gateway.protocol import GatewayIntents
from shardtui.gateway.runner import ShardRunner, ShardRunnerOptions
from shardtui.sandbox.accounting import EVENT_ID_KEY


class LockGate:
    """A minimal identify gate: one identify at a time, ``window`` seconds apart (the real one is the
    manager's; this keeps runner tests independent of it)."""

    def __init__(self, window: float = 0.16) -> None:
        self.window = window
        self._lock = asyncio.Lock()
        self._last: float | None = None
        self.acquired: list[ShardId] = []

    async def acquire(self, shard_id: ShardId) -> None:
        async with self._lock:
            if self._last is not None:
                wait = self._last + self.window - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            self._last = time.monotonic()
            self.acquired.append(shard_id)


@dataclass
class Harness:
    runner: ShardRunner
    info: ShardRunnerInfo
    gate: LockGate
    manager_tx: asyncio.Queue
    received: list[Dispatch] = field(default_factory=list)
    logs: list[ShardLogEvent] = field(default_factory=list)
    manager_messages: list[Any] = field(default_factory=list)
    task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.runner.run())

    def drain(self) -> list[Any]:
        while not self.manager_tx.empty():
            self.manager_messages.append(self.manager_tx.get_nowait())
        return self.manager_messages

    def stages(self) -> list[ConnectionStage]:
        return [m.stage for m in self.drain() if isinstance(m, ShardManagerMessage.ShardUpdate)]

    def stage_changes(self) -> list[ConnectionStage]:
        """Stages reported, with the repeats (latency updates) removed."""
        out: list[ConnectionStage] = []
        for stage in self.stages():
            if not out or out[-1] is not stage:
                out.append(stage)
        return out

    def event_ids(self) -> list[int]:
        return [
            d.data[EVENT_ID_KEY] for d in self.received if isinstance(d.data, dict) and EVENT_ID_KEY in d.data
        ]

    def names(self) -> list[str]:
        return [d.name for d in self.received]

    def log_text(self) -> str:
        return "\n".join(e.message for e in self.logs)

    async def wait_for(self, predicate: Callable[[], bool], within: float = 8.0, what: str = "") -> None:
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                self.drain()
                raise AssertionError(
                    f"timed out waiting for {what or 'condition'}; stages={self.stage_changes()} "
                    f"logs:\n{self.log_text()}"
                )
            await asyncio.sleep(0.01)

    async def wait_connected(self, count: int = 1, within: float = 8.0) -> None:
        """Wait until the shard has reached CONNECTED ``count`` times in total."""
        await self.wait_for(
            lambda: self.stage_changes().count(ConnectionStage.CONNECTED) >= count, within, "CONNECTED"
        )

    async def stop(self, within: float = 5.0) -> None:
        if self.task is None:
            return
        if not self.task.done():
            self.runner.messenger.shutdown_clean()
        await asyncio.wait_for(self.task, within)


HarnessFactory = Callable[..., Harness]


@pytest.fixture
async def harness_factory():
    """``harness_factory(sandbox, shard_id=0, total=1, handler=None, **options)`` -> a started Harness.

    At teardown every runner still going is shut down cleanly (and cancelled if that hangs)."""
    made: list[Harness] = []

    def factory(
        sandbox: Any,
        shard_id: int = 0,
        total: int = 1,
        handler: Callable[[Dispatch], Any] | None = None,
        gate: LockGate | None = None,
        start: bool = True,
        **overrides: Any,
    ) -> Harness:
        gate = gate or LockGate()
        holder: dict[str, Harness] = {}

        def record(dispatch: Dispatch) -> Any:
            holder["h"].received.append(dispatch)
            if handler is not None:
                return handler(dispatch)
            return None

        def emit(event: ManagerEvent) -> None:
            if isinstance(event, ShardLogEvent):
                holder["h"].logs.append(event)

        options = ShardRunnerOptions(
            **{
                "token": sandbox.token,
                "gateway_url": sandbox.gateway_url,
                "intents": GatewayIntents.default(),
                "identify_gate": gate,
                "event_handler": record,
                "connect_timeout": 3.0,
                "max_backoff": 1.0,
                "invalid_session_delay": (0.05, 0.1),
                **overrides,
            }
        )
        sid = ShardId(shard_id)
        info = ShardRunnerInfo(shard_id=sid, total=total)
        manager_tx: asyncio.Queue = asyncio.Queue()
        runner = ShardRunner(sid, total, options, info, manager_tx, emit)
        harness = Harness(runner=runner, info=info, gate=gate, manager_tx=manager_tx)
        holder["h"] = harness
        made.append(harness)
        if start:
            harness.start()
        return harness

    yield factory
    for harness in made:
        task = harness.task
        if task is None or task.done():
            continue
        try:
            await harness.stop(within=3.0)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
