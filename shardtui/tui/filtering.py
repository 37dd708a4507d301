"""The console's filter: ``field:value`` or plain text, matched against one shard row."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from shardtui.gateway.models import ShardHealth
from shardtui.tui.columns import stage_word

if TYPE_CHECKING:
    from shardtui.tui.model import ShardRow


#: ``field:value`` filters; anything else is plain text matched against every field but the id.
FILTER_FIELDS = ("id", "stage", "health", "close", "error")
_FIELD_QUERY = re.compile(r"([a-z]+):(.*)", re.DOTALL)


class FilterError(ValueError):
    """A filter the console cannot apply; the message is shown under the filter box as is."""


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
    return field, value


def row_matches(row: ShardRow, query: str, queued: bool = False) -> bool:
    """Filter by shard id (a number), stage or health word, close code, or any error text; or by one
    field with ``stage:conn``, ``health:wedged``, ``close:4000``, ``id:3``, ``error:text``."""
    try:
        field, query = parse_filter(query)
    except FilterError:
        # The console never applies a bad filter; anything else calling this gets plain text.
        field, query = None, query.strip().lower()
    if not query:
        return True
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
