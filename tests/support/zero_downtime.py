"""Shared helpers for the zero-downtime tests: manager options for a sandbox, waiting, and a
handler that records which sandbox events reached the bot (tests only: the library never reads
the sandbox's event ids)."""

from __future__ import annotations

from collections import Counter

from shardtui.gateway.models import Dispatch
from shardtui.sandbox.accounting import EVENT_ID_KEY
from support.manager import options_for
from support.waiting import eventually

__all__ = ["IDENTIFIED_MIX", "Recorder", "eventually", "options_for"]

#: Traffic kinds with a Discord identity (message id, user + message + emoji): the
#: exactly-once checks use these. Typing and presence updates carry no identity (see reshard.py).
IDENTIFIED_MIX = {
    "MESSAGE_CREATE": 5.0,
    "MESSAGE_REACTION_ADD": 2.0,
    "DM_MESSAGE_CREATE": 0.5,
}


class Recorder:
    """The bot's event handler: counts every sandbox event id it was given, per name."""

    def __init__(self) -> None:
        self.ids: Counter[int] = Counter()
        self.names: Counter[str] = Counter()
        self.by_shard: dict[int, list[int]] = {}

    def __call__(self, dispatch: Dispatch) -> None:
        self.names[dispatch.name] += 1
        data = dispatch.data
        if isinstance(data, dict) and EVENT_ID_KEY in data:
            event_id = data[EVENT_ID_KEY]
            self.ids[event_id] += 1
            self.by_shard.setdefault(dispatch.shard_id.id, []).append(event_id)

    def duplicates(self) -> list[int]:
        return sorted(i for i, n in self.ids.items() if n > 1)
