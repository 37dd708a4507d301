"""How a configuration problem is said: one line naming where, which key, what was expected and found."""

from __future__ import annotations

import difflib
from typing import Any


class ConfigError(Exception):
    """A configuration problem, said in one line: where, which key, what was expected, what was found."""

    def __init__(
        self,
        where: str,
        key: str | None,
        expected: str | None = None,
        found: str | None = None,
        *,
        hint: str | None = None,
        message: str | None = None,
    ) -> None:
        self.where = where
        self.key = key
        self.expected = expected
        self.found = found
        self.hint = hint
        if message is None:
            message = f"expected {expected}, found {found}"
        parts = [where] + ([key] if key else []) + [message]
        text = ": ".join(parts)
        if hint:
            text += f" ({hint})"
        super().__init__(" ".join(text.split("\n")))


def where_of(source: str) -> str:
    """A provenance as the first word of an error: a file path, "command line --flag" or "environment X"."""
    if source.startswith("--"):
        return f"command line {source}"
    if source.startswith("env "):
        return f"environment {source[4:]}"
    return source


def describe(value: Any) -> str:
    """How a found value is shown in an error: its TOML type and value."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, str):
        return f'string "{value}"' if value else "an empty string"
    if isinstance(value, list):
        return f"array {_short(value)}"
    if isinstance(value, dict):
        return "a table"
    return f"{type(value).__name__} {value!r}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def closest(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """The choice ``word`` most likely meant: a unique prefix, else the nearest by difflib, else None."""
    prefixed = [c for c in choices if word and c.lower().startswith(word.lower())]
    if len(prefixed) == 1:
        return prefixed[0]
    match = difflib.get_close_matches(word.lower(), [c.lower() for c in choices], n=1, cutoff=0.6)
    if not match:
        return None
    for choice in choices:
        if choice.lower() == match[0]:
            return choice
    return None


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """``did you mean "x"?`` for the choice closest to ``word`` (a unique prefix, else difflib), or None."""
    best = closest(word, choices)
    return f'did you mean "{best}"?' if best else None
