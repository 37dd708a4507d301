"""Theme files: the shipped ones load with every stage colour; broken ones fall back to the default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shardtui.tui.themes import (
    DEFAULT_THEME,
    STAGE_VARIABLES,
    THEMES_DIR,
    ThemeError,
    load_theme_file,
    load_themes,
    resolve_theme,
)


def test_shipped_themes_load_with_stage_variables() -> None:
    loaded = load_themes(THEMES_DIR)
    assert loaded.errors == []
    assert {"shardtui-dark", "shardtui-light", "shardtui-high-contrast"} <= set(loaded.themes)
    assert loaded.themes["shardtui-light"].dark is False
    for theme in loaded.themes.values():
        assert set(STAGE_VARIABLES) <= set(theme.variables)
    # Each shipped theme sets its own stage colours rather than inheriting the fallbacks.
    light = loaded.themes["shardtui-light"].variables["stage-connected"]
    contrast = loaded.themes["shardtui-high-contrast"].variables["stage-connected"]
    assert light != contrast


def test_broken_theme_file_reports_one_line_and_falls_back(tmp_path: Path) -> None:
    (tmp_path / "good.toml").write_text('name = "good"\nprimary = "#112233"\n')
    (tmp_path / "bad.toml").write_text('name = "bad"\nprimary = "not-a-colour"\n')
    (tmp_path / "garbled.toml").write_text("name = [unterminated\n")
    loaded = load_themes(tmp_path)
    assert set(loaded.themes) == {"good", DEFAULT_THEME}
    assert len(loaded.errors) == 2
    assert any("bad.toml" in e and "'not-a-colour' is not a colour" in e for e in loaded.errors)
    assert any("garbled.toml" in e and "not valid TOML" in e for e in loaded.errors)
    theme, problem = resolve_theme("bad", loaded)
    assert theme.name == DEFAULT_THEME
    assert problem is not None and "bad.toml" in problem and f"using {DEFAULT_THEME}" in problem


def test_unknown_theme_name_and_theme_path(tmp_path: Path) -> None:
    loaded = load_themes(THEMES_DIR)
    theme, problem = resolve_theme("solarized", loaded)
    assert theme.name == DEFAULT_THEME and problem is not None and "unknown theme 'solarized'" in problem
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\nprimary = "#abcdef"\n[variables]\nstage-connected = "#00ff00"\n')
    theme, problem = resolve_theme(str(path), loaded)
    assert problem is None and theme.name == "mine"
    assert theme.variables["stage-connected"] == "#00ff00"
    assert theme.variables["stage-failed"] == STAGE_VARIABLES["stage-failed"]


def test_theme_validation_messages(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text('name = "x"\nprimary = "#fff"\ncolour = "red"\n')
    with pytest.raises(ThemeError, match="unknown key"):
        load_theme_file(path)
    path.write_text('primary = "#fff"\n')
    with pytest.raises(ThemeError, match="'name' must be"):
        load_theme_file(path)
    path.write_text('name = "x"\nprimary = "#fff"\n[variables]\nstage-resuming = 3\n')
    with pytest.raises(ThemeError, match=r"variables\.stage-resuming"):
        load_theme_file(path)


def test_no_hex_colours_in_tcss() -> None:
    tcss = (Path(__file__).resolve().parents[2] / "shardtui" / "tui" / "console.tcss").read_text()
    declarations = [line.split(":", 1)[1] for line in tcss.splitlines() if ":" in line]
    assert declarations and not any(re.search(r"#[0-9a-fA-F]{3,8}", value) for value in declarations)
