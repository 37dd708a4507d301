"""shardtui.server may use only the library's protocol constants (and aio.wait_for)."""

from __future__ import annotations

import ast
from pathlib import Path

import shardtui.server

ALLOWED = {"shardtui.gateway.protocol", "shardtui.gateway.aio"}


def shardtui_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("shardtui"))
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("shardtui")
        ):
            names.add(node.module or "")
    return names


def test_server_layer_imports_only_protocol_constants() -> None:
    package = Path(shardtui.server.__file__).parent
    found = {p.name: shardtui_imports(p) - ALLOWED for p in sorted(package.glob("*.py"))}
    assert len(found) >= 5
    assert {name: bad for name, bad in found.items() if bad} == {}


def test_sandbox_builds_on_the_server_layer() -> None:
    sandbox = Path(shardtui.server.__file__).parent.parent / "sandbox"
    assert "shardtui.server" in shardtui_imports(sandbox / "gateway.py")
