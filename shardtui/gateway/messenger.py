"""``ShardMessenger``: the handle through which anyone talks to one running shard.

Every method validates its input (``ValueError`` naming the problem) and then puts a
``ShardRunnerMessage`` on the runner's inbox without waiting; the runner sends it through its command
limiter when the shard is connected.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from shardtui.gateway.messages import ShardRunnerMessage, ShardRunnerMessageT
from shardtui.gateway.models import Activity, Presence, ShardId
from shardtui.gateway.protocol import CLIENT_OPCODES, Opcode, Status
from shardtui.gateway.ratelimit import encode_command

#: Opcodes only the runner may send: an IDENTIFY outside the identify gate would break Discord's
#: concurrency rule, and RESUME/heartbeats belong to the connection's own state.
_RUNNER_ONLY_OPS = frozenset({Opcode.IDENTIFY, Opcode.RESUME, Opcode.HEARTBEAT})
_MAX_NONCE_BYTES = 32
_MAX_USER_IDS = 100
_MAX_QUERY_LIMIT = 100


def _snowflake(value: object, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a snowflake id, got {value!r}")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or not 0 < value < 2**64:
        raise ValueError(f"{what} must be a snowflake id, got {value!r}")
    return value


def _status(value: Status | str) -> Status:
    try:
        return Status(value)
    except ValueError:
        known = ", ".join(s.value for s in Status)
        raise ValueError(f"unknown status {value!r} (use one of {known})") from None


class CommandInbox(Protocol):
    """Where a messenger puts commands: the runner's inbox (or any queue with a ``put_nowait`` that
    never blocks)."""

    def put_nowait(self, item: ShardRunnerMessageT, /) -> None: ...


class ShardMessenger:
    """Non-blocking commands to one shard's runner."""

    __slots__ = ("_inbox", "shard_id")

    def __init__(self, shard_id: ShardId, inbox: CommandInbox) -> None:
        self.shard_id = shard_id
        self._inbox = inbox

    def __repr__(self) -> str:
        return f"ShardMessenger(shard_id={self.shard_id})"

    def send(self, message: ShardRunnerMessageT) -> None:
        """Put an already-built ``ShardRunnerMessage`` on the inbox."""
        self._inbox.put_nowait(message)

    def set_presence(self, status: Status | str | Presence, activity: Activity | None = None) -> None:
        """Set status and activity at once, or a whole :class:`Presence`."""
        if isinstance(status, Presence):
            if activity is not None:
                raise ValueError("pass either a Presence or a status and an activity, not both")
            presence = status
        else:
            presence = Presence(status=_status(status), activity=activity)
        presence.validate()
        self.send(ShardRunnerMessage.SetPresence(presence))

    def set_activity(self, activity: Activity | None) -> None:
        """Change the activity (None clears it) and keep the status."""
        if activity is not None:
            if not isinstance(activity, Activity):
                raise ValueError(f"activity must be an Activity or None, got {type(activity).__name__}")
            activity.validate()
        self.send(ShardRunnerMessage.SetActivity(activity))

    def set_status(self, status: Status | str) -> None:
        """Change the status and keep the activity."""
        self.send(ShardRunnerMessage.SetStatus(_status(status)))

    def chunk_guild(
        self,
        guild_id: int | str,
        limit: int | None = None,
        query: str | None = None,
        user_ids: list[int | str] | tuple[int | str, ...] | None = None,
        presences: bool = False,
        nonce: str | None = None,
    ) -> None:
        """Request guild members (op 8). With neither ``query`` nor ``user_ids``: all members."""
        gid = _snowflake(guild_id, "guild_id")
        ids: tuple[int, ...] | None = None
        if user_ids is not None and query is not None:
            raise ValueError("chunk_guild takes either query or user_ids, not both")
        if user_ids is not None:
            ids = tuple(_snowflake(u, "user id") for u in user_ids)
            if not ids:
                raise ValueError("user_ids is empty")
            if len(ids) > _MAX_USER_IDS:
                raise ValueError(f"at most {_MAX_USER_IDS} user ids per request, got {len(ids)}")
        else:
            if query is None:
                query = ""
            if not isinstance(query, str):
                raise ValueError(f"query must be a string, got {type(query).__name__}")
            if limit is None:
                limit = 0 if query == "" else _MAX_QUERY_LIMIT
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
            if limit > _MAX_QUERY_LIMIT or (limit == 0 and query not in ("", None)):
                raise ValueError(
                    f"limit must be 1..{_MAX_QUERY_LIMIT} for a query "
                    "(0 = all members, only with an empty query)"
                )
        if nonce is not None and (not isinstance(nonce, str) or len(nonce.encode()) > _MAX_NONCE_BYTES):
            raise ValueError(f"nonce must be a string of at most {_MAX_NONCE_BYTES} bytes")
        self.send(
            ShardRunnerMessage.ChunkGuild(
                guild_id=gid, limit=limit, query=query, user_ids=ids, presences=bool(presences), nonce=nonce
            )
        )

    def restart(self, force_identify: bool = False) -> None:
        """Reconnect: resume the session (no identify spent) unless ``force_identify``."""
        self.send(ShardRunnerMessage.Restart(force_identify=bool(force_identify)))

    def shutdown_clean(self) -> None:
        """Close with 1000: end the session and stop the runner."""
        self.close(1000, "shutdown")

    def close(self, code: int, reason: str = "") -> None:
        """Close the connection with ``code``: 1000/1001 stop the runner, other codes reconnect and resume."""
        if isinstance(code, bool) or not isinstance(code, int) or not (1000 <= code <= 4999):
            raise ValueError(f"close code must be an integer in 1000..4999, got {code!r}")
        if code in (1004, 1005, 1006, 1015):
            raise ValueError(f"close code {code} is reserved and cannot be sent")
        self.send(ShardRunnerMessage.Close(code, str(reason)[:120]))

    def websocket_message(self, payload: dict[str, Any]) -> None:
        """Send a raw gateway command (a dict with ``op`` and ``d``) as is."""
        if not isinstance(payload, dict):
            raise ValueError(f"a gateway command must be a dict, got {type(payload).__name__}")
        op = payload.get("op")
        if isinstance(op, bool) or not isinstance(op, int) or op not in CLIENT_OPCODES:
            known = ", ".join(str(int(o)) for o in sorted(CLIENT_OPCODES))
            raise ValueError(f"op must be a client opcode ({known}), got {op!r}")
        if op in _RUNNER_ONLY_OPS:
            raise ValueError(f"op {op} ({Opcode(op).name}) is sent by the runner itself, not by hand")
        if "d" not in payload:
            raise ValueError("a gateway command needs a 'd' key")
        try:
            encode_command(payload)  # PayloadTooLarge (a ValueError) before it reaches the runner
        except orjson.JSONEncodeError as exc:
            raise ValueError(f"gateway command op {op} cannot be encoded as JSON: {exc}") from None
        self.send(ShardRunnerMessage.Message(dict(payload)))
