"""Console themes: TOML files under ``themes/`` (shipped in the package) loaded as Textual ``Theme``s.

Shard-stage and health colours are theme *variables* (``$stage-connected`` …) so TCSS and the
table cells take them from whichever theme is active; a theme file may set any of them and the
defaults below fill the rest.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from textual.color import Color, ColorParseError
from textual.theme import Theme

from shardtui.tui.theme_names import DEFAULT_THEME, THEMES_DIR, is_theme_path

#: Fallbacks for every variable the console uses; a theme file overrides any of them.
STAGE_VARIABLES: dict[str, str] = {
    "stage-connected": "#58c472",
    "stage-connecting": "#7fb2e5",
    "stage-handshake": "#7fb2e5",
    "stage-identifying": "#c9a0f0",
    "stage-resuming": "#f0c674",
    "stage-queued": "#8a93a0",
    "stage-disconnected": "#f0a830",
    "stage-stopped": "#8a93a0",
    "stage-failed": "#ff5f6d",
    "health-ok": "#58c472",
    "health-quiet": "#d8c27a",
    "health-wedged": "#ff4fa0",
    "health-down": "#f0a830",
    "health-failed": "#ff5f6d",
    "marked": "#f0a830",
}

#: Used when the default theme's own file is missing or broken, so the console always has one.
FALLBACK_THEME = Theme(
    name=DEFAULT_THEME,
    primary="#4f9dde",
    secondary="#2b6ca3",
    accent="#f0a830",
    warning="#f0a830",
    error="#e0525f",
    success="#58c472",
    foreground="#dcdfe4",
    background="#15181d",
    surface="#1d2127",
    panel="#252a32",
    dark=True,
    variables=dict(STAGE_VARIABLES),
)

_COLOUR_FIELDS = (
    "primary",
    "secondary",
    "warning",
    "error",
    "success",
    "accent",
    "foreground",
    "background",
    "surface",
    "panel",
    "boost",
)
_OTHER_FIELDS = {"name", "dark", "luminosity_spread", "text_alpha", "variables"}


class ThemeError(ValueError):
    """A theme file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class ThemeLoad:
    themes: dict[str, Theme]
    #: One line per broken file.
    errors: list[str]


def load_theme_file(path: Path) -> Theme:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ThemeError(f"theme {path}: cannot read it ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ThemeError(f"theme {path}: not valid TOML ({exc})") from None
    return theme_from_mapping(data, str(path))


def theme_from_mapping(data: dict, where: str) -> Theme:
    unknown = set(data) - set(_COLOUR_FIELDS) - _OTHER_FIELDS
    if unknown:
        raise ThemeError(f"theme {where}: unknown key(s) {', '.join(sorted(unknown))}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ThemeError(f"theme {where}: 'name' must be a non-empty string")
    if "primary" not in data:
        raise ThemeError(f"theme {where}: 'primary' colour is required")
    colours: dict[str, str] = {}
    for key in _COLOUR_FIELDS:
        if key in data:
            colours[key] = _colour(data[key], f"theme {where}: {key}")
    variables_raw = data.get("variables", {})
    if not isinstance(variables_raw, dict):
        raise ThemeError(f"theme {where}: [variables] must be a table")
    variables = dict(STAGE_VARIABLES)
    for key, value in variables_raw.items():
        if key in STAGE_VARIABLES:
            variables[key] = _colour(value, f"theme {where}: variables.{key}")
        elif isinstance(value, str):
            variables[key] = value
        else:
            raise ThemeError(f"theme {where}: variables.{key} must be a string")
    dark = data.get("dark", True)
    if not isinstance(dark, bool):
        raise ThemeError(f"theme {where}: 'dark' must be true or false")
    extra: dict[str, float] = {}
    for key in ("luminosity_spread", "text_alpha"):
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ThemeError(f"theme {where}: '{key}' must be a number")
            extra[key] = float(value)
    return Theme(name=name.strip(), dark=dark, variables=variables, **colours, **extra)


def _colour(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ThemeError(f"{where} must be a colour string, got {value!r}")
    try:
        Color.parse(value)
    except ColorParseError:
        raise ThemeError(f"{where}: {value!r} is not a colour") from None
    return value


def load_themes(directory: Path = THEMES_DIR) -> ThemeLoad:
    """Every ``*.toml`` theme in ``directory``, plus the fallback default if its file failed."""
    themes: dict[str, Theme] = {}
    errors: list[str] = []
    if directory.is_dir():
        for path in sorted(directory.glob("*.toml")):
            try:
                theme = load_theme_file(path)
            except ThemeError as exc:
                errors.append(str(exc))
                continue
            themes[theme.name] = theme
    themes.setdefault(DEFAULT_THEME, FALLBACK_THEME)
    return ThemeLoad(themes, errors)


def resolve_theme(choice: str, loaded: ThemeLoad) -> tuple[Theme, str | None]:
    """The theme ``choice`` names (a loaded theme's name or a path to a .toml file).

    Returns the theme and, when it had to fall back to the default, the one line saying why.
    """
    choice = (choice or DEFAULT_THEME).strip()
    if choice in loaded.themes:
        return loaded.themes[choice], None
    if is_theme_path(choice):
        try:
            return load_theme_file(Path(choice).expanduser()), None
        except ThemeError as exc:
            return loaded.themes[DEFAULT_THEME], f"{exc}; using {DEFAULT_THEME}"
    broken = [e for e in loaded.errors if Path(e.split(":", 1)[0].removeprefix("theme ")).stem == choice]
    if broken:
        return loaded.themes[DEFAULT_THEME], f"{broken[0]}; using {DEFAULT_THEME}"
    names = ", ".join(sorted(loaded.themes))
    return loaded.themes[DEFAULT_THEME], f"unknown theme {choice!r} (have: {names}); using {DEFAULT_THEME}"
