"""``FleetNode``: one process's membership in a fleet, tying the Redis gate, state publishing and
command routing to its ``ShardManager``; ``FleetControl``: commands to any shard of the fleet."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from shardtui.config import ClusterConfig, describe_redis_url
from shardtui.fleet.commands import (
    CommandListener,
    CommandResult,
    CommandStatus,
    presence_to_params,
    send_command,
)
from shardtui.fleet.gate import RedisIdentifyGate
from shardtui.fleet.keys import UNREACHABLE_ERRORS, FleetKeys, describe_redis_error
from shardtui.fleet.state import FleetSnapshot, FleetView, StatePublisher, queued_reasons
from shardtui.gateway.gate import SYSTEM_CLOCK, Clock
from shardtui.gateway.models import Presence, ShardId, ShardStageUpdateEvent

if TYPE_CHECKING:
    from shardtui.gateway.manager import ShardManager, ShardManagerOptions

log = logging.getLogger("shardtui.fleet.node")


def connect_redis(url: str, *, timeout: float = 2.0) -> Redis:
    """A client that fails fast when Redis is away (so callers can say so) instead of hanging."""
    return Redis.from_url(
        url,
        socket_timeout=timeout + 1.5,  # above the 1 s blocking reads the fleet uses
        socket_connect_timeout=timeout,
        health_check_interval=10,
    )


class ShardRangeConflictError(RuntimeError):
    """This process's shard range overlaps the range of a live process of the fleet."""


class FleetControl:
    """Sends commands to whichever live process owns a shard, and reports what became of them.

    With ``local`` (the member's own ``CommandListener``, set by ``FleetNode.attach``) commands for
    this process's own shards run directly on its manager, without Redis: a member can act on its
    shards while Redis is down. Only other processes' shards go through Redis.
    """

    def __init__(
        self,
        redis: Redis,
        keys: FleetKeys,
        view: FleetView,
        *,
        sender: str,
        timeout: float = 5.0,
        redis_description: str = "Redis",
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.view = view
        self.sender = sender
        self.timeout = timeout
        self.redis_description = redis_description
        #: This process's listener: shards of its manager are acted on directly (None: a viewer).
        self.local: CommandListener | None = None

    def is_local(self, shard_id: int) -> bool:
        """True when this process runs the shard (its commands need no Redis)."""
        local = self.local
        return local is not None and ShardId(int(shard_id)) in local.manager.runners

    async def owner_of(self, shard_id: int, snapshot: FleetSnapshot | None = None) -> tuple[str | None, str]:
        """(live owner or None, why not when None)."""
        snapshot = snapshot or await self.view.snapshot()
        if snapshot.problem is not None:
            return None, snapshot.problem
        shard = snapshot.shard(shard_id)
        if shard is None:
            return None, f"no process of the fleet runs shard {shard_id}"
        if shard.lost:
            return None, f"shard {shard_id}'s process {shard.process} is lost (its heartbeat expired)"
        return shard.process, ""

    async def send(
        self,
        action: str,
        shard_id: int,
        params: dict[str, Any] | None = None,
        *,
        ack_timeout: float | None = None,
    ) -> CommandResult:
        timeout = self.timeout if ack_timeout is None else ack_timeout
        if self.local is not None and self.is_local(shard_id):
            return await self.local.deliver(action, shard_id, params, ack_timeout=timeout)
        process, why = await self.owner_of(shard_id)
        if process is None:
            unreachable = why.startswith(self.redis_description)
            status = CommandStatus.UNREACHABLE if unreachable else CommandStatus.NO_OWNER
            message = f"{action} of shard {shard_id} not sent: {why}"
            log.warning("%s", message)
            return CommandResult(status, action, shard_id, None, message, reason=why)
        return await send_command(
            self.redis,
            self.keys,
            sender=self.sender,
            process=process,
            action=action,
            shard_id=shard_id,
            params=params,
            ack_timeout=timeout,
            redis_description=self.redis_description,
        )

    async def restart(self, shard_id: int, *, force_identify: bool = False) -> CommandResult:
        return await self.send("restart", shard_id, {"force_identify": force_identify})

    async def boot(self, shard_id: int, *, force_identify: bool = False) -> CommandResult:
        return await self.send("boot", shard_id, {"force_identify": force_identify})

    async def shutdown(self, shard_id: int, code: int = 1000) -> CommandResult:
        return await self.send("shutdown", shard_id, {"code": code})

    async def set_presence(self, shard_id: int, presence: Presence) -> CommandResult:
        presence.validate()
        return await self.send("presence", shard_id, presence_to_params(presence))


class FleetNode:
    """This process in the fleet.

    ::

        node = FleetNode(cluster_config)
        manager = node.build_manager(options)   # ShardManager with the Redis gate, bound to the node
        await node.start()                      # publishing + command listener
        await manager.initialize()
        ...
        await manager.shutdown_all(); await node.close()
    """

    def __init__(
        self,
        config: ClusterConfig,
        *,
        redis: Redis | None = None,
        window: float | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.config = config
        self.redis_description = f"Redis at {describe_redis_url(config.redis_url)}"
        self._owns_redis = redis is None
        self.redis = redis if redis is not None else connect_redis(config.redis_url)
        self.keys = FleetKeys(config.cluster)
        self.gate = RedisIdentifyGate(
            self.redis,
            self.keys,
            window=5.0 if window is None else window,
            holder=config.name,
            redis_description=self.redis_description,
            clock=clock,
        )
        self._window_given = window is not None
        self.view = FleetView(self.redis, self.keys, redis_description=self.redis_description)
        self.control = FleetControl(
            self.redis,
            self.keys,
            self.view,
            sender=config.name,
            timeout=config.command_timeout,
            redis_description=self.redis_description,
        )
        self.manager: ShardManager | None = None
        self.publisher: StatePublisher | None = None
        self.listener: CommandListener | None = None
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def name(self) -> str:
        return self.config.name

    def build_manager(self, options: ShardManagerOptions) -> ShardManager:
        """A ``ShardManager`` for ``options`` (with ``[cluster] shard_range`` applied when set)
        whose identifies go through the fleet's Redis gate."""
        from shardtui.gateway.manager import ShardManager

        if self.config.shard_range is not None:
            options = dataclasses.replace(options, shard_range=self.config.shard_range)
        manager = ShardManager(options, gate=self.gate, clock=self.gate.clock)
        self.attach(manager)
        return manager

    def attach(self, manager: ShardManager) -> None:
        """Bind a manager built with ``gate=node.gate``: the gate reads max_concurrency and the
        session start limit from it, state and commands are about its shards."""
        self.manager = manager
        self.gate.source = manager
        if not self._window_given:
            self.gate.window = manager.options.identify_window
        self.publisher = StatePublisher(
            self.redis,
            self.keys,
            self.config.name,
            lambda: manager.runners,
            interval=self.config.heartbeat_interval,
            ttl=self.config.heartbeat_ttl,
            shard_range=manager.options.shard_range,
            redis_description=self.redis_description,
            waiting=lambda: queued_reasons(manager.queue_status(), self.gate.bucket_of, manager.runners),
            held=lambda: manager.queue_status().waiting_reason,
        )
        self.listener = CommandListener(
            self.redis, self.keys, self.config.name, manager, redis_description=self.redis_description
        )
        # Commands for this process's own shards skip Redis (they work while it is down).
        self.control.local = self.listener
        publisher = self.publisher

        def on_event(event: object) -> None:
            if isinstance(event, ShardStageUpdateEvent):
                publisher.poke()

        self._unsubscribe = manager.subscribe(on_event)

    def publish_clients(self, clients: Callable[[], Mapping[int, int]]) -> None:
        """Publish each shard's count of bot clients attached through this process's proxy (the
        fleet console shows every process's, not only its own)."""
        if self.publisher is None:
            raise RuntimeError("attach a ShardManager (or use build_manager) before publish_clients()")
        self.publisher.clients = clients
        self.publisher.poke()

    async def start(self) -> None:
        """Start publishing and listening for commands. Raises ``NameInUseError`` when a live
        process already uses this name (after waiting out the heartbeat a crashed one left) and
        ``ShardRangeConflictError`` when a live process runs any of this process's shards.
        Redis being away is not an error: everything retries, and ``problem`` says what is wrong."""
        if self.publisher is None or self.listener is None:
            raise RuntimeError("attach a ShardManager (or use build_manager) before start()")
        try:
            await self.publisher.claim_name()
        except UNREACHABLE_ERRORS as exc:
            # Starting is still safe: identifies wait at the gate until Redis is back.
            log.warning(
                "process %s: cannot check that the name is free (%s unreachable: %s); starting anyway",
                self.name,
                self.redis_description,
                describe_redis_error(exc),
            )
        await self._check_range()
        await self.publisher.publish_once()
        self.publisher.start()
        self.listener.start()

    async def _check_range(self) -> None:
        """Refuse to run shards a live process already runs: both would connect them."""
        if self.manager is None:
            return
        ours = self.manager.options.shard_range
        snapshot = await self.view.snapshot()
        for process in snapshot.processes:
            if not process.alive or process.name == self.name:
                continue
            theirs = process.shard_range
            if ours is not None and theirs is not None and (ours[1] < theirs[0] or theirs[1] < ours[0]):
                continue
            mine = "all shards" if ours is None else f"shards {ours[0]}-{ours[1]}"
            other = "all shards" if theirs is None else f"shards {theirs[0]}-{theirs[1]}"
            raise ShardRangeConflictError(
                f"process {self.name} would run {mine}, but live process {process.name} runs {other}: "
                "give each process its own [cluster] shard_range"
            )

    async def wait_listening(self) -> None:
        """Return once commands sent from now on will be seen (for scripts and tests)."""
        if self.listener is None:
            raise RuntimeError("attach a ShardManager before wait_listening()")
        await self.listener.wait_ready()

    @property
    def problem(self) -> str | None:
        """The Redis trouble this process has right now (gate, publishing or commands), or None."""
        for part in (
            self.gate.waiting_reason if self.gate.unreachable else None,
            self.publisher.problem if self.publisher else None,
            self.listener.problem if self.listener else None,
        ):
            if part:
                return part
        return None

    async def close(self, *, forget: bool = True) -> None:
        """Stop publishing and listening; with ``forget`` the process leaves the fleet view (a
        clean stop is not a loss). Shut the manager down first."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.listener is not None:
            await self.listener.close()
        if self.publisher is not None:
            await self.publisher.close(forget=forget)
        await self.gate.flush()
        if self._owns_redis:
            await self.redis.aclose()
