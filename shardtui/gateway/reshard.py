"""Live reshard: move the bot to a new shard total without a gap in events.

Discord lets sessions with different shard totals run at once, so the new set of shards is started
alongside the old one. While the new set connects, the old set keeps delivering to the user's
handler and the new set's dispatches are held back. Once every new shard is CONNECTED the handler
switches over: what the new set held back is delivered unless the old set already delivered the
same event, the old set is closed, and from then on only the new set delivers. Both sets see the
same events, so "the same event" has to be recognised across sessions by its Discord identity —
:func:`event_identity` — never by seq (each session numbers its own).

Events with no identity in Discord's payloads (TYPING_START, PRESENCE_UPDATE) are identified by
their content: an identical repeat inside the overlap window counts as the same event. The new
set's READY and the GUILD_CREATEs of the guilds its READY lists are not delivered: the old set
announced those guilds already (a GUILD_CREATE for a guild joined meanwhile is delivered once).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Hashable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, Self

import orjson

from shardtui.gateway.events import EventBus
from shardtui.gateway.models import (
    Dispatch,
    ManagerEvent,
    Presence,
    ReshardSwitchEvent,
    ShardId,
    ShardInfoUpdateEvent,
    ShardLogEvent,
    ShardRunnerInfo,
)
from shardtui.gateway.options import ShardManagerOptions
from shardtui.gateway.planner import (
    SESSION_SETUP_SECONDS,
    GateOutlook,
    Plan,
    format_shard_ids,
    identify_schedule,
)

log = logging.getLogger("shardtui.gateway.reshard")

#: Identities remembered for deduplication (oldest forgotten first).
DEDUPE_CAPACITY = 200_000
#: Dispatches of the new set held back before the switch (oldest dropped first: the old set has them).
BUFFER_CAPACITY = 100_000
#: Seconds the dedupe stays on after the switch, while the old set's last copies may still arrive.
DEDUPE_GRACE_SECONDS = 30.0
#: Extra seconds the new set may take beyond the plan's estimate before the reshard is abandoned.
CONNECT_GRACE_SECONDS = 30.0
#: Session-specific dispatches: never the same event across sessions.
_SESSION_EVENTS = frozenset({"READY", "RESUMED"})


def _content_key(data: Any) -> str:
    raw = orjson.dumps(data, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def _emoji_key(data: dict[str, Any]) -> object:
    emoji = data.get("emoji")
    if isinstance(emoji, dict):
        return emoji.get("id") or emoji.get("name")
    return None


def _user_id(data: dict[str, Any]) -> object:
    user = data.get("user")
    if isinstance(user, dict):
        return user.get("id")
    return data.get("user_id")


def event_identity(dispatch: Dispatch) -> Hashable | None:
    """What makes this dispatch the same event on any session; None for session-specific ones."""
    name, data = dispatch.name, dispatch.data
    if name in _SESSION_EVENTS:
        return None
    if not isinstance(data, dict):
        return (name, _content_key(data))
    guild = data.get("guild_id")
    if name in ("MESSAGE_CREATE", "MESSAGE_DELETE", "INTERACTION_CREATE") and "id" in data:
        return (name, data["id"])
    if name == "MESSAGE_UPDATE" and "id" in data:
        return (name, data["id"], data.get("edited_timestamp"), _content_key(data))
    if name in ("MESSAGE_REACTION_ADD", "MESSAGE_REACTION_REMOVE") and "message_id" in data:
        return (name, data["message_id"], data.get("user_id"), _emoji_key(data), data.get("burst"))
    if name == "GUILD_MEMBER_ADD":
        return (name, guild, _user_id(data), data.get("joined_at"))
    if name == "GUILD_MEMBER_REMOVE":
        return (name, guild, _user_id(data))
    if name in ("GUILD_CREATE", "GUILD_DELETE") and "id" in data:
        # A guild's create/delete happens once per membership; unavailability flaps are distinct.
        return (name, data["id"], data.get("unavailable"))
    # Everything else (updates, typing, presences, voice, ...) has no event id: the same payload
    # inside the overlap is the same event.
    return (name, guild, _content_key(data))


class DispatchRouter:
    """Feeds the user's handler from two shard sets across a reshard, each event once, in order.

    Before :meth:`switch`: the old set delivers, the new set's dispatches are held. At the switch
    the held ones the old set did not deliver go out; after it only the new set delivers."""

    def __init__(
        self,
        deliver: Callable[[Dispatch], Any],
        *,
        capacity: int = DEDUPE_CAPACITY,
        buffer_capacity: int = BUFFER_CAPACITY,
    ) -> None:
        self._deliver = deliver
        self._capacity = capacity
        self._seen: set[Hashable] = set()
        self._order: deque[Hashable] = deque()
        self._held: deque[Dispatch] = deque(maxlen=buffer_capacity)
        #: Guild ids each new shard's READY listed: their first GUILD_CREATE is a re-announcement.
        self._announced: dict[ShardId, set[str]] = {}
        self.switched = False
        self.dropped_duplicates = 0
        self.suppressed_announcements = 0

    def _remember(self, identity: Hashable) -> bool:
        """True when ``identity`` is new (and now remembered)."""
        if identity in self._seen:
            return False
        self._seen.add(identity)
        self._order.append(identity)
        if len(self._order) > self._capacity:
            self._seen.discard(self._order.popleft())
        return True

    def _pass(self, dispatch: Dispatch) -> Any:
        identity = event_identity(dispatch)
        if identity is not None and not self._remember(identity):
            self.dropped_duplicates += 1
            return None
        return self._deliver(dispatch)

    def old_side(self, dispatch: Dispatch) -> Any:
        if self.switched:
            # The new set has (or will have) every event; delivering the old set's late copies
            # could put an event ahead of one the new set has not delivered yet.
            return None
        return self._pass(dispatch)

    def _is_announcement(self, dispatch: Dispatch) -> bool:
        data = dispatch.data
        if dispatch.name == "READY":
            guilds = data.get("guilds") if isinstance(data, dict) else None
            self._announced[dispatch.shard_id] = {
                str(g.get("id")) for g in guilds or () if isinstance(g, dict)
            }
            return True
        if dispatch.name == "GUILD_CREATE" and isinstance(data, dict):
            listed = self._announced.get(dispatch.shard_id)
            guild_id = str(data.get("id"))
            if listed is not None and guild_id in listed:
                listed.discard(guild_id)
                return True
        return False

    def new_side(self, dispatch: Dispatch) -> Any:
        if self._is_announcement(dispatch):
            self.suppressed_announcements += 1
            return None
        if not self.switched:
            self._held.append(dispatch)
            return None
        return self._pass(dispatch)

    async def switch(self) -> int:
        """Deliver what the new set held that the old set did not; from now on the new set delivers.
        Returns how many held dispatches were delivered."""
        self.switched = True
        delivered = 0
        while self._held:
            dispatch = self._held.popleft()
            before = self.dropped_duplicates
            result = self._pass(dispatch)
            if self.dropped_duplicates == before:
                delivered += 1
            if inspect.isawaitable(result):
                try:
                    await result
                except Exception:
                    log.exception("event handler failed on %s", dispatch.name)
        return delivered


def plan_reshard(manager: ReshardHost, shard_ids: Iterable[ShardId | int]) -> Plan:
    """The cost of starting the new set ``shard_ids`` (``range(new_total)``): one identify each,
    paced by the identify buckets, out of the daily budget."""
    ids = tuple(sorted({ShardId(int(s)) for s in shard_ids}))
    if not ids:
        raise ValueError("a reshard needs the new set's shard ids, e.g. range(new_total)")
    new_total = ids[-1].id + 1
    if [s.id for s in ids] != list(range(new_total)):
        raise ValueError(f"a reshard starts every shard of the new total; got {format_shard_ids(ids)}")
    mc = manager.max_concurrency or 1
    outlook = manager.gate_outlook()
    budget = outlook.budget_remaining
    schedule = identify_schedule(
        ids,
        max_concurrency=mc,
        window=outlook.window + outlook.margin,
        bucket_free_in=outlook.bucket_free_in,
        budget_remaining=budget,
        reset_in=outlook.reset_in,
    )
    seconds = max(schedule.values()) + SESSION_SETUP_SECONDS
    over = 0 if budget is None else max(0, len(ids) - max(0, budget))
    old_total = manager.shard_total
    left = "budget unknown" if budget is None else f"{budget} left today"
    text = (
        f"reshard from {old_total} to {new_total} shards: {len(ids)} identifies ({left}), "
        f"about {seconds:.1f} s under max_concurrency {mc}; the old set keeps delivering until "
        f"every new shard is connected"
    )
    if over:
        text += f"; {over} over the budget would wait for the reset: not started"
    return Plan("reshard", ids, len(ids), 0, seconds, budget, text, over)


@dataclass(slots=True)
class ReshardResult:
    old_total: int
    new_total: int
    #: Held-back dispatches of the new set delivered at the switch.
    delivered_at_switch: int
    #: Dispatches dropped as copies of ones already delivered (so far).
    duplicates_dropped: int


class ReshardHost(Protocol):
    """What a reshard needs of the manager: its options and events, a second set of shards to build
    (``new_shard_set``), and the switch (``close_shard_set`` then ``adopt``)."""

    options: ShardManagerOptions
    max_concurrency: int | None
    events: EventBus

    @property
    def runners(self) -> Mapping[ShardId, ShardRunnerInfo]: ...

    @property
    def shard_total(self) -> int | None: ...

    @property
    def closing(self) -> bool: ...

    def gate_outlook(self) -> GateOutlook: ...

    def subscribe(self, callback: Callable[[ManagerEvent], Any]) -> Callable[[], None]: ...

    def new_shard_set(self, options: ShardManagerOptions) -> Self: ...

    async def initialize(self) -> None: ...

    async def wait_until_connected(self, timeout: float) -> bool: ...  # noqa: ASYNC109 - the manager's API

    async def shutdown_all(self, *, keep_sessions: bool | None = None) -> None: ...

    async def close_shard_set(self) -> None: ...

    def adopt(self, other: Self) -> None: ...

    def reclaim_gate(self) -> None: ...

    def stage_changed(self) -> None: ...

    def spawn_background(self, coro: Coroutine[Any, Any, Any], name: str) -> None: ...


async def run_reshard(manager: ReshardHost, new_total: int, *, dedupe_grace: float) -> ReshardResult:
    """The reshard itself (``ShardManager.reshard`` checks the preconditions first)."""
    old_total = manager.shard_total or 0
    plan = plan_reshard(manager, range(new_total))
    if plan.over_budget:
        raise RuntimeError(f"not resharding: {plan.text}")
    manager.events.log(None, logging.INFO, plan.text)
    user_handler = manager.options.event_handler
    router = DispatchRouter(user_handler if user_handler is not None else (lambda _d: None))
    new_options = replace(
        manager.options,
        shard_total=new_total,
        shard_range=None,
        event_handler=router.new_side,
        # The presence the shards show now (the operator may have changed it), not the one at start.
        presence=_current_presence(manager),
        state_file=None,
        health_interval=0.0,
    )
    new_set = manager.new_shard_set(new_options)

    def forward(event: ManagerEvent) -> None:
        if isinstance(event, ShardLogEvent) and event.shard_id is not None:
            manager.events.emit(
                ShardLogEvent(None, event.level, f"new set shard {event.shard_id.id}: {event.message}")
            )

    new_set.subscribe(forward)
    manager.options.event_handler = router.old_side
    try:
        await new_set.initialize()
        connected = await _wait_connected(manager, new_set, plan.seconds + CONNECT_GRACE_SECONDS)
        if not connected or manager.closing:
            why = "the manager is shutting down" if manager.closing else "the new set did not connect"
            raise RuntimeError(f"reshard abandoned: {why}; the old {old_total} shards keep running")
    except BaseException:
        manager.options.event_handler = user_handler
        await new_set.shutdown_all(keep_sessions=False)
        manager.reclaim_gate()
        raise

    # Before the held dispatches go out: a consumer that lays out per shard total (the proxy) must
    # switch first, since the manager's own total changes only after the old set is closed.
    manager.events.emit(ReshardSwitchEvent(old_total, new_total))
    delivered = await router.switch()
    manager.events.log(
        None,
        logging.INFO,
        f"reshard: all {new_total} new shards connected; switched delivery over "
        f"({delivered} held events delivered), closing the old {old_total}",
    )
    await manager.close_shard_set()
    manager.adopt(new_set)
    manager.options.shard_total = new_total
    manager.options.shard_range = None
    manager.options.event_handler = router.new_side
    for sid in manager.runners:
        manager.events.emit(ShardInfoUpdateEvent(sid))
    manager.stage_changed()
    manager.events.log(None, logging.INFO, f"resharded from {old_total} to {new_total} shards")

    async def end_dedupe() -> None:
        await asyncio.sleep(dedupe_grace)
        if manager.options.event_handler is router.new_side:
            manager.options.event_handler = user_handler

    if dedupe_grace > 0:
        manager.spawn_background(end_dedupe(), "shardtui-reshard-dedupe")
    else:
        manager.options.event_handler = user_handler
    return ReshardResult(old_total, new_total, delivered, router.dropped_duplicates)


def _current_presence(manager: ReshardHost) -> Presence | None:
    for sid in sorted(manager.runners):
        presence = manager.runners[sid].presence
        if presence is not None:
            return presence
    return manager.options.presence


async def _wait_connected(manager: ReshardHost, new_set: ReshardHost, limit: float) -> bool:
    """Until every new shard is CONNECTED; False on timeout, a fatal error, or the manager closing."""
    waiter = asyncio.ensure_future(new_set.wait_until_connected(limit))
    try:
        while not waiter.done():
            await asyncio.wait({waiter}, timeout=0.1)
            if manager.closing:
                return False
        return waiter.result()
    finally:
        waiter.cancel()
