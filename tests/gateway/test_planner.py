"""The identify budget planner: costs, time estimates and the operator sentence."""

from __future__ import annotations

import pytest

from shardtui.gateway.models import ConnectionStage, ShardId, ShardRunnerInfo
from shardtui.gateway.planner import format_shard_ids, identify_schedule, make_plan


def fleet(total: int, *, live: set[int] | None = None, running: set[int] | None = None):
    """Infos for ``total`` shards; ``live`` ones hold a resumable session, ``running`` ones a runner."""
    live = set(range(total)) if live is None else live
    running = set(range(total)) if running is None else running | live
    infos = {}
    for i in range(total):
        info = ShardRunnerInfo(ShardId(i), total)
        info.running = i in running
        if i in live:
            info.session_id = f"session-{i}"
            info.stage = ConnectionStage.CONNECTED
        infos[ShardId(i)] = info
    return infos


def ids(*values: int) -> list[ShardId]:
    return [ShardId(v) for v in values]


def test_restart_of_live_shards_resumes_and_costs_nothing() -> None:
    plan = make_plan(
        "restart", ids(3, 7), infos=fleet(8), max_concurrency=1, window=5.0, budget_remaining=973
    )
    assert (plan.identifies, plan.resumes) == (0, 2)
    assert plan.text == "restart shards 3, 7: 2 resumes, 0 identifies (973 left today), about 0.5 s"


def test_restart_identifies_shards_without_a_live_session() -> None:
    infos = fleet(4, live={0, 1, 3})
    plan = make_plan(
        "restart", ids(0, 1, 2, 3), infos=infos, max_concurrency=1, window=5.0, budget_remaining=10
    )
    assert (plan.identifies, plan.resumes) == (1, 3)
    assert "shard 2 without a live session" in plan.text
    assert plan.text == (
        "restart shards 0-3: 3 resumes, 1 identify (10 left today), about 0.5 s; "
        "shard 2 without a live session"
    )


def test_a_shard_stopped_by_a_fatal_error_cannot_resume() -> None:
    infos = fleet(2)
    infos[ShardId(1)].fatal_error = "invalid shard"
    plan = make_plan("restart", ids(0, 1), infos=infos, max_concurrency=1, window=5.0)
    assert (plan.identifies, plan.resumes) == (1, 1)


def test_forced_identify_costs_one_identify_each_and_waits_for_buckets() -> None:
    plan = make_plan(
        "restart_identify",
        ids(0, 1, 2, 3),
        infos=fleet(4),
        max_concurrency=1,
        window=5.0,
        budget_remaining=100,
    )
    assert (plan.identifies, plan.resumes) == (4, 0)
    # Four identifies in one bucket: admitted at 0, 5, 10, 15 s.
    assert plan.seconds == pytest.approx(15.5)
    assert "with fresh identifies" in plan.text
    assert "4 identifies (100 left today)" in plan.text
    assert "under max_concurrency 1" in plan.text


def test_parallel_buckets_shorten_the_estimate() -> None:
    single = make_plan("restart_identify", ids(*range(8)), infos=fleet(8), max_concurrency=1, window=5.0)
    quad = make_plan("restart_identify", ids(*range(8)), infos=fleet(8), max_concurrency=4, window=5.0)
    assert quad.seconds < single.seconds
    assert quad.seconds == pytest.approx(5.5)


def test_the_estimate_includes_slots_already_taken() -> None:
    free = make_plan("boot", ids(2), infos=fleet(4, running=set(), live=set()), max_concurrency=2, window=5.0)
    busy = make_plan(
        "boot",
        ids(2),
        infos=fleet(4, running=set(), live=set()),
        max_concurrency=2,
        window=5.0,
        bucket_free_in={0: 3.0},
        queued_ahead={0: 1},
    )
    assert free.seconds == pytest.approx(0.5)
    assert busy.seconds == pytest.approx(8.5)


def test_boot_counts_only_stopped_shards() -> None:
    infos = fleet(6, live={0, 1, 2, 3}, running=set())
    plan = make_plan("boot", ids(3, 4, 5), infos=infos, max_concurrency=1, window=5.0, budget_remaining=50)
    assert plan.identifies == 2
    assert "shard 3 already running" in plan.text
    assert plan.text.startswith("boot shards 3-5: 2 identifies (50 left today), about 5.5 s")


def test_shutdown_costs_nothing_now_but_says_what_booting_back_costs() -> None:
    plan = make_plan(
        "shutdown", ids(3, 7), infos=fleet(8), max_concurrency=1, window=5.0, budget_remaining=973
    )
    assert (plan.identifies, plan.resumes) == (0, 0)
    assert plan.text == (
        "shut down shards 3, 7: no identifies now; booting them back costs 2 identifies (973 left today)"
    )


def test_identifies_over_the_budget_wait_for_the_reset() -> None:
    plan = make_plan(
        "restart_identify",
        ids(0, 1, 2),
        infos=fleet(3),
        max_concurrency=3,
        window=5.0,
        budget_remaining=2,
        reset_in=3600.0,
    )
    assert plan.identifies == 3
    assert plan.over_budget == 1
    assert plan.seconds >= 3600.0
    assert "1 over the budget wait for the reset in 1 h" in plan.text


def test_unknown_budget_is_said_plainly() -> None:
    plan = make_plan("boot", ids(0), infos=fleet(1, running=set(), live=set()), max_concurrency=1, window=5.0)
    assert "budget unknown" in plan.text


def test_bad_requests_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="unknown action 'reboot'"):
        make_plan("reboot", ids(0), infos=fleet(1), max_concurrency=1, window=5.0)
    with pytest.raises(ValueError, match=r"shard 9 not run by this process \(it runs shards 0-3\)"):
        make_plan("restart", ids(9), infos=fleet(4), max_concurrency=1, window=5.0)
    empty = make_plan("restart", [], infos=fleet(4), max_concurrency=1, window=5.0)
    assert empty.text == "nothing to restart: no shards selected"


def test_shard_lists_collapse_runs() -> None:
    assert format_shard_ids(ids(3)) == "shard 3"
    assert format_shard_ids(ids(3, 7)) == "shards 3, 7"
    assert format_shard_ids(ids(0, 1, 2, 3, 9, 10, 12)) == "shards 0-3, 9, 10, 12"


def test_schedule_orders_buckets_and_windows() -> None:
    schedule = identify_schedule(ids(*range(6)), max_concurrency=2, window=5.0, bucket_free_in={})
    assert [schedule[ShardId(i)] for i in range(6)] == [0.0, 0.0, 5.0, 5.0, 10.0, 10.0]
