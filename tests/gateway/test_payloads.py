"""The op 3 / op 8 payloads the runner sends for the messenger's commands, as Discord reads them."""

from __future__ import annotations

from shardtui.gateway.models import Activity, Presence
from shardtui.gateway.payloads import presence_update, request_guild_members
from shardtui.gateway.protocol import ActivityType, Status


def test_presence_update_is_op_3_with_the_presence_discord_shows() -> None:
    payload = presence_update(Presence(Status.OFFLINE, Activity("tests", ActivityType.WATCHING)))
    assert payload == {
        "op": 3,
        "d": {
            "since": None,
            "activities": [{"name": "tests", "type": 3}],
            "status": "invisible",  # bots show offline with invisible
            "afk": False,
        },
    }


def test_all_members_is_an_empty_query_with_limit_0_and_ids_are_strings() -> None:
    payload = request_guild_members(
        81384788765712384, query=None, limit=None, user_ids=None, presences=True, nonce="n1"
    )
    assert payload == {
        "op": 8,
        "d": {"guild_id": "81384788765712384", "presences": True, "query": "", "limit": 0, "nonce": "n1"},
    }


def test_by_user_ids_sends_no_query_and_keeps_an_explicit_limit_only() -> None:
    by_ids = request_guild_members(1, query=None, limit=None, user_ids=(2, 3), presences=False, nonce=None)
    assert by_ids == {"op": 8, "d": {"guild_id": "1", "presences": False, "user_ids": ["2", "3"]}}
    limited = request_guild_members(1, query=None, limit=1, user_ids=(2,), presences=False, nonce=None)
    assert limited["d"]["limit"] == 1 and "query" not in limited["d"]


def test_a_query_keeps_its_limit() -> None:
    payload = request_guild_members(1, query="ab", limit=5, user_ids=None, presences=False, nonce=None)
    assert payload["d"] == {"guild_id": "1", "presences": False, "query": "ab", "limit": 5}
