"""Messages passed between the manager, monitor, queuer and runners (serenity's four enums).

Each group is a namespace class holding frozen dataclasses, so a message reads as
``ShardManagerMessage.Restart(shard_id)``; the ``…T`` aliases are the unions for type hints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from shardtui.gateway.models import Activity, ConnectionStage, Presence, ShardId
from shardtui.gateway.protocol import CloseCode, Status


class ShardManagerMessage:
    """Sent to the ``ShardManagerMonitor``."""

    @dataclass(frozen=True, slots=True)
    class Restart:
        shard_id: ShardId
        #: False: keep the session and RESUME (costs no identify); True: fresh IDENTIFY.
        force_identify: bool = False

    @dataclass(frozen=True, slots=True)
    class ShardUpdate:
        shard_id: ShardId
        latency: float | None
        stage: ConnectionStage

    @dataclass(frozen=True, slots=True)
    class Shutdown:
        shard_id: ShardId
        code: int = 1000

    @dataclass(frozen=True, slots=True)
    class ShutdownAll:
        pass

    @dataclass(frozen=True, slots=True)
    class ShutdownFinished:
        shard_id: ShardId

    @dataclass(frozen=True, slots=True)
    class ShardInvalidAuthentication:
        shard_id: ShardId

    @dataclass(frozen=True, slots=True)
    class ShardInvalidGatewayIntents:
        shard_id: ShardId

    @dataclass(frozen=True, slots=True)
    class ShardDisallowedGatewayIntents:
        shard_id: ShardId

    @dataclass(frozen=True, slots=True)
    class ShardFatal:
        """Any other fatal close (4010, 4011, 4012): the shard stopped and will not retry."""

        shard_id: ShardId
        code: int
        reason: str


#: The message a runner sends for each bot-wide fatal close (serenity's names); every other fatal
#: close is a ``ShardFatal`` carrying its code.
BOT_FATAL_MESSAGES: Final = {
    CloseCode.AUTHENTICATION_FAILED: ShardManagerMessage.ShardInvalidAuthentication,
    CloseCode.INVALID_INTENTS: ShardManagerMessage.ShardInvalidGatewayIntents,
    CloseCode.DISALLOWED_INTENTS: ShardManagerMessage.ShardDisallowedGatewayIntents,
}


def fatal_message(shard_id: ShardId, code: int | None, reason: str) -> ShardManagerMessageT:
    """What a runner that stopped on a fatal close (or a fatal gate error) tells the manager."""
    message_type = BOT_FATAL_MESSAGES.get(code) if code is not None else None
    if message_type is not None:
        return message_type(shard_id)
    return ShardManagerMessage.ShardFatal(shard_id, code or 0, reason)


ShardManagerMessageT = (
    ShardManagerMessage.Restart
    | ShardManagerMessage.ShardUpdate
    | ShardManagerMessage.Shutdown
    | ShardManagerMessage.ShutdownAll
    | ShardManagerMessage.ShutdownFinished
    | ShardManagerMessage.ShardInvalidAuthentication
    | ShardManagerMessage.ShardInvalidGatewayIntents
    | ShardManagerMessage.ShardDisallowedGatewayIntents
    | ShardManagerMessage.ShardFatal
)


class ShardRunnerMessage:
    """Sent to one ``ShardRunner`` through its ``ShardMessenger``."""

    @dataclass(frozen=True, slots=True)
    class ChunkGuild:
        guild_id: int
        limit: int | None = None
        query: str | None = None
        user_ids: tuple[int, ...] | None = None
        presences: bool = False
        nonce: str | None = None

    @dataclass(frozen=True, slots=True)
    class Close:
        """Close the connection with ``code``. 1000/1001 end the session and stop the runner;
        any other code keeps the session and the runner reconnects and resumes."""

        code: int
        reason: str = ""

    @dataclass(frozen=True, slots=True)
    class Restart:
        """Reconnect now: resume if the session is valid, unless ``force_identify``."""

        force_identify: bool = False

    @dataclass(frozen=True, slots=True)
    class Message:
        """A raw gateway payload (already a dict with ``op`` and ``d``) to send as is."""

        payload: dict[str, Any]

    @dataclass(frozen=True, slots=True)
    class SetActivity:
        activity: Activity | None

    @dataclass(frozen=True, slots=True)
    class SetPresence:
        presence: Presence

    @dataclass(frozen=True, slots=True)
    class SetStatus:
        status: Status


ShardRunnerMessageT = (
    ShardRunnerMessage.ChunkGuild
    | ShardRunnerMessage.Close
    | ShardRunnerMessage.Restart
    | ShardRunnerMessage.Message
    | ShardRunnerMessage.SetActivity
    | ShardRunnerMessage.SetPresence
    | ShardRunnerMessage.SetStatus
)


class ShardQueuerMessage:
    """Sent to the ``ShardQueuer``."""

    @dataclass(frozen=True, slots=True)
    class Start:
        shard_id: ShardId
        total: int
        #: Skip the saved session and IDENTIFY.
        force_identify: bool = False

    @dataclass(frozen=True, slots=True)
    class Shutdown:
        pass

    @dataclass(frozen=True, slots=True)
    class ShutdownShard:
        shard_id: ShardId
        code: int = 1000


ShardQueuerMessageT = (
    ShardQueuerMessage.Start | ShardQueuerMessage.Shutdown | ShardQueuerMessage.ShutdownShard
)


class ShardClientMessage:
    """Either kind of message a client sends into the bridge."""

    @dataclass(frozen=True, slots=True)
    class Manager:
        message: ShardManagerMessageT

    @dataclass(frozen=True, slots=True)
    class Runner:
        message: ShardRunnerMessageT


ShardClientMessageT = ShardClientMessage.Manager | ShardClientMessage.Runner
