"""Which console themes there are, found without Textual: the config check needs their names, not them.

The theme files' one home is the repository's top-level ``themes/``; a wheel (``pip install .``) carries
them as ``shardtui/themes`` (pyproject maps the directory there), an editable checkout reads them where
they are.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import shardtui

DEFAULT_THEME = "shardtui-dark"


def _shipped_themes_dir() -> Path:
    package = Path(shardtui.__file__).resolve().parent
    installed = package / "themes"
    if installed.is_dir():
        return installed
    return package.parent / "themes"


#: Where the shipped theme files are read from: the installed package's, else the checkout's ``themes/``.
THEMES_DIR = _shipped_themes_dir()


def is_theme_path(choice: str) -> bool:
    """``ui.theme`` names a file (checked when the console loads it) rather than a shipped theme."""
    return choice.endswith(".toml") or "/" in choice


def theme_names(directory: Path = THEMES_DIR) -> set[str]:
    """The names ``ui.theme`` may give: each file's ``name`` and its file stem. A file that cannot be
    used still counts, so the console can say what is wrong with it instead of calling it unknown."""
    names = {DEFAULT_THEME}
    if not directory.is_dir():
        return names
    for path in directory.glob("*.toml"):
        names.add(path.stem)
        try:
            name = tomllib.loads(path.read_text(encoding="utf-8")).get("name")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        if isinstance(name, str) and name.strip():
            names.add(name.strip())
    return names


__all__ = ["DEFAULT_THEME", "THEMES_DIR", "is_theme_path", "theme_names"]
