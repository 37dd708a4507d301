"""The fleet: shards spread over processes (and machines) coordinated through Redis.

Needs the ``redis`` package (``pip install shardtui[redis]``); ``shardtui.gateway`` never imports it.
"""

from shardtui.config import ClusterConfig, describe_redis_url, parse_cluster_config
from shardtui.fleet.commands import ACTIONS, CommandListener, CommandResult, CommandStatus, send_command
from shardtui.fleet.gate import RedisIdentifyGate
from shardtui.fleet.keys import FleetKeys
from shardtui.fleet.node import FleetControl, FleetNode, ShardRangeConflictError, connect_redis
from shardtui.fleet.state import (
    LOST,
    FleetProcess,
    FleetShard,
    FleetSnapshot,
    FleetView,
    NameInUseError,
    ProcessState,
    StatePublisher,
)

__all__ = [
    "ACTIONS",
    "LOST",
    "ClusterConfig",
    "CommandListener",
    "CommandResult",
    "CommandStatus",
    "FleetControl",
    "FleetKeys",
    "FleetNode",
    "FleetProcess",
    "FleetShard",
    "FleetSnapshot",
    "FleetView",
    "NameInUseError",
    "ProcessState",
    "RedisIdentifyGate",
    "ShardRangeConflictError",
    "StatePublisher",
    "connect_redis",
    "describe_redis_url",
    "parse_cluster_config",
    "send_command",
]
