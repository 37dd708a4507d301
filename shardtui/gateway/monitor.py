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
from collections.abc import Mapping
from typing import Final, Protocol

from shardtui.gateway.closecodes import Scope, scope_of
from shardtui.gateway.errors import fatal_error_for_close
from shardtui.gateway.events import EventBus
from shardtui.gateway.messages import BOT_FATAL_MESSAGES, ShardManagerMessage, ShardManagerMessageT
from shardtui.gateway.models import (
    ConnectionStage,
    FatalErrorEvent,
    ShardHealth,
    ShardId,
    ShardInfoUpdateEvent,
    ShardLogEvent,
    ShardRunnerInfo,
    ShardStageUpdateEvent,
)

log = logging.getLogger("shardtui.gateway.monitor")

#: Messages meaning "Discord refused this bot", which stop every shard, and the code each stands for.
_BOT_WIDE_FATAL: Final = {message: int(code) for code, message in BOT_FATAL_MESSAGES.items()}


class MonitorHost(Protocol):
    """What the monitor needs of the manager it serves."""

    fatal_error: FatalErrorEvent | None
    events: EventBus

    @property
    def runners(self) -> Mapping[ShardId, ShardRunnerInfo]: ...

    def stage_changed(self) -> None:
        """Wake whoever waits for stage changes (``wait_until_connected``)."""

    def runner_connected(self, shard_id: ShardId) -> None:
        """The shard reached CONNECTED."""

    async def runner_finished(self, shard_id: ShardId) -> None:
        """The shard's runner sent its last message: account for it (restart, save, resolve)."""

    async def restart(self, shard_id: ShardId, *, force_identify: bool = False) -> None: ...

    def request_shutdown(self, shard_id: ShardId, code: int = 1000) -> bool: ...

    def request_shutdown_all(self) -> None: ...

    def stop_everything(self) -> None:
        """A bot-wide fatal error: drop the queue and stop every runner; nothing retries."""


#: Stages that begin a new socket: the old connection's latency and ACK time no longer say anything.
_NEW_CONNECTION: Final = frozenset(
    {ConnectionStage.CONNECTING, ConnectionStage.HANDSHAKE, ConnectionStage.DISCONNECTED}
)


class _Stop:
    """Sentinel: the monitor drains what was queued before it, then ends."""


class ShardManagerMonitor:
    def __init__(self, host: MonitorHost, queue: asyncio.Queue[ShardManagerMessageT | _Stop]) -> None:
        #: The manager whose infos this monitor keeps (a reshard hands the monitor to another).
        self.host = host
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
        host = self.host
        if isinstance(message, ShardManagerMessage.ShardUpdate):
            self._shard_update(message)
        elif isinstance(message, ShardManagerMessage.ShutdownFinished):
            await host.runner_finished(message.shard_id)
        elif isinstance(message, ShardManagerMessage.Restart):
            await host.restart(message.shard_id, force_identify=message.force_identify)
        elif isinstance(message, ShardManagerMessage.Shutdown):
            host.request_shutdown(message.shard_id, message.code)
        elif isinstance(message, ShardManagerMessage.ShutdownAll):
            host.request_shutdown_all()
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
        host = self.host
        info = host.runners.get(message.shard_id)
        if info is None:
            log.debug("update for shard %s, which this manager does not run", message.shard_id)
            return
        old = info.stage
        if old is message.stage:
            info.latency = message.latency  # a heartbeat ACK on this connection
        elif message.stage in _NEW_CONNECTION:
            # The Shard keeps its last round trip across connections: show none until this one is ACKed.
            info.latency = info.last_ack_at = None
        info.stage = message.stage
        if old is not message.stage:
            if message.stage is ConnectionStage.CONNECTED:
                host.runner_connected(message.shard_id)
                if info.health is not ShardHealth.FAILED:
                    info.health, info.health_reason = ShardHealth.OK, ""
            host.events.emit(ShardStageUpdateEvent(message.shard_id, old, message.stage))
            host.stage_changed()
        host.events.emit(ShardInfoUpdateEvent(message.shard_id))

    def _fatal_text(self, shard_id: ShardId, code: int, reason: str = "") -> tuple[str, str]:
        info = self.host.runners.get(shard_id)
        error = fatal_error_for_close(code, reason)
        message = info.fatal_error if info is not None and info.fatal_error else error.message
        return error.kind, message

    def _mark_failed(self, shard_id: ShardId, message: str) -> None:
        info = self.host.runners.get(shard_id)
        if info is None:
            return
        if info.fatal_error is None:
            info.fatal_error = message
        info.health, info.health_reason = ShardHealth.FAILED, info.fatal_error
        self.host.events.emit(ShardInfoUpdateEvent(shard_id))

    def _shard_fatal(self, shard_id: ShardId, code: int, reason: str) -> None:
        kind, message = self._fatal_text(shard_id, code, reason)
        self._mark_failed(shard_id, message)
        log.error("shard %s stopped: %s", shard_id, message)
        self.host.events.emit(FatalErrorEvent(kind, message, (shard_id,), code))

    def _bot_fatal(self, shard_id: ShardId, code: int, reason: str = "") -> None:
        host = self.host
        kind, message = self._fatal_text(shard_id, code, reason)
        self._mark_failed(shard_id, message)
        if host.fatal_error is not None:
            # Every shard hits the same wall; the operator hears about it once.
            return
        shard_ids = tuple(sorted(host.runners))
        event = FatalErrorEvent(kind, message, shard_ids, code)
        host.fatal_error = event
        log.error("stopping all shards: %s", message)
        host.events.emit(ShardLogEvent(None, logging.ERROR, f"stopping all shards: {message}"))
        host.events.emit(event)
        host.stop_everything()
        for info in host.runners.values():
            # Every shard shows why it stopped, not only the one that heard it from Discord.
            if info.health is not ShardHealth.FAILED:
                info.health, info.health_reason = ShardHealth.FAILED, f"stopped: {message}"
                host.events.emit(ShardInfoUpdateEvent(info.shard_id))
