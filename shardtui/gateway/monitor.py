"""The shard manager monitor: the one task that turns runners' ``ShardManagerMessage``s into state.

Runners never touch ``ShardManager.runners`` stages or call the manager directly: they put messages
on the manager's queue and this task applies them in order — stage and latency into the
``ShardRunnerInfo``, events out to subscribers, shutdown acknowledgements matched by shard id, and
fatal errors turned into exactly one ``FatalErrorEvent``. Handlers never wait on anything a runner
would have to deliver, so a slow or dead runner cannot stall the monitor.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from shardtui.gateway.closecodes import Scope, scope_of
from shardtui.gateway.errors import fatal_error_for_close
from shardtui.gateway.messages import BOT_FATAL_MESSAGES, ShardManagerMessage, ShardManagerMessageT
from shardtui.gateway.models import (
    ConnectionStage,
    FatalErrorEvent,
    ShardHealth,
    ShardId,
    ShardInfoUpdateEvent,
    ShardLogEvent,
    ShardStageUpdateEvent,
)

if TYPE_CHECKING:
    from shardtui.gateway.manager import ShardManager

log = logging.getLogger("shardtui.gateway.monitor")

#: Messages meaning "Discord refused this bot", which stop every shard, and the code each stands for.
_BOT_WIDE_FATAL: Final = {message: int(code) for code, message in BOT_FATAL_MESSAGES.items()}


class _Stop:
    """Sentinel: the monitor drains what was queued before it, then ends."""


class ShardManagerMonitor:
    def __init__(self, manager: ShardManager, queue: asyncio.Queue[ShardManagerMessageT | _Stop]) -> None:
        self.manager = manager
        self.queue = queue
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="shardtui-manager-monitor")

    async def close(self) -> None:
        """Apply every message already queued, then stop."""
        if self._task is None or self._task.done():
            return
        self.queue.put_nowait(_Stop())
        await self._task

    async def run(self) -> None:
        while True:
            message = await self.queue.get()
            if isinstance(message, _Stop):
                return
            try:
                await self.handle(message)
            except Exception:
                log.exception("manager monitor failed handling %r", message)

    async def handle(self, message: ShardManagerMessageT) -> None:
        manager = self.manager
        if isinstance(message, ShardManagerMessage.ShardUpdate):
            self._shard_update(message)
        elif isinstance(message, ShardManagerMessage.ShutdownFinished):
            await manager._on_runner_finished(message.shard_id)
        elif isinstance(message, ShardManagerMessage.Restart):
            await manager.restart(message.shard_id, force_identify=message.force_identify)
        elif isinstance(message, ShardManagerMessage.Shutdown):
            manager._request_shutdown(message.shard_id, message.code)
        elif isinstance(message, ShardManagerMessage.ShutdownAll):
            manager._spawn_aux(manager.shutdown_all(), "shardtui-shutdown-all")
        elif isinstance(message, ShardManagerMessage.ShutdownInitiated):
            log.info("shutdown of all shards initiated")
        elif isinstance(message, ShardManagerMessage.ShardFatal):
            if scope_of(fatal_error_for_close(message.code).kind) is Scope.BOT:
                self._bot_fatal(message.shard_id, message.code, message.reason)
            else:
                self._shard_fatal(message.shard_id, message.code, message.reason)
        elif type(message) in _BOT_WIDE_FATAL:
            self._bot_fatal(message.shard_id, int(_BOT_WIDE_FATAL[type(message)]))
        else:
            log.warning("manager monitor ignored an unknown message %r", message)

    def _shard_update(self, message: ShardManagerMessage.ShardUpdate) -> None:
        manager = self.manager
        info = manager.runners.get(message.shard_id)
        if info is None:
            log.debug("update for shard %s, which this manager does not run", message.shard_id)
            return
        old = info.stage
        info.latency = message.latency
        info.stage = message.stage
        if old is not message.stage:
            if message.stage is ConnectionStage.CONNECTED:
                manager._crashes.pop(message.shard_id, None)
                if manager._queuer is not None:
                    manager._queuer.notify_progress(message.shard_id)
                if info.health is not ShardHealth.FAILED:
                    info.health, info.health_reason = ShardHealth.OK, ""
            manager._emit(ShardStageUpdateEvent(message.shard_id, old, message.stage))
            manager._stage_changed()
        manager._emit(ShardInfoUpdateEvent(message.shard_id))

    def _fatal_text(self, shard_id: ShardId, code: int, reason: str = "") -> tuple[str, str]:
        info = self.manager.runners.get(shard_id)
        error = fatal_error_for_close(code, reason)
        message = info.fatal_error if info is not None and info.fatal_error else error.message
        return error.kind, message

    def _mark_failed(self, shard_id: ShardId, message: str) -> None:
        info = self.manager.runners.get(shard_id)
        if info is None:
            return
        if info.fatal_error is None:
            info.fatal_error = message
        info.health, info.health_reason = ShardHealth.FAILED, info.fatal_error
        self.manager._emit(ShardInfoUpdateEvent(shard_id))

    def _shard_fatal(self, shard_id: ShardId, code: int, reason: str) -> None:
        kind, message = self._fatal_text(shard_id, code, reason)
        self._mark_failed(shard_id, message)
        log.error("shard %s stopped: %s", shard_id, message)
        self.manager._emit(FatalErrorEvent(kind, message, (shard_id,), code))

    def _bot_fatal(self, shard_id: ShardId, code: int, reason: str = "") -> None:
        manager = self.manager
        kind, message = self._fatal_text(shard_id, code, reason)
        self._mark_failed(shard_id, message)
        if manager.fatal_error is not None:
            # Every shard hits the same wall; the operator hears about it once.
            return
        shard_ids = tuple(sorted(manager.runners))
        event = FatalErrorEvent(kind, message, shard_ids, code)
        manager.fatal_error = event
        log.error("stopping all shards: %s", message)
        manager._emit(ShardLogEvent(None, logging.ERROR, f"stopping all shards: {message}"))
        manager._emit(event)
        manager._stop_everything()
        for info in manager.runners.values():
            # Every shard shows why it stopped, not only the one that heard it from Discord.
            if info.health is not ShardHealth.FAILED:
                info.health, info.health_reason = ShardHealth.FAILED, f"stopped: {message}"
                manager._emit(ShardInfoUpdateEvent(info.shard_id))
