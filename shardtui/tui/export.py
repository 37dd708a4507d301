"""Export of the shard table (the filtered rows in their sorted order, every column) to CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from shardtui.tui.columns import health_cell, stage_word
from shardtui.tui.model import ConsoleModel

FORMATS = (".csv", ".json")


class ExportError(ValueError):
    """Why an export could not be written, in words for the operator."""


def default_export_path(now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    return f"./shardtui-export-{stamp}.csv"


def export_rows(model: ConsoleModel) -> list[dict[str, Any]]:
    """The table's rows as shown (filter and sort applied), with raw values rather than cell text."""
    now = model.clock()
    rows: list[dict[str, Any]] = []
    for sid in model.visible_ids():
        row = model.rows[sid]
        info = row.info
        presence = row.presence
        rows.append(
            {
                "shard": sid,
                "total": info.total,
                "stage": stage_word(info, sid in model.queue.queued),
                "health": health_cell(info).text.lower(),
                "health_reason": info.health_reason,
                "latency_ms": None if info.latency is None else round(info.latency * 1000.0, 3),
                "guilds": info.guilds,
                "events_per_second": round(info.events_per_second, 3),
                "events": info.events_received,
                "seq": info.last_seq,
                "resumes": info.resumes,
                "reconnects": info.reconnects,
                "close_code": info.last_close_code,
                "close_reason": info.last_close_reason,
                "dispatch_age_s": None
                if info.last_dispatch_at is None
                else round(now - info.last_dispatch_at, 3),
                "ack_age_s": None if info.last_ack_at is None else round(now - info.last_ack_at, 3),
                "presence": None if presence is None else presence.describe(),
                "fatal_error": info.fatal_error,
                "marked": sid in model.marked,
            }
        )
        if model.client_counts is not None:
            rows[-1]["clients"] = model.client_counts.get(sid)
    return rows


def render_export(rows: list[dict[str, Any]], suffix: str) -> str:
    if suffix == ".json":
        return json.dumps(rows, indent=2) + "\n"
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


def write_export(path_text: str, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` to ``path_text`` (CSV or JSON by its suffix). Raises ExportError, never OSError."""
    if not path_text.strip():
        raise ExportError("give a file name ending in .csv or .json")
    path = Path(path_text.strip()).expanduser()
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ExportError(f"{path.name!r}: the name must end in .csv or .json")
    text = render_export(rows, suffix)
    try:
        # "x": an export never replaces a file that is already there.
        with path.open("x", encoding="utf-8", newline="") as file:
            file.write(text)
    except FileExistsError:
        raise ExportError(f"{path} already exists; choose another name") from None
    except IsADirectoryError:
        raise ExportError(f"{path} is a directory") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ExportError(f"cannot write {path}: {reason}") from None
    return path


class ExportScreen(ModalScreen[Path | None]):
    """Asks where to write the export; a path that cannot be written is said under the box."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="export.cancel")]

    def __init__(self, model: ConsoleModel, default_path: str | None = None) -> None:
        super().__init__(classes="dialog-screen")
        self.model = model
        self.default_path = default_path or default_export_path()

    def compose(self) -> ComposeResult:
        count = len(self.model.visible_ids())
        with Vertical(id="export", classes="dialog"):
            yield Label(
                f"Export {count:,} shards (as shown: filter and sort applied)", classes="dialog-title"
            )
            yield Input(self.default_path, id="export-path")
            yield Static("", id="export-error")
            yield Label("enter writes (.csv or .json by the name) · esc cancels", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#export-path", Input).focus()

    @on(Input.Submitted, "#export-path")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        error = self.query_one("#export-error", Static)
        try:
            path = write_export(event.value, export_rows(self.model))
        except ExportError as exc:
            error.update(Text(f"Not written: {exc}"))
            error.add_class("visible")
            return
        self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)
