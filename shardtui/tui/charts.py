"""``c`` — fleet-wide events/s and latency over the last minutes, as sparklines."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.widgets import Label, Sparkline

from shardtui.tui.formatting import format_duration, format_latency, format_rate
from shardtui.tui.model import ConsoleModel, FleetSample


def _summary(values: Sequence[float], unit: str) -> str:
    if not values:
        return "no samples yet"
    if unit == "ms":
        now, low, high = (format_latency(v / 1000.0) for v in (values[-1], min(values), max(values)))
    else:
        now, low, high = (format_rate(v) for v in (values[-1], min(values), max(values)))
    return f"now {now} · min {low} · max {high}"


class ChartScreen(ModalScreen[None]):
    """Three charts from ``ConsoleModel.fleet_samples``; the app's tick calls :meth:`refresh_charts`.
    Modal (full screen by its CSS), so the table's keys do nothing here."""

    BINDINGS = [Binding("escape,c,q", "close", "Back", id="charts.close")]

    def __init__(self, model: ConsoleModel) -> None:
        super().__init__()
        self.model = model

    def compose(self) -> ComposeResult:
        with Vertical(id="charts"):
            yield Label("", id="charts-title", classes="dialog-title")
            yield Label("fleet events/s", classes="section", id="chart-eps-label")
            yield Sparkline([], id="chart-eps", classes="chart")
            yield Label("mean latency", classes="section", id="chart-mean-label")
            yield Sparkline([], id="chart-mean", classes="chart")
            yield Label("max latency", classes="section", id="chart-max-label")
            yield Sparkline([], id="chart-max", classes="chart")
            yield Label("esc back · a point every few seconds, the oldest on the left", classes="dialog-hint")

    def on_mount(self) -> None:
        self.refresh_charts()

    def series(self) -> dict[str, list[float]]:
        """What each chart draws: events/s, and latency in ms over samples that had one."""
        samples: list[FleetSample] = list(self.model.fleet_samples)
        return {
            "eps": [s.events_per_second for s in samples],
            "mean": [s.mean_latency * 1000.0 for s in samples if s.mean_latency is not None],
            "max": [s.max_latency * 1000.0 for s in samples if s.max_latency is not None],
        }

    def refresh_charts(self) -> None:
        try:
            title = self.query_one("#charts-title", Label)
        except NoMatches:
            return
        samples = self.model.fleet_samples
        span = samples[-1].at - samples[0].at if len(samples) > 1 else 0.0
        title.update(Text(f"Fleet over the last {format_duration(span)} ({len(samples)} samples)"))
        names = {
            "eps": ("fleet events/s", "ev/s"),
            "mean": ("mean latency", "ms"),
            "max": ("max latency", "ms"),
        }
        for key, values in self.series().items():
            name, unit = names[key]
            chart = self.query_one(f"#chart-{key}", Sparkline)
            chart.data = values
            # An empty sparkline draws a flat baseline that reads as zero: hide it until there is data.
            chart.display = bool(values)
            self.query_one(f"#chart-{key}-label", Label).update(Text(f"{name}: {_summary(values, unit)}"))

    def action_close(self) -> None:
        self.dismiss(None)
