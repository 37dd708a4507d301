"""Realistic dispatch payloads: READY, GUILD_CREATE and the generated traffic mix."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shardtui.gateway.protocol import GatewayIntents
from shardtui.server.message_content import MESSAGE_CONTENT, without_message_content

from .world import EMOJI, GAMES, MAX_CHANNELS, MAX_MEMBERS, MAX_ROLES, MESSAGES, Guild, Member, World, iso

GEO_REGIONS = ["us-east", "us-central", "atlanta", "us-south", "newark"]


def trace(name: str) -> list[str]:
    return [f'["gateway-sandbox-{name}",{{"micros":0.0}}]']


def ready_payload(
    world: World,
    *,
    version: int,
    session_id: str,
    resume_url: str,
    shard: list[int],
    guild_ids: list[int],
) -> dict[str, Any]:
    return {
        "v": version,
        "user_settings": {},
        "user": world.user_payload(),
        "shard": shard,
        "session_type": "normal",
        "session_id": session_id,
        "resume_gateway_url": resume_url,
        "relationships": [],
        "private_channels": [],
        "presences": [],
        "guilds": [{"id": str(gid), "unavailable": True} for gid in guild_ids],
        "guild_join_requests": [],
        "geo_ordered_rtc_regions": list(GEO_REGIONS),
        "auth": {},
        "application": {"id": str(world.application_id), "flags": 565248},
        "_trace": trace("ready"),
    }


def presence_of(member: Member, guild_id: int) -> dict[str, Any]:
    activities = []
    if member.game:
        activities.append(
            {"id": "ec0b28a579ecb4bd", "name": member.game, "type": 0, "created_at": 1754000000123}
        )
    return {
        "user": {"id": str(member.user.id)},
        "guild_id": str(guild_id),
        "status": member.status,
        "client_status": {"desktop": member.status},
        "activities": activities,
    }


def guild_create_payload(guild: Guild, intents: int, large_threshold: int, bot_id: int) -> dict[str, Any]:
    data = guild.base_payload()
    with_presences = bool(intents & GatewayIntents.GUILD_PRESENCES)
    large = len(guild.members) > large_threshold
    if with_presences:
        # Large guilds only carry members who are online (or the bot itself), as on Discord.
        members = [m for m in guild.members if not large or m.status != "offline" or m.user.id == bot_id]
        presences = [presence_of(m, guild.id) for m in members if m.status != "offline"]
    else:
        members = [m for m in guild.members if m.user.id == bot_id]
        presences = []
    data.update(
        {
            "joined_at": guild.joined_at,
            "large": large,
            "unavailable": False,
            "member_count": len(guild.members),
            "voice_states": [],
            "members": [m.payload() for m in members],
            # A copy: the world's list changes with CHANNEL_* events, a queued payload must not.
            "channels": list(guild.channels),
            "threads": [],
            "presences": presences,
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "lazy": True,
        }
    )
    return data


@dataclass(slots=True)
class Generated:
    """One generated event: its name, data, the guild it belongs to (None = DM) and its gating intent."""

    name: str
    data: dict[str, Any]
    guild_id: int | None
    intent: GatewayIntents
    #: Set when the data carries message content that MESSAGE_CONTENT gates.
    has_content: bool = False


def _now_iso() -> str:
    return iso(int(time.time() * 1000))


def message_data(
    msg_id: int,
    channel_id: int,
    guild_id: int | None,
    channel_type: int,
    content: str,
    author: dict[str, Any],
) -> dict[str, Any]:
    """A MESSAGE_CREATE's ``d`` (without ``member``, which only guild messages carry)."""
    # Keys in the order Discord sends them (guild_id right after channel_id), the same for DMs and guilds.
    data: dict[str, Any] = {"id": str(msg_id), "channel_id": str(channel_id)}
    if guild_id is not None:
        data["guild_id"] = str(guild_id)
    data.update(
        {
            "channel_type": channel_type,
            "type": 0,
            "content": content,
            "tts": False,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "pinned": False,
            "flags": 0,
            "nonce": str(msg_id),
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [],
            "author": author,
        }
    )
    return data


def message_create(world: World, guild: Guild | None) -> Generated:
    rng = world.rng
    msg_id = world.snowflakes.now()
    if guild is None:
        author = rng.choice(world.users)
        data = message_data(msg_id, world.dm_channel_id, None, 1, rng.choice(MESSAGES), author.payload())
        return Generated("MESSAGE_CREATE", data, None, GatewayIntents.DIRECT_MESSAGES, has_content=True)
    member = rng.choice(guild.members[1:] or guild.members)
    # Argument order keeps the rng draws in their old order: channel, then content.
    data = message_data(
        msg_id, rng.choice(guild.text_channel_ids), guild.id, 0, rng.choice(MESSAGES), member.user.payload()
    )
    data["member"] = member.payload(with_user=False)
    return Generated("MESSAGE_CREATE", data, guild.id, GatewayIntents.GUILD_MESSAGES, has_content=True)


def presence_update(world: World, guild: Guild) -> Generated:
    rng = world.rng
    member = rng.choice(guild.members[1:] or guild.members)
    member.status = rng.choice(("online", "idle", "dnd", "offline"))
    member.game = rng.choice(GAMES) if rng.random() < 0.5 else None
    data = presence_of(member, guild.id)
    if data["activities"]:
        data["activities"][0]["timestamps"] = {"start": int(time.time() * 1000)}
    return Generated("PRESENCE_UPDATE", data, guild.id, GatewayIntents.GUILD_PRESENCES)


def typing_start(world: World, guild: Guild) -> Generated:
    member = world.rng.choice(guild.members[1:] or guild.members)
    data = {
        "channel_id": str(world.rng.choice(guild.text_channel_ids)),
        "guild_id": str(guild.id),
        "user_id": str(member.user.id),
        "timestamp": int(time.time()),
        "member": member.payload(),
    }
    return Generated("TYPING_START", data, guild.id, GatewayIntents.GUILD_MESSAGE_TYPING)


def reaction_add(world: World, guild: Guild) -> Generated:
    member = world.rng.choice(guild.members[1:] or guild.members)
    data = {
        "user_id": str(member.user.id),
        "channel_id": str(world.rng.choice(guild.text_channel_ids)),
        "message_id": str(world.snowflakes.random_past(0.01)),
        "guild_id": str(guild.id),
        "member": member.payload(),
        "emoji": {"id": None, "name": world.rng.choice(EMOJI)},
        "message_author_id": str(world.rng.choice(guild.members).user.id),
        "burst": False,
        "burst_colors": [],
        "type": 0,
    }
    return Generated("MESSAGE_REACTION_ADD", data, guild.id, GatewayIntents.GUILD_MESSAGE_REACTIONS)


def member_add(world: World, guild: Guild) -> Generated:
    if len(guild.members) >= MAX_MEMBERS:
        # Long soaks would otherwise grow guilds without bound; a full guild loses a member instead.
        removed = member_remove(world, guild)
        if removed is not None:
            return removed
    member = world.add_member(guild, world.new_user())
    data = member.payload()
    data["guild_id"] = str(guild.id)
    return Generated("GUILD_MEMBER_ADD", data, guild.id, GatewayIntents.GUILD_MEMBERS)


# -- guild state changes: applied to the world first, so a later GUILD_CREATE shows them --------------


def _channel_event(name: str, channel: dict[str, Any], guild: Guild) -> Generated:
    # Channel events carry guild_id; GUILD_CREATE's channels do not. A new dict: the world's stays clean.
    return Generated(name, {**channel, "guild_id": str(guild.id)}, guild.id, GatewayIntents.GUILDS)


def channel_create(world: World, guild: Guild) -> Generated:
    if len(guild.channels) >= MAX_CHANNELS and world.deletable_channels(guild):
        return channel_delete(world, guild)
    return _channel_event("CHANNEL_CREATE", world.create_channel(guild), guild)


def channel_update(world: World, guild: Guild) -> Generated:
    index = world.rng.randrange(len(guild.channels))
    return _channel_event("CHANNEL_UPDATE", world.update_channel(guild, index), guild)


def channel_delete(world: World, guild: Guild) -> Generated:
    """Deletes a text or voice channel other than the system channel; a guild with none left to
    delete gets a new channel instead (so the kind stays bounded both ways)."""
    deletable = world.deletable_channels(guild)
    if not deletable:
        return _channel_event("CHANNEL_CREATE", world.create_channel(guild), guild)
    channel = world.rng.choice(deletable)
    world.delete_channel(guild, channel)
    return _channel_event("CHANNEL_DELETE", channel, guild)


def _role_event(name: str, role: dict[str, Any], guild: Guild) -> Generated:
    return Generated(name, {"guild_id": str(guild.id), "role": role}, guild.id, GatewayIntents.GUILDS)


def role_create(world: World, guild: Guild) -> Generated:
    if len(guild.roles) >= MAX_ROLES:
        return role_delete(world, guild)
    return _role_event("GUILD_ROLE_CREATE", world.create_role(guild), guild)


def role_update(world: World, guild: Guild) -> Generated:
    index = world.rng.randrange(len(guild.roles))
    return _role_event("GUILD_ROLE_UPDATE", world.update_role(guild, index), guild)


def role_delete(world: World, guild: Guild) -> Generated:
    """Deletes a role other than @everyone (members lose it); with none, creates one instead."""
    if len(guild.roles) < 2:
        return _role_event("GUILD_ROLE_CREATE", world.create_role(guild), guild)
    role = world.delete_role(guild, world.rng.randrange(1, len(guild.roles)))
    data = {"guild_id": str(guild.id), "role_id": role["id"]}
    return Generated("GUILD_ROLE_DELETE", data, guild.id, GatewayIntents.GUILDS)


def _others(guild: Guild) -> list[Member]:
    """Members a generated change may touch: not the bot (members[0]), not the owner."""
    return [m for m in guild.members[1:] if m.user.id != guild.owner_id]


def member_update(world: World, guild: Guild) -> Generated | None:
    others = _others(guild)
    if not others:
        return None
    member = world.rng.choice(others)
    world.update_member(guild, member)
    data = member.payload()
    data["guild_id"] = str(guild.id)
    return Generated("GUILD_MEMBER_UPDATE", data, guild.id, GatewayIntents.GUILD_MEMBERS)


def member_remove(world: World, guild: Guild) -> Generated | None:
    others = _others(guild)
    if not others:
        return None
    member = world.rng.choice(others)
    world.remove_member(guild, member)
    data = {"guild_id": str(guild.id), "user": member.user.payload()}
    return Generated("GUILD_MEMBER_REMOVE", data, guild.id, GatewayIntents.GUILD_MEMBERS)


def guild_update(world: World, guild: Guild) -> Generated:
    world.rename_guild(guild)
    return Generated("GUILD_UPDATE", guild.base_payload(), guild.id, GatewayIntents.GUILDS)


def generate(world: World, kind: str) -> Generated | None:
    """One event of ``kind`` (a key of the event mix); None when the world has no guild for it."""
    if kind == "DM_MESSAGE_CREATE":
        return message_create(world, None)
    if not world.guilds:
        return None
    guild = world.rng.choice(world.guilds)
    if kind == "MESSAGE_CREATE":
        return message_create(world, guild)
    if kind == "PRESENCE_UPDATE":
        return presence_update(world, guild)
    if kind == "TYPING_START":
        return typing_start(world, guild)
    if kind == "MESSAGE_REACTION_ADD":
        return reaction_add(world, guild)
    if kind == "GUILD_MEMBER_ADD":
        return member_add(world, guild)
    state_change = STATE_CHANGES.get(kind)
    if state_change is not None:
        return state_change(world, guild)
    raise ValueError(f"unknown event kind {kind!r} in the sandbox event mix")


#: Guild state changes by kind; each one changes the world, then announces it.
STATE_CHANGES: dict[str, Callable[[World, Guild], Generated | None]] = {
    "CHANNEL_CREATE": channel_create,
    "CHANNEL_UPDATE": channel_update,
    "CHANNEL_DELETE": channel_delete,
    "GUILD_ROLE_CREATE": role_create,
    "GUILD_ROLE_UPDATE": role_update,
    "GUILD_ROLE_DELETE": role_delete,
    "GUILD_MEMBER_UPDATE": member_update,
    "GUILD_MEMBER_REMOVE": member_remove,
    "GUILD_UPDATE": guild_update,
}

EVENT_KINDS = (
    "MESSAGE_CREATE",
    "PRESENCE_UPDATE",
    "TYPING_START",
    "MESSAGE_REACTION_ADD",
    "GUILD_MEMBER_ADD",
    "DM_MESSAGE_CREATE",
    *STATE_CHANGES,
)


def filter_for_intents(event: Generated, intents: int, bot_user_id: str) -> dict[str, Any] | None:
    """The data a session with ``intents`` receives for ``event``, or None when it gets nothing."""
    if not intents & event.intent:
        return None
    if event.has_content and not intents & MESSAGE_CONTENT:
        stripped = without_message_content(event.name, event.data, bot_user_id)
        if stripped is not None:
            return stripped
    return event.data
