"""The close-code policy table: one answer per code, agreeing with the protocol facts and with what
the manager does (bot-wide fatal closes stop every shard, the others only the shard that heard them)."""

from __future__ import annotations

from shardtui.gateway.closecodes import (
    BOT_WIDE_KINDS,
    CLOSE_POLICIES,
    FATAL_CLOSES,
    SESSION_ENDING_SERVER_CLOSES,
    Scope,
    scope_of,
)
from shardtui.gateway.errors import fatal_error_for_close
from shardtui.gateway.messages import ShardManagerMessage, fatal_message
from shardtui.gateway.models import ShardId

#: The protocol fact sheet's sets (§6): reconnecting cannot help; the session is gone (identify).
FATAL_CLOSE_CODES = frozenset({4004, 4010, 4011, 4012, 4013, 4014})
SESSION_INVALIDATING_CLOSE_CODES = frozenset({4006, 4007, 4009})


def test_the_table_agrees_with_the_protocol_facts() -> None:
    assert set(FATAL_CLOSES) == set(FATAL_CLOSE_CODES)
    assert SESSION_INVALIDATING_CLOSE_CODES <= SESSION_ENDING_SERVER_CLOSES
    assert all(not p.resumable for p in FATAL_CLOSES.values())
    resumable = {c for c, p in CLOSE_POLICIES.items() if p.reconnect and p.resumable}
    assert resumable == {4000, 4001, 4002, 4005, 4008}


def test_scopes_bot_wide_for_the_bot_and_shard_only_for_the_shard() -> None:
    assert {c for c, p in FATAL_CLOSES.items() if p.scope is Scope.BOT} == {4004, 4013, 4014}
    assert {c for c, p in FATAL_CLOSES.items() if p.scope is Scope.SHARD} == {4010, 4011, 4012}
    # The console's old copy stopped everything on these two; the manager stops one shard.
    assert "sharding_required" not in BOT_WIDE_KINDS
    assert "invalid_api_version" not in BOT_WIDE_KINDS
    assert BOT_WIDE_KINDS == {
        "authentication",
        "invalid_intents",
        "disallowed_intents",
        "session_start_limit",
    }
    assert scope_of("invalid_shard", (ShardId(3),)) is Scope.SHARD
    assert scope_of("gateway", ()) is Scope.BOT  # an error naming no shard stops the bot


def test_errors_and_runner_messages_come_from_the_table() -> None:
    for code, policy in FATAL_CLOSES.items():
        error = fatal_error_for_close(code, "")
        assert (error.kind, error.code) == (policy.kind, code)
        assert error.message.endswith(policy.advice)
        message = fatal_message(ShardId(2), code, error.message)
        if policy.scope is Scope.BOT:
            assert not isinstance(message, ShardManagerMessage.ShardFatal)
        else:
            assert message == ShardManagerMessage.ShardFatal(ShardId(2), code, error.message)
    assert fatal_error_for_close(4999).kind == "gateway"
    assert fatal_message(ShardId(1), None, "gate refused") == ShardManagerMessage.ShardFatal(
        ShardId(1), 0, "gate refused"
    )
