"""Presence from plain values and back: the one conversion config, fleet commands and the console use."""

from __future__ import annotations

import pytest

from shardtui.gateway.models import Activity, Presence
from shardtui.gateway.protocol import ActivityType, Status


def test_build_takes_the_activity_type_by_name_number_or_enum() -> None:
    by_name = Presence.build("idle", "watching", "the shards")
    assert by_name == Presence(Status.IDLE, Activity("the shards", ActivityType.WATCHING))
    assert Presence.build("idle", 3, "the shards") == by_name
    assert Presence.build(Status.IDLE, ActivityType.WATCHING, "the shards") == by_name
    assert Presence.build("dnd") == Presence(Status.DND)


def test_build_names_an_unknown_status_or_type() -> None:
    with pytest.raises(ValueError, match="unknown status 'asleep'"):
        Presence.build("asleep")
    with pytest.raises(ValueError, match="unknown activity type 'dancing'"):
        Presence.build("online", "dancing", "x")


def test_a_presence_survives_to_dict_and_back() -> None:
    presence = Presence(
        Status.ONLINE, Activity("live", ActivityType.STREAMING, url="https://twitch.tv/x"), afk=True, since=5
    )
    assert Presence.from_dict(presence.to_dict()) == presence
    assert Presence.from_dict(Presence().to_dict()) == Presence()


def test_from_dict_refuses_what_discord_would_refuse() -> None:
    with pytest.raises(ValueError, match="malformed presence"):
        Presence.from_dict({"status": "online", "activity": {"type": "x"}})
    with pytest.raises(ValueError, match="streaming"):
        Presence.from_dict({"status": "online", "activity": {"name": "live", "type": 1}})
