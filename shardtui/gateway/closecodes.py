"""What each gateway close code means for us: the one policy table.

The runner (stop or reconnect, resume or identify), the monitor (stop one shard or the whole bot),
the console (a toast or the fatal screen) and the sandbox (does the session survive) all read it,
so "what happens on close 4011" is answered here and nowhere else. It imports nothing but
:mod:`protocol`, so every layer may use it (the sandbox and the server included).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from shardtui.gateway.protocol import CloseCode


class Scope(enum.Enum):
    """What a fatal error stops."""

    #: Only the shard that heard it (its shard id or guild count is wrong).
    SHARD = "shard"
    #: Every shard: the token, the intents or the account is refused, so every shard would be.
    BOT = "bot"


@dataclass(frozen=True, slots=True)
class ClosePolicy:
    """How the client treats one server close code."""

    code: int
    #: False: reconnecting cannot help; the shard stops and the operator is told (a fatal close).
    reconnect: bool
    #: True: the session survives the close, so the next connection RESUMEs.
    resumable: bool
    #: For a fatal close: the stable word of ``FatalErrorEvent.kind``; "" otherwise.
    kind: str = ""
    scope: Scope = Scope.SHARD
    #: For a fatal close: what the operator should do.
    advice: str = ""

    @property
    def fatal(self) -> bool:
        return not self.reconnect


def _fatal(code: int, kind: str, scope: Scope, advice: str) -> ClosePolicy:
    return ClosePolicy(code, reconnect=False, resumable=False, kind=kind, scope=scope, advice=advice)


def _transient(code: int, *, resumable: bool) -> ClosePolicy:
    return ClosePolicy(code, reconnect=True, resumable=resumable)


_POLICIES = (
    _transient(CloseCode.UNKNOWN_ERROR, resumable=True),
    _transient(CloseCode.UNKNOWN_OPCODE, resumable=True),
    _transient(CloseCode.DECODE_ERROR, resumable=True),
    # Sent for a payload before IDENTIFY or a session the server invalidated: nothing to resume.
    _transient(CloseCode.NOT_AUTHENTICATED, resumable=False),
    _fatal(
        CloseCode.AUTHENTICATION_FAILED,
        "authentication",
        Scope.BOT,
        "the bot token was rejected; check the token (it may have been reset) and restart",
    ),
    _transient(CloseCode.ALREADY_AUTHENTICATED, resumable=True),
    _transient(CloseCode.SESSION_NO_LONGER_VALID, resumable=False),
    _transient(CloseCode.INVALID_SEQ, resumable=False),
    _transient(CloseCode.RATE_LIMITED, resumable=True),
    _transient(CloseCode.SESSION_TIMED_OUT, resumable=False),
    _fatal(
        CloseCode.INVALID_SHARD,
        "invalid_shard",
        Scope.SHARD,
        "the shard id or shard count was refused; use the count /gateway/bot recommends "
        "(a multiple of max_concurrency for large bots)",
    ),
    _fatal(
        CloseCode.SHARDING_REQUIRED,
        "sharding_required",
        Scope.SHARD,
        "a shard would hold more than 2500 guilds; run more shards",
    ),
    _fatal(
        CloseCode.INVALID_API_VERSION,
        "invalid_api_version",
        Scope.SHARD,
        "the gateway API version was refused; use v10",
    ),
    _fatal(
        CloseCode.INVALID_INTENTS,
        "invalid_intents",
        Scope.BOT,
        "the intents value contains bits that are not valid intents; fix the configured intents",
    ),
    _fatal(
        CloseCode.DISALLOWED_INTENTS,
        "disallowed_intents",
        Scope.BOT,
        "a privileged intent (guild_members, guild_presences or message_content) is not enabled for "
        "this bot; enable it in the Developer Portal or remove it from the configured intents",
    ),
)

#: Every 4xxx close code Discord documents -> how we treat it. Codes not here (1000/1001/1006/1011,
#: unknown 4xxx) reconnect and try to resume.
CLOSE_POLICIES: Final[Mapping[int, ClosePolicy]] = MappingProxyType({int(p.code): p for p in _POLICIES})
#: The fatal ones: reconnecting cannot help.
FATAL_CLOSES: Final[Mapping[int, ClosePolicy]] = MappingProxyType(
    {code: p for code, p in CLOSE_POLICIES.items() if p.fatal}
)
#: Codes after which a server-side session is gone (the sandbox ends the session on them).
SESSION_ENDING_SERVER_CLOSES: Final = frozenset(c for c, p in CLOSE_POLICIES.items() if not p.resumable)

#: Every ``FatalErrorEvent.kind`` -> what it stops. Besides the close codes' kinds: an exhausted
#: session start budget stops every start; "gateway" (any other refusal, a runner that keeps
#: crashing) stops one shard.
FATAL_KIND_SCOPES: Final[Mapping[str, Scope]] = MappingProxyType(
    {
        **{p.kind: p.scope for p in FATAL_CLOSES.values()},
        "session_start_limit": Scope.BOT,
        "gateway": Scope.SHARD,
    }
)
#: Kinds that stop the whole bot (the console shows its fatal screen for these).
BOT_WIDE_KINDS: Final = frozenset(k for k, s in FATAL_KIND_SCOPES.items() if s is Scope.BOT)

#: What a fatal close no table entry knows is called.
UNKNOWN_FATAL_KIND: Final = "gateway"
UNKNOWN_FATAL_ADVICE: Final = "the gateway refused the shard; not retrying"


def scope_of(kind: str, shard_ids: tuple[object, ...] = (1,)) -> Scope:
    """What a fatal error of ``kind`` stops; an error naming no shard stops the bot."""
    if not shard_ids:
        return Scope.BOT
    return FATAL_KIND_SCOPES.get(kind, Scope.SHARD)
