"""The sandbox's fake Discord: the bot, its application, users and guilds, generated from a seed."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shardtui.gateway.protocol import DISCORD_EPOCH_MS, snowflake_time_ms

FIRST_NAMES = (
    "mason", "ava", "liam", "noor", "kenji", "sofia", "mateo", "amara", "yuki", "oliver", "ines", "tariq",
    "freya", "diego", "hana", "luca", "zara", "emil", "priya", "jonas", "lea", "omar", "mila", "ravi",
)  # fmt: skip
GUILD_WORDS = (
    "Cozy", "Pixel", "Midnight", "Retro", "Cosmic", "Quiet", "Lucky", "Frosty", "Neon", "Velvet", "Rusty",
    "Hangout", "Lounge", "Guild", "Arcade", "Workshop", "Garden", "Harbor", "Den", "Club", "Library",
)  # fmt: skip
CHANNEL_NAMES = ("general", "off-topic", "memes", "announcements", "help", "media", "dev-chat", "music")
EXTRA_CHANNEL_NAMES = ("clips", "lfg", "art", "screenshots", "feedback", "events", "trading", "bots")
ROLE_NAMES = ("Helper", "Regular", "Artist", "Streamer", "Veteran", "Event Team", "Night Owl", "Builder")
TOPICS = ("be nice", "no spoilers", "weekly game night on fridays", "read the rules first", None)
#: Bounds that keep long runs from growing or emptying a guild through generated state changes.
MAX_CHANNELS = 12
MAX_ROLES = 10
MAX_MEMBERS = 1000
MESSAGES = (
    "anyone up for a game tonight?",
    "good morning everyone",
    "did the patch notes drop yet?",
    "lol that's amazing",
    "can someone help me with my build?",
    "brb, dinner",
    "check the pinned messages for the schedule",
    "gg, that was close",
)
GAMES = ("Rocket League", "Minecraft", "Stardew Valley", "Factorio", "Celeste", "Hades II", "Tetris 99")
EMOJI = ("👍", "😂", "🎉", "❤️", "🔥", "👀")
STATUSES = ("online", "online", "online", "idle", "dnd")
#: 2026-01-01T00:00:00Z: the "present" of the generated world.
WORLD_ANCHOR_MS = 1_767_225_600_000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="microseconds")


class Snowflakes:
    """Unique, increasing snowflakes whose timestamps are spread the way real ids are."""

    def __init__(self, rng: random.Random, anchor_ms: int) -> None:
        self._rng = rng
        self._increment = 0
        #: "Now" for ids of things that already exist, fixed so a seed always builds the same world.
        self.anchor_ms = anchor_ms

    def at(self, ms: int) -> int:
        self._increment = (self._increment + 1) % 4096
        worker = self._rng.randrange(32)
        return ((ms - DISCORD_EPOCH_MS) << 22) | (worker << 17) | (self._increment)

    def random_past(self, years_back: float = 6.0) -> int:
        return self.at(self.anchor_ms - int(self._rng.random() * years_back * 365 * 86_400_000))

    def now(self) -> int:
        return self.at(int(time.time() * 1000))


@dataclass(slots=True)
class User:
    id: int
    username: str
    global_name: str | None
    avatar: str | None
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.username,
            "global_name": self.global_name,
            "discriminator": "0",
            "avatar": self.avatar,
            "avatar_decoration_data": None,
            "public_flags": 0,
            "bot": self.bot,
        }


@dataclass(slots=True)
class Member:
    user: User
    roles: list[int]
    joined_at: str
    nick: str | None = None
    status: str = "online"
    game: str | None = None

    def payload(self, with_user: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "roles": [str(r) for r in self.roles],
            "joined_at": self.joined_at,
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "premium_since": None,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.user.payload()
        return data


@dataclass(slots=True)
class Guild:
    id: int
    name: str
    owner_id: int
    roles: list[dict[str, Any]]
    channels: list[dict[str, Any]]
    members: list[Member]
    joined_at: str
    icon: str | None
    text_channel_ids: list[int] = field(default_factory=list)

    def base_payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": self.icon,
            "icon_hash": self.icon,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "region": "deprecated",
            "afk_channel_id": None,
            "afk_timeout": 300,
            "widget_enabled": False,
            "widget_channel_id": None,
            "verification_level": 1,
            "default_message_notifications": 1,
            "explicit_content_filter": 2,
            "features": ["COMMUNITY"],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": str(self.text_channel_ids[0]) if self.text_channel_ids else None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "max_members": 500_000,
            "max_presences": None,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "nsfw": False,
            "nsfw_level": 0,
            # Copies: a payload already queued or kept for replay must not change with the world.
            "roles": list(self.roles),
            "emojis": [],
            "stickers": [],
            "incidents_data": None,
        }


class World:
    """Everything the sandbox pretends Discord knows, built deterministically from ``rng``."""

    def __init__(
        self, rng: random.Random, guild_count: int, members_per_guild: int, bot_id: int | None
    ) -> None:
        self.rng = rng
        self.snowflakes = Snowflakes(rng, WORLD_ANCHOR_MS)
        self.bot = User(
            id=bot_id if bot_id is not None else self.snowflakes.random_past(),
            username="sandbox-bot",
            global_name=None,
            avatar=None,
            bot=True,
        )
        self.owner = self._make_user()
        self.application_id = self.bot.id
        self.users: list[User] = [self._make_user() for _ in range(max(8, members_per_guild * 2))]
        self.guilds: list[Guild] = [self._make_guild(members_per_guild) for _ in range(guild_count)]
        self.guild_by_id: dict[int, Guild] = {g.id: g for g in self.guilds}
        self.dm_channel_id = self.snowflakes.random_past()

    def _hash(self) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(32))

    def _make_user(self) -> User:
        name = self.rng.choice(FIRST_NAMES)
        return User(
            id=self.snowflakes.random_past(),
            username=f"{name}{self.rng.randrange(10, 9999)}",
            global_name=name.capitalize(),
            avatar=self._hash() if self.rng.random() < 0.7 else None,
        )

    def new_user(self) -> User:
        user = self._make_user()
        self.users.append(user)
        return user

    def _role(self, guild_id: int, role_id: int, name: str, position: int, color: int) -> dict[str, Any]:
        return {
            "id": str(role_id),
            "name": name,
            "description": None,
            "color": color,
            "colors": {"primary_color": color, "secondary_color": None, "tertiary_color": None},
            "hoist": position > 0,
            "icon": None,
            "unicode_emoji": None,
            "position": position,
            "permissions": "2248473465835073" if position == 0 else "1071698660929",
            "managed": False,
            "mentionable": position > 0,
            "flags": 0,
        }

    def _make_guild(self, members_per_guild: int) -> Guild:
        guild_id = self.snowflakes.random_past()
        joined_ms = snowflake_time_ms(guild_id) + 86_400_000
        roles = [self._role(guild_id, guild_id, "@everyone", 0, 0)]
        for position, (name, color) in enumerate((("Moderator", 0x3498DB), ("Member", 0x2ECC71)), start=1):
            roles.append(self._role(guild_id, self.snowflakes.random_past(), name, position, color))
        channels: list[dict[str, Any]] = []
        category_id = self.snowflakes.random_past()
        channels.append(self._channel(category_id, 4, "Text Channels", 0, None))
        text_ids = []
        for position, name in enumerate(self.rng.sample(CHANNEL_NAMES, 3)):
            cid = self.snowflakes.random_past()
            text_ids.append(cid)
            channels.append(self._channel(cid, 0, name, position, category_id))
        channels.append(self._channel(self.snowflakes.random_past(), 2, "Voice", 0, None))
        owner = self.rng.choice(self.users)
        chosen = self.rng.sample(self.users, min(members_per_guild, len(self.users)))
        if owner not in chosen:
            chosen[0:0] = [owner]
        members = [self._member(self.bot, [], joined_ms)]
        for user in chosen:
            member_roles = (
                [int(roles[self.rng.randrange(1, len(roles))]["id"])] if self.rng.random() < 0.5 else []
            )
            members.append(self._member(user, member_roles, joined_ms - self.rng.randrange(1, 10**9)))
        words = self.rng.sample(GUILD_WORDS, 2)
        return Guild(
            id=guild_id,
            name=f"{words[0]} {words[1]}",
            owner_id=owner.id,
            roles=roles,
            channels=channels,
            members=members,
            joined_at=iso(joined_ms),
            icon=self._hash() if self.rng.random() < 0.5 else None,
            text_channel_ids=text_ids,
        )

    def _member(self, user: User, roles: list[int], joined_ms: int) -> Member:
        return Member(
            user=user,
            roles=roles,
            joined_at=iso(joined_ms),
            nick=None,
            status="online" if user.bot else self.rng.choice((*STATUSES, "offline")),
            game=self.rng.choice(GAMES) if self.rng.random() < 0.3 else None,
        )

    def add_member(self, guild: Guild, user: User) -> Member:
        """Add ``user`` to ``guild`` (callers keep it under MAX_MEMBERS: an announced member must exist)."""
        member = self._member(user, [], int(time.time() * 1000))
        # A newcomer is offline until a PRESENCE_UPDATE says otherwise: GUILD_MEMBER_ADD carries no
        # presence, so a later GUILD_CREATE must not show one the stream never announced.
        member.status, member.game = "offline", None
        guild.members.append(member)
        return member

    # -- state changes (each keeps the world what a new GUILD_CREATE shows) --------------------------
    #
    # Dicts already handed out (queued payloads, replay buffers) are never changed in place: an update
    # puts a new dict where the old one was.

    def deletable_channels(self, guild: Guild) -> list[dict[str, Any]]:
        """Channels a generated CHANNEL_DELETE may remove: never a category (its children would need
        updates), never the system channel (text_channel_ids[0])."""
        keep = str(guild.text_channel_ids[0]) if guild.text_channel_ids else None
        return [c for c in guild.channels if c["type"] != 4 and c["id"] != keep]

    def create_channel(self, guild: Guild) -> dict[str, Any]:
        cid = self.snowflakes.now()
        parent = next((int(c["id"]) for c in guild.channels if c["type"] == 4), None)
        position = sum(1 for c in guild.channels if c["type"] == 0)
        channel = self._channel(cid, 0, self.rng.choice(EXTRA_CHANNEL_NAMES), position, parent)
        guild.channels.append(channel)
        guild.text_channel_ids.append(cid)
        return channel

    def update_channel(self, guild: Guild, index: int) -> dict[str, Any]:
        old = guild.channels[index]
        changed = {**old, "name": f"{old['name'].split('~')[0]}~{self.rng.randrange(100)}"}
        if old["type"] == 0:
            changed["topic"] = self.rng.choice(TOPICS)
        guild.channels[index] = changed
        return changed

    def delete_channel(self, guild: Guild, channel: dict[str, Any]) -> None:
        guild.channels.remove(channel)
        cid = int(channel["id"])
        if cid in guild.text_channel_ids:
            guild.text_channel_ids.remove(cid)

    def create_role(self, guild: Guild) -> dict[str, Any]:
        color = self.rng.randrange(0x1000000)
        name = self.rng.choice(ROLE_NAMES)
        role = self._role(guild.id, self.snowflakes.now(), name, len(guild.roles), color)
        guild.roles.append(role)
        return role

    def update_role(self, guild: Guild, index: int) -> dict[str, Any]:
        old = guild.roles[index]
        color = self.rng.randrange(0x1000000)
        changed = {
            **old,
            "color": color,
            "colors": {"primary_color": color, "secondary_color": None, "tertiary_color": None},
            "mentionable": not old["mentionable"],
        }
        guild.roles[index] = changed
        return changed

    def delete_role(self, guild: Guild, index: int) -> dict[str, Any]:
        role = guild.roles.pop(index)
        rid = int(role["id"])
        for member in guild.members:
            if rid in member.roles:
                member.roles = [r for r in member.roles if r != rid]
        return role

    def update_member(self, guild: Guild, member: Member) -> None:
        if self.rng.random() < 0.5:
            member.nick = None if member.nick else f"{member.user.username[:12]}~{self.rng.randrange(100)}"
        else:
            assignable = [int(r["id"]) for r in guild.roles[1:]]
            if member.roles or not assignable:
                member.roles = []
            else:
                member.roles = [self.rng.choice(assignable)]

    def remove_member(self, guild: Guild, member: Member) -> None:
        guild.members.remove(member)

    def rename_guild(self, guild: Guild) -> None:
        words = self.rng.sample(GUILD_WORDS, 2)
        guild.name = f"{words[0]} {words[1]}"

    @staticmethod
    def _channel(cid: int, ctype: int, name: str, position: int, parent: int | None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(cid),
            "type": ctype,
            "name": name,
            "position": position,
            "parent_id": str(parent) if parent else None,
            "permission_overwrites": [],
            "flags": 0,
            "nsfw": False,
        }
        if ctype == 0:
            data.update({"topic": None, "last_message_id": None, "rate_limit_per_user": 0})
        elif ctype == 2:
            data.update({"bitrate": 64000, "user_limit": 0, "rtc_region": None})
        return data

    def user_payload(self) -> dict[str, Any]:
        data = self.bot.payload()
        data.update({"verified": True, "mfa_enabled": True, "flags": 0, "email": None, "locale": "en-US"})
        return data

    def application_payload(self) -> dict[str, Any]:
        return {
            "id": str(self.application_id),
            "name": self.bot.username,
            "icon": None,
            "description": "A bot living in the shardtui sandbox",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": 565248,
            "hook": True,
            "is_monetized": False,
            "interactions_endpoint_url": None,
            "redirect_uris": [],
            "tags": [],
            "team": None,
            "owner": self.owner.payload(),
            "bot": self.bot.payload(),
        }
