"""The server side of Discord's gateway protocol, shared by the sandbox and the proxy.

Layer rule: imports only `shardtui.gateway.protocol` (constants) and `shardtui.gateway.aio`
from the library, never its state machine, the sandbox, the proxy or the console.
"""

from __future__ import annotations

from .backend import Accepted, AuthResult, GatewayBackend, InvalidSession, Rejected
from .connection import (
    AuthState,
    CloseConnection,
    CommandReceived,
    HeartbeatReceived,
    IdentifyReceived,
    ResumeReceived,
    SendPayload,
    ServerConnection,
    control,
)
from .transport import Compressor, QueueLimits, WebSocketWriter
from .validate import (
    IdentifyRequest,
    MemberRequest,
    ProtocolViolation,
    ResumeRequest,
    VoiceStateRequest,
    validate_presence,
)
from .websocket import GatewayServer, GatewaySocket, ServerOptions

__all__ = [
    "Accepted",
    "AuthResult",
    "AuthState",
    "CloseConnection",
    "CommandReceived",
    "Compressor",
    "GatewayBackend",
    "GatewayServer",
    "GatewaySocket",
    "HeartbeatReceived",
    "IdentifyReceived",
    "IdentifyRequest",
    "InvalidSession",
    "MemberRequest",
    "ProtocolViolation",
    "QueueLimits",
    "Rejected",
    "ResumeReceived",
    "ResumeRequest",
    "SendPayload",
    "ServerConnection",
    "ServerOptions",
    "VoiceStateRequest",
    "WebSocketWriter",
    "control",
    "validate_presence",
]
