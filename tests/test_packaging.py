"""A wheel carries everything the console reads at run time, and an installed (not editable) copy finds it.

The theme files live only in the repository's top-level ``themes/``; pyproject maps them into the
package as ``shardtui/themes``. These tests build a real wheel from a copy of the source (so the shared
checkout gets no ``build/``), install it into a throwaway venv and load the themes from there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHIPPED_THEMES = ("shardtui-dark.toml", "shardtui-high-contrast.toml", "shardtui-light.toml")


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=90, **kwargs)
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def _borrow_site_packages(python: Path) -> None:
    """Let the throwaway venv import what this test run can (textual & co., and pip); only shardtui
    itself comes from the wheel, with no network.

    Not ``--system-site-packages``: when the tests run in a venv (as the README's command does), that
    is the base interpreter's site-packages, without any of the project's dependencies. A .pth file
    naming this run's site-packages directories appends them to the new venv's path, after its own
    site-packages, and without running their .pth files — so this checkout's editable install (a .pth
    hook) does not shadow the installed wheel.
    """
    dirs = [
        entry
        for entry in sys.path
        if Path(entry).name in ("site-packages", "dist-packages") and Path(entry).is_dir()
    ]
    assert dirs, f"no site-packages on this run's path: {sys.path}"
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
    ).stdout.strip()
    (Path(purelib) / "borrowed-test-deps.pth").write_text("\n".join(dirs) + "\n")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built the way ``pip install .`` builds one (its own build environment)."""
    root = tmp_path_factory.mktemp("packaging")
    src = root / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("shardtui", "themes"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "MANIFEST.in"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, src / name)
    dist = root / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)])
    (built,) = dist.glob("shardtui-*.whl")
    return built


def test_wheel_carries_themes_stylesheet_and_every_module(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    themes = {name for name in names if name.startswith("shardtui/themes/")}
    assert themes == {f"shardtui/themes/{name}" for name in SHIPPED_THEMES}
    # Every theme the repository has ships (a new file in themes/ needs no packaging change).
    assert {p.name for p in (REPO / "themes").glob("*.toml")} == set(SHIPPED_THEMES)
    assert "shardtui/tui/console.tcss" in names
    # The package list in pyproject is explicit (the themes mapping needs one): nothing left out.
    modules = {
        path.relative_to(REPO).as_posix()
        for path in (REPO / "shardtui").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert modules - names == set()


def test_installed_wheel_loads_its_themes_from_outside_the_repository(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _borrow_site_packages(python)
    install = ["install", "-q", "--no-deps", "--no-index", "--ignore-installed", str(wheel)]
    _run([str(python), "-m", "pip", *install])
    probe = (
        "import json, shardtui\n"
        "from shardtui.tui.themes import FALLBACK_THEME, THEMES_DIR, load_themes\n"
        "loaded = load_themes()\n"
        "print(json.dumps({'package': shardtui.__file__, 'dir': str(THEMES_DIR),\n"
        "    'themes': sorted(loaded.themes), 'errors': loaded.errors,\n"
        "    'dark_from_file': loaded.themes['shardtui-dark'] is not FALLBACK_THEME}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    report = json.loads(_run([str(python), "-c", probe], cwd=outside, env=env).stdout)

    package_dir = Path(report["package"]).parent
    assert package_dir.is_relative_to(venv), report
    assert Path(report["dir"]) == package_dir / "themes"
    assert report["themes"] == ["shardtui-dark", "shardtui-high-contrast", "shardtui-light"]
    assert report["errors"] == []
    assert report["dark_from_file"]
