"""Discord gateway v10 protocol constants, shared by the client library and the sandbox.

Only facts of the protocol live here (opcodes, close codes, intents, limits, routing); no state
machine. The sandbox may import this module and nothing else from ``shardtui.gateway``.
"""

from __future__ import annotations

import enum
from typing import Final

API_VERSION: Final = 10
SUPPORTED_API_VERSIONS: Final = frozenset({9, 10})

#: Discord's real gateways send 41250 ms (the docs' example says 45000).
DEFAULT_HEARTBEAT_INTERVAL_MS: Final = 41_250
#: One identify per concurrency bucket per this many seconds.
IDENTIFY_WINDOW_SECONDS: Final = 5.0
#: Gateway commands per connection per window (heartbeats included).
COMMANDS_PER_WINDOW: Final = 120
COMMAND_WINDOW_SECONDS: Final = 60.0
#: Largest client->server payload, in bytes of encoded JSON.
MAX_CLIENT_PAYLOAD_BYTES: Final = 4096
#: Max guilds one shard may hold before Discord demands more shards (close 4011).
MAX_GUILDS_PER_SHARD: Final = 2500
#: Every zlib-stream gateway message ends with a Z_SYNC_FLUSH marker.
ZLIB_SUFFIX: Final = b"\x00\x00\xff\xff"
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
DISCORD_EPOCH_MS: Final = 1_420_070_400_000

COMPRESSIONS: Final = ("zstd-stream", "zlib-stream", "none")


class Opcode(enum.IntEnum):
    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE_UPDATE = 3
    VOICE_STATE_UPDATE = 4
    RESUME = 6
    RECONNECT = 7
    REQUEST_GUILD_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11
    REQUEST_SOUNDBOARD_SOUNDS = 31
    REQUEST_CHANNEL_INFO = 43


#: Opcodes a client may send.
CLIENT_OPCODES: Final = frozenset(
    {
        Opcode.HEARTBEAT,
        Opcode.IDENTIFY,
        Opcode.PRESENCE_UPDATE,
        Opcode.VOICE_STATE_UPDATE,
        Opcode.RESUME,
        Opcode.REQUEST_GUILD_MEMBERS,
        Opcode.REQUEST_SOUNDBOARD_SOUNDS,
        Opcode.REQUEST_CHANNEL_INFO,
    }
)


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    ABNORMAL = 1006
    UNKNOWN_ERROR = 4000
    UNKNOWN_OPCODE = 4001
    DECODE_ERROR = 4002
    NOT_AUTHENTICATED = 4003
    AUTHENTICATION_FAILED = 4004
    ALREADY_AUTHENTICATED = 4005
    #: Deprecated by Discord ("session no longer valid"); still handled as session-invalidating.
    SESSION_NO_LONGER_VALID = 4006
    INVALID_SEQ = 4007
    RATE_LIMITED = 4008
    SESSION_TIMED_OUT = 4009
    INVALID_SHARD = 4010
    SHARDING_REQUIRED = 4011
    INVALID_API_VERSION = 4012
    INVALID_INTENTS = 4013
    DISALLOWED_INTENTS = 4014

    @property
    def description(self) -> str:
        return CLOSE_CODE_DESCRIPTIONS.get(int(self), self.name.replace("_", " ").lower())


#: Closes a client sends that end the session on Discord's side; any other code keeps it resumable.
SESSION_ENDING_CLIENT_CLOSES: Final = frozenset({1000, 1001})

CLOSE_CODE_DESCRIPTIONS: Final[dict[int, str]] = {
    1000: "normal closure",
    1001: "going away",
    1006: "connection dropped without a close frame",
    4000: "unknown error",
    4001: "unknown opcode",
    4002: "decode error",
    4003: "not authenticated",
    4004: "authentication failed (bad token)",
    4005: "already authenticated",
    4006: "session no longer valid",
    4007: "invalid seq on resume",
    4008: "rate limited (too many gateway commands)",
    4009: "session timed out",
    4010: "invalid shard",
    4011: "sharding required",
    4012: "invalid API version",
    4013: "invalid intents",
    4014: "disallowed intents (privileged intent not enabled)",
}


def describe_close_code(code: int | None) -> str:
    """A short human description of a close code, for logs and the console."""
    if code is None:
        return "no close code"
    return f"{code} {CLOSE_CODE_DESCRIPTIONS.get(code, 'unrecognised close code')}"


class GatewayIntents(enum.IntFlag):
    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_MODERATION = 1 << 2
    GUILD_EXPRESSIONS = 1 << 3
    GUILD_INTEGRATIONS = 1 << 4
    GUILD_WEBHOOKS = 1 << 5
    GUILD_INVITES = 1 << 6
    GUILD_VOICE_STATES = 1 << 7
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    GUILD_MESSAGE_TYPING = 1 << 11
    DIRECT_MESSAGES = 1 << 12
    DIRECT_MESSAGE_REACTIONS = 1 << 13
    DIRECT_MESSAGE_TYPING = 1 << 14
    MESSAGE_CONTENT = 1 << 15
    GUILD_SCHEDULED_EVENTS = 1 << 16
    AUTO_MODERATION_CONFIGURATION = 1 << 20
    AUTO_MODERATION_EXECUTION = 1 << 21
    GUILD_MESSAGE_POLLS = 1 << 24
    DIRECT_MESSAGE_POLLS = 1 << 25

    @classmethod
    def all(cls) -> GatewayIntents:
        value = cls(0)
        for member in cls:
            value |= member
        return value

    @classmethod
    def privileged(cls) -> GatewayIntents:
        return cls.GUILD_MEMBERS | cls.GUILD_PRESENCES | cls.MESSAGE_CONTENT

    @classmethod
    def non_privileged(cls) -> GatewayIntents:
        return cls.all() & ~cls.privileged()

    @classmethod
    def default(cls) -> GatewayIntents:
        """All non-privileged intents: what a bot gets without asking Discord for anything."""
        return cls.non_privileged()

    @classmethod
    def from_names(cls, names: str | list[str] | tuple[str, ...]) -> GatewayIntents:
        """Build intents from names such as ``"guilds"``, ``"GUILD_MESSAGES"``, ``"default"``,
        ``"all"``, ``"privileged"``. Raises ``ValueError`` naming the first unknown name."""
        if isinstance(names, str):
            names = [names]
        value = cls(0)
        for raw in names:
            name = str(raw).strip().upper().replace("-", "_").replace(" ", "_")
            if name in ("DEFAULT", "NON_PRIVILEGED"):
                value |= cls.default()
            elif name == "ALL":
                value |= cls.all()
            elif name == "PRIVILEGED":
                value |= cls.privileged()
            elif name in cls.__members__:
                value |= cls[name]
            else:
                known = ", ".join(m.lower() for m in cls.__members__)
                raise ValueError(f"unknown intent {raw!r} (known: default, all, privileged, {known})")
        return value

    def names(self) -> list[str]:
        return [m.name.lower() for m in type(self) if m in self and m.name is not None]


ALL_INTENTS_VALUE: Final = int(GatewayIntents.all())  # 53608447
PRIVILEGED_INTENTS_VALUE: Final = int(GatewayIntents.privileged())  # 33026


class ActivityType(enum.IntEnum):
    PLAYING = 0
    STREAMING = 1
    LISTENING = 2
    WATCHING = 3
    CUSTOM = 4
    COMPETING = 5


class Status(enum.StrEnum):
    ONLINE = "online"
    IDLE = "idle"
    DND = "dnd"
    INVISIBLE = "invisible"
    OFFLINE = "offline"


#: Hosts Discord accepts for a streaming activity's url.
STREAMING_URL_HOSTS: Final = ("twitch.tv", "www.twitch.tv", "youtube.com", "www.youtube.com")


def shard_for_guild(guild_id: int, num_shards: int) -> int:
    """The shard a guild's events go to: ``(guild_id >> 22) % num_shards``."""
    return (int(guild_id) >> 22) % num_shards


def bucket_for_shard(shard_id: int, max_concurrency: int) -> int:
    """The identify rate-limit bucket of a shard: ``shard_id % max_concurrency``."""
    return int(shard_id) % max(1, int(max_concurrency))


def snowflake_time_ms(snowflake: int) -> int:
    return (int(snowflake) >> 22) + DISCORD_EPOCH_MS


def gateway_query(version: int = API_VERSION, compression: str = "none", encoding: str = "json") -> str:
    """The query string a client appends to the gateway url (which has none of its own)."""
    query = f"?v={version}&encoding={encoding}"
    if compression in ("zlib-stream", "zstd-stream"):
        query += f"&compress={compression}"
    return query
