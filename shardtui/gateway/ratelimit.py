"""Outgoing gateway command limits: Discord's 120 commands per 60 s per connection, and 4096 bytes each.

The limiter is a sliding-window log of send times. Heartbeats always go through (a missed heartbeat
kills the connection); other commands may use only the window's budget minus the slots reserved for
the heartbeats that will fall into it, so heartbeats can never push the connection over the limit and
never eat into the commands' share.
"""

from __future__ import annotations

import asyncio
import math
import time
from bisect import bisect_right
from collections.abc import Awaitable, Callable

import orjson

from shardtui.gateway.errors import PayloadTooLarge
from shardtui.gateway.protocol import COMMAND_WINDOW_SECONDS, COMMANDS_PER_WINDOW, MAX_CLIENT_PAYLOAD_BYTES

#: Heartbeat slots reserved before HELLO tells us the interval (Discord's 41.25 s needs 2, plus 1 spare).
DEFAULT_HEARTBEAT_RESERVE = 3


def encode_command(payload: dict, limit: int = MAX_CLIENT_PAYLOAD_BYTES) -> bytes:
    """Encode an outgoing payload as JSON, refusing it if Discord would reject it for size."""
    data = orjson.dumps(payload)
    if len(data) > limit:
        op = payload.get("op") if isinstance(payload, dict) else None
        raise PayloadTooLarge(op if isinstance(op, int) else None, len(data), limit)
    return data


class CommandLimiter:
    """Per-connection command budget. Create one per connection (or call :meth:`reset`).

    ``clock`` and ``sleep`` are injectable so tests can drive time without waiting.
    """

    # Every connected shard holds one: slots and two short lists (an empty deque is ~0.75 KiB).
    __slots__ = ("_clock", "_commands", "_sent", "_sleep", "delayed", "limit", "reserved", "window")

    def __init__(
        self,
        limit: int = COMMANDS_PER_WINDOW,
        window: float = COMMAND_WINDOW_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if limit < 2:
            raise ValueError(f"command limit must be at least 2, got {limit}")
        if window <= 0:
            raise ValueError(f"command window must be positive, got {window}")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sleep = sleep
        #: Send times in the window, oldest first: everything, and the non-heartbeat commands among them.
        #: Lists, not deques: at most ``limit`` entries each, pruned from the front in one slice.
        self._sent: list[float] = []
        self._commands: list[float] = []
        self.reserved = min(DEFAULT_HEARTBEAT_RESERVE, limit // 2)
        #: Commands that had to wait for the window, for the operator's curiosity.
        self.delayed = 0

    def reset(self) -> None:
        self._sent.clear()
        self._commands.clear()
        self.delayed = 0

    def set_heartbeat_interval(self, interval: float) -> None:
        """Reserve enough slots for the heartbeats one window holds at ``interval`` seconds, plus one
        (an op 1 request from the server), but never more than half the budget."""
        if not math.isfinite(interval) or interval <= 0:
            return
        beats = math.ceil(self.window / interval) + 1
        self.reserved = max(1, min(beats, self.limit // 2))

    @property
    def command_budget(self) -> int:
        """How many non-heartbeat commands fit in one window."""
        return self.limit - self.reserved

    def _prune(self, now: float) -> None:
        horizon = now - self.window
        for log in (self._sent, self._commands):
            if log and log[0] <= horizon:
                del log[: bisect_right(log, horizon)]

    def in_window(self) -> int:
        """Sends (heartbeats included) in the current window."""
        self._prune(self._clock())
        return len(self._sent)

    def try_acquire(self, heartbeat: bool = False) -> float:
        """Take a slot now and return 0.0, or return how many seconds to wait before trying again."""
        now = self._clock()
        self._prune(now)
        sent, commands = self._sent, self._commands
        if heartbeat:
            sent.append(now)
            return 0.0
        budget = self.limit - self.reserved
        if len(commands) < budget and len(sent) < self.limit:
            sent.append(now)
            commands.append(now)
            return 0.0
        # Wait until enough old sends leave the window for both the command budget and the total.
        wait = 0.0
        if len(commands) >= budget:
            wait = commands[len(commands) - budget] + self.window - now
        if len(sent) >= self.limit:
            wait = max(wait, sent[len(sent) - self.limit] + self.window - now)
        return max(wait, 1e-3)

    async def acquire(self, heartbeat: bool = False) -> None:
        """Wait for a slot (heartbeats never wait)."""
        wait = self.try_acquire(heartbeat)
        if wait:
            self.delayed += 1
            while wait:
                await self._sleep(wait)
                wait = self.try_acquire(heartbeat)
