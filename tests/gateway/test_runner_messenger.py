"""ShardMessenger: every command is validated before it reaches the runner's inbox."""

from __future__ import annotations

import asyncio

import pytest

from shardtui.gateway.errors import PayloadTooLarge
from shardtui.gateway.messages import ShardRunnerMessage
from shardtui.gateway.messenger import ShardMessenger
from shardtui.gateway.models import Activity, Presence, ShardId
from shardtui.gateway.protocol import ActivityType, Status


@pytest.fixture
def inbox() -> asyncio.Queue:
    return asyncio.Queue()


@pytest.fixture
def messenger(inbox: asyncio.Queue) -> ShardMessenger:
    return ShardMessenger(ShardId(3), inbox)


def take(inbox: asyncio.Queue) -> object:
    return inbox.get_nowait()


def test_presence_status_and_activity_messages(messenger: ShardMessenger, inbox: asyncio.Queue) -> None:
    messenger.set_presence("idle", Activity("chess", ActivityType.COMPETING))
    assert take(inbox) == ShardRunnerMessage.SetPresence(
        Presence(Status.IDLE, Activity("chess", ActivityType.COMPETING))
    )
    whole = Presence(Status.DND)
    messenger.set_presence(whole)
    assert take(inbox) == ShardRunnerMessage.SetPresence(whole)
    messenger.set_status("invisible")
    assert take(inbox) == ShardRunnerMessage.SetStatus(Status.INVISIBLE)
    messenger.set_activity(None)
    assert take(inbox) == ShardRunnerMessage.SetActivity(None)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m.set_status("sleepy"), "unknown status"),
        (lambda m: m.set_presence("online", Activity("x", ActivityType.STREAMING)), "streaming"),
        (lambda m: m.set_activity(Activity("", ActivityType.PLAYING)), "needs a name"),
        (lambda m: m.set_activity(Activity("x", ActivityType.CUSTOM)), "custom status needs a state"),
        (lambda m: m.set_presence(Presence(), Activity("x")), "not both"),
    ],
)
def test_bad_presence_is_refused(messenger: ShardMessenger, inbox: asyncio.Queue, call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(messenger)
    assert inbox.empty()


def test_chunk_guild_defaults_to_all_members_and_normalises_ids(
    messenger: ShardMessenger, inbox: asyncio.Queue
) -> None:
    messenger.chunk_guild("81384788765712384")
    assert take(inbox) == ShardRunnerMessage.ChunkGuild(81384788765712384, limit=0, query="")
    messenger.chunk_guild(1, query="ma")
    assert take(inbox) == ShardRunnerMessage.ChunkGuild(1, limit=100, query="ma")
    messenger.chunk_guild(1, user_ids=["5", 6], presences=True, nonce="n")
    assert take(inbox) == ShardRunnerMessage.ChunkGuild(1, user_ids=(5, 6), presences=True, nonce="n")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"guild_id": "abc"}, "guild_id"),
        ({"guild_id": 0}, "guild_id"),
        ({"guild_id": True}, "guild_id"),
        ({"guild_id": 1, "query": "a", "user_ids": [1]}, "not both"),
        ({"guild_id": 1, "user_ids": list(range(1, 102))}, "at most 100"),
        ({"guild_id": 1, "user_ids": []}, "empty"),
        ({"guild_id": 1, "query": "a", "limit": 0}, "limit"),
        ({"guild_id": 1, "query": "", "limit": 101}, "limit"),
        ({"guild_id": 1, "limit": -1}, "limit"),
        ({"guild_id": 1, "nonce": "x" * 33}, "nonce"),
    ],
)
def test_bad_chunk_requests_are_refused(
    messenger: ShardMessenger, inbox: asyncio.Queue, kwargs, match
) -> None:
    with pytest.raises(ValueError, match=match):
        messenger.chunk_guild(**kwargs)
    assert inbox.empty()


def test_close_restart_and_shutdown(messenger: ShardMessenger, inbox: asyncio.Queue) -> None:
    messenger.shutdown_clean()
    assert take(inbox) == ShardRunnerMessage.Close(1000, "shutdown")
    messenger.close(4000, "resume later")
    assert take(inbox) == ShardRunnerMessage.Close(4000, "resume later")
    messenger.restart(force_identify=True)
    assert take(inbox) == ShardRunnerMessage.Restart(True)
    for bad in (999, 5000, 1006, "1000", True):
        with pytest.raises(ValueError, match="close code"):
            messenger.close(bad)
    assert inbox.empty()


def test_raw_messages_are_checked(messenger: ShardMessenger, inbox: asyncio.Queue) -> None:
    messenger.websocket_message({"op": 4, "d": {"guild_id": "1", "channel_id": None}})
    assert isinstance(take(inbox), ShardRunnerMessage.Message)
    for bad, match in [
        ({"op": 2, "d": {}}, "sent by the runner"),
        ({"op": 6, "d": {}}, "sent by the runner"),
        ({"op": 11, "d": None}, "client opcode"),
        ({"op": "3", "d": {}}, "client opcode"),
        ({"op": 3}, "'d'"),
        ({"op": 3, "d": {1, 2}}, "JSON"),
        ("not a dict", "must be a dict"),
    ]:
        with pytest.raises(ValueError, match=match):
            messenger.websocket_message(bad)  # type: ignore[arg-type]
    with pytest.raises(PayloadTooLarge):
        messenger.websocket_message({"op": 3, "d": {"x": "y" * 5000}})
    assert inbox.empty()
    assert "3" in repr(messenger)
