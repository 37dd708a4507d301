"""Discord's MESSAGE_CONTENT rule, as the sandbox and the proxy both apply it to a connection without
the intent: which fields empty, and the messages that keep them."""

from __future__ import annotations

from typing import Any

from shardtui.server.message_content import without_message_content

BOT = "111"


def message(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "9",
        "channel_id": "5",
        "guild_id": "7",
        "content": "!ban everyone",
        "embeds": [{"title": "x"}],
        "attachments": [{"id": "1"}],
        "components": [{"type": 1}],
        "poll": {"question": {"text": "?"}},
        "mentions": [],
        "author": {"id": "222"},
    }
    data.update(extra)
    return data


def test_a_guild_message_loses_its_content_fields_and_the_original_is_untouched() -> None:
    original = message()
    for name in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
        stripped = without_message_content(name, original, BOT)
        assert stripped is not None
        assert (stripped["content"], stripped["embeds"], stripped["attachments"], stripped["components"]) == (
            "",
            [],
            [],
            [],
        )
        assert "poll" not in stripped
        assert stripped["id"] == "9" and stripped["author"] == {"id": "222"}
    assert original["content"] == "!ban everyone" and "poll" in original


def test_dms_the_bots_own_messages_and_mentions_of_the_bot_keep_their_content() -> None:
    assert without_message_content("MESSAGE_CREATE", message(guild_id=None), BOT) is None
    assert without_message_content("MESSAGE_CREATE", message(author={"id": BOT}), BOT) is None
    mentioned = message(mentions=[{"id": "333"}, {"id": BOT}])
    assert without_message_content("MESSAGE_CREATE", mentioned, BOT) is None
    # A mention of someone else is no exception.
    assert without_message_content("MESSAGE_CREATE", message(mentions=[{"id": "333"}]), BOT) is not None


def test_before_the_bot_is_known_nothing_is_emptied() -> None:
    # Its own messages and mentions cannot be told apart yet; an emptied mention would break a command.
    assert without_message_content("MESSAGE_CREATE", message(), None) is None


def test_a_message_with_nothing_to_empty_is_sent_as_is() -> None:
    bare = message(content="", embeds=[], attachments=[], components=[])
    del bare["poll"]
    assert without_message_content("MESSAGE_CREATE", bare, BOT) is None


def test_an_auto_moderation_execution_loses_content_and_matched_content() -> None:
    data = {"guild_id": "7", "rule_id": "1", "content": "bad word here", "matched_content": "bad word"}
    stripped = without_message_content("AUTO_MODERATION_ACTION_EXECUTION", data, BOT)
    assert stripped == {"guild_id": "7", "rule_id": "1", "content": "", "matched_content": ""}
