"""The console's filter: ``field:value``, a numeric comparison (``latency>200ms``) or plain text,
matched against one shard row."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from shardtui.gateway.models import ConnectionStage, ShardHealth
from shardtui.tui.columns import stage_word

if TYPE_CHECKING:
    from shardtui.tui.model import ShardRow


#: ``field:value`` filters; anything else is plain text matched against every field but the id.
FILTER_FIELDS = ("id", "stage", "health", "close", "error")
#: Every word the stage column can show (the library's stages plus queued, stopped and failed).
STAGE_WORDS = (*(stage.value for stage in ConnectionStage), "queued", "stopped", "failed")
HEALTH_WORDS = ("ok", "quiet", "wedged", "down", "failed")
_FIELD_QUERY = re.compile(r"([a-z]+):(.*)", re.DOTALL)
# One word, an operator, a value: ``latency>0.2``, ``seq >= 100``, ``ev/s<1``.
# The value is one token: text such as "a=b c" (a close reason, say) stays plain text.
_COMPARISON = re.compile(r"([a-z/_]+)\s*(<=|>=|!=|=|<|>)\s*(\S*(?:\s+m?s)?)")
_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "=": operator.eq,
    "!=": operator.ne,
}


def _latency(row: ShardRow) -> float | None:
    return row.info.latency


#: Numeric fields a comparison can use, with what each reads (None: not measured, never matches).
NUMERIC_FIELDS: dict[str, Callable[[ShardRow], float | None]] = {
    "id": lambda row: row.info.shard_id.id,
    "latency": _latency,
    "guilds": lambda row: row.info.guilds,
    "clients": lambda row: row.clients,
    "eps": lambda row: row.info.events_per_second,
    "events": lambda row: row.info.events_received,
    "seq": lambda row: row.info.last_seq,
    "resumes": lambda row: row.info.resumes,
    "reconnects": lambda row: row.info.reconnects,
    "close": lambda row: row.info.last_close_code,
}
#: The column labels an operator sees, as names for the same fields.
_NUMERIC_ALIASES = {"ev/s": "eps", "res": "resumes", "rec": "reconnects"}
_LATENCY_VALUE = re.compile(r"([0-9]*\.?[0-9]+)\s*(ms|s)?")


class FilterError(ValueError):
    """A filter the console cannot apply; the message is shown under the filter box as is."""


@dataclass(frozen=True, slots=True)
class Comparison:
    """``field op number``; latency is in seconds (``200ms`` is read as 0.2)."""

    field: str
    op: str
    number: float

    def matches(self, row: ShardRow) -> bool:
        value = NUMERIC_FIELDS[self.field](row)
        # A shard with no measurement yet (latency before the first ACK, seq before the first
        # dispatch) neither passes nor fails a threshold: it is left out.
        return value is not None and _OPERATORS[self.op](float(value), self.number)


def parse_comparison(query: str) -> Comparison | None:
    """The comparison ``query`` spells, None if it is not one. Raises FilterError for a bad one."""
    found = _COMPARISON.fullmatch(query.strip().lower())
    if found is None:
        return None
    name, op, value = found.group(1), found.group(2), found.group(3).strip()
    field = _NUMERIC_ALIASES.get(name, name)
    if field not in NUMERIC_FIELDS:
        raise FilterError(f"cannot compare {name!r}: use one of {', '.join(NUMERIC_FIELDS)}")
    if not value:
        raise FilterError(f"{name}{op} needs a number")
    if field == "latency":
        number = _latency_seconds(value)
    else:
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None:
        unit = " (seconds, or 200ms)" if field == "latency" else ""
        raise FilterError(f"{name}{op} takes a number{unit}, not {value!r}")
    return Comparison(field, op, number)


def _latency_seconds(value: str) -> float | None:
    found = _LATENCY_VALUE.fullmatch(value)
    if found is None:
        return None
    number = float(found.group(1))
    return number / 1000.0 if found.group(2) == "ms" else number


def parse_filter(query: str) -> tuple[str | None, str]:
    """``(field, value)`` for ``field:value``, ``(None, text)`` for plain text. Raises FilterError."""
    query = query.strip().lower()
    found = _FIELD_QUERY.fullmatch(query)
    if found is None:
        return None, query
    field, value = found.group(1), found.group(2).strip()
    if field not in FILTER_FIELDS:
        raise FilterError(f"unknown field {field!r} ({', '.join(FILTER_FIELDS)})")
    if field in ("id", "close") and value and not value.isdigit():
        raise FilterError(f"{field}: takes a number, not {value!r}")
    # A value no row could ever show would silently empty the table: name the words that exist.
    if field == "stage" and value and not any(value in word for word in STAGE_WORDS):
        raise FilterError(f"no stage {value!r} (stages: {', '.join(STAGE_WORDS)})")
    if field == "health" and value and not any(value in word for word in HEALTH_WORDS):
        raise FilterError(f"no health {value!r} (health: {', '.join(HEALTH_WORDS)})")
    return field, value


RowFilter = Callable[["ShardRow", bool], bool]


@lru_cache(maxsize=64)
def compile_filter(query: str) -> RowFilter:
    """A predicate ``(row, queued) -> bool`` for ``query``, parsed once (the table asks per row).
    Raises FilterError."""
    comparison = parse_comparison(query)
    if comparison is not None:
        return lambda row, _queued: comparison.matches(row)
    field, value = parse_filter(query)
    if not value:
        return lambda _row, _queued: True
    return lambda row, queued: _field_matches(row, field, value, queued)


def check_filter(query: str) -> str | None:
    """Why ``query`` cannot be applied (shown under the filter box), or None."""
    try:
        compile_filter(query)
    except FilterError as error:
        return str(error)
    return None


def _field_matches(row: ShardRow, field: str | None, query: str, queued: bool) -> bool:
    info = row.info
    close = "" if info.last_close_code is None else str(info.last_close_code)
    health = "wedged" if info.health is ShardHealth.WEDGED else info.health.value
    errors = " ".join((info.health_reason, info.last_close_reason, info.fatal_error or "")).lower()
    if field == "id":
        return int(query) == info.shard_id.id
    if field == "close":
        return close == query
    if field == "stage":
        return query in stage_word(info, queued)
    if field == "health":
        return query in health
    if field == "error":
        return query in errors
    if query.isdigit():
        return int(query) == info.shard_id.id or close == query
    return query in " ".join((stage_word(info, queued), health, errors))


def row_matches(row: ShardRow, query: str, queued: bool = False) -> bool:
    """Filter by shard id (a number), stage or health word, close code, or any error text; or by one
    field with ``stage:conn``, ``health:wedged``, ``close:4000``, ``id:3``, ``error:text``; or by a
    comparison such as ``latency>200ms``, ``events<1``, ``seq>=100``."""
    try:
        predicate = compile_filter(query)
    except FilterError:
        # The console never applies a bad filter; anything else calling this gets plain text.
        text = query.strip().lower()
        if not text:
            return True
        return _field_matches(row, None, text, queued)
    return predicate(row, queued)
