"""What each column and the filter syntax mean, for ``?`` help and the column chooser."""

from __future__ import annotations

import textwrap

from rich.text import Text

from shardtui.tui.columns import Column
from shardtui.tui.filtering import HEALTH_WORDS, NUMERIC_FIELDS, STAGE_WORDS

COLUMN_MEANINGS: dict[str, str] = {
    "id": "shard id / shard total; * marks a marked shard",
    "process": "the fleet process that runs the shard",
    "stage": "connection stage (" + ", ".join(STAGE_WORDS) + ")",
    "health": "ok, quiet, WEDGED (ACKs but no dispatches), down (not connected), failed",
    "latency": "last heartbeat round trip; — until the first ACK of this connection",
    "trend": "the last latency samples as a sparkline (wide terminals only)",
    "guilds": "guilds the shard holds",
    "clients": "bot clients attached through the proxy to the shard (— : another process's shard)",
    "eps": "dispatch events per second",
    "events": "events received since the shard started",
    "seq": "last sequence number",
    "resumes": "sessions resumed",
    "reconnects": "reconnects",
    "close": "last close code",
    "dispatch_age": "time since the last dispatch",
    "ack_age": "time since the last heartbeat ACK",
    "presence": "status and activity",
}

FILTER_SYNTAX: tuple[tuple[str, str], ...] = (
    ("3", "a shard id or a close code"),
    ("resum", "any text: stage, health or error words"),
    ("stage:conn", "one stage: " + ", ".join(STAGE_WORDS)),
    ("health:wedged", "one health: " + ", ".join(HEALTH_WORDS)),
    ("id:3  close:4004", "an exact shard id or close code"),
    ("error:timed out", "text in the close reason, health reason or fatal error"),
    ("latency>200ms", "compare with < <= > >= = !=; latency in seconds (0.2) or ms"),
    ("events<1  seq>=100", "numeric fields: " + ", ".join(NUMERIC_FIELDS)),
)


def column_meaning(column: Column) -> str:
    return COLUMN_MEANINGS.get(column.key, column.label)


#: The help dialog's text width (its 76 cells less border, padding and scrollbar).
LEGEND_WIDTH = 66


def _entry(text: Text, term: str, meaning: str, term_width: int) -> None:
    # Wrapped by hand so a long meaning continues under itself, not under the term.
    lines = textwrap.wrap(meaning, LEGEND_WIDTH - term_width - 2) or [""]
    text.append(f"{term:>{term_width}}  ", style="bold")
    text.append(lines[0] + "\n")
    for line in lines[1:]:
        text.append(" " * (term_width + 2) + line + "\n")


def legend_text(columns: tuple[Column, ...]) -> Text:
    """The help screen's legend: every column, then the filter syntax."""
    text = Text()
    text.append("Columns\n", style="bold")
    for column in columns:
        _entry(text, column.label, column_meaning(column), 10)
    text.append("\nFilter (/)\n", style="bold")
    for example, meaning in FILTER_SYNTAX:
        _entry(text, example, meaning, 18)
    text.append("An unknown field or value is not applied: the line under the box says why.\n", style="dim")
    return text
