"""Comparisons and checked values in the filter, marks, reverse sort, hidden columns, fleet samples,
the latency trend and the table export — the model side, driven with ShardRunnerInfo objects."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from test_tui_model import NOW, fleet, make_info

from shardtui.gateway.models import ConnectionStage, ShardHealth
from shardtui.tui.columns import SortKey, columns_for_width, spark_text
from shardtui.tui.export import ExportError, export_rows, write_export
from shardtui.tui.filtering import FilterError, check_filter, parse_comparison
from shardtui.tui.legend import COLUMN_MEANINGS, legend_text
from shardtui.tui.model import ConsoleModel


def three() -> ConsoleModel:
    return fleet(
        make_info(0, stage=ConnectionStage.CONNECTED, latency=0.040, events_received=0, last_seq=None),
        make_info(1, stage=ConnectionStage.CONNECTED, latency=0.250, events_received=500, last_seq=120),
        make_info(2, stage=ConnectionStage.RESUMING, latency=None, events_received=80, last_seq=99),
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("latency>0.2", [1]),
        ("latency>200ms", [1]),
        ("latency <= 40ms", [0]),
        ("latency > 200 ms", [1]),
        ("latency>5", []),
        ("events<1", [0]),
        ("events>=80", [1, 2]),
        ("seq>=100", [1]),
        ("seq!=120", [2]),
        ("id=2", [2]),
        ("ev/s>=0", [0, 1, 2]),
    ],
)
def test_numeric_comparisons(query: str, expected: list[int]) -> None:
    model = three()
    model.filter_text = query
    assert model.visible_ids() == expected


def test_a_shard_without_a_measurement_is_left_out_of_any_comparison() -> None:
    model = three()
    model.filter_text = "latency!=1"
    # Shard 2 has no latency yet: it neither passes nor fails.
    assert model.visible_ids() == [0, 1]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("stage:bogus", "connected, connecting"),
        ("health:bogus", "wedged"),
        ("colour>3", "latency"),
        ("latency>fast", "200ms"),
        ("seq>=", "needs a number"),
        ("events<lots", "'lots'"),
    ],
)
def test_values_not_understood_are_named(query: str, named: str) -> None:
    problem = check_filter(query)
    assert problem is not None and named in problem


def test_good_values_pass_the_check() -> None:
    for query in ("stage:conn", "stage:queued", "health:wed", "latency>0.2", "4004", "a=b c", ""):
        assert check_filter(query) is None, query
    comparison = parse_comparison("latency>=250ms")
    assert comparison is not None and comparison.number == pytest.approx(0.25)
    with pytest.raises(FilterError):
        parse_comparison("guilds>x")


def test_mark_all_mark_filtered_and_clear() -> None:
    model = three()
    model.filter_text = "stage:conn"
    assert model.mark_visible() == 2
    assert model.marked == {0, 1}
    assert model.mark_visible() == 0
    assert model.mark_all() == 3 and model.marked == {0, 1, 2}
    model.clear_marks()
    assert model.marked == set()


def test_reverse_sort_turns_the_order_round() -> None:
    model = three()
    assert model.visible_ids() == [0, 1, 2]
    assert model.reverse_sort() is True
    assert model.visible_ids() == [2, 1, 0]
    model.sort_key = SortKey.LATENCY
    # Fastest first, the unmeasured shard (last when slowest-first) now at the top.
    assert model.visible_ids() == [2, 0, 1]


def test_hidden_columns_leave_the_table_but_id_and_stage_cannot() -> None:
    model = three()
    model.hidden_columns = {"latency", "guilds"}
    keys = [c.key for c in columns_for_width(80, model.shown_columns())]
    assert keys[:3] == ["id", "stage", "health"]
    assert "latency" not in keys and "guilds" not in keys
    # Room freed at 80 columns goes to the next most important columns.
    assert len(keys) >= len(columns_for_width(80)) - 1


def test_fleet_samples_once_per_interval() -> None:
    now = [NOW]
    model = ConsoleModel(clock=lambda: now[0])
    model.sync(
        {
            info.shard_id: info
            for info in (
                make_info(0, stage=ConnectionStage.CONNECTED, latency=0.1, events_per_second=2.0),
                make_info(1, stage=ConnectionStage.CONNECTED, latency=0.3, events_per_second=3.0),
                make_info(2, stage=ConnectionStage.RESUMING, latency=9.0, events_per_second=1.0),
            )
        }
    )
    model.scan()
    model.scan()
    assert len(model.fleet_samples) == 1
    sample = model.fleet_samples[0]
    assert sample.events_per_second == pytest.approx(6.0)
    # Only connected shards count for latency.
    assert sample.mean_latency == pytest.approx(0.2) and sample.max_latency == pytest.approx(0.3)
    now[0] += model.fleet_sample_interval
    model.scan()
    assert len(model.fleet_samples) == 2


def test_spark_text_scales_to_the_largest_sample() -> None:
    assert spark_text([], 10) == "—"
    assert spark_text([10.0, 20.0, 40.0], 10) == "\u2583\u2585\u2588"
    assert len(spark_text(range(1, 30), 10)) == 10
    assert spark_text([0.0, 0.0], 10) == "\u2581\u2581"


def test_export_rows_follow_filter_and_sort(tmp_path: Path) -> None:
    model = three()
    model.rows[1].info.health = ShardHealth.WEDGED
    model.filter_text = "events>=80"
    model.sort_reverse = True
    model.marked = {2}
    rows = export_rows(model)
    assert [r["shard"] for r in rows] == [2, 1]
    assert rows[1]["health"] == "wedged" and rows[1]["latency_ms"] == pytest.approx(250.0)
    assert rows[0]["latency_ms"] is None and rows[0]["marked"] is True

    written = write_export(str(tmp_path / "fleet.json"), rows)
    assert json.loads(written.read_text()) == rows
    written = write_export(str(tmp_path / "fleet.csv"), rows)
    with written.open() as file:
        table = list(csv.DictReader(file))
    assert [r["shard"] for r in table] == ["2", "1"]
    assert table[0]["latency_ms"] == "" and table[1]["stage"] == "connected"


@pytest.mark.parametrize(
    ("name", "named"),
    [
        ("missing-dir/out.csv", "cannot write"),
        ("out.txt", ".csv or .json"),
        ("", ".csv or .json"),
        ("exists.csv", "already exists"),
    ],
)
def test_export_errors_are_sentences(tmp_path: Path, name: str, named: str) -> None:
    (tmp_path / "exists.csv").write_text("keep me")
    target = str(tmp_path / name) if name else ""
    with pytest.raises(ExportError, match=named.replace(".", r"\.")):
        write_export(target, export_rows(three()))
    assert (tmp_path / "exists.csv").read_text() == "keep me"


def test_legend_names_every_column_and_the_filter_syntax() -> None:
    from shardtui.tui.columns import COLUMNS

    assert {c.key for c in COLUMNS} <= set(COLUMN_MEANINGS)
    text = legend_text(COLUMNS).plain
    for needle in ("lat trend", "WEDGED", "latency>200ms", "stage:conn", "seq>=100"):
        assert needle in text


def test_fit_items_shortens_in_order_until_the_line_fits() -> None:
    from shardtui.tui.formatting import fit_items

    items = [
        ("refresh 1s", ""),
        ("sort id", None),
        ("filter 'stage:connected'", "filter"),
        ("3 marked", None),
    ]
    assert fit_items(items, 0) == "refresh 1s · sort id · filter 'stage:connected' · 3 marked"
    assert fit_items(items, 50) == "sort id · filter 'stage:connected' · 3 marked"
    assert fit_items(items, 30) == "sort id · filter · 3 marked"
    # Nothing shorter left: the line is as short as it gets.
    assert fit_items(items, 5) == "sort id · filter · 3 marked"
