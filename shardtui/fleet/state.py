"""Fleet state in Redis: each process publishes its shards; anyone reads the whole fleet.

A process writes, every ``heartbeat_interval``: its heartbeat key (PX = ``heartbeat_ttl``), its
entry in the process hash, and one hash of its shards' ``ShardRunnerInfo.to_dict()``. The shard hash
outlives the heartbeat (``shards_ttl``) on purpose: when a process dies, readers still know which
shards it had and show them as lost instead of silently dropping them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shardtui.fleet.keys import FleetKeys, describe_redis_error
from shardtui.gateway.aio import cancel_and_wait, wait_for
from shardtui.gateway.gate import SessionStartLimit
from shardtui.gateway.models import ConnectionStage, ShardHealth, ShardId, ShardRunnerInfo
from shardtui.gateway.queuer import QueueStatus

log = logging.getLogger("shardtui.fleet.state")

_E = TypeVar("_E", bound=enum.Enum)

#: The stage shown for a shard whose process stopped sending heartbeats.
LOST = "lost"
#: The stage shown for a shard its process has queued for an identify slot (not spawned yet).
QUEUED = "queued"


class NameInUseError(RuntimeError):
    """Another live process of the fleet publishes under this process's name."""


class ProcessState(enum.Enum):
    ALIVE = "alive"
    LOST = "lost"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class FleetProcess:
    name: str
    state: ProcessState
    host: str = ""
    pid: int | None = None
    shard_range: tuple[int, int] | None = None
    started_at: float | None = None
    #: Wall time of the last heartbeat the process wrote (as its own clock said).
    heartbeat_at: float | None = None
    shard_ids: tuple[int, ...] = ()
    #: Shards of this process per stage (``lost`` for every shard of a lost process).
    stages: Mapping[str, int] = field(default_factory=dict)
    #: Why the process holds all its identifies back (session start budget spent, Redis away), or None.
    waiting_reason: str | None = None

    @property
    def alive(self) -> bool:
        return self.state is ProcessState.ALIVE


@dataclass(frozen=True, slots=True)
class FleetShard:
    shard_id: int
    process: str
    #: ``ShardRunnerInfo.to_dict()`` as the owner last published it.
    info: Mapping[str, Any]
    lost: bool

    @property
    def queued(self) -> bool:
        """The owner has queued the shard for an identify slot (not spawned yet)."""
        return not self.lost and bool(self.info.get("queued"))

    @property
    def waiting_reason(self) -> str | None:
        """Why a queued shard waits (e.g. ``waiting for identify bucket 3``), else None."""
        reason = self.info.get("waiting_reason") if self.queued else None
        return str(reason) if reason else None

    @property
    def clients(self) -> int | None:
        """Bot clients attached through the owner's proxy; None without a proxy or once lost."""
        count = self.info.get("proxy_clients")
        return None if self.lost or type(count) is not int else count

    @property
    def stage(self) -> str:
        """The published stage; ``queued`` while the owner has it queued for an identify slot,
        ``lost`` when the owner's heartbeat expired."""
        if self.lost:
            return LOST
        if self.queued:
            return QUEUED
        return str(self.info.get("stage", "unknown"))

    def to_info(self) -> ShardRunnerInfo:
        """The published facts as a ``ShardRunnerInfo`` (no messenger), so console code written for
        one process can show fleet shards. A lost shard reads as disconnected, not running, with
        health ``failed`` and a reason naming its process. A queued shard reads as the owner's
        manager has it (disconnected, running) with its waiting reason as the health reason when
        there is no other."""
        info = info_from_dict(self.info)
        if self.queued and not info.health_reason:
            info.health_reason = self.waiting_reason or ""
        if self.lost:
            info.stage = ConnectionStage.DISCONNECTED
            info.running = False
            info.latency = None
            info.last_ack_at = None
            # Its last published rate is history: nothing is flowing through a lost process.
            info.events_per_second = 0.0
            info.health = ShardHealth.FAILED
            info.health_reason = f"process {self.process} lost (no heartbeat)"
        return info


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    processes: tuple[FleetProcess, ...]
    #: Every shard of every process, by shard id (a live owner wins over a lost one).
    shards: tuple[FleetShard, ...]
    #: Why the snapshot is empty or stale (Redis unreachable), else None.
    problem: str | None = None

    def shard(self, shard_id: int) -> FleetShard | None:
        for shard in self.shards:
            if shard.shard_id == shard_id:
                return shard
        return None

    def process(self, name: str) -> FleetProcess | None:
        for process in self.processes:
            if process.name == name:
                return process
        return None

    def owners(self) -> dict[int, str]:
        """Shard id -> the process that runs it (the console's process column)."""
        return {shard.shard_id: shard.process for shard in self.shards}

    def runner_infos(self) -> dict[ShardId, ShardRunnerInfo]:
        """Every fleet shard as a ``ShardRunnerInfo``, keyed like ``ShardManager.runners``."""
        return {ShardId(shard.shard_id): shard.to_info() for shard in self.shards}

    def stage_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for shard in self.shards:
            counts[shard.stage] = counts.get(shard.stage, 0) + 1
        return counts

    def queued(self) -> frozenset[int]:
        """Shards their (live) process has queued for an identify slot."""
        return frozenset(shard.shard_id for shard in self.shards if shard.queued)


def _enum(kind: type[_E], value: Any, default: _E) -> _E:
    try:
        return kind(value)
    except ValueError:
        return default


def info_from_dict(data: Mapping[str, Any]) -> ShardRunnerInfo:
    """Rebuild a ``ShardRunnerInfo`` from ``to_dict()`` output. The presence is published only as
    its description, so it is not rebuilt (``presence`` stays None)."""
    latency_ms = data.get("latency_ms")
    return ShardRunnerInfo(
        shard_id=ShardId(int(data["id"])),
        total=int(data.get("total", 1)),
        stage=_enum(ConnectionStage, data.get("stage"), ConnectionStage.DISCONNECTED),
        latency=None if latency_ms is None else float(latency_ms) / 1000.0,
        health=_enum(ShardHealth, data.get("health"), ShardHealth.OK),
        health_reason=str(data.get("health_reason") or ""),
        session_id=data.get("session_id"),
        last_seq=data.get("last_seq"),
        events_received=int(data.get("events_received") or 0),
        events_per_second=float(data.get("events_per_second") or 0.0),
        guilds=int(data.get("guilds") or 0),
        resumes=int(data.get("resumes") or 0),
        reconnects=int(data.get("reconnects") or 0),
        identifies=int(data.get("identifies") or 0),
        last_close_code=data.get("last_close_code"),
        last_close_reason=str(data.get("last_close_reason") or ""),
        connected_since=data.get("connected_since"),
        last_dispatch_at=data.get("last_dispatch_at"),
        last_ack_at=data.get("last_ack_at"),
        fatal_error=data.get("fatal_error"),
        running=bool(data.get("running", False)),
        last_start=data.get("last_start"),
    )


def _loads(raw: Any) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def queued_reasons(
    status: QueueStatus, bucket_of: Callable[[int], int], infos: Iterable[ShardId | int] | None = None
) -> dict[int, str]:
    """Shard id -> why it waits, for every shard a ``QueueStatus`` lists as queued (not spawned
    yet): the queuer's or gate's process-wide reason when there is one (budget spent, Redis away),
    else the identify bucket it waits for. ``infos`` limits it to shards the process runs."""
    queued = [int(sid) for sid in status.queued]
    if infos is not None:
        known = {int(sid) for sid in infos}
        queued = [sid for sid in queued if sid in known]
    held = status.waiting_reason
    return {sid: str(held) if held else f"waiting for identify bucket {bucket_of(sid)}" for sid in queued}


class FleetView:
    """Reads the whole fleet from Redis. ``snapshot()`` never raises for Redis trouble: the
    snapshot's ``problem`` says what is wrong, for the console's banner."""

    def __init__(self, redis: Redis, keys: FleetKeys, *, redis_description: str = "Redis") -> None:
        self.redis = redis
        self.keys = keys
        self.redis_description = redis_description

    async def forget(self, name: str) -> bool:
        """Drop a lost process and its shards from the fleet view (it was decommissioned). Refuses
        (``ValueError``) while the process is alive; False when there was nothing to forget."""
        if await self.redis.exists(self.keys.heartbeat(name)):
            raise ValueError(f"process {name} is alive (its heartbeat is fresh); stop it instead")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.processes, name)
            pipe.delete(self.keys.shards(name), self.keys.commands(name))
            removed, _ = await pipe.execute()
        return bool(removed)

    async def session_budget(self) -> SessionStartLimit | None:
        """The fleet's daily session start budget as the shared identify gate counts it (None until
        a process seeded it, or when Redis cannot say), with the max_concurrency the granting processes
        identify under (0 from a Redis an older shardtui filled)."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hmget(self.keys.budget, "remaining", "total", "reset_at", "max_concurrency")
                pipe.time()
                (remaining, total, reset_at, concurrency), (seconds, micros) = await pipe.execute()
        except (RedisError, OSError):
            return None
        if remaining is None or total is None or reset_at is None:
            return None
        # reset_at is on Redis's clock (ms): moved onto ours by the difference between the two.
        offset = time.time() - (int(seconds) + int(micros) / 1e6)
        return SessionStartLimit(
            total=int(total), remaining=max(0, int(remaining)), reset_at=int(reset_at) / 1000.0 + offset,
            max_concurrency=int(concurrency) if concurrency is not None else 0,
        )  # fmt: skip

    async def snapshot(self) -> FleetSnapshot:
        try:
            return await self._read()
        except (RedisError, OSError) as exc:
            return FleetSnapshot(
                (), (), f"{self.redis_description} unreachable ({describe_redis_error(exc)})"
            )

    async def _read(self) -> FleetSnapshot:
        raw_procs: dict[bytes, bytes] = await self.redis.hgetall(self.keys.processes)
        names = sorted(name.decode() for name in raw_procs)
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.get(self.keys.heartbeat(name))
                pipe.hgetall(self.keys.shards(name))
            replies = await pipe.execute()
        processes: list[FleetProcess] = []
        by_id: dict[int, FleetShard] = {}
        beats: dict[str, float] = {}
        forgotten: list[str] = []
        for index, name in enumerate(names):
            beat, shard_hash = replies[2 * index], replies[2 * index + 1]
            meta = _loads(raw_procs[name.encode()]) or {}
            alive = beat is not None
            if not alive and not shard_hash:
                # Dead long enough for its shard list to expire: nothing left to show.
                forgotten.append(name)
                continue
            beat_info = _loads(beat) if beat is not None else None
            heartbeat_at = beat_info.get("at") if isinstance(beat_info, dict) else meta.get("heartbeat_at")
            beats[name] = float(heartbeat_at) if isinstance(heartbeat_at, int | float) else 0.0
            shards: list[FleetShard] = []
            for raw_id, raw_info in shard_hash.items():
                info = _loads(raw_info)
                if not isinstance(info, dict):
                    continue
                shards.append(FleetShard(int(raw_id), name, info, lost=not alive))
            stages: dict[str, int] = {}
            for shard in shards:
                stages[shard.stage] = stages.get(shard.stage, 0) + 1
                current = by_id.get(shard.shard_id)
                # A shard moved to a live process (the lost one was replaced): show the live one. Of
                # two lost owners, the one that beat last had it last.
                if (
                    current is None
                    or (current.lost and not shard.lost)
                    or (current.lost and shard.lost and beats[name] > beats[current.process])
                ):
                    by_id[shard.shard_id] = shard
            shard_range = meta.get("shard_range")
            processes.append(
                FleetProcess(
                    name=name,
                    state=ProcessState.ALIVE if alive else ProcessState.LOST,
                    host=str(meta.get("host", "")),
                    pid=meta.get("pid"),
                    shard_range=tuple(shard_range) if isinstance(shard_range, list) else None,
                    started_at=meta.get("started_at"),
                    heartbeat_at=heartbeat_at,
                    shard_ids=tuple(sorted(s.shard_id for s in shards)),
                    stages=stages,
                    waiting_reason=(meta.get("waiting_reason") or None) if alive else None,
                )
            )
        if forgotten:
            with contextlib.suppress(RedisError, OSError):
                await self.redis.hdel(self.keys.processes, *forgotten)
        return FleetSnapshot(tuple(processes), tuple(by_id[i] for i in sorted(by_id)))


class StatePublisher:
    """Publishes one process's shards and heartbeat every ``interval`` seconds until closed.

    Redis trouble never reaches the shards: a failed publication is logged once, ``problem`` says
    what is wrong, and the next tick simply tries again (writing everything, so a Redis that came
    back empty is whole again after one tick).
    """

    def __init__(
        self,
        redis: Redis,
        keys: FleetKeys,
        name: str,
        runners: Callable[[], Mapping[ShardId, ShardRunnerInfo]],
        *,
        interval: float = 1.0,
        ttl: float = 5.0,
        shard_range: tuple[int, int] | None = None,
        shards_ttl: float = 3600.0,
        redis_description: str = "Redis",
        waiting: Callable[[], Mapping[int, str]] | None = None,
        held: Callable[[], str | None] | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.name = name
        self.runners = runners
        #: Shard id -> why it waits, for shards queued for an identify slot (see ``queued_reasons``).
        self.waiting = waiting
        #: Why the process holds all its identifies back, or None.
        self.held = held
        #: Bot clients attached through this process's gateway proxy per shard (None: no proxy).
        #: Set once the proxy serves (after the manager, hence not a constructor argument).
        self.clients: Callable[[], Mapping[int, int]] | None = None
        self.interval = interval
        self.ttl = ttl
        self.shard_range = shard_range
        self.shards_ttl = max(shards_ttl, ttl * 2)
        self.redis_description = redis_description
        self.started_at = time.time()
        #: Why the last publication failed (None after a good one).
        self.problem: str | None = None
        #: Shortest gap between two publications, however often ``poke()`` is called.
        self.min_gap = min(0.1, interval)
        self._task: asyncio.Task[None] | None = None
        #: Tells this publisher's heartbeats from those of another process using the same name.
        self.instance = uuid.uuid4().hex
        self._poked = asyncio.Event()
        #: Set by close(): the loop ends at its next turn even if the cancellation went astray.
        self._closing = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"shardtui-fleet-publish-{self.name}")

    async def close(self, *, forget: bool = True) -> None:
        """Stop publishing; with ``forget``, remove this process from the fleet (a clean stop is
        not a loss)."""
        task, self._task = self._task, None
        if task is not None:
            self._closing = True
            await cancel_and_wait(task)
        if forget:
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.delete(
                        self.keys.heartbeat(self.name),
                        self.keys.shards(self.name),
                        self.keys.commands(self.name),
                    )
                    pipe.hdel(self.keys.processes, self.name)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                log.warning(
                    "could not remove process %s from the fleet (%s); it will show as lost until its "
                    "entry expires",
                    self.name,
                    describe_redis_error(exc),
                )

    async def claim_name(self) -> None:
        """Make sure no live process publishes under this name: wait out the heartbeat an earlier
        (crashed or restarting) process left, and raise ``NameInUseError`` if it keeps beating."""
        key = self.keys.heartbeat(self.name)
        first = await self.redis.get(key)
        if first is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ttl + self.interval
        while loop.time() < deadline:
            await asyncio.sleep(min(0.1, self.interval))
            current = await self.redis.get(key)
            if current is None:
                return
            if current != first:
                beat = _loads(current) or {}
                meta = _loads(await self.redis.hget(self.keys.processes, self.name) or b"null") or {}
                raise NameInUseError(
                    f"process name {self.name!r} is in use by a live process (host {meta.get('host', '?')}, "
                    f"pid {meta.get('pid', '?')}, heartbeat {beat.get('at', '?')}): give this process "
                    "another [cluster] name"
                )
        # The old heartbeat neither expired nor changed: Redis keeps it past its TTL? Take over.
        log.warning("process name %s: taking over a heartbeat that did not expire", self.name)

    def poke(self) -> None:
        """Publish soon (a stage changed): readers should not wait a whole interval to see it."""
        self._poked.set()

    async def _loop(self) -> None:
        # Ends on cancellation, or by the flag: a cancel that lands with a Redis reply can be lost in
        # the client library (seen once in a few dozen closes), and a publisher that outlives its
        # close() keeps a stopped process's heartbeat alive.
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await wait_for(self._poked.wait(), self.interval)
            self._poked.clear()
            if self._closing:
                return
            await self.publish_once()
            await asyncio.sleep(self.min_gap)

    def _meta(self, now: float, held: str | None) -> bytes:
        return orjson.dumps(
            {
                "name": self.name,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "shard_range": list(self.shard_range) if self.shard_range is not None else None,
                "started_at": self.started_at,
                "heartbeat_at": now,
                "waiting_reason": held,
            }
        )

    def _shard_mapping(self) -> dict[str, bytes]:
        """Each shard's ``to_dict()``; a queued shard also carries ``queued`` and its ``waiting_reason``
        (its info alone reads as disconnected, like a stopped shard's)."""
        infos = dict(self.runners())
        waiting = dict(self.waiting()) if self.waiting is not None else {}
        clients = self.clients() if self.clients is not None else None
        mapping: dict[str, bytes] = {}
        for sid, info in infos.items():
            data = info.to_dict()
            if clients is not None:
                data["proxy_clients"] = clients.get(int(sid), 0)
            reason = waiting.get(int(sid))
            if reason is not None and info.running and info.stage is ConnectionStage.DISCONNECTED:
                data["queued"] = True
                data["waiting_reason"] = reason
            mapping[str(int(sid))] = orjson.dumps(data)
        return mapping

    async def publish_once(self) -> bool:
        now = time.time()
        mapping = self._shard_mapping()
        held = self.held() if self.held is not None else None
        try:
            # One transaction that replaces the whole hash: no reader sees half an update, and
            # shards an earlier process of the same name had (another range) do not linger.
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(self.keys.processes, self.name, self._meta(now, held))
                pipe.delete(self.keys.shards(self.name))
                if mapping:
                    pipe.hset(self.keys.shards(self.name), mapping=mapping)
                    pipe.pexpire(self.keys.shards(self.name), round(self.shards_ttl * 1000))
                # Last, so a reader never sees a heartbeat before the shards it vouches for.
                beat = orjson.dumps({"at": now, "instance": self.instance})
                pipe.set(self.keys.heartbeat(self.name), beat, px=round(self.ttl * 1000))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            problem = (
                f"{self.redis_description} unreachable ({describe_redis_error(exc)}): "
                "fleet state not published"
            )
            if self.problem is None:
                log.warning("process %s: %s; shards keep running", self.name, problem)
            self.problem = problem
            return False
        if self.problem is not None:
            log.info("process %s: publishing fleet state again", self.name)
            self.problem = None
        return True
