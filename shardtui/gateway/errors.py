"""Errors of the gateway library.

Every message names the problem and, where there is one, what to do about it. None ever contains the
bot token or a payload that could carry it (IDENTIFY and RESUME do).
"""

from __future__ import annotations

from typing import Final

from shardtui.gateway.protocol import MAX_CLIENT_PAYLOAD_BYTES, describe_close_code


class GatewayError(Exception):
    """Base class of every error the gateway library raises."""


class DecompressionError(GatewayError):
    """A transport-compressed frame could not be inflated; the connection's stream is unusable."""

    def __init__(self, compression: str, detail: str) -> None:
        self.compression = compression
        self.detail = detail
        super().__init__(f"could not inflate a {compression} gateway frame: {detail}")


class PayloadTooLarge(GatewayError, ValueError):
    """An outgoing command encodes to more than Discord's 4096 bytes (Discord would close with 4002)."""

    def __init__(self, op: int | None, size: int, limit: int = MAX_CLIENT_PAYLOAD_BYTES) -> None:
        self.op = op
        self.size = size
        self.limit = limit
        super().__init__(
            f"gateway command op {op} is {size} bytes encoded, over Discord's limit of {limit} bytes; "
            "it was not sent"
        )


class FatalGatewayError(GatewayError):
    """Discord refused the shard in a way reconnecting cannot fix (bad token, intents, shard count, ...).

    ``kind`` is one of the stable words of :class:`shardtui.gateway.models.FatalErrorEvent`.
    """

    def __init__(self, kind: str, code: int | None, message: str) -> None:
        self.kind = kind
        self.code = code
        self.message = message
        super().__init__(message)

    def __repr__(self) -> str:
        return f"FatalGatewayError(kind={self.kind!r}, code={self.code!r}, message={self.message!r})"


#: close code -> (kind, what the operator should do)
FATAL_CLOSE_KINDS: Final[dict[int, tuple[str, str]]] = {
    4004: (
        "authentication",
        "the bot token was rejected; check the token (it may have been reset) and restart",
    ),
    4010: (
        "invalid_shard",
        "the shard id or shard count was refused; use the count /gateway/bot recommends "
        "(a multiple of max_concurrency for large bots)",
    ),
    4011: (
        "sharding_required",
        "a shard would hold more than 2500 guilds; run more shards",
    ),
    4012: (
        "invalid_api_version",
        "the gateway API version was refused; use v10",
    ),
    4013: (
        "invalid_intents",
        "the intents value contains bits that are not valid intents; fix the configured intents",
    ),
    4014: (
        "disallowed_intents",
        "a privileged intent (guild_members, guild_presences or message_content) is not enabled for "
        "this bot; enable it in the Developer Portal or remove it from the configured intents",
    ),
}


def fatal_error_for_close(code: int, reason: str = "") -> FatalGatewayError:
    """The operator-facing error for a fatal close code. ``reason`` is the server's close reason."""
    kind, advice = FATAL_CLOSE_KINDS.get(code, ("gateway", "the gateway refused the shard; not retrying"))
    text = f"gateway closed the connection with {describe_close_code(code)}"
    if reason and reason.strip().rstrip(".").lower() not in text.lower():
        text += f" ({reason.strip()[:200]})"
    return FatalGatewayError(kind, code, f"{text}: {advice}")
