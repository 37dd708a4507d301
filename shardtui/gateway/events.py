"""The manager's event bus: who hears about stage changes, info updates, log lines and fatal errors.

Subscribers are plain callables, called in subscription order; one that raises (or returns a
coroutine, which would never run) is logged and never breaks the bus or the emitter.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable
from typing import Any

from shardtui.gateway.models import ManagerEvent, ShardId, ShardLogEvent

Subscriber = Callable[[ManagerEvent], Any]


class EventBus:
    def __init__(self, logger: logging.Logger, *, after: Subscriber | None = None) -> None:
        #: Where ``log`` writes besides the bus (the owner's logger, so records keep their name).
        self._logger = logger
        self._subscribers: list[Subscriber] = []
        #: The owner's hook once every subscriber has heard an event (e.g. alerts that follow from
        #: it, which must not reach anyone before their cause).
        self._after = after

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; returns a function that unsubscribes."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def clear(self) -> None:
        """Forget every subscriber (an owner that is gone for good)."""
        self._subscribers.clear()

    def emit(self, event: ManagerEvent) -> None:
        for callback in list(self._subscribers):
            try:
                result = callback(event)
                if inspect.iscoroutine(result):
                    # Subscribers are plain callables; a coroutine would never run, so say so once.
                    result.close()
                    self._logger.warning(
                        "event subscriber %r returned a coroutine; subscribers must be sync", callback
                    )
            except Exception:
                self._logger.exception("event subscriber %r failed on %s", callback, type(event).__name__)
        if self._after is not None:
            try:
                self._after(event)
            except Exception:
                self._logger.exception("the event bus's after-hook failed on %s", type(event).__name__)

    def log(self, shard_id: ShardId | None, level: int, message: str) -> None:
        """Log ``message`` and emit it as a ``ShardLogEvent`` (what the console's log pane shows)."""
        self._logger.log(level, "%s%s", "" if shard_id is None else f"shard {shard_id}: ", message)
        self.emit(ShardLogEvent(shard_id, level, message))
