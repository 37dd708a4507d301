"""Value parsers: one config value (from the file, a variable or a flag) to its typed form, or a ConfigError.

Every parser takes the raw value and a :class:`KeyContext`. A value from a flag or an environment
variable is text, so there "8" may mean 8 and "none" may mean unset; a value from the file is taken
as the TOML type it has.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shardtui.config.errors import ConfigError, describe, did_you_mean
from shardtui.gateway.protocol import GatewayIntents


@dataclass(slots=True)
class KeyContext:
    """Where a value is being read: for error messages, and whether it came as text."""

    where: str
    key: str
    #: The value came from text (a flag or an environment variable), so "8" may mean 8.
    from_text: bool

    def error(self, expected: str, found: Any, *, hint: str | None = None, raw: bool = False) -> ConfigError:
        return ConfigError(self.where, self.key, expected, found if raw else describe(found), hint=hint)


Parser = Callable[[Any, KeyContext], Any]


def parse_str(value: Any, ctx: KeyContext, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ctx.error("a string", value)
    if not allow_empty and not value.strip():
        raise ctx.error("a non-empty string", value)
    return value


def parse_optional_str(value: Any, ctx: KeyContext) -> str | None:
    # TOML has no null: an empty string (or "none" from a flag) switches an optional value off.
    if isinstance(value, str) and (value == "" or (ctx.from_text and value.lower() == "none")):
        return None
    return parse_str(value, ctx)


def parse_trimmed_str(value: Any, ctx: KeyContext) -> str:
    """A non-empty string without its surrounding blanks."""
    if not isinstance(value, str) or not value.strip():
        raise ctx.error("a non-empty string", value)
    return value.strip()


def parse_bool(value: Any, ctx: KeyContext) -> bool:
    if ctx.from_text and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
    if not isinstance(value, bool):
        raise ctx.error("true or false", value)
    return value


def parse_int(value: Any, ctx: KeyContext, *, lo: int | None = None, hi: int | None = None) -> int:
    if ctx.from_text and isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ctx.error("an integer", value) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ctx.error("an integer", value)
    _check_range(value, ctx, lo, hi)
    return value


def parse_float(
    value: Any, ctx: KeyContext, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False
) -> float:
    if ctx.from_text and isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ctx.error("a number", value) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ctx.error("a number", value)
    found = value
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ctx.error("a finite number", found)
    if lo_open and lo is not None and value <= lo:
        raise ctx.error(f"a number greater than {_num(lo)}", found)
    try:
        _check_range(value, ctx, None if lo_open else lo, hi)
    except ConfigError:
        raise ctx.error(_range_text(None if lo_open else lo, hi), found) from None
    return value


def parse_positive_seconds(value: Any, ctx: KeyContext) -> float:
    """A duration in seconds above zero (the file's number as it is; no text forms)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ctx.error("a positive number of seconds", value)
    return float(value)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _range_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"a value from {_num(lo)} to {_num(hi)}"
    if lo is not None:
        return f"a value of at least {_num(lo)}"
    return f"a value of at most {_num(hi or 0)}"


def _check_range(value: float, ctx: KeyContext, lo: float | None, hi: float | None) -> None:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ctx.error(_range_text(lo, hi), value)


def ranged_int(lo: int | None = None, hi: int | None = None) -> Parser:
    return lambda v, c: parse_int(v, c, lo=lo, hi=hi)


def positive_float(v: Any, c: KeyContext) -> float:
    return parse_float(v, c, lo=0.0, lo_open=True)


def non_negative_float(v: Any, c: KeyContext) -> float:
    return parse_float(v, c, lo=0.0)


def optional_positive_float(v: Any, c: KeyContext) -> float | None:
    if isinstance(v, str) and v.strip().lower() in ("", "none", "auto"):
        return None
    return positive_float(v, c)


def parse_choice(value: Any, ctx: KeyContext, choices: tuple[str, ...]) -> str:
    expected = "one of " + ", ".join(f'"{c}"' for c in choices)
    if not isinstance(value, str):
        raise ctx.error(expected, value)
    if value not in choices:
        lowered = value.strip().lower()
        if lowered in choices:
            return lowered
        raise ctx.error(expected, value, hint=did_you_mean(value, choices))
    return value


def parse_optional_choice(value: Any, ctx: KeyContext, choices: tuple[str, ...]) -> str | None:
    if isinstance(value, str) and value.strip().lower() in ("", "none"):
        return None
    return parse_choice(value, ctx, choices)


def parse_names(value: Any, ctx: KeyContext) -> list[str]:
    """A list of words: an array in the file, comma-separated text from a flag or variable."""
    if ctx.from_text and isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ctx.error("an array of strings", value)
    return list(value)


def parse_intents(value: Any, ctx: KeyContext) -> list[str]:
    names = parse_names(value, ctx)
    if not names:
        raise ctx.error('at least one intent name (or "default")', value)
    known = ["default", "all", "privileged", *(m.lower() for m in GatewayIntents.__members__)]
    for name in names:
        try:
            GatewayIntents.from_names([name])
        except ValueError:
            raise ctx.error(
                "intent names such as default, guilds, guild_messages, message_content",
                f'unknown intent "{name}"',
                hint=did_you_mean(name, known),
                raw=True,
            ) from None
    return names


def parse_privileged_intents(value: Any, ctx: KeyContext) -> list[str]:
    names = parse_intents(value, ctx) if value else []
    for name in names:
        if GatewayIntents.from_names([name]) & ~GatewayIntents.privileged():
            raise ctx.error(
                "privileged intent names (guild_members, guild_presences, message_content)",
                f'non-privileged intent "{name}"',
                raw=True,
            )
    return names


def parse_shard_count(value: Any, ctx: KeyContext) -> int | None:
    """A shard total, or None for "auto"."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    if isinstance(value, str) and not ctx.from_text:
        raise ctx.error('a shard count (integer of at least 1) or "auto"', value)
    return parse_int(value, ctx, lo=1)


_RANGE_RE = re.compile(r"^\s*(\d+)\s*(?:-|\.\.)\s*(\d+)\s*$")


def parse_shard_range(value: Any, ctx: KeyContext, *, example: str = "0-3") -> tuple[int, int] | None:
    """First..last shard id, inclusive, from "first-last", "first..last", "N" or [first, last];
    None for "all" (or ""). The one shard-range parser: ``[gateway]`` and ``[cluster]`` both use it."""
    expected = f'a shard range "first-last" (e.g. "{example}") or [first, last]'
    if isinstance(value, str):
        if value.strip().lower() in ("", "all"):
            return None
        if value.strip().isdigit():
            first = last = int(value)
        else:
            match = _RANGE_RE.match(value)
            if match is None:
                raise ctx.error(expected, value)
            first, last = int(match.group(1)), int(match.group(2))
    elif isinstance(value, list):
        if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ctx.error(expected, value)
        first, last = value
        if first < 0 or last < 0:
            raise ctx.error("non-negative shard ids", value)
    else:
        raise ctx.error(expected, value)
    if first > last:
        raise ctx.error("first <= last", f"{first}-{last}", raw=True)
    return (first, last)


def parse_http_url(value: Any, ctx: KeyContext) -> str | None:
    url = parse_optional_str(value, ctx)
    if url is None:
        return None
    if not re.match(r"^https?://[^/\s]+", url):
        raise ctx.error("an http:// or https:// URL", value)
    return url.rstrip("/")


def parse_env_name(value: Any, ctx: KeyContext) -> str:
    name = parse_str(value, ctx)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ctx.error("an environment variable name (letters, digits, _)", value)
    return name


def parse_handler_spec(value: Any, ctx: KeyContext) -> str | None:
    spec = parse_optional_str(value, ctx)
    if spec is None:
        return None
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", spec.strip()):
        raise ctx.error('"module:callable" (e.g. "mybot.events:on_dispatch")', value)
    return spec.strip()


def parse_listen_address(value: Any, ctx: KeyContext) -> str | None:
    """ "HOST:PORT" (IPv6 as "[::1]:9100"); port 0 picks a free one."""
    text = parse_optional_str(value, ctx)
    if text is None:
        return None
    host, sep, port = text.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ctx.error('"HOST:PORT" (e.g. "127.0.0.1:9100"; IPv6 as "[::1]:9100")', value)
    return text.strip()
