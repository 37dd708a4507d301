"""The console model (rows, columns, formatting, filtering), driven with ShardRunnerInfo objects
and manager events."""

from __future__ import annotations

import logging

from shardtui.gateway.gate import SessionStartLimit
from shardtui.gateway.models import (
    Activity,
    ConnectionStage,
    FatalErrorEvent,
    Presence,
    ShardHealth,
    ShardId,
    ShardInfoUpdateEvent,
    ShardLogEvent,
    ShardRunnerInfo,
    ShardStageUpdateEvent,
)
from shardtui.gateway.protocol import ActivityType, Status
from shardtui.tui.columns import CELL_PADDING, COLUMNS, SortKey, columns_for_width
from shardtui.tui.formatting import (
    format_age,
    format_count,
    format_latency,
    percentile,
    shard_count,
    shard_ids_phrase,
)
from shardtui.tui.model import ConsoleModel, QueueView, startup_eta

NOW = 1_800_000_000.0


def make_info(sid: int, total: int = 4, **changes) -> ShardRunnerInfo:
    info = ShardRunnerInfo(ShardId(sid), total, running=True)
    for key, value in changes.items():
        setattr(info, key, value)
    return info


def fleet(*infos: ShardRunnerInfo) -> ConsoleModel:
    model = ConsoleModel(clock=lambda: NOW, identify_window=0.5)
    model.sync({info.shard_id: info for info in infos})
    model.take_dirty()
    return model


def test_formatting_of_numbers_and_times() -> None:
    assert format_latency(None) == "—"
    assert format_latency(0.0421) == "42 ms"
    assert format_latency(2.5) == "2.5 s"
    assert format_age(3.7) == "3s"
    assert format_age(37) == "35s"
    assert format_age(600) == "10m"
    assert format_age(7300) == "2h"
    assert format_count(99_999) == "99999"
    assert format_count(123_456) == "123k"
    assert format_count(12_345_678) == "12M"


def test_percentiles_nearest_rank() -> None:
    assert percentile([], 50) is None
    values = [0.01 * i for i in range(1, 101)]
    assert percentile(values, 50) == values[49]
    assert percentile(values, 95) == values[94]


def test_stage_word_and_colour_variable_for_each_state() -> None:
    connected = make_info(0, stage=ConnectionStage.CONNECTED)
    stopped = make_info(1, running=False)
    failed = make_info(2, running=False, fatal_error="4004: bad token")
    queued = make_info(3)
    model = fleet(connected, stopped, failed, queued)
    model.queue = QueueView(frozenset({3}), frozenset(), None)
    words = {sid: model.cells(sid)["stage"] for sid in range(4)}
    assert (words[0].text, words[0].style) == ("connected", "stage-connected")
    assert (words[1].text, words[1].style) == ("stopped", "stage-stopped")
    assert (words[2].text, words[2].style) == ("failed", "stage-failed")
    assert (words[3].text, words[3].style) == ("queued", "stage-queued")
    assert model.cells(2)["health"].text == "failed"


def test_wedged_health_stands_out() -> None:
    model = fleet(make_info(0, health=ShardHealth.WEDGED), make_info(1, health=ShardHealth.QUIET))
    wedged = model.cells(0)["health"]
    quiet = model.cells(1)["health"]
    assert wedged.text == "WEDGED" and wedged.bold and wedged.reverse
    assert quiet.text == "quiet" and not quiet.reverse


def test_row_cells_show_counters_and_ages() -> None:
    info = make_info(
        2,
        stage=ConnectionStage.CONNECTED,
        latency=0.05,
        guilds=12,
        events_received=345,
        events_per_second=4.25,
        last_seq=346,
        resumes=1,
        reconnects=2,
        last_close_code=4009,
        last_dispatch_at=NOW - 4,
        last_ack_at=NOW - 12,
    )
    cells = fleet(info).cells(2)
    assert {k: c.text for k, c in cells.items()} == {
        "id": " 2/4",
        "stage": "connected",
        "health": "ok",
        "latency": "50 ms",
        # One latency sample: the trend is one (full-height) block.
        "trend": "\u2588",
        "guilds": "12",
        "eps": "4.2",
        "events": "345",
        "seq": "346",
        "resumes": "1",
        "reconnects": "2",
        "close": "4009",
        "dispatch_age": "4s",
        "ack_age": "10s",
        "presence": "—",
    }


def test_presence_text_is_kept_literal_not_markup() -> None:
    presence = Presence(Status.DND, Activity("[bold]raid[/bold] night", ActivityType.PLAYING))
    model = fleet(make_info(0, presence=presence))
    # Cells are plain text rendered without markup parsing, so brackets survive as typed.
    assert model.cells(0)["presence"].text == "dnd · Playing [bold]raid[/bold] night"


def test_sent_presence_shows_until_the_runner_reports_it() -> None:
    old = Presence(Status.ONLINE)
    new = Presence(Status.IDLE, Activity("maintenance", ActivityType.WATCHING))
    info = make_info(0, presence=old)
    model = fleet(info)
    model.record_sent_presence(0, new)
    assert model.take_dirty() == {0}
    assert model.cells(0)["presence"].text == "idle · Watching maintenance"
    info.presence = new
    assert model.cells(0)["presence"].text == "idle · Watching maintenance"
    assert model.rows[0].sent_presence is None


def test_events_mark_only_their_shard_dirty_and_log() -> None:
    infos = [make_info(i) for i in range(3)]
    model = fleet(*infos)
    infos[1].latency = 0.02
    model.apply(ShardInfoUpdateEvent(ShardId(1)))
    model.apply(ShardStageUpdateEvent(ShardId(2), ConnectionStage.CONNECTED, ConnectionStage.RESUMING))
    model.apply(ShardLogEvent(ShardId(2), logging.WARNING, "closed 4000 (unknown error)", at=NOW))
    assert model.take_dirty() == {1, 2}
    assert model.take_dirty() == set()
    assert list(model.rows[1].latencies) == [20.0]
    messages = [line.message for line in model.rows[2].log]
    assert messages == ["stage connected → resuming", "closed 4000 (unknown error)"]
    assert len(model.take_log()) == 2
    assert model.take_log() == []


def test_scan_catches_counters_changed_in_place() -> None:
    infos = [make_info(i) for i in range(3)]
    model = fleet(*infos)
    model.scan()
    model.take_dirty()
    infos[2].events_received += 10
    infos[2].last_seq = 10
    model.scan()
    assert model.take_dirty() == {2}
    model.scan()
    assert model.take_dirty() == set()


def test_each_fleet_fatal_event_is_news() -> None:
    model = fleet(make_info(0))
    first = FatalErrorEvent("authentication", "the token was rejected", (ShardId(0),), 4004)
    model.apply(first)
    assert model.fatal is first and model.fatal_is_new
    model.fatal_is_new = False  # the app showed it
    again = FatalErrorEvent("disallowed_intents", "enable message_content", (ShardId(0),), 4014)
    model.apply(again)
    assert model.fatal is again and model.fatal_is_new
    assert model.alerts == []


def test_one_shard_fatal_is_an_alert_not_a_fleet_stop() -> None:
    model = fleet(make_info(0), make_info(1))
    model.apply(FatalErrorEvent("invalid_shard", "shard 1 stopped: 4010 invalid shard", (ShardId(1),), 4010))
    assert model.fatal is None
    assert model.alerts == ["shard 1 stopped: 4010 invalid shard"]
    assert model.take_dirty() == {1}


def test_sync_adopts_new_shards_and_keeps_history_on_reboot() -> None:
    info = make_info(0)
    model = fleet(info)
    model.apply(ShardLogEvent(ShardId(0), logging.INFO, "hello", at=NOW))
    replacement = make_info(0)
    model.sync({ShardId(0): replacement, ShardId(1): make_info(1)})
    assert model.take_dirty() == {0, 1}
    assert model.rows[0].info is replacement
    assert [line.message for line in model.rows[0].log] == ["hello"]


def test_filter_by_id_stage_and_error_text() -> None:
    model = fleet(
        make_info(0, stage=ConnectionStage.CONNECTED),
        make_info(1, stage=ConnectionStage.RESUMING),
        make_info(
            12, stage=ConnectionStage.CONNECTED, last_close_code=4009, last_close_reason="session timed out"
        ),
    )
    model.filter_text = "1"
    assert model.visible_ids() == [1]
    model.filter_text = "resum"
    assert model.visible_ids() == [1]
    model.filter_text = "timed out"
    assert model.visible_ids() == [12]
    model.filter_text = "4009"
    assert model.visible_ids() == [12]
    model.filter_text = ""
    assert model.visible_ids() == [0, 1, 12]


def test_sorting_puts_trouble_first() -> None:
    model = fleet(
        make_info(0, stage=ConnectionStage.CONNECTED, latency=0.01),
        make_info(1, stage=ConnectionStage.RESUMING, latency=0.3),
        make_info(2, stage=ConnectionStage.CONNECTED, latency=0.05, health=ShardHealth.WEDGED),
    )
    model.sort_key = SortKey.STAGE
    assert model.visible_ids() == [1, 0, 2]
    model.sort_key = SortKey.LATENCY
    assert model.visible_ids() == [1, 2, 0]
    model.sort_key = SortKey.HEALTH
    assert model.visible_ids() == [2, 0, 1]
    assert model.cycle_sort(1) is SortKey.LATENCY
    assert model.cycle_sort(-2) is SortKey.STAGE


def test_marks_decide_targets() -> None:
    model = fleet(make_info(0), make_info(1), make_info(2))
    assert model.targets(1) == [1]
    model.toggle_mark(2)
    model.toggle_mark(0)
    assert model.targets(1) == [0, 2]
    assert model.cells(0)["id"].text == "*0/4"
    model.toggle_mark(0)
    assert model.targets(1) == [2]
    model.clear_marks()
    assert model.targets(None) == []


def test_fleet_stats_header() -> None:
    model = fleet(
        make_info(0, stage=ConnectionStage.CONNECTED, latency=0.010, events_per_second=2.0),
        make_info(1, stage=ConnectionStage.CONNECTED, latency=0.030, events_per_second=3.0),
        make_info(2, stage=ConnectionStage.IDENTIFYING),
        make_info(3),
    )
    model.mode = "sandbox"
    model.set_bot_user({"username": "shardbot", "discriminator": "0"})
    model.queue = QueueView(frozenset({3}), frozenset({2}), NOW + 0.4)
    model.session_start_limit = SessionStartLimit(
        total=1000, remaining=996, reset_at=NOW + 3600, max_concurrency=1
    )
    stats = model.stats()
    assert (stats.ready, stats.total, stats.queued, stats.identifying) == (2, 4, 1, 1)
    assert stats.p50 == 0.010 and stats.p95 == 0.030
    first, second = stats.header_lines()
    assert first == "sandbox · shardbot · ready 2/4 · p50 10 ms · p95 30 ms · 5.0 ev/s"
    assert second == "identify 1 queued 1 identifying next 0.4s · starts 996/1000 reset 1h00m"


def test_queue_view_reads_the_queuer_status() -> None:
    from shardtui.gateway.queuer import QueueStatus

    status = QueueStatus(
        queued=(ShardId(3), ShardId(4)),
        identifying=(ShardId(2),),
        next_slots={0: NOW + 2.0, 1: NOW + 1.0},
        waiting_reason="daily session start budget spent; resets in 3h",
    )
    view = QueueView.from_status(status)
    assert view.queued == {3, 4} and view.identifying == {2}
    assert view.next_slot_at == NOW + 1.0
    model = fleet(make_info(0))
    model.queue = view
    assert "held: daily session start budget spent" in model.stats().header_lines()[1]


def test_startup_progress_eta_from_max_concurrency() -> None:
    assert startup_eta(0, 1, 5.0) == 0.0
    assert startup_eta(8, 1, 5.0) == 40.0
    assert startup_eta(8, 4, 5.0) == 10.0
    assert startup_eta(9, 4, 5.0) == 15.0
    model = fleet(make_info(0, stage=ConnectionStage.CONNECTED), make_info(1), make_info(2), make_info(3))
    model.session_start_limit = SessionStartLimit(1000, 1000, NOW, max_concurrency=2)
    progress = model.startup()
    assert (progress.ready, progress.total, progress.eta_seconds) == (1, 4, 1.0)
    assert not progress.done


def test_columns_fit_the_terminal() -> None:
    narrow = columns_for_width(80)
    wide = columns_for_width(200)
    assert sum(c.width + CELL_PADDING for c in narrow) + 2 <= 80
    assert [c.key for c in narrow][:3] == ["id", "stage", "health"]
    assert len(wide) == len(COLUMNS)
    assert len(narrow) < len(wide)
    assert "presence" not in {c.key for c in narrow}


def test_a_wide_terminal_gives_its_spare_cells_to_the_presence_column() -> None:
    # At 200 columns the presence text was cut at 28 cells with ~80 blank cells to its right.
    # (From 158 columns the latency trend column takes 12 of them first.)
    for width in (170, 200, 240):
        columns = columns_for_width(width)
        presence = next(c for c in columns if c.key == "presence")
        assert presence.width > 28
        assert sum(c.width + CELL_PADDING for c in columns) + 2 <= width
    base = next(c for c in columns_for_width(170) if c.key == "presence").width
    assert next(c for c in columns_for_width(171) if c.key == "presence").width == base


def test_liveness_for_quit_confirmation() -> None:
    model = fleet(make_info(0, running=False))
    assert not model.is_live()
    model.rows[0].info.running = True
    assert model.is_live()


def test_shard_phrases_read_as_sentences() -> None:
    assert shard_count(1) == "1 shard" and shard_count(8) == "8 shards"
    assert shard_ids_phrase([2]) == "shard 2"
    assert shard_ids_phrase([1, 2]) == "shards 1, 2"
    assert shard_ids_phrase(range(300)).endswith("10, 11 and 288 more")
