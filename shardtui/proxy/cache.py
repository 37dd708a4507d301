"""The proxy's guild state cache: what a bot attaching late needs to see the world a bot attached early saw.

Fed the upstream dispatches (decoded ``data`` dicts), one :class:`ShardCache` per upstream shard follows
every state dispatch (READY, GUILD_*, CHANNEL_*, THREAD_*, roles, members, emojis, stickers, voice
states, presences, stage instances, USER_UPDATE) and builds, on demand, the snapshot a client gets after
its IDENTIFY: READY's fields and, per guild, a GUILD_CREATE ``d`` in Discord's shape (fact sheet §4.3).

Cost rules (the cache sits on the dispatch path of hundreds of guilds):

* :func:`is_state_event` is one frozenset lookup; every other dispatch costs nothing more.
* Dicts are stored as received, never deep-copied. The cache never mutates a dict it was given (the
  same dict is forwarded to clients): an update replaces the stored entry with a new shallow dict.
* Snapshot lists are built fresh per call, their elements shared with the cache: serialize a snapshot
  before the next dispatch is applied, or copy it.

Guild slots: a guild listed by READY and not yet created, or announced unavailable (an outage), has no
data; a snapshot lists it in READY and, for an outage, follows with ``GUILD_DELETE {id, unavailable}``
the way Discord announces a guild that stays unavailable. ``GUILD_DELETE`` without ``unavailable`` (the
bot left) removes the guild.

:class:`GuildStateCache` holds every shard's cache and saves/loads them all to one JSON file (orjson)
for a restart from ``[gateway] state_file``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from shardtui.gateway.models import Dispatch
from shardtui.gateway.protocol import GatewayIntents
from shardtui.gateway.sessions import write_private

log = logging.getLogger("shardtui.proxy")

#: Version of the saved file's layout; a file of another version is refused (one error, no cache).
CACHE_FILE_VERSION: Final = 1
CACHE_FILE_KIND: Final = "shardtui-proxy-cache"

#: GUILD_CREATE keys the cache keeps as collections; every other key is a plain guild field.
_COLLECTION_KEYS: Final = frozenset(
    {
        "roles",
        "emojis",
        "stickers",
        "channels",
        "threads",
        "members",
        "presences",
        "voice_states",
        "stage_instances",
        "guild_scheduled_events",
        "member_count",
    }
)
#: Discord's GUILD_CREATE keys that this cache passes through as received (it follows no event for them).
_OPAQUE_LIST_KEYS: Final = ("soundboard_sounds",)


def is_state_event(name: str) -> bool:
    """True when the dispatch ``name`` changes cached state (a frozenset lookup)."""
    return name in STATE_EVENTS


class CacheFileError(Exception):
    """The saved cache file cannot be used (unreadable, corrupt or of another version)."""


@dataclass(frozen=True, slots=True)
class CacheOptions:
    """Which parts to keep. Without members only the bot's own member stays (GUILD_CREATE always has it);
    without presences the snapshot's ``presences`` is empty."""

    members: bool = True
    presences: bool = True


def _without(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in keys}


def _user_id(data: dict[str, Any]) -> str | None:
    user = data.get("user")
    if isinstance(user, dict):
        uid = user.get("id")
        return str(uid) if uid is not None else None
    uid = data.get("user_id")
    return str(uid) if uid is not None else None


class GuildState:
    """One available guild: its plain fields and each collection keyed by id, in arrival order."""

    __slots__ = (
        "channels",
        "emojis",
        "fields",
        "member_count",
        "members",
        "opaque",
        "presences",
        "roles",
        "scheduled_events",
        "stage_instances",
        "stickers",
        "threads",
        "voice_states",
    )

    def __init__(self, data: dict[str, Any], options: CacheOptions, bot_id: str | None) -> None:
        self.fields: dict[str, Any] = {
            k: v for k, v in data.items() if k not in _COLLECTION_KEYS and k not in _OPAQUE_LIST_KEYS
        }
        self.roles = _by_id(data.get("roles"))
        self.emojis: list[Any] = data.get("emojis") or []
        self.stickers: list[Any] = data.get("stickers") or []
        self.channels = _by_id(data.get("channels"))
        self.threads = _by_id(data.get("threads"))
        self.stage_instances = _by_id(data.get("stage_instances"))
        self.scheduled_events = _by_id(data.get("guild_scheduled_events"))
        self.opaque: dict[str, Any] = {k: data[k] for k in _OPAQUE_LIST_KEYS if k in data}
        self.members: dict[str, dict[str, Any]] = {}
        for member in data.get("members") or ():
            uid = _user_id(member)
            if uid is not None and (options.members or uid == bot_id):
                self.members[uid] = member
        self.presences: dict[str, dict[str, Any]] = {}
        if options.presences:
            for presence in data.get("presences") or ():
                uid = _user_id(presence)
                if uid is not None:
                    self.presences[uid] = presence
        self.voice_states: dict[str, dict[str, Any]] = {}
        for state in data.get("voice_states") or ():
            uid = _user_id(state)
            if uid is not None:
                self.voice_states[uid] = state
        count = data.get("member_count")
        self.member_count: int = count if isinstance(count, int) else len(self.members)

    def guild_create(self, intents: int | None = None, bot_id: str | None = None) -> dict[str, Any]:
        """This guild as a GUILD_CREATE ``d``; ``intents`` without GUILD_PRESENCES narrow members and
        presences the way Discord does (§4.3), which needs ``bot_id``."""
        data = dict(self.fields)
        members: Iterable[dict[str, Any]] = self.members.values()
        presences: list[dict[str, Any]] = list(self.presences.values())
        if intents is not None and not intents & GatewayIntents.GUILD_PRESENCES:
            # Only the bot's own member and members in voice come along.
            members = [m for uid, m in self.members.items() if uid == bot_id or uid in self.voice_states]
            presences = []
        data.update(
            {
                "unavailable": False,
                "member_count": self.member_count,
                "roles": list(self.roles.values()),
                "emojis": list(self.emojis),
                "stickers": list(self.stickers),
                "channels": list(self.channels.values()),
                "threads": list(self.threads.values()),
                "members": list(members),
                "presences": presences,
                "voice_states": list(self.voice_states.values()),
                "stage_instances": list(self.stage_instances.values()),
                "guild_scheduled_events": list(self.scheduled_events.values()),
            }
        )
        for key in _OPAQUE_LIST_KEYS:
            data[key] = self.opaque.get(key, [])
        return data


def _by_id(items: object) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and item.get("id") is not None:
                out[str(item["id"])] = item
    return out


class ShardCache:
    """The state of one upstream shard, fed its dispatches with :meth:`apply`."""

    def __init__(self, shard_id: int, options: CacheOptions | None = None) -> None:
        self.shard_id = shard_id
        self.options = options or CacheOptions()
        #: READY's ``user`` (kept current by USER_UPDATE) and ``application``; None before READY.
        self.user: dict[str, Any] | None = None
        self.application: dict[str, Any] | None = None
        #: guild id -> state; None while the guild is unavailable (not created yet, or in an outage).
        self._guilds: dict[str, GuildState | None] = {}
        #: Guild ids announced unavailable by GUILD_DELETE (an outage), not merely pending after READY.
        self._outage: set[str] = set()

    def __repr__(self) -> str:
        return (
            f"<ShardCache shard={self.shard_id} guilds={len(self._guilds)} "
            f"available={sum(1 for g in self._guilds.values() if g is not None)}>"
        )

    # -- reading ----------------------------------------------------------------------------------

    @property
    def ready_seen(self) -> bool:
        return self.user is not None

    @property
    def bot_id(self) -> str | None:
        uid = self.user.get("id") if self.user else None
        return str(uid) if uid is not None else None

    def guild_ids(self) -> list[str]:
        """Every guild of this shard (available or not), in READY order then join order."""
        return list(self._guilds)

    def guild(self, guild_id: str | int) -> GuildState | None:
        return self._guilds.get(str(guild_id))

    def is_outage(self, guild_id: str | int) -> bool:
        return str(guild_id) in self._outage

    def ready_fields(self) -> dict[str, Any]:
        """READY's cached fields: ``user``, ``application`` and every guild as unavailable."""
        return {
            "user": self.user,
            "application": self.application,
            "guilds": [{"id": gid, "unavailable": True} for gid in self._guilds],
        }

    def ready_data(
        self, *, session_id: str, resume_gateway_url: str, shard: tuple[int, int], version: int = 10
    ) -> dict[str, Any]:
        """A whole READY ``d`` for a client session, with the keys real bot READYs carry (§4.2)."""
        fields = self.ready_fields()
        return {
            "v": version,
            "user_settings": {},
            "user": fields["user"],
            "shard": [shard[0], shard[1]],
            "session_type": "normal",
            "session_id": session_id,
            "resume_gateway_url": resume_gateway_url,
            "relationships": [],
            "private_channels": [],
            "presences": [],
            "guilds": fields["guilds"],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "auth": {},
            "application": fields["application"],
        }

    def guild_create(self, guild_id: str | int, intents: int | None = None) -> dict[str, Any] | None:
        """The GUILD_CREATE ``d`` of one available guild (None when unknown or unavailable).

        ``intents`` narrows it the way Discord would for a session with those intents (None: as cached)."""
        state = self._guilds.get(str(guild_id))
        if state is None:
            return None
        return state.guild_create(intents, self.bot_id)

    def guild_events(self, intents: int | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """What follows READY for a new client: a GUILD_CREATE per available guild and a
        ``GUILD_DELETE {id, unavailable: true}`` per guild in an outage, in guild order. Guilds still
        pending after READY get nothing: their GUILD_CREATE comes live. A session without GUILDS gets
        nothing (GUILD_CREATE is a GUILDS event)."""
        if intents is not None and not intents & GatewayIntents.GUILDS:
            return
        for gid, state in self._guilds.items():
            if state is not None:
                data = self.guild_create(gid, intents)
                if data is not None:
                    yield "GUILD_CREATE", data
            elif gid in self._outage:
                yield "GUILD_DELETE", {"id": gid, "unavailable": True}

    # -- writing ----------------------------------------------------------------------------------

    def apply(self, name: str, data: Any) -> bool:
        """Follow one dispatch; returns False when ``name`` is not a state event (nothing done)."""
        handler = _HANDLERS.get(name)
        if handler is None:
            return False
        if isinstance(data, dict):
            handler(self, data)
        return True

    def _state_for(self, data: dict[str, Any]) -> GuildState | None:
        gid = data.get("guild_id")
        return self._guilds.get(str(gid)) if gid is not None else None

    def _on_ready(self, d: dict[str, Any]) -> None:
        # A new upstream session: Discord sends every guild again, so what was cached is stale.
        self.user = d.get("user") if isinstance(d.get("user"), dict) else None
        self.application = d.get("application") if isinstance(d.get("application"), dict) else None
        self._guilds = {}
        self._outage = set()
        for guild in d.get("guilds") or ():
            if isinstance(guild, dict) and guild.get("id") is not None:
                self._guilds[str(guild["id"])] = None

    def _on_user_update(self, d: dict[str, Any]) -> None:
        self.user = {**self.user, **d} if self.user else d
        bot_id = self.bot_id
        if bot_id is None:
            return
        # The bot's member in every guild carries its user: a fresh GUILD_CREATE would show the change.
        for state in self._guilds.values():
            member = state.members.get(bot_id) if state is not None else None
            if member is not None and isinstance(member.get("user"), dict):
                state.members[bot_id] = {**member, "user": {**member["user"], **d}}  # type: ignore[union-attr]

    def _guild_outage(self, d: dict[str, Any]) -> str | None:
        """The guild id of a GUILD_CREATE/DELETE, None when it has none or when it only marks an
        outage (``unavailable: true``: the guild is kept, as unavailable, for a later GUILD_CREATE)."""
        gid = d.get("id")
        if gid is None:
            return None
        gid = str(gid)
        if d.get("unavailable") is True:
            self._guilds[gid] = None
            self._outage.add(gid)
            return None
        return gid

    def _on_guild_create(self, d: dict[str, Any]) -> None:
        gid = self._guild_outage(d)
        if gid is None:
            return
        self._guilds[gid] = GuildState(d, self.options, self.bot_id)
        self._outage.discard(gid)

    def _on_guild_update(self, d: dict[str, Any]) -> None:
        gid = d.get("id")
        state = self._guilds.get(str(gid)) if gid is not None else None
        if state is None:
            return
        state.fields = {
            **state.fields,
            **{k: v for k, v in d.items() if k not in _COLLECTION_KEYS and k not in _OPAQUE_LIST_KEYS},
        }
        if isinstance(d.get("roles"), list):
            state.roles = _by_id(d["roles"])
        if isinstance(d.get("emojis"), list):
            state.emojis = d["emojis"]
        if isinstance(d.get("stickers"), list):
            state.stickers = d["stickers"]

    def _on_guild_delete(self, d: dict[str, Any]) -> None:
        gid = self._guild_outage(d)
        if gid is None:
            return
        self._guilds.pop(gid, None)
        self._outage.discard(gid)

    # channels

    def _on_channel_upsert(self, d: dict[str, Any]) -> None:
        state = self._state_for(d)
        cid = d.get("id")
        if state is None or cid is None:
            return
        # GUILD_CREATE's channels carry no guild_id.
        state.channels[str(cid)] = _without(d, "guild_id")

    def _on_channel_delete(self, d: dict[str, Any]) -> None:
        state = self._state_for(d)
        cid = d.get("id")
        if state is None or cid is None:
            return
        cid = str(cid)
        state.channels.pop(cid, None)
        # The channel's threads went with it: a fresh GUILD_CREATE would not list them.
        for tid in [t for t, thread in state.threads.items() if str(thread.get("parent_id")) == cid]:
            del state.threads[tid]

    # threads

    def _on_thread_upsert(self, d: dict[str, Any]) -> None:
        state = self._state_for(d)
        tid = d.get("id")
        if state is None or tid is None:
            return
        tid = str(tid)
        metadata = d.get("thread_metadata")
        if isinstance(metadata, dict) and metadata.get("archived"):
            # GUILD_CREATE lists active threads only.
            state.threads.pop(tid, None)
            return
        old = state.threads.get(tid)
        if old is not None and "member" in old and "member" not in d:
            d = {**d, "member": old["member"]}
        state.threads[tid] = d

    def _on_thread_delete(self, d: dict[str, Any]) -> None:
        state = self._state_for(d)
        tid = d.get("id")
        if state is not None and tid is not None:
            state.threads.pop(str(tid), None)

    def _on_thread_list_sync(self, d: dict[str, Any]) -> None:
        state = self._state_for(d)
        if state is None:
            return
        channel_ids = d.get("channel_ids")
        if isinstance(channel_ids, list):
            parents = {str(c) for c in channel_ids}
            for tid in [t for t, th in state.threads.items() if str(th.get("parent_id")) in parents]:
                del state.threads[tid]
        else:
            # No channel_ids: the sync covers the whole guild.
            state.threads = {}
        members = {
            str(m["id"]): m for m in d.get("members") or () if isinstance(m, dict) and m.get("id") is not None
        }
        for thread in d.get("threads") or ():
            if not isinstance(thread, dict) or thread.get("id") is None:
                continue
            tid = str(thread["id"])
            member = members.get(tid)
            state.threads[tid] = {**thread, "member": member} if member is not None else thread

    def _on_thread_member_update(self, d: dict[str, Any]) -> None:
        state = self._state_for(d)
        tid = d.get("id")
        if state is None or tid is None:
            return
        thread = state.threads.get(str(tid))
        if thread is not None:
            state.threads[str(tid)] = {**thread, "member": _without(d, "guild_id")}

    def _on_thread_members_update(self, d: dict[str, Any]) -> None:
        state = self._state_for(d)
        tid = d.get("id")
        if state is None or tid is None:
            return
        thread = state.threads.get(str(tid))
        if thread is None:
            return
        thread = dict(thread)
        if isinstance(d.get("member_count"), int):
            thread["member_count"] = d["member_count"]
        bot_id = self.bot_id
        removed = {str(u) for u in d.get("removed_member_ids") or ()}
        if bot_id in removed:
            thread.pop("member", None)
        for added in d.get("added_members") or ():
            if isinstance(added, dict) and str(added.get("user_id")) == bot_id:
                thread["member"] = _without(added, "member", "presence", "guild_id")
        state.threads[str(tid)] = thread

    # roles

    def _on_role_upsert(self, d: dict[str, Any]) -> None:
        state = self._state_for(d)
        role = d.get("role")
        if state is None or not isinstance(role, dict) or role.get("id") is None:
            return
        state.roles[str(role["id"])] = role

    def _on_role_delete(self, d: dict[str, Any]) -> None:
        state = self._state_for(d)
        rid = d.get("role_id")
        if state is None or rid is None:
            return
        rid = str(rid)
        state.roles.pop(rid, None)
        # Members lose the role with it (a fresh GUILD_CREATE would not list it on them).
        for uid, member in state.members.items():
            roles = member.get("roles")
            if isinstance(roles, list) and rid in roles:
                state.members[uid] = {**member, "roles": [r for r in roles if r != rid]}

    # members

    def _keeps_member(self, uid: str) -> bool:
        return self.options.members or uid == self.bot_id

    def _on_member_add(self, d: dict[str, Any]) -> None:
        state = self._state_for(d)
        if state is None:
            return
        state.member_count += 1
        uid = _user_id(d)
        if uid is not None and self._keeps_member(uid):
            state.members[uid] = _without(d, "guild_id")

    def _on_member_update(self, d: dict[str, Any]) -> None:
        state = self._state_for(d)
        uid = _user_id(d)
        if state is None or uid is None or not self._keeps_member(uid):
            return
        old = state.members.get(uid)
        update = _without(d, "guild_id")
        state.members[uid] = {**old, **update} if old is not None else update

    def _on_member_remove(self, d: dict[str, Any]) -> None:
        state = self._state_for(d)
        if state is None:
            return
        state.member_count = max(0, state.member_count - 1)
        uid = _user_id(d)
        if uid is not None:
            state.members.pop(uid, None)
            state.presences.pop(uid, None)
            state.voice_states.pop(uid, None)

    def _on_members_chunk(self, d: dict[str, Any]) -> None:
        state = self._state_for(d)
        if state is None:
            return
        for member in d.get("members") or ():
            uid = _user_id(member) if isinstance(member, dict) else None
            if uid is not None and self._keeps_member(uid):
                state.members[uid] = member
        if self.options.presences:
            for presence in d.get("presences") or ():
                uid = _user_id(presence) if isinstance(presence, dict) else None
                if uid is not None:
                    self._set_presence(state, uid, presence)

    # expressions

    def _on_emojis_update(self, d: dict[str, Any]) -> None:
        state = self._state_for(d)
        if state is not None and isinstance(d.get("emojis"), list):
            state.emojis = d["emojis"]

    def _on_stickers_update(self, d: dict[str, Any]) -> None:
        state = self._state_for(d)
        if state is not None and isinstance(d.get("stickers"), list):
            state.stickers = d["stickers"]

    # voice and presence

    def _on_voice_state(self, d: dict[str, Any]) -> None:
        state = self._state_for(d)
        uid = _user_id(d)
        if state is None or uid is None:
            return
        member = d.get("member")
        if isinstance(member, dict) and self._keeps_member(uid):
            state.members[uid] = member
        if d.get("channel_id") is None:
            state.voice_states.pop(uid, None)
        else:
            # GUILD_CREATE's voice states carry neither guild_id nor member.
            state.voice_states[uid] = _without(d, "guild_id", "member")

    def _on_presence(self, d: dict[str, Any]) -> None:
        state = self._state_for(d)
        uid = _user_id(d)
        if state is None or uid is None:
            return
        user = d.get("user")
        if isinstance(user, dict) and len(user) > 1:
            member = state.members.get(uid)
            if member is not None and isinstance(member.get("user"), dict):
                state.members[uid] = {**member, "user": {**member["user"], **user}}
        if self.options.presences:
            self._set_presence(state, uid, d)

    @staticmethod
    def _set_presence(state: GuildState, uid: str, presence: dict[str, Any]) -> None:
        if presence.get("status") == "offline":
            # GUILD_CREATE lists only members who are not offline.
            state.presences.pop(uid, None)
        else:
            state.presences[uid] = presence

    # stage instances and scheduled events

    def _on_stage_upsert(self, d: dict[str, Any]) -> None:
        state = self._state_for(d)
        if state is not None and d.get("id") is not None:
            state.stage_instances[str(d["id"])] = d

    def _on_stage_delete(self, d: dict[str, Any]) -> None:
        state = self._state_for(d)
        if state is not None and d.get("id") is not None:
            state.stage_instances.pop(str(d["id"]), None)

    def _on_scheduled_upsert(self, d: dict[str, Any]) -> None:
        state = self._state_for(d)
        if state is not None and d.get("id") is not None:
            state.scheduled_events[str(d["id"])] = d

    def _on_scheduled_delete(self, d: dict[str, Any]) -> None:
        state = self._state_for(d)
        if state is not None and d.get("id") is not None:
            state.scheduled_events.pop(str(d["id"]), None)

    # -- persistence ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        guilds = []
        for gid, state in self._guilds.items():
            if state is not None:
                guilds.append({"id": gid, "state": "available", "guild": state.guild_create(None)})
            else:
                guilds.append({"id": gid, "state": "outage" if gid in self._outage else "pending"})
        return {"user": self.user, "application": self.application, "guilds": guilds}

    @classmethod
    def from_json(cls, shard_id: int, data: Any, options: CacheOptions) -> ShardCache:
        if not isinstance(data, dict) or not isinstance(data.get("guilds"), list):
            raise ValueError(f"shard {shard_id}: no guild list")
        cache = cls(shard_id, options)
        user, application = data.get("user"), data.get("application")
        cache.user = user if isinstance(user, dict) else None
        cache.application = application if isinstance(application, dict) else None
        for entry in data["guilds"]:
            if not isinstance(entry, dict) or entry.get("id") is None:
                raise ValueError(f"shard {shard_id}: a guild entry without an id")
            gid, kind = str(entry["id"]), entry.get("state")
            if kind == "available":
                guild = entry.get("guild")
                if not isinstance(guild, dict):
                    raise ValueError(f"shard {shard_id}: guild {gid} has no data")
                cache._guilds[gid] = GuildState(guild, options, cache.bot_id)
            elif kind in ("pending", "outage"):
                cache._guilds[gid] = None
                if kind == "outage":
                    cache._outage.add(gid)
            else:
                raise ValueError(f"shard {shard_id}: guild {gid} has an unknown state {kind!r}")
        return cache


_HANDLERS: dict[str, Callable[[ShardCache, dict[str, Any]], None]] = {
    "READY": ShardCache._on_ready,
    "USER_UPDATE": ShardCache._on_user_update,
    "GUILD_CREATE": ShardCache._on_guild_create,
    "GUILD_UPDATE": ShardCache._on_guild_update,
    "GUILD_DELETE": ShardCache._on_guild_delete,
    "CHANNEL_CREATE": ShardCache._on_channel_upsert,
    "CHANNEL_UPDATE": ShardCache._on_channel_upsert,
    "CHANNEL_DELETE": ShardCache._on_channel_delete,
    "THREAD_CREATE": ShardCache._on_thread_upsert,
    "THREAD_UPDATE": ShardCache._on_thread_upsert,
    "THREAD_DELETE": ShardCache._on_thread_delete,
    "THREAD_LIST_SYNC": ShardCache._on_thread_list_sync,
    "THREAD_MEMBER_UPDATE": ShardCache._on_thread_member_update,
    "THREAD_MEMBERS_UPDATE": ShardCache._on_thread_members_update,
    "GUILD_ROLE_CREATE": ShardCache._on_role_upsert,
    "GUILD_ROLE_UPDATE": ShardCache._on_role_upsert,
    "GUILD_ROLE_DELETE": ShardCache._on_role_delete,
    "GUILD_MEMBER_ADD": ShardCache._on_member_add,
    "GUILD_MEMBER_UPDATE": ShardCache._on_member_update,
    "GUILD_MEMBER_REMOVE": ShardCache._on_member_remove,
    "GUILD_MEMBERS_CHUNK": ShardCache._on_members_chunk,
    "GUILD_EMOJIS_UPDATE": ShardCache._on_emojis_update,
    "GUILD_STICKERS_UPDATE": ShardCache._on_stickers_update,
    "VOICE_STATE_UPDATE": ShardCache._on_voice_state,
    "PRESENCE_UPDATE": ShardCache._on_presence,
    "STAGE_INSTANCE_CREATE": ShardCache._on_stage_upsert,
    "STAGE_INSTANCE_UPDATE": ShardCache._on_stage_upsert,
    "STAGE_INSTANCE_DELETE": ShardCache._on_stage_delete,
    "GUILD_SCHEDULED_EVENT_CREATE": ShardCache._on_scheduled_upsert,
    "GUILD_SCHEDULED_EVENT_UPDATE": ShardCache._on_scheduled_upsert,
    "GUILD_SCHEDULED_EVENT_DELETE": ShardCache._on_scheduled_delete,
}

#: Every dispatch name that changes cached state (the names the cache has a handler for).
STATE_EVENTS: Final[frozenset[str]] = frozenset(_HANDLERS)


class GuildStateCache:
    """Every upstream shard's :class:`ShardCache`, plus saving and loading them all."""

    def __init__(self, options: CacheOptions | None = None) -> None:
        self.options = options or CacheOptions()
        self.shards: dict[int, ShardCache] = {}

    def __repr__(self) -> str:
        return f"<GuildStateCache shards={sorted(self.shards)} options={self.options}>"

    def shard(self, shard_id: int) -> ShardCache:
        """The cache of ``shard_id``, created empty on first use."""
        cache = self.shards.get(shard_id)
        if cache is None:
            cache = self.shards[shard_id] = ShardCache(shard_id, self.options)
        return cache

    def drop_shard(self, shard_id: int) -> None:
        """Forget a shard this process no longer runs (after a reshard)."""
        self.shards.pop(shard_id, None)

    def rebucket(self, total: int, shard_ids: Iterable[int]) -> None:
        """After a reshard to ``total``: every cached guild moves to the shard that owns it now
        (Discord's ``(guild_id >> 22) % total``), kept only for ``shard_ids`` (the shards this process
        runs), each of which keeps the bot's ``user`` and ``application`` (a reshard's new sessions are
        the same bot; its READYs do not reach event handlers)."""
        old = list(self.shards.values())
        user = next((c.user for c in old if c.user is not None), None)
        application = next((c.application for c in old if c.application is not None), None)
        fresh: dict[int, ShardCache] = {}
        for sid in shard_ids:
            cache = fresh[sid] = ShardCache(sid, self.options)
            cache.user, cache.application = user, application
        for cache in old:
            for gid, state in cache._guilds.items():
                target = fresh.get((int(gid) >> 22) % total)
                if target is not None:
                    target._guilds[gid] = state
                    if gid in cache._outage:
                        target._outage.add(gid)
        self.shards = fresh

    def apply(self, shard_id: int, name: str, data: Any) -> bool:
        """Follow one dispatch of ``shard_id``; False (and nothing done) for a non-state event."""
        if name not in STATE_EVENTS:
            return False
        return self.shard(shard_id).apply(name, data)

    def feed(self, dispatch: Dispatch) -> bool:
        """:meth:`apply` for a manager's :class:`~shardtui.gateway.Dispatch`."""
        if dispatch.name not in STATE_EVENTS:
            return False
        return self.shard(dispatch.shard_id.id).apply(dispatch.name, dispatch.data)

    # -- persistence ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": CACHE_FILE_KIND,
            "version": CACHE_FILE_VERSION,
            "shards": {str(sid): cache.to_json() for sid, cache in sorted(self.shards.items())},
        }

    @classmethod
    def from_json(cls, data: Any, options: CacheOptions | None = None) -> GuildStateCache:
        """Raises :class:`CacheFileError` naming what is wrong."""
        if not isinstance(data, dict) or data.get("kind") != CACHE_FILE_KIND:
            raise CacheFileError("not a shardtui proxy cache file")
        version = data.get("version")
        if version != CACHE_FILE_VERSION:
            raise CacheFileError(f"cache file version {version!r}, this shardtui reads {CACHE_FILE_VERSION}")
        shards = data.get("shards")
        if not isinstance(shards, dict):
            raise CacheFileError("cache file has no shards object")
        cache = cls(options)
        try:
            for key, value in shards.items():
                sid = int(key)
                if sid < 0:
                    raise ValueError(f"negative shard id {sid}")
                cache.shards[sid] = ShardCache.from_json(sid, value, cache.options)
        except (ValueError, TypeError) as exc:
            raise CacheFileError(f"corrupt cache file: {exc}") from None
        return cache

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write every shard's cache to ``path`` atomically (a crash leaves the old file or the new),
        mode 0600."""
        write_private(Path(path), orjson.dumps(self.to_json()))

    @classmethod
    def load(cls, path: str | os.PathLike[str], options: CacheOptions | None = None) -> GuildStateCache:
        """Read a cache saved by :meth:`save`. Raises :class:`CacheFileError` (also for a missing file)."""
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise CacheFileError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise CacheFileError(f"{path} is not JSON ({exc})") from None
        try:
            return cls.from_json(data, options)
        except CacheFileError as exc:
            raise CacheFileError(f"{path}: {exc}") from None

    @classmethod
    def load_or_empty(
        cls, path: str | os.PathLike[str], options: CacheOptions | None = None
    ) -> GuildStateCache:
        """:meth:`load`, or an empty cache: silently when there is no file yet, with one warning naming
        the file and the problem when it cannot be used."""
        if not Path(path).exists():
            return cls(options)
        try:
            return cls.load(path, options)
        except CacheFileError as exc:
            log.warning("proxy cache not restored, starting without it: %s", exc)
            return cls(options)
