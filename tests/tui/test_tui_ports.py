"""The console's declared interfaces: ``ShardManager`` (and the snapshot fleet's ``FixedManager``) are
``ConsoleManager``s, ``Runtime`` is a ``ConsoleRuntime``, member by member and signature by signature
(``runtime_checkable`` would only check that the names exist), and the console acts on what the
declared members say instead of probing for them."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from support.fixed_fleet import FROZEN_NOW, FixedManager, FixedRuntime, fixed_fleet
from textual.pilot import Pilot

from shardtui.config import Config
from shardtui.gateway.manager import ShardManager, ShardManagerOptions
from shardtui.gateway.models import ShardId
from shardtui.gateway.protocol import GatewayIntents
from shardtui.gateway.queuer import QueueStatus
from shardtui.runtime import Runtime
from shardtui.tui.app import ShardTUI
from shardtui.tui.control import LocalControl
from shardtui.tui.ports import ConsoleManager, ConsoleRuntime


def members(protocol: type) -> set[str]:
    dunders = ("__aenter__", "__aexit__")
    names = {name for name in vars(protocol) if not name.startswith("_") or name in dunders}
    names |= set(getattr(protocol, "__annotations__", {}))
    return names - {"__protocol_attrs__"}


def real_manager() -> ShardManager:
    options = ShardManagerOptions(
        token="x" * 24, intents=GatewayIntents.default(), rest_url="http://127.0.0.1:9", health_interval=0.0
    )
    return ShardManager(options)


MISSING = object()


def mismatches(protocol: type, implementation: object) -> list[str]:
    """Every way ``implementation`` falls short of ``protocol``: a missing member, a method that is
    not one (or not async where the protocol's is), or a parameter the protocol passes that the
    implementation does not take (or takes differently)."""
    problems: list[str] = []
    for name in sorted(members(protocol)):
        declared = inspect.getattr_static(protocol, name, None)
        # Static lookup: a property must not run (Runtime.manager raises before the runtime opened).
        if inspect.getattr_static(implementation, name, MISSING) is MISSING:
            problems.append(f"{name}: missing")
            continue
        if declared is None or isinstance(declared, property):
            continue  # data: present is all a read-only property asks
        actual = getattr(implementation, name)
        if not callable(actual):
            problems.append(f"{name}: not callable")
            continue
        if inspect.iscoroutinefunction(declared) != inspect.iscoroutinefunction(actual):
            problems.append(f"{name}: async mismatch")
        wanted = list(inspect.signature(declared).parameters.values())[1:]  # without self
        offered = dict(inspect.signature(actual).parameters)
        positional = [p for p in wanted if p.kind is inspect.Parameter.POSITIONAL_ONLY]
        if positional:
            # Called positionally (``__aexit__(type, exc, tb)``): any names, enough positional slots.
            slots = [
                p
                for p in offered.values()
                if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            ]
            if len(slots) < len(positional) and not any(
                p.kind is inspect.Parameter.VAR_POSITIONAL for p in offered.values()
            ):
                problems.append(f"{name}: takes fewer than {len(positional)} positional arguments")
            for slot in slots[: len(positional)]:
                del offered[slot.name]
            wanted = [p for p in wanted if p.kind is not inspect.Parameter.POSITIONAL_ONLY]
        for param in wanted:
            got = offered.get(param.name)
            if got is None:
                problems.append(f"{name}: no parameter {param.name}")
            elif got.kind is not param.kind and param.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
                kinds = f"{got.kind.description}, not {param.kind.description}"
                problems.append(f"{name}: {param.name} is {kinds}")
            elif param.default is not inspect.Parameter.empty and got.default != param.default:
                problems.append(f"{name}: {param.name} defaults to {got.default!r}, not {param.default!r}")
        extra = [
            p.name
            for p in offered.values()
            if p.name not in {w.name for w in wanted}
            and p.default is inspect.Parameter.empty
            and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ]
        if extra:
            problems.append(f"{name}: also requires {', '.join(extra)}")
    return problems


def test_the_protocol_lists_what_the_console_uses() -> None:
    # What app.py, control.py, fleet.py and fleet_control.py read and call on the manager.
    assert members(ConsoleManager) == {
        "runners", "bot_user", "session_start_limit", "identifies_saved", "fatal_error", "shard_total",
        "rolling_status", "can_reshard", "alerts", "queue_status", "subscribe", "plan", "messenger",
        "restart", "shutdown", "boot", "shutdown_all", "rolling_restart", "abort_rolling_restart",
        "reshard",
    }  # fmt: skip


def test_shard_manager_is_a_console_manager() -> None:
    manager: ConsoleManager = real_manager()
    assert mismatches(ConsoleManager, manager) == []
    assert manager.can_reshard
    assert isinstance(manager.queue_status(), QueueStatus)


def test_the_snapshot_fleet_is_a_console_manager() -> None:
    manager: ConsoleManager = FixedManager(fixed_fleet(2))
    assert mismatches(ConsoleManager, manager) == []
    assert not manager.can_reshard


def test_runtime_is_a_console_runtime() -> None:
    runtime: ConsoleRuntime = Runtime(Config())
    assert mismatches(ConsoleRuntime, runtime) == []
    assert runtime.mode == "sandbox"
    assert mismatches(ConsoleRuntime, FixedRuntime(FixedManager(fixed_fleet(1)))) == []


def test_the_checker_catches_a_manager_that_falls_short() -> None:
    class Short:
        runners: dict[ShardId, Any] = {}

        async def restart(self, shard_id: ShardId) -> None: ...

        def boot(self, shard_id: ShardId) -> None: ...

    problems = mismatches(ConsoleManager, Short())
    assert "restart: no parameter force_identify" in problems
    assert "boot: async mismatch" in problems
    assert "queue_status: missing" in problems
    assert not any(p.startswith("runners") for p in problems)


class Host:
    def __init__(self, manager: ConsoleManager | None) -> None:
        from shardtui.tui.model import ConsoleModel

        self.manager = manager
        self.model = ConsoleModel()

    def notify(self, message: str, **_: Any) -> None:
        raise AssertionError(f"unexpected notification {message!r}")


def test_live_reshard_is_offered_by_what_the_manager_declares() -> None:
    assert LocalControl(Host(real_manager())).reshard_unavailable() is None
    assert LocalControl(Host(real_manager())).shard_total() is None  # not initialized: no total yet
    assert LocalControl(Host(FixedManager(fixed_fleet(3)))).reshard_unavailable() == (
        "This shard manager cannot reshard live."
    )
    assert LocalControl(Host(FixedManager(fixed_fleet(3)))).shard_total() == 3
    assert LocalControl(Host(None)).reshard_unavailable() == "This shard manager cannot reshard live."
    assert LocalControl(Host(None)).rolling_progress() is None


@pytest.mark.asyncio
async def test_console_reads_only_declared_members_and_offers_no_reshard_it_cannot_do() -> None:
    manager = FixedManager(fixed_fleet(4))
    manager.identifies_saved = 3
    app = ShardTUI(Config(), runtime_factory=lambda _c: FixedRuntime(manager), clock=lambda: FROZEN_NOW)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot, app)
        assert app.model.identifies_saved == 3
        assert app.model.bot_user == "shardbot"
        assert app.model.mode == "sandbox"
        app.action_reshard()
        await pilot.pause()
        shown = [n.message for n in app._notifications]
        assert "This shard manager cannot reshard live." in shown
        assert app.refresh_errors == 0


async def settle(pilot: Pilot, app: ShardTUI) -> None:
    for _ in range(200):
        if app.manager is not None and len(app.model.rows) == 4:
            return
        await pilot.pause(0.02)
    raise AssertionError("the fixed fleet never showed")
