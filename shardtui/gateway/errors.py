"""Errors of the gateway library.

Every message names the problem and, where there is one, what to do about it. None ever contains the
bot token or a payload that could carry it (IDENTIFY and RESUME do).
"""

from __future__ import annotations

from shardtui.gateway.closecodes import FATAL_CLOSES, UNKNOWN_FATAL_ADVICE, UNKNOWN_FATAL_KIND
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


def fatal_error_for_close(code: int, reason: str = "") -> FatalGatewayError:
    """The operator-facing error for a fatal close code. ``reason`` is the server's close reason."""
    policy = FATAL_CLOSES.get(code)
    if policy is None:
        kind, advice = UNKNOWN_FATAL_KIND, UNKNOWN_FATAL_ADVICE
    else:
        kind, advice = policy.kind, policy.advice
    text = f"gateway closed the connection with {describe_close_code(code)}"
    if reason and reason.strip().rstrip(".").lower() not in text.lower():
        text += f" ({reason.strip()[:200]})"
    return FatalGatewayError(kind, code, f"{text}: {advice}")
