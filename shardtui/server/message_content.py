"""What a connection without the privileged MESSAGE_CONTENT intent sees of a message: Discord's rule,
for every server of the gateway protocol (the sandbox's sessions and the proxy's clients)."""

from __future__ import annotations

from typing import Any, Final

from shardtui.gateway.protocol import GatewayIntents

#: The privileged intent that fills a message's content fields.
MESSAGE_CONTENT: Final = int(GatewayIntents.MESSAGE_CONTENT)
#: Dispatches whose content fields depend on MESSAGE_CONTENT.
CONTENT_EVENTS: Final = frozenset({"MESSAGE_CREATE", "MESSAGE_UPDATE", "AUTO_MODERATION_ACTION_EXECUTION"})
#: A message's fields a connection without MESSAGE_CONTENT gets empty, as Discord sends them.
_MESSAGE_FIELDS: Final[tuple[tuple[str, Any], ...]] = (
    ("content", ""),
    ("embeds", []),
    ("attachments", []),
    ("components", []),
)
_AUTOMOD_FIELDS: Final = ("content", "matched_content")


def without_message_content(name: str, data: Any, bot_user_id: str | None) -> Any | None:
    """``data`` as Discord sends it to a connection whose IDENTIFY lacks MESSAGE_CONTENT, or None when
    that is ``data`` itself. Discord's rule: a message's ``content``, ``embeds``, ``attachments``,
    ``components`` and ``poll`` are empty (the poll absent) unless the message is in a DM, was sent by
    the bot, or mentions the bot; an auto moderation execution's ``content`` and ``matched_content``
    are empty. ``data`` is never changed: the stripped variant is a shallow copy."""
    if type(data) is not dict:
        return None
    if name == "AUTO_MODERATION_ACTION_EXECUTION":
        if not any(data.get(key) for key in _AUTOMOD_FIELDS):
            return None
        out = dict(data)
        for key in _AUTOMOD_FIELDS:
            if key in out:
                out[key] = ""
        return out
    if data.get("guild_id") is None or bot_user_id is None:
        # A DM keeps its content; and before the bot's id is known its own messages and mentions
        # cannot be told apart (a surplus of content is harmless, a mention emptied is not).
        return None
    author = data.get("author")
    if type(author) is dict and author.get("id") == bot_user_id:
        return None
    mentions = data.get("mentions")
    if type(mentions) is list and any(type(u) is dict and u.get("id") == bot_user_id for u in mentions):
        return None
    if not any(data.get(key) for key, _ in _MESSAGE_FIELDS) and "poll" not in data:
        return None
    out = dict(data)
    for key, empty in _MESSAGE_FIELDS:
        if key in out:
            out[key] = "" if type(empty) is str else []
    out.pop("poll", None)
    return out
