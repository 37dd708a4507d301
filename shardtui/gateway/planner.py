"""The identify budget planner: what an action on some shards will cost, before anything is done.

Restarting a shard whose session is alive costs nothing from the daily budget (it resumes); a shard
without one must IDENTIFY, which takes a session start and waits for its bucket's slot. The planner
answers with counts, an estimate of how long it takes under ``max_concurrency``, and one sentence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shardtui.gateway.gate import IdentifyGate, SessionStartLimit, describe_duration
from shardtui.gateway.models import ConnectionStage, ShardId, ShardRunnerInfo
from shardtui.gateway.protocol import bucket_for_shard

ACTIONS = ("restart", "boot", "shutdown", "restart_identify")

#: Rough time from a RESUME (or from an admitted IDENTIFY) to a working session.
SESSION_SETUP_SECONDS = 0.5
#: Rough time for a shard to close its connection cleanly.
CLOSE_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Plan:
    """What ``action`` on ``shard_ids`` will cost.

    ``identifies`` come out of the daily session start budget; ``resumes`` do not. ``seconds`` is
    an estimate of how long until every shard is back, given the identify buckets' current queue.
    ``budget_remaining`` is the budget before the action (None when unknown).
    """

    action: str
    shard_ids: tuple[ShardId, ...]
    identifies: int
    resumes: int
    seconds: float
    budget_remaining: int | None
    text: str
    #: Identifies beyond the budget, which will wait for the daily reset.
    over_budget: int = 0


@dataclass(frozen=True, slots=True)
class GateOutlook:
    """What the identify gate says about the near future, as every plan reads it."""

    #: Bucket -> seconds until its next slot (missing: free now or unknown).
    bucket_free_in: dict[int, float]
    budget_remaining: int | None
    #: Seconds until the daily budget refills; None when unknown.
    reset_in: float | None
    #: Seconds between two identifies of a bucket, and the jitter margin the gate adds to it.
    window: float
    margin: float
    #: Bucket -> shards waiting at the gate; None when the gate cannot tell.
    waiting: dict[int, int] | None


def gate_outlook(
    gate: IdentifyGate | None,
    *,
    now: float,
    limit: SessionStartLimit | None,
    max_concurrency: int,
    default_window: float,
) -> GateOutlook:
    """Read ``gate`` (None before the manager has one) for a plan; ``limit`` stands in for a gate
    that does not count the budget, ``default_window`` for a manager without a gate yet."""
    bucket_free_in: dict[int, float] = {}
    budget = None
    window, margin = default_window, 0.0
    waiting: dict[int, int] | None = None
    if gate is not None:
        bucket_free_in = {b: max(0.0, at - now) for b, at in gate.next_slots().items()}
        budget = gate.budget_remaining()
        window, margin = gate.window, gate.margin
        counts = [gate.waiting(b) for b in range(max_concurrency)]
        if all(c is not None for c in counts):
            waiting = {b: int(c or 0) for b, c in enumerate(counts)}
    if budget is None and limit is not None:
        budget = limit.remaining
    reset_in = None if limit is None else max(0.0, limit.reset_at - now)
    return GateOutlook(bucket_free_in, budget, reset_in, window, margin, waiting)


def format_shard_ids(shard_ids: Iterable[ShardId | int]) -> str:
    """``shard 3``, ``shards 3, 7``, ``shards 0-15, 20``: runs of three or more are collapsed."""
    ids = sorted({int(s) for s in shard_ids})
    if not ids:
        return "no shards"
    parts: list[str] = []
    start = prev = ids[0]
    for value in [*ids[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        if prev - start >= 2:
            parts.append(f"{start}-{prev}")
        else:
            parts.extend(str(v) for v in range(start, prev + 1))
        if value is not None:
            start = prev = value
    noun = "shard" if len(ids) == 1 else "shards"
    return f"{noun} {', '.join(parts)}"


def has_live_session(info: ShardRunnerInfo) -> bool:
    """True when a restart of this shard can RESUME instead of IDENTIFY."""
    return (
        info.running
        and info.fatal_error is None
        and info.session_id is not None
        and info.stage is not ConnectionStage.IDENTIFYING
    )


def _count(n: int, word: str) -> str:
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word[:-1]}ies" if word.endswith("y") else f"{n} {word}s"


def _budget_text(remaining: int | None) -> str:
    return "budget unknown" if remaining is None else f"{remaining} left today"


def identify_schedule(
    shard_ids: Iterable[ShardId],
    *,
    max_concurrency: int,
    window: float,
    bucket_free_in: Mapping[int, float],
    queued_ahead: Mapping[int, int] | None = None,
    budget_remaining: int | None = None,
    reset_in: float | None = None,
) -> dict[ShardId, float]:
    """Seconds from now at which each shard's IDENTIFY would be admitted.

    Buckets run in parallel, one identify per ``window``; shards already waiting in a bucket go
    first. Identifies past the budget wait for the reset (``reset_in`` seconds from now).
    """
    free = {b: max(0.0, bucket_free_in.get(b, 0.0)) for b in range(max_concurrency)}
    for bucket, ahead in (queued_ahead or {}).items():
        free[bucket] = free.get(bucket, 0.0) + ahead * window
    schedule: dict[ShardId, float] = {}
    ordered = sorted(shard_ids)
    for index, shard in enumerate(ordered):
        bucket = bucket_for_shard(shard.id, max_concurrency)
        at = free.get(bucket, 0.0)
        if budget_remaining is not None and index >= budget_remaining:
            at = max(at, reset_in if reset_in is not None else 86_400.0)
        schedule[shard] = at
        free[bucket] = at + window
    return schedule


def make_plan(
    action: str,
    shard_ids: Iterable[ShardId],
    *,
    infos: Mapping[ShardId, ShardRunnerInfo],
    max_concurrency: int,
    window: float,
    bucket_free_in: Mapping[int, float] | None = None,
    queued_ahead: Mapping[int, int] | None = None,
    budget_remaining: int | None = None,
    reset_in: float | None = None,
) -> Plan:
    """Plan ``action`` ("restart" | "boot" | "shutdown" | "restart_identify") on ``shard_ids``."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}: expected one of {', '.join(ACTIONS)}")
    ids = tuple(sorted({ShardId(int(s)) for s in shard_ids}))
    unknown = [s for s in ids if s not in infos]
    if unknown:
        managed = format_shard_ids(infos)
        raise ValueError(f"{format_shard_ids(unknown)} not run by this process (it runs {managed})")
    verb = {
        "restart": "restart",
        "restart_identify": "restart",
        "boot": "boot",
        "shutdown": "shut down",
    }[action]
    if not ids:
        return Plan(action, ids, 0, 0, 0.0, budget_remaining, f"nothing to {verb}: no shards selected")
    target = format_shard_ids(ids)

    if action == "shutdown":
        running = [s for s in ids if infos[s].running]
        note = (
            "" if len(running) == len(ids) else f" ({format_shard_ids(set(ids) - set(running))} not running)"
        )
        them = "it" if len(ids) == 1 else "them"
        text = (
            f"shut down {target}{note}: no identifies now; booting {them} back costs "
            f"{_count(len(ids), 'identify')} ({_budget_text(budget_remaining)})"
        )
        return Plan(action, ids, 0, 0, CLOSE_SECONDS if running else 0.0, budget_remaining, text)

    notes: list[str] = []
    if action == "restart":
        resuming = [s for s in ids if has_live_session(infos[s])]
        identifying = [s for s in ids if s not in resuming]
        if identifying and resuming:
            notes.append(f"{format_shard_ids(identifying)} without a live session")
    elif action == "restart_identify":
        resuming = []
        identifying = list(ids)
    else:  # boot
        resuming = []
        identifying = [s for s in ids if not infos[s].running]
        if len(identifying) < len(ids):
            notes.append(f"{format_shard_ids(set(ids) - set(identifying))} already running")

    schedule = identify_schedule(
        identifying,
        max_concurrency=max_concurrency,
        window=window,
        bucket_free_in=bucket_free_in or {},
        queued_ahead=queued_ahead,
        budget_remaining=budget_remaining,
        reset_in=reset_in,
    )
    seconds = 0.0
    if identifying:
        seconds = max(schedule.values()) + SESSION_SETUP_SECONDS
    elif resuming:
        seconds = SESSION_SETUP_SECONDS
    over = 0
    if budget_remaining is not None and len(identifying) > budget_remaining:
        over = len(identifying) - max(0, budget_remaining)
        wait = "the reset" if reset_in is None else f"the reset in {describe_duration(reset_in)}"
        notes.append(f"{over} over the budget wait for {wait}")

    counts = []
    if action == "restart":
        counts.append(_count(len(resuming), "resume"))
    counts.append(f"{_count(len(identifying), 'identify')} ({_budget_text(budget_remaining)})")
    head = f"{verb} {target}" + (" with fresh identifies" if action == "restart_identify" else "")
    text = f"{head}: {', '.join(counts)}"
    if identifying or resuming:
        text += f", about {describe_duration(seconds)}"
        if len(identifying) > max_concurrency:
            text += f" under max_concurrency {max_concurrency}"
    else:
        text += ", nothing to do"
    if notes:
        text += "; " + "; ".join(notes)
    return Plan(action, ids, len(identifying), len(resuming), seconds, budget_remaining, text, over)
