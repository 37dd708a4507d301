"""The layers of docs/architecture.md, checked on the source: who may import whom.

Read with ``ast`` from the files themselves (every import counts, also those inside functions or
``if TYPE_CHECKING:``), so a forbidden import fails here before it can hide behind a lazy import.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "shardtui"

#: The gateway modules with no client state machine in them: every layer may use them.
SHARED_GATEWAY = frozenset(
    {"shardtui.gateway.protocol", "shardtui.gateway.closecodes", "shardtui.gateway.aio"}
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def imports_of(path: Path) -> frozenset[str]:
    """Every module ``path`` imports, absolute (``from a import b`` counts as ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, node.module] if node.module else base_parts)
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(found)


def sources(subpackage: str) -> list[Path]:
    root = PACKAGE / subpackage
    return sorted(root.rglob("*.py")) if root.exists() else []


def within(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def offending(paths: list[Path], bad) -> list[str]:
    return [
        f"{module_name(path)} imports {name}"
        for path in paths
        for name in sorted(imports_of(path))
        if bad(name)
    ]


def test_the_checker_sees_imports_everywhere() -> None:
    # The checks below are only as good as the import reader: it must see lazy and relative imports.
    probe = PACKAGE / "gateway" / "monitor.py"
    names = imports_of(probe)
    assert "shardtui.gateway.messages" in names
    assert "shardtui.gateway.closecodes.scope_of" in names
    manager = imports_of(PACKAGE / "gateway" / "manager.py")
    assert "shardtui.gateway.runner.ShardRunner" in manager  # imported inside a method there


def test_gateway_imports_no_console_sandbox_server_proxy_or_fleet() -> None:
    forbidden = (
        "textual",
        "shardtui.tui",
        "shardtui.sandbox",
        "shardtui.server",
        "shardtui.proxy",
        "shardtui.fleet",
    )
    assert offending(sources("gateway"), lambda name: within(name, *forbidden)) == []


def test_sandbox_uses_only_the_shared_gateway_modules() -> None:
    def bad(name: str) -> bool:
        return (
            within(name, "shardtui.gateway")
            and not within(name, *SHARED_GATEWAY)
            and name != "shardtui.gateway"
        )

    assert offending(sources("sandbox"), bad) == []
    assert offending(sources("sandbox"), lambda name: within(name, "shardtui.tui", "shardtui.fleet")) == []


def test_server_uses_only_the_shared_gateway_modules() -> None:
    def bad(name: str) -> bool:
        if within(name, "shardtui.sandbox", "shardtui.proxy", "shardtui.tui", "shardtui.fleet"):
            return True
        return (
            within(name, "shardtui.gateway")
            and not within(name, *SHARED_GATEWAY)
            and name != "shardtui.gateway"
        )

    assert offending(sources("server"), bad) == []


def test_proxy_never_imports_the_sandbox() -> None:
    assert offending(sources("proxy"), lambda name: within(name, "shardtui.sandbox")) == []


def test_the_close_code_table_imports_only_protocol() -> None:
    names = imports_of(PACKAGE / "gateway" / "closecodes.py")
    assert [n for n in names if within(n, "shardtui") and not within(n, "shardtui.gateway.protocol")] == []


@pytest.mark.parametrize("helper", ["monitor", "rolling", "reshard", "shardset", "events"])
def test_the_managers_helpers_do_not_import_the_manager(helper: str) -> None:
    # They talk to it through the protocols they declare; importing it back made an import circle.
    names = imports_of(PACKAGE / "gateway" / f"{helper}.py")
    assert not any(within(name, "shardtui.gateway.manager") for name in names)
