"""What the console needs from the shards' side, declared instead of probed.

``ConsoleManager`` lists exactly what the console (``app.py``, ``control.py``, ``fleet.py``,
``fleet_control.py``) reads and calls on a shard manager; ``shardtui.gateway.manager.ShardManager``
satisfies it (``tests/tui/test_tui_ports.py`` checks every member). A fleet viewer runs no manager:
its ``manager`` is None. ``ConsoleRuntime`` is what the console's runtime worker owns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from shardtui.gateway.alerts import AlertTracker
    from shardtui.gateway.gate import SessionStartLimit
    from shardtui.gateway.messenger import ShardMessenger
    from shardtui.gateway.models import FatalErrorEvent, ShardId, ShardRunnerInfo
    from shardtui.gateway.planner import Plan
    from shardtui.gateway.queuer import QueueStatus
    from shardtui.gateway.reshard import ReshardResult
    from shardtui.gateway.rolling import RollingRestartStatus
    from shardtui.tui.clients import ProxyView


class ConsoleManager(Protocol):
    """The shard manager as the console drives it. Read-only members are properties so a plain
    attribute satisfies them too."""

    # -- what the table and header show ------------------------------------------------------------

    @property
    def runners(self) -> Mapping[ShardId, ShardRunnerInfo]:
        """Every shard in range, from the moment it is queued."""

    @property
    def bot_user(self) -> dict[str, Any] | None:
        """READY's ``user`` once a shard is ready."""

    @property
    def session_start_limit(self) -> SessionStartLimit | None: ...

    @property
    def identifies_saved(self) -> int:
        """Identifies a resumed session saved (the header's "saved" count)."""

    @property
    def fatal_error(self) -> FatalErrorEvent | None:
        """Set when Discord refused the bot; None again once shards were booted after the fix."""

    @property
    def shard_total(self) -> int | None: ...

    @property
    def rolling_status(self) -> RollingRestartStatus | None:
        """The current or last rolling restart, or None."""

    @property
    def can_reshard(self) -> bool:
        """Whether ``reshard`` moves this manager to a new shard total live."""

    @property
    def alerts(self) -> AlertTracker:
        """Open incidents (a fleet member raises its lost-process incidents here too)."""

    def queue_status(self) -> QueueStatus: ...

    def subscribe(self, callback: Callable[[Any], Any]) -> Callable[[], None]:
        """Call ``callback(event)`` for every manager event; returns the unsubscribe function."""

    def plan(self, action: str, shard_ids: Iterable[ShardId]) -> Plan:
        """What ``action`` on ``shard_ids`` would cost (for confirmation dialogs)."""

    def messenger(self, shard_id: ShardId) -> ShardMessenger | None:
        """The shard's command handle, or None while it has no runner."""

    # -- what the actions do ------------------------------------------------------------------------

    async def restart(self, shard_id: ShardId, *, force_identify: bool = False) -> None: ...

    async def shutdown(self, shard_id: ShardId) -> None: ...

    async def boot(self, shard_id: ShardId) -> None: ...

    async def shutdown_all(self) -> None: ...

    async def rolling_restart(
        self, *, force_identify: bool = False, shard_ids: Iterable[ShardId] | None = None
    ) -> RollingRestartStatus: ...

    def abort_rolling_restart(self) -> bool: ...

    async def reshard(self, new_total: int) -> ReshardResult:
        """Only called when ``can_reshard``."""


class ConsoleRuntime(Protocol):
    """What the console's runtime worker owns from start to clean shutdown."""

    @property
    def mode(self) -> str:
        """The gateway mode shown in the header ("sandbox" or "discord")."""

    @property
    def manager(self) -> ConsoleManager: ...

    @property
    def proxy(self) -> ProxyView | None:
        """The gateway proxy bots attach to, when ``[proxy] listen`` is set."""

    async def start(self) -> None: ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
        /,
    ) -> Any: ...


__all__ = ["ConsoleManager", "ConsoleRuntime"]
