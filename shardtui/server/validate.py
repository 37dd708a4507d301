"""Shape checks of client payloads, as Discord applies them; each failure is a `ProtocolViolation`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeGuard

from shardtui.gateway.protocol import ALL_INTENTS_VALUE, STREAMING_URL_HOSTS, CloseCode, Opcode

VALID_STATUSES = frozenset({"online", "idle", "dnd", "invisible", "offline"})


class ProtocolViolation(Exception):
    """The client broke the protocol: the connection closes with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def snowflake(value: object) -> int | None:
    """A snowflake as Discord accepts it (int or decimal string), else None."""
    if is_int(value) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit() and len(value) <= 20:
        return int(value)
    return None


def _bad(reason: str) -> ProtocolViolation:
    return ProtocolViolation(CloseCode.UNKNOWN_OPCODE, reason)


def validate_presence(d: object) -> dict[str, Any]:
    """Discord's op 3 rules; returns the presence as Discord would hold it."""
    if not isinstance(d, dict):
        raise _bad("Presence update must be an object.")
    status = d.get("status", "online")
    if status not in VALID_STATUSES:
        raise _bad("Invalid presence status.")
    since = d.get("since")
    if since is not None and not is_int(since):
        raise _bad("Invalid presence since.")
    afk = d.get("afk", False)
    if not isinstance(afk, bool):
        raise _bad("Invalid presence afk.")
    raw = d.get("activities")
    if raw is None and d.get("game") is not None:
        # Legacy single-activity key that discord.py and hikari still send.
        raw = [d["game"]]
    if raw is None:
        raw = []
    if not isinstance(raw, list) or len(raw) > 5:
        raise _bad("Invalid presence activities.")
    activities = []
    for activity in raw:
        if not isinstance(activity, dict):
            raise _bad("Invalid activity.")
        name, kind = activity.get("name"), activity.get("type", 0)
        if not isinstance(name, str) or not is_int(kind) or not 0 <= kind <= 5:
            raise _bad("Invalid activity name or type.")
        kept: dict[str, Any] = {"name": name[:128], "type": kind}
        state = activity.get("state")
        if state is not None:
            if not isinstance(state, str):
                raise _bad("Invalid activity state.")
            kept["state"] = state[:128]
        url = activity.get("url")
        if url is not None:
            if not isinstance(url, str):
                raise _bad("Invalid activity url.")
            # Discord silently drops urls of non-streaming or non-twitch/youtube activities.
            host = url.split("://", 1)[-1].split("/", 1)[0].lower()
            if kind == 1 and host in STREAMING_URL_HOSTS:
                kept["url"] = url
        activities.append(kept)
    return {"status": status, "activities": activities, "afk": afk, "since": since}


@dataclass(frozen=True, slots=True)
class IdentifyRequest:
    """A well-formed op 2. ``token`` is the secret as sent: never log or repr it."""

    token: str
    intents: int
    properties: dict[str, Any]
    #: ``[shard_id, num_shards]``; None when the client sent no ``shard`` (Discord then means [0, 1]).
    shard: tuple[int, int] | None
    #: Validated (see `validate_presence`); None when absent.
    presence: dict[str, Any] | None
    #: Clamped to Discord's 50..250.
    large_threshold: int
    compress: bool
    raw: dict[str, Any]

    def __repr__(self) -> str:
        return f"IdentifyRequest(shard={self.shard}, intents={self.intents})"


@dataclass(frozen=True, slots=True)
class ResumeRequest:
    token: str
    session_id: str
    #: The last seq the client saw (null is read as 0).
    seq: int

    def __repr__(self) -> str:
        return f"ResumeRequest(session_id={self.session_id!r}, seq={self.seq})"


def parse_shard(d: dict[str, Any]) -> tuple[int, int] | None:
    """The identify's shard array, or None when absent; 4010 when malformed."""
    shard = d.get("shard")
    if shard is None:
        return None
    if (
        not isinstance(shard, list)
        or len(shard) != 2
        or not all(is_int(x) for x in shard)
        or not 0 <= shard[0] < shard[1]
    ):
        raise ProtocolViolation(CloseCode.INVALID_SHARD, "Invalid shard.")
    return shard[0], shard[1]


def validate_identify(d: object) -> IdentifyRequest:
    if not isinstance(d, dict):
        raise _bad("Identify payload must be an object.")
    token = d.get("token")
    if not isinstance(token, str) or not token:
        raise ProtocolViolation(CloseCode.AUTHENTICATION_FAILED, "Authentication failed.")
    properties = d.get("properties")
    if not isinstance(properties, dict):
        raise _bad("Identify needs a properties object.")
    shard = parse_shard(d)
    intents = d.get("intents")
    if not is_int(intents) or intents < 0 or intents & ~ALL_INTENTS_VALUE:
        raise ProtocolViolation(CloseCode.INVALID_INTENTS, "Invalid intent(s).")
    presence = validate_presence(d["presence"]) if d.get("presence") is not None else None
    large_threshold = d.get("large_threshold", 50)
    if not is_int(large_threshold):
        raise _bad("large_threshold must be an integer.")
    compress = d.get("compress", False)
    if not isinstance(compress, bool):
        raise _bad("compress must be a boolean.")
    return IdentifyRequest(
        token=token,
        intents=intents,
        properties=properties,
        shard=shard,
        presence=presence,
        large_threshold=min(250, max(50, large_threshold)),
        compress=compress,
        raw=d,
    )


def validate_resume(d: object) -> ResumeRequest:
    if not isinstance(d, dict):
        raise _bad("Resume payload must be an object.")
    token = d.get("token")
    if not isinstance(token, str) or not token:
        raise ProtocolViolation(CloseCode.AUTHENTICATION_FAILED, "Authentication failed.")
    session_id, seq = d.get("session_id"), d.get("seq")
    if not isinstance(session_id, str) or not (seq is None or is_int(seq)):
        raise _bad("Resume needs session_id and seq.")
    return ResumeRequest(token=token, session_id=session_id, seq=seq or 0)


# -- commands -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberRequest:
    """A well-formed op 8 (exactly one of ``query`` and ``user_ids``)."""

    guild_id: int
    query: str | None
    limit: int
    #: As sent (ints or strings), so ``not_found`` can echo them; all are valid snowflakes.
    user_ids: list[object] | None
    presences: bool
    #: None when absent, not a string, or over Discord's 32 bytes (Discord then drops it).
    nonce: str | None

    @property
    def all_members(self) -> bool:
        return self.query == "" and self.limit == 0


@dataclass(frozen=True, slots=True)
class VoiceStateRequest:
    guild_id: int
    channel_id: int | None
    self_mute: bool
    self_deaf: bool


def validate_member_request(d: object) -> MemberRequest:
    if not isinstance(d, dict):
        raise _bad("Request guild members payload must be an object.")
    guild_id = snowflake(d.get("guild_id"))
    if guild_id is None:
        raise _bad("Request guild members needs a guild_id.")
    query, limit, user_ids = d.get("query"), d.get("limit", 0), d.get("user_ids")
    if query is not None and user_ids is not None:
        raise _bad("query and user_ids are mutually exclusive.")
    if query is None and user_ids is None:
        raise _bad("Request guild members needs query or user_ids.")
    if query is not None and (not isinstance(query, str) or not is_int(limit) or limit < 0):
        raise _bad("Invalid query or limit.")
    ids: list[object] | None = None
    if user_ids is not None:
        ids = user_ids if isinstance(user_ids, list) else [user_ids]
        if len(ids) > 100 or any(snowflake(u) is None for u in ids):
            raise _bad("Invalid user_ids.")
    nonce = d.get("nonce")
    if not isinstance(nonce, str) or len(nonce.encode()) > 32:
        nonce = None
    return MemberRequest(
        guild_id=guild_id,
        query=query,
        limit=limit if is_int(limit) else 0,
        user_ids=ids,
        presences=bool(d.get("presences")),
        nonce=nonce,
    )


def validate_voice_state(d: object) -> VoiceStateRequest:
    guild_id = snowflake(d.get("guild_id")) if isinstance(d, dict) else None
    if guild_id is None or not isinstance(d, dict):
        raise _bad("Voice state update needs a guild_id.")
    channel = d.get("channel_id")
    channel_id = None if channel is None else snowflake(channel)
    if channel is not None and channel_id is None:
        raise _bad("Invalid channel_id.")
    return VoiceStateRequest(
        guild_id=guild_id,
        channel_id=channel_id,
        self_mute=bool(d.get("self_mute")),
        self_deaf=bool(d.get("self_deaf")),
    )


def validate_soundboard_request(d: object) -> list[int]:
    ids = d.get("guild_ids") if isinstance(d, dict) else None
    if not isinstance(ids, list) or any(snowflake(g) is None for g in ids):
        raise _bad("Request soundboard sounds needs guild_ids.")
    return [g for g in (snowflake(raw) for raw in ids) if g is not None]


def validate_channel_info_request(d: object) -> int:
    gid = snowflake(d.get("guild_id")) if isinstance(d, dict) else None
    if gid is None:
        raise _bad("Request channel info needs a guild_id.")
    return gid


#: What `validate_command` returns for each command opcode.
Parsed = dict[str, Any] | MemberRequest | VoiceStateRequest | list[int] | int


def validate_command(op: int, d: object) -> Parsed:
    """Check an authenticated client's op 3/4/8/31/43 and return its parsed form."""
    if op == Opcode.PRESENCE_UPDATE:
        return validate_presence(d)
    if op == Opcode.REQUEST_GUILD_MEMBERS:
        return validate_member_request(d)
    if op == Opcode.VOICE_STATE_UPDATE:
        return validate_voice_state(d)
    if op == Opcode.REQUEST_SOUNDBOARD_SOUNDS:
        return validate_soundboard_request(d)
    if op == Opcode.REQUEST_CHANNEL_INFO:
        return validate_channel_info_request(d)
    raise _bad("Unknown opcode.")
