"""An embedded Discord gateway: REST, WebSocket gateway, Discord's limits, traffic and fault injection.

Shares only :mod:`shardtui.gateway.protocol` with the client library, never its state machine.

Names are loaded on first use: the config reads ``shardtui.sandbox.settings`` and must not pull in the
server (aiohttp) to do so.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .accounting import EVENT_ID_KEY, DeliveryReport, SentEvent, compare_delivery
    from .server import Sandbox
    from .settings import FAULT_KINDS, SandboxSettings, ScheduledFault
    from .standalone import run_standalone

_EXPORTS: dict[str, str] = {
    "EVENT_ID_KEY": "accounting",
    "DeliveryReport": "accounting",
    "SentEvent": "accounting",
    "compare_delivery": "accounting",
    "FAULT_KINDS": "settings",
    "Sandbox": "server",
    "SandboxSettings": "settings",
    "ScheduledFault": "settings",
    "run_standalone": "standalone",
}

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'shardtui.sandbox' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"shardtui.sandbox.{module}"), name)
    globals()[name] = value
    return value
