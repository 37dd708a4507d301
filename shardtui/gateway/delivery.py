"""Delivery of dispatches to the user's handler, and the per-dispatch counters on ``ShardRunnerInfo``.

A sync handler runs at once, inside the connection's fast path; an async handler's coroutines are
queued and awaited one at a time by a delivery task, in the order the dispatches arrived. A handler
that raises is logged (at most once per ``HANDLER_ERROR_LOG_INTERVAL``, the rest counted) and never
stops the shard.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

from shardtui.gateway.models import Dispatch, ShardId, ShardRunnerInfo

#: Handler errors are logged at most once per this many seconds (the rest are counted).
HANDLER_ERROR_LOG_INTERVAL: Final = 5.0
#: Queued async handler calls at which the operator is told the handler cannot keep up.
HANDLER_BACKLOG_WARNING: Final = 10_000
GUILD_EVENTS: Final = frozenset({"READY", "GUILD_CREATE", "GUILD_DELETE"})


class Delivery:
    """Hands each dispatch to ``handler`` and keeps ``info``'s event counters and guild count true.

    ``deliver`` is on the per-event hot path: it does the counting and the call, nothing else.
    """

    __slots__ = (
        "_error_logged_at",
        "_errors",
        "_guild_ids",
        "_log",
        "_pending",
        "_task",
        "handler",
        "info",
        "shard_id",
    )

    def __init__(
        self,
        shard_id: ShardId,
        info: ShardRunnerInfo,
        handler: Callable[[Dispatch], Any] | None,
        log: Callable[[int, str], None],
        *,
        resumed_saved_session: bool,
    ) -> None:
        self.shard_id = shard_id
        self.info = info
        #: Replaced as a whole when a reshard hands the runner to another manager.
        self.handler = handler
        self._log = log
        #: Made on first use: an empty deque is 0.75 KiB, and a shard with a plain handler never needs it.
        self._pending: deque[Awaitable[Any]] | None = None
        self._task: asyncio.Task[None] | None = None
        #: Guild ids this session holds; None after resuming a saved session (READY, with the list, was
        #: seen by an earlier runner), when only leaving a guild can still be counted.
        self._guild_ids: set[object] | None = None if resumed_saved_session else set()
        self._errors = 0
        self._error_logged_at = -HANDLER_ERROR_LOG_INTERVAL

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The task awaiting queued async handler calls, while there are any."""
        return self._task

    def deliver(self, dispatch: Dispatch) -> None:
        info = self.info
        info.events_received += 1
        if dispatch.seq is not None:
            info.last_seq = dispatch.seq
        info.last_dispatch_at = time.time()
        if dispatch.name in GUILD_EVENTS:
            self.track_guilds(dispatch)
        handler = self.handler
        if handler is None:
            return
        try:
            result = handler(dispatch)
        except Exception as exc:
            self.handler_failed(exc, dispatch.name)
            return
        if result is not None and inspect.isawaitable(result):
            self.queue_awaitable(result)

    def queue_awaitable(self, result: Awaitable[Any]) -> None:
        """An async handler's work, awaited in order by the delivery task."""
        pending = self._pending
        if pending is None:
            pending = self._pending = deque()
        pending.append(result)
        if len(pending) == HANDLER_BACKLOG_WARNING:
            self._log(
                logging.WARNING,
                f"the async event handler is {HANDLER_BACKLOG_WARNING} events behind; "
                "events wait in memory until it catches up",
            )
        if self._task is None:
            self._task = asyncio.create_task(self._deliver_loop(), name=f"shard-{self.shard_id}-delivery")

    def discard_pending(self) -> None:
        """Close handler coroutines that will never be awaited, so Python does not warn about them."""
        while self._pending:
            leftover = self._pending.popleft()
            close = getattr(leftover, "close", None)
            if close is not None:
                close()

    async def _deliver_loop(self) -> None:
        """Awaits queued handler coroutines one at a time, in the order the dispatches arrived."""
        pending = self._pending
        assert pending is not None  # started by deliver() after its first append
        try:
            while pending:
                awaitable = pending.popleft()
                try:
                    await awaitable
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.handler_failed(exc, "an event")
        finally:
            self._task = None

    def handler_failed(self, exc: Exception, name: str) -> None:
        self._errors += 1
        now = time.monotonic()
        if now - self._error_logged_at >= HANDLER_ERROR_LOG_INTERVAL:
            self._error_logged_at = now
            more = f" ({self._errors} handler errors so far)" if self._errors > 1 else ""
            self._log(logging.ERROR, f"event handler raised on {name}: {type(exc).__name__}: {exc}{more}")

    def track_guilds(self, dispatch: Dispatch) -> None:
        data = dispatch.data
        if type(data) is not dict:
            return
        name = dispatch.name
        ids = self._guild_ids
        if name == "READY":
            ids = self._guild_ids = set()
            guilds = data.get("guilds")
            if type(guilds) is list:
                for guild in guilds:
                    if type(guild) is dict and "id" in guild:
                        ids.add(guild["id"])
        elif ids is None:
            # Resumed without the guild list: a GUILD_CREATE may be a known guild coming back, so only
            # a real leave (GUILD_DELETE without "unavailable") changes the count we inherited.
            if name == "GUILD_DELETE" and data.get("unavailable") is not True and self.info.guilds > 0:
                self.info.guilds -= 1
            return
        elif name == "GUILD_CREATE":
            if "id" in data:
                ids.add(data["id"])
        elif data.get("unavailable") is not True:  # GUILD_DELETE without unavailable: we left it
            ids.discard(data.get("id"))
        self.info.guilds = len(ids)
