"""shardtui's gateway library: serenity's gateway bridge (manager, queuer, runners) in asyncio.

Names are loaded on first use so that importing one piece does not import them all.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # protocol facts
    "Opcode": "protocol",
    "CloseCode": "protocol",
    "GatewayIntents": "protocol",
    "ActivityType": "protocol",
    "Status": "protocol",
    # value types and events
    "ShardId": "models",
    "ConnectionStage": "models",
    "ShardHealth": "models",
    "Activity": "models",
    "Presence": "models",
    "Dispatch": "models",
    "ShardRunnerInfo": "models",
    "ShardStageUpdateEvent": "models",
    "ShardInfoUpdateEvent": "models",
    "ShardLogEvent": "models",
    "FatalErrorEvent": "models",
    "AlertKind": "models",
    "AlertEvent": "models",
    "AlertClearedEvent": "models",
    "ReshardSwitchEvent": "models",
    "AlertTracker": "alerts",
    "WedgedHealer": "healing",
    # messages
    "ShardManagerMessage": "messages",
    "ShardRunnerMessage": "messages",
    "ShardQueuerMessage": "messages",
    "ShardClientMessage": "messages",
    # identify gate
    "IdentifyGate": "gate",
    "SessionStartLimit": "gate",
    "InMemoryIdentifyGate": "gate",
    "IdentifyGateDefaults": "gate",
    # what each close code means
    "ClosePolicy": "closecodes",
    "Scope": "closecodes",
    "CLOSE_POLICIES": "closecodes",
    "FATAL_CLOSES": "closecodes",
    # protocol state machine and I/O
    "Shard": "shard",
    "ShardAction": "shard",
    "SessionState": "shard",
    "ShardRunner": "runner",
    "ShardRunnerOptions": "runner",
    "ShardMessenger": "messenger",
    # queuer and manager
    "ShardQueuer": "queuer",
    "ShardManager": "manager",
    "ShardManagerOptions": "options",
    "EventBus": "events",
    "ShardManagerMonitor": "monitor",
    "Plan": "planner",
    "GatewayError": "errors",
    "FatalGatewayError": "errors",
    # zero-downtime: persisted sessions, rolling restart, live reshard
    "SessionRestore": "sessions",
    "RollingRestartStatus": "rolling",
    "RollingState": "rolling",
    "ReshardResult": "reshard",
    "event_identity": "reshard",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'shardtui.gateway' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"shardtui.gateway.{module}"), name)
    globals()[name] = value
    return value
