"""Commands across the fleet: restart / shutdown / boot / presence for any shard, from anywhere.

A sender appends the command to the owning process's Redis stream and waits (``BLPOP``) on a reply
list named after the command; the owner executes it on its ``ShardManager`` and pushes the outcome.
No acknowledgement within the timeout is a result of its own (``UNACKNOWLEDGED``), logged as a
warning — a command is never dropped without someone being told. A command for a shard of the
sending process itself never touches Redis (``CommandListener.deliver``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shardtui.fleet.keys import UNREACHABLE_ERRORS, FleetKeys, describe_redis_error
from shardtui.gateway.aio import cancel_and_wait
from shardtui.gateway.models import Presence, ShardId

if TYPE_CHECKING:
    from shardtui.gateway.manager import ShardManager

log = logging.getLogger("shardtui.fleet.commands")

ACTIONS: tuple[str, ...] = ("restart", "shutdown", "boot", "presence")
#: Commands kept per process stream; old ones are trimmed (they were answered or expired).
STREAM_MAXLEN = 1000
#: How long an acknowledgement waits in Redis for a sender that may have given up.
ACK_TTL_MS = 60_000


class CommandStatus(enum.Enum):
    OK = "ok"
    #: The owner received it and could not do it (unknown shard, manager stopped, bad presence).
    FAILED = "failed"
    #: Sent, but the owner did not answer in time: it may be dead, partitioned or overloaded.
    UNACKNOWLEDGED = "unacknowledged"
    #: No live process owns the shard, so nothing was sent.
    NO_OWNER = "no owner"
    #: Redis could not be reached to send it.
    UNREACHABLE = "redis unreachable"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class CommandResult:
    status: CommandStatus
    action: str
    shard_id: int
    #: The process the command went to (None when no owner was found).
    process: str | None
    #: One operator sentence: what happened and, if it failed, why.
    message: str
    #: Why it was not sent (UNREACHABLE / NO_OWNER), without the action and shard: results
    #: with the same reason can be shown as one line.
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status is CommandStatus.OK

    def __str__(self) -> str:
        return self.message


def presence_to_params(presence: Presence) -> dict[str, Any]:
    return presence.to_dict()


def presence_from_params(params: dict[str, Any]) -> Presence:
    """Rebuild and validate a presence sent by ``presence_to_params``; ``ValueError`` names the problem."""
    return Presence.from_dict(params)


def _describe(action: str, shard_id: int, params: dict[str, Any]) -> str:
    if action == "restart" and params.get("force_identify"):
        return f"restart (fresh identify) of shard {shard_id}"
    if action == "shutdown" and params.get("code", 1000) != 1000:
        return f"shutdown (close {params['code']}, session kept) of shard {shard_id}"
    return f"{action} of shard {shard_id}"


async def send_command(
    redis: Redis,
    keys: FleetKeys,
    *,
    sender: str,
    process: str,
    action: str,
    shard_id: int,
    params: dict[str, Any] | None = None,
    ack_timeout: float = 5.0,
    redis_description: str = "Redis",
) -> CommandResult:
    """Send one command to ``process`` and wait up to ``ack_timeout`` seconds for its acknowledgement."""
    if action not in ACTIONS:
        raise ValueError(f"unknown fleet command {action!r} (one of {', '.join(ACTIONS)})")
    params = dict(params or {})
    what = _describe(action, shard_id, params)
    command_id = uuid.uuid4().hex
    reply_key = keys.ack(command_id)
    fields = {
        "id": command_id,
        "action": action,
        "shard": str(int(shard_id)),
        "params": orjson.dumps(params),
        "from": sender,
        "reply": reply_key,
        "ttl_ms": str(round(ack_timeout * 1000)),
    }
    try:
        await redis.xadd(keys.commands(process), fields, maxlen=STREAM_MAXLEN, approximate=True)
    except (RedisError, OSError) as exc:
        why = f"{redis_description} unreachable ({describe_redis_error(exc)})"
        message = f"{what} not sent: {why}"
        log.warning("%s", message)
        return CommandResult(CommandStatus.UNREACHABLE, action, shard_id, process, message, reason=why)
    deadline = time.monotonic() + ack_timeout
    reply: Any = None
    try:
        while reply is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            # Short blocking slices: a partitioned connection cannot hold the sender past its timeout.
            reply = await redis.blpop([reply_key], timeout=max(0.01, min(left, 1.0)))
    except UNREACHABLE_ERRORS as exc:
        message = (
            f"{what} sent to process {process}, but {redis_description} became unreachable "
            f"({describe_redis_error(exc)}) before an acknowledgement: it may or may not have run"
        )
        log.warning("%s", message)
        return CommandResult(CommandStatus.UNACKNOWLEDGED, action, shard_id, process, message)
    if reply is None:
        message = (
            f"{what} sent to process {process}: no acknowledgement within {ack_timeout:g} s "
            "(the process may be dead, partitioned from Redis or overloaded); it may or may not have run"
        )
        log.warning("%s", message)
        return CommandResult(CommandStatus.UNACKNOWLEDGED, action, shard_id, process, message)
    answer = _loads_dict(reply[1])
    ok = bool(answer.get("ok"))
    detail = str(answer.get("message", ""))
    if ok:
        return CommandResult(
            CommandStatus.OK, action, shard_id, process, f"{what}: done by process {process}"
        )
    message = f"{what} refused by process {process}: {detail or 'no reason given'}"
    log.warning("%s", message)
    return CommandResult(CommandStatus.FAILED, action, shard_id, process, message)


def _loads_dict(raw: Any) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class CommandListener:
    """Reads this process's command stream and runs each command on the manager, then acknowledges."""

    def __init__(
        self,
        redis: Redis,
        keys: FleetKeys,
        name: str,
        manager: ShardManager,
        *,
        block_ms: int = 1000,
        redis_description: str = "Redis",
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.name = name
        self.manager = manager
        self.block_ms = block_ms
        self.redis_description = redis_description
        #: Why commands cannot be read right now (None while they can).
        self.problem: str | None = None
        #: Commands executed: (command id, action, shard id, ok).
        self.handled: list[tuple[str, str, int, bool]] = []
        self._task: asyncio.Task[None] | None = None
        #: Set by close(): the loop ends at its next turn even if the cancellation went astray.
        self._closing = False
        self._running: set[asyncio.Task[Any]] = set()
        self._ready = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"shardtui-fleet-commands-{self.name}")

    async def wait_ready(self) -> None:
        """Return once the listener knows where the stream ends (commands sent after are seen)."""
        await self._ready.wait()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            self._closing = True
            await cancel_and_wait(task)
        running = list(self._running)
        for job in running:
            job.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def _loop(self) -> None:
        stream = self.keys.commands(self.name)
        last_id: str | None = None
        while not self._closing:
            try:
                if last_id is None:
                    # Commands sent while this process was not listening are stale: their senders
                    # already reported them unacknowledged. Start after the newest one.
                    newest = await self.redis.xrevrange(stream, count=1)
                    last_id = _text(newest[0][0]) if newest else "0-0"
                    self._ready.set()
                entries = await self.redis.xread({stream: last_id}, count=100, block=self.block_ms)
                if self._closing:
                    return
                now_ms = None
                for _stream, items in entries or []:
                    for entry_id, fields in items:
                        last_id = _text(entry_id)
                        if now_ms is None:
                            seconds, micros = await self.redis.time()
                            now_ms = seconds * 1000 + micros // 1000
                        self._dispatch(last_id, fields, now_ms)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                problem = (
                    f"{self.redis_description} unreachable ({describe_redis_error(exc)}): fleet commands wait"
                )
                if self.problem is None:
                    log.warning("process %s: %s", self.name, problem)
                self.problem = problem
                await asyncio.sleep(0.5)
                continue
            if self.problem is not None:
                log.info("process %s: reading fleet commands again", self.name)
                self.problem = None

    def _dispatch(self, entry_id: str, raw: dict[Any, Any], now_ms: int) -> None:
        fields = {_text(k): _text(v) for k, v in raw.items()}
        sent_ms = int(entry_id.split("-", 1)[0])
        ttl_ms = int(fields.get("ttl_ms", "0") or 0)
        if ttl_ms and now_ms - sent_ms > ttl_ms:
            log.warning(
                "process %s: %s from %s arrived after its sender stopped waiting; not executed",
                self.name,
                fields.get("action"),
                fields.get("from"),
            )
            return
        job = asyncio.create_task(self._run(fields), name=f"shardtui-fleet-command-{fields.get('id', '?')}")
        self._running.add(job)
        job.add_done_callback(self._running.discard)

    async def _run(self, fields: dict[str, str]) -> None:
        command_id = fields.get("id", "")
        action = fields.get("action", "")
        try:
            shard_id = int(fields.get("shard", ""))
        except ValueError:
            shard_id = -1
        try:
            params = orjson.loads(fields.get("params", "{}"))
        except orjson.JSONDecodeError:
            params = None
        ok, message = await self.execute(action, shard_id, params)
        self.handled.append((command_id, action, shard_id, ok))
        level = logging.INFO if ok else logging.WARNING
        log.log(level, "process %s: %s from %s: %s", self.name, action, fields.get("from", "?"), message)
        reply = fields.get("reply")
        if not reply:
            return
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.lpush(reply, orjson.dumps({"ok": ok, "message": message, "process": self.name}))
                pipe.pexpire(reply, ACK_TTL_MS)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning(
                "process %s: %s of shard %s done but not acknowledged (%s); the sender will report it "
                "unacknowledged",
                self.name,
                action,
                shard_id,
                describe_redis_error(exc),
            )

    async def deliver(
        self, action: str, shard_id: int, params: dict[str, Any] | None = None, *, ack_timeout: float = 5.0
    ) -> CommandResult:
        """Run a command of this very process on its manager, without Redis (so it works while
        Redis is down); the result reads like one the owner acknowledged. A command still running
        after ``ack_timeout`` seconds is reported unacknowledged and left to finish."""
        if action not in ACTIONS:
            raise ValueError(f"unknown fleet command {action!r} (one of {', '.join(ACTIONS)})")
        params = dict(params or {})
        what = _describe(action, shard_id, params)
        job = asyncio.create_task(
            self.execute(action, shard_id, params), name=f"shardtui-fleet-local-{action}-{shard_id}"
        )
        self._running.add(job)
        job.add_done_callback(self._running.discard)
        done, _ = await asyncio.wait({job}, timeout=ack_timeout)
        if not done:
            message = (
                f"{what}: still running in this process ({self.name}) after {ack_timeout:g} s; "
                "it goes on, watch the shard's stage"
            )
            log.warning("%s", message)
            return CommandResult(CommandStatus.UNACKNOWLEDGED, action, shard_id, self.name, message)
        ok, detail = job.result()
        self.handled.append(("local", action, shard_id, ok))
        if ok:
            message = f"{what}: done by this process ({self.name})"
            log.info("%s", message)
            return CommandResult(CommandStatus.OK, action, shard_id, self.name, message)
        message = f"{what} refused by this process ({self.name}): {detail or 'no reason given'}"
        log.warning("%s", message)
        return CommandResult(CommandStatus.FAILED, action, shard_id, self.name, message)

    async def execute(self, action: str, shard_id: int, params: Any) -> tuple[bool, str]:
        """Run one command on the manager; (ok, what happened)."""
        if action not in ACTIONS:
            return False, f"unknown command {action!r}"
        if not isinstance(params, dict):
            return False, "malformed parameters"
        if shard_id < 0 or ShardId(shard_id) not in self.manager.runners:
            return False, f"shard {shard_id} is not run by process {self.name}"
        sid = ShardId(shard_id)
        try:
            if action == "restart":
                await self.manager.restart(sid, force_identify=bool(params.get("force_identify", False)))
            elif action == "boot":
                await self.manager.boot(sid, force_identify=bool(params.get("force_identify", False)))
            elif action == "shutdown":
                await self.manager.shutdown(sid, int(params.get("code", 1000)))
            else:
                presence = presence_from_params(params)
                info = self.manager.runners.get(sid)
                messenger = self.manager.messenger(sid)
                if messenger is None or info is None or not info.running:
                    return False, f"shard {shard_id} is not running, so its presence cannot be set"
                messenger.set_presence(presence)
                return True, f"presence of shard {shard_id} set to {presence.describe()}"
        except (ValueError, RuntimeError) as exc:
            return False, str(exc)
        except Exception as exc:
            log.exception("process %s: %s of shard %s failed", self.name, action, shard_id)
            return False, f"{type(exc).__name__}: {exc}"
        return True, f"{action} of shard {shard_id} done"
