"""Text for the console's cells, header and dialogs: short, stable and free of markup."""

from __future__ import annotations

import math
from collections.abc import Iterable

from shardtui.gateway.models import Presence

DASH = "—"


def shard_count(count: int) -> str:
    """``1 shard`` / ``8 shards``: dialogs read as sentences, not ``shard(s)``."""
    return f"{count} shard" + ("" if count == 1 else "s")


def shard_ids_phrase(ids: Iterable[int], limit: int = 12) -> str:
    """``shard 2`` / ``shards 1, 2`` / ``shards 0, 1, ... and 288 more``."""
    ids = list(ids)
    shown = ", ".join(str(i) for i in ids[:limit])
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ("shard " if len(ids) == 1 else "shards ") + shown + more


def format_latency(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    if seconds < 0.01:
        return f"{seconds * 1000.0:.1f} ms"
    if seconds < 1.0:
        return f"{seconds * 1000.0:.0f} ms"
    return f"{seconds:.1f} s"


def format_age(seconds: float | None) -> str:
    """Coarse ages: exact below 10 s, then 5 s steps, then minutes and hours (fewer cell updates)."""
    if seconds is None:
        return DASH
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{int(seconds)}s"
    if seconds < 60:
        return f"{int(seconds) // 5 * 5}s"
    if seconds < 3600:
        return f"{int(seconds) // 60}m"
    if seconds < 86400:
        return f"{int(seconds) // 3600}h"
    return f"{int(seconds) // 86400}d"


def format_count(value: int | None) -> str:
    if value is None:
        return DASH
    if value < 100_000:
        return str(value)
    if value < 10_000_000:
        return f"{value // 1000}k"
    return f"{value // 1_000_000}M"


def format_rate(value: float) -> str:
    if value <= 0:
        return "0"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:.0f}"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"
    return f"{int(seconds) // 3600}h{int(seconds) % 3600 // 60:02d}m"


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def describe_presence(presence: Presence | None) -> str:
    return DASH if presence is None else presence.describe()


def fit_items(items: list[tuple[str, str | None]], width: int, sep: str = " · ") -> str:
    """Join ``(text, short)`` items with ``sep`` in ``width`` cells: while too long, the first item
    that has a shorter form takes it (an empty one drops out), in order. ``width`` 0: no limit."""
    texts = [text for text, _ in items]

    def joined() -> str:
        return sep.join(t for t in texts if t)

    for index, (_, short) in enumerate(items):
        if not width or len(joined()) <= width:
            break
        if short is not None:
            texts[index] = short
    return joined()
