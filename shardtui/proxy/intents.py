"""Which IDENTIFY intent a client needs to receive a dispatch (Discord's gateway intents table).

The upstream shards identify with the bot's intents; a client may ask for fewer. The hub gives each
client only the events its own intents cover, as Discord would. Names not listed here (READY-style
session events, INTERACTION_CREATE, USER_UPDATE, ...) are sent regardless of intents, and so is an
event whose intent cannot be told — delivering a surplus event is harmless, dropping one is not.
"""

from __future__ import annotations

from typing import Final

from shardtui.gateway.models import Dispatch
from shardtui.gateway.protocol import GatewayIntents as I

#: Events of guilds only: name -> intent.
_GUILD: Final[dict[str, int]] = {
    **dict.fromkeys(
        (
            "GUILD_UPDATE", "GUILD_ROLE_CREATE", "GUILD_ROLE_UPDATE", "GUILD_ROLE_DELETE",
            "CHANNEL_CREATE", "CHANNEL_UPDATE", "CHANNEL_DELETE", "CHANNEL_PINS_UPDATE",
            "THREAD_CREATE", "THREAD_UPDATE", "THREAD_DELETE", "THREAD_LIST_SYNC", "THREAD_MEMBER_UPDATE",
            "STAGE_INSTANCE_CREATE", "STAGE_INSTANCE_UPDATE", "STAGE_INSTANCE_DELETE",
        ),
        int(I.GUILDS),
    ),
    **dict.fromkeys(("GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE", "GUILD_MEMBER_REMOVE"), int(I.GUILD_MEMBERS)),
    **dict.fromkeys(
        ("GUILD_AUDIT_LOG_ENTRY_CREATE", "GUILD_BAN_ADD", "GUILD_BAN_REMOVE"), int(I.GUILD_MODERATION)
    ),
    **dict.fromkeys(
        (
            "GUILD_EMOJIS_UPDATE", "GUILD_STICKERS_UPDATE", "GUILD_SOUNDBOARD_SOUND_CREATE",
            "GUILD_SOUNDBOARD_SOUND_UPDATE", "GUILD_SOUNDBOARD_SOUND_DELETE",
            "GUILD_SOUNDBOARD_SOUNDS_UPDATE",
        ),
        int(I.GUILD_EXPRESSIONS),
    ),
    **dict.fromkeys(
        ("GUILD_INTEGRATIONS_UPDATE", "INTEGRATION_CREATE", "INTEGRATION_UPDATE", "INTEGRATION_DELETE"),
        int(I.GUILD_INTEGRATIONS),
    ),
    "WEBHOOKS_UPDATE": int(I.GUILD_WEBHOOKS),
    **dict.fromkeys(("INVITE_CREATE", "INVITE_DELETE"), int(I.GUILD_INVITES)),
    "VOICE_CHANNEL_EFFECT_SEND": int(I.GUILD_VOICE_STATES),
    "PRESENCE_UPDATE": int(I.GUILD_PRESENCES),
    "MESSAGE_DELETE_BULK": int(I.GUILD_MESSAGES),
    **dict.fromkeys(
        (
            "GUILD_SCHEDULED_EVENT_CREATE", "GUILD_SCHEDULED_EVENT_UPDATE", "GUILD_SCHEDULED_EVENT_DELETE",
            "GUILD_SCHEDULED_EVENT_USER_ADD", "GUILD_SCHEDULED_EVENT_USER_REMOVE",
        ),
        int(I.GUILD_SCHEDULED_EVENTS),
    ),
    **dict.fromkeys(
        ("AUTO_MODERATION_RULE_CREATE", "AUTO_MODERATION_RULE_UPDATE", "AUTO_MODERATION_RULE_DELETE"),
        int(I.AUTO_MODERATION_CONFIGURATION),
    ),
    "AUTO_MODERATION_ACTION_EXECUTION": int(I.AUTO_MODERATION_EXECUTION),
}  # fmt: skip

#: Events of guilds and of DMs: name -> (intent in a guild, intent in a DM).
_GUILD_OR_DM: Final[dict[str, tuple[int, int]]] = {
    **dict.fromkeys(
        ("MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE"),
        (int(I.GUILD_MESSAGES), int(I.DIRECT_MESSAGES)),
    ),
    **dict.fromkeys(
        (
            "MESSAGE_REACTION_ADD", "MESSAGE_REACTION_REMOVE", "MESSAGE_REACTION_REMOVE_ALL",
            "MESSAGE_REACTION_REMOVE_EMOJI",
        ),
        (int(I.GUILD_MESSAGE_REACTIONS), int(I.DIRECT_MESSAGE_REACTIONS)),
    ),
    "TYPING_START": (int(I.GUILD_MESSAGE_TYPING), int(I.DIRECT_MESSAGE_TYPING)),
    **dict.fromkeys(
        ("MESSAGE_POLL_VOTE_ADD", "MESSAGE_POLL_VOTE_REMOVE"),
        (int(I.GUILD_MESSAGE_POLLS), int(I.DIRECT_MESSAGE_POLLS)),
    ),
}  # fmt: skip


def required_intent(dispatch: Dispatch, held_by_all: int = 0) -> int:
    """The intent bit a client needs for this dispatch; 0: every client gets it. The dispatch's ``d`` is
    read only when the answer depends on it (an event of guilds or of DMs) and matters: not when every
    subscriber holds both intents (``held_by_all``, the intents all of them hold), which sends it to
    everyone either way. Otherwise ``d`` may stay undecoded."""
    name = dispatch.name
    need = _GUILD.get(name)
    if need is not None:
        return need
    pair = _GUILD_OR_DM.get(name)
    if pair is None or (pair[0] & held_by_all and pair[1] & held_by_all):
        return 0
    data = dispatch.data
    return pair[0] if type(data) is dict and data.get("guild_id") is not None else pair[1]
