"""An embedded Discord gateway: REST, WebSocket gateway, Discord's limits, traffic and fault injection.

Shares only :mod:`shardtui.gateway.protocol` with the client library, never its state machine.
"""

from __future__ import annotations

from .accounting import EVENT_ID_KEY, DeliveryReport, SentEvent, compare_delivery
from .faults import FAULT_KINDS
from .server import Sandbox
from .settings import SandboxSettings, ScheduledFault
from .standalone import run_standalone

__all__ = [
    "EVENT_ID_KEY",
    "FAULT_KINDS",
    "DeliveryReport",
    "Sandbox",
    "SandboxSettings",
    "ScheduledFault",
    "SentEvent",
    "compare_delivery",
    "run_standalone",
]
