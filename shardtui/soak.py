"""Chaos soak: the embedded sandbox injects faults into a headless fleet, then every dispatch is counted.

``python -m shardtui.soak`` (or ``shardtui soak``, ``bench/soak.py``) runs N shards against the sandbox
for a while, injecting a random fault every ``fault_interval`` seconds (seeded). When the time is up
the faults stop, the shards settle back to CONNECTED and drain what the server still holds, and the
soak compares, per shard, every dispatch the sandbox sent with what the event handler received.

A run passes only with no lost, duplicated, unknown or out-of-order dispatch, no identify or command
rate-limit violation, no unhandled exception or error logged by the library, every shard back, and
nothing (task, socket, HTTP session) left behind. Dispatches a dead session can no longer replay
(op 9 not resumable, 4007, 4009) are Discord's loss, not ours: they are counted apart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from shardtui.gateway.manager import ShardManager, ShardManagerOptions
from shardtui.gateway.models import ConnectionStage, Dispatch, ShardLogEvent
from shardtui.gateway.protocol import COMMAND_WINDOW_SECONDS, COMMANDS_PER_WINDOW, GatewayIntents
from shardtui.logsafe import redact, register_secret, setup_logging
from shardtui.sandbox import EVENT_ID_KEY, FAULT_KINDS, Sandbox, SandboxSettings
from shardtui.sandbox.faults import RANDOM_KINDS

#: The issue's fault list, in sandbox terms: dropped connection, zombie, op 7, op 9 (resumable or
#: not, drawn by the sandbox), closes 4000-4009 (drawn by the sandbox), a non-JSON frame (through the
#: compression stream), a truncated compressed frame, a message split over two frames, an oversized
#: frame, op 1 from the server, a slow HELLO and a refused connection; plus "wedge" (ACKs but no
#: dispatches), which the health check and the final heal must cope with. That is exactly the
#: sandbox's own random schedule: every fault that hits one live connection and heals by reconnecting.
SOAK_FAULTS: tuple[str, ...] = RANDOM_KINDS
COMPRESSIONS = ("zstd-stream", "zlib-stream", "none")
#: Heartbeats every 0.6 s fill 100 of the 120 commands a connection may send per minute; op 1
#: requests and presence updates need the rest.
MIN_HEARTBEAT_MS = 600
#: Tasks the sandbox itself runs while it is up (named by the sandbox).
_SANDBOX_TASK_PREFIX = "sandbox-"


@dataclass(slots=True)
class SoakConfig:
    shards: int = 16
    #: Seconds of faults (settling and draining come on top).
    duration: float = 30.0
    #: Seconds between two injected faults.
    fault_interval: float = 0.5
    seed: int = 1
    compression: str = "zlib-stream"
    #: Generated dispatches per second per shard.
    event_rate: float = 10.0
    guilds_per_shard: int = 3
    #: Short, so zombies are found fast, but not so short that heartbeats alone would break Discord's
    #: 120 commands per 60 s (the sandbox keeps that limit at its real size).
    heartbeat_interval_ms: int = 1000
    identify_window: float = 0.1
    max_concurrency: int = 16
    #: Longer than any outage the faults cause (a refused/slow server lasts at most ~1 s).
    resume_window: float = 60.0
    session_start_total: int = 1000
    faults: tuple[str, ...] = SOAK_FAULTS
    #: How long the shards get to come back after the faults stop.
    settle_timeout: float = 60.0
    #: How long the handler gets to receive what was sent once every shard is back.
    drain_timeout: float = 20.0
    #: Print a progress line to this stream every ``progress_every`` seconds (None: quiet).
    progress_every: float = 10.0

    def __post_init__(self) -> None:
        problems = []
        if self.shards < 1:
            problems.append(f"shards must be >= 1, got {self.shards}")
        if self.duration < 0:
            problems.append(f"duration must be >= 0, got {self.duration}")
        if self.fault_interval <= 0:
            problems.append(f"fault interval must be > 0 seconds, got {self.fault_interval}")
        if self.compression not in COMPRESSIONS:
            problems.append(f"compression must be one of {', '.join(COMPRESSIONS)}, got {self.compression!r}")
        if self.event_rate < 0:
            problems.append(f"event rate must be >= 0, got {self.event_rate}")
        if self.heartbeat_interval_ms < MIN_HEARTBEAT_MS:
            problems.append(
                f"heartbeat interval must be >= {MIN_HEARTBEAT_MS} ms, got {self.heartbeat_interval_ms}: "
                f"faster heartbeats alone exceed {COMMANDS_PER_WINDOW} commands per "
                f"{COMMAND_WINDOW_SECONDS:g} s"
            )
        unknown = [kind for kind in self.faults if kind not in FAULT_KINDS]
        if unknown:
            problems.append(f"unknown fault {unknown[0]!r}; known: {', '.join(FAULT_KINDS)}")
        if problems:
            raise ValueError("invalid soak settings: " + "; ".join(problems))


@dataclass(slots=True)
class ShardResult:
    shard_id: int
    sent: int
    received: int
    lost: int
    duplicated: int
    out_of_order: int
    #: Received ids the sandbox never sent on this shard (a mix-up between shards).
    unknown: int
    #: Sent but dropped with a session the server could not resume: Discord's loss, expected.
    not_replayable: int
    identifies: int
    resumes: int
    session_starts: int
    identify_violations: int
    command_violations: int
    #: A few lost / duplicated event ids, to start looking from.
    examples: dict[str, list[int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.out_of_order
            or self.unknown
            or self.identify_violations
            or self.command_violations
        )


@dataclass(slots=True)
class SoakReport:
    config: dict[str, Any]
    seconds: float
    faults: dict[str, int]
    shards: list[ShardResult]
    #: True when every shard was CONNECTED again after the faults stopped.
    settled: bool
    session_starts_used: int
    identify_violations: int
    command_violations: int
    #: Exceptions the event loop saw unhandled, and errors the library logged or reported (ERROR
    #: ShardLogEvents).
    exceptions: list[str]
    #: Tasks still running after ``shutdown_all()`` (and after the sandbox stopped).
    leftover_tasks: list[str]
    #: Gateway connections the sandbox still had open after ``shutdown_all()``.
    open_connections: int
    http_session_closed: bool
    fatal_error: str | None = None

    def totals(self) -> dict[str, int]:
        keys = ("sent", "received", "lost", "duplicated", "out_of_order", "unknown", "not_replayable")
        return {key: sum(getattr(s, key) for s in self.shards) for key in keys}

    def problems(self) -> list[str]:
        """One line per reason the run failed; empty when it passed."""
        found = []
        totals = self.totals()
        for key, label in (
            ("lost", "dispatches lost"),
            ("duplicated", "dispatches duplicated"),
            ("out_of_order", "dispatches out of order"),
            ("unknown", "dispatches received that were never sent on that shard"),
        ):
            if totals[key]:
                shards = [s.shard_id for s in self.shards if getattr(s, key)]
                found.append(f"{totals[key]} {label} (shards {', '.join(map(str, shards))})")
        if self.identify_violations:
            found.append(f"{self.identify_violations} identify rate-limit violations")
        if self.command_violations:
            found.append(f"{self.command_violations} command rate-limit violations")
        if self.exceptions:
            found.append(f"{len(self.exceptions)} unhandled exceptions / library errors")
        if self.leftover_tasks:
            found.append(f"{len(self.leftover_tasks)} tasks left running after shutdown")
        if self.open_connections:
            found.append(f"{self.open_connections} gateway connections still open after shutdown_all()")
        if not self.http_session_closed:
            found.append("the manager's HTTP session was not closed")
        if not self.settled:
            found.append("not every shard was CONNECTED again after the faults stopped")
        if self.fatal_error:
            found.append(f"fatal gateway error: {self.fatal_error}")
        return found

    @property
    def ok(self) -> bool:
        return not self.problems()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["totals"] = self.totals()
        data["problems"] = self.problems()
        data["ok"] = self.ok
        return data

    def render(self) -> str:
        cfg = self.config
        totals = self.totals()
        lines = [
            f"soak: {cfg['shards']} shards, {cfg['compression']}, {cfg['duration']:g} s of faults every "
            f"{cfg['fault_interval']:g} s (seed {cfg['seed']}), {self.seconds:.1f} s in all",
            f"faults injected: {sum(self.faults.values())}"
            + (
                " (" + ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) + ")"
                if self.faults
                else ""
            ),
            "",
            f"{'shard':>5} {'sent':>7} {'recv':>7} {'lost':>5} {'dup':>5} {'order':>5} {'unkn':>5} "
            f"{'not-repl':>8} {'ident':>5} {'resume':>6} {'starts':>6} {'viol':>5}",
        ]
        for s in self.shards:
            lines.append(
                f"{s.shard_id:>5} {s.sent:>7} {s.received:>7} {s.lost:>5} {s.duplicated:>5} "
                f"{s.out_of_order:>5} {s.unknown:>5} {s.not_replayable:>8} {s.identifies:>5} "
                f"{s.resumes:>6} {s.session_starts:>6} {s.identify_violations + s.command_violations:>5}"
                + ("" if s.ok else "  <-- " + _examples(s))
            )
        lines += [
            "",
            f"sent                          {totals['sent']}",
            f"received                      {totals['received']}",
            f"lost                          {totals['lost']}",
            f"duplicated                    {totals['duplicated']}",
            f"out of order                  {totals['out_of_order']}",
            f"unknown                       {totals['unknown']}",
            f"not replayable by the server  {totals['not_replayable']}  (expected: op 9 false, 4007, 4009)",
            f"identify-limit violations     {self.identify_violations}",
            f"command-limit violations      {self.command_violations}",
            f"session starts used           {self.session_starts_used}",
            f"unhandled exceptions          {len(self.exceptions)}",
            f"tasks left running            {len(self.leftover_tasks)}",
            f"connections left open         {self.open_connections}",
            f"HTTP session closed           {'yes' if self.http_session_closed else 'NO'}",
            f"all shards back               {'yes' if self.settled else 'NO'}",
        ]
        for text in self.exceptions[:10]:
            lines.append(f"  exception: {text}")
        for text in self.leftover_tasks[:10]:
            lines.append(f"  task: {text}")
        problems = self.problems()
        lines.append("")
        lines.append("PASS" if not problems else "FAIL: " + "; ".join(problems))
        return "\n".join(lines)


def _examples(result: ShardResult) -> str:
    return "; ".join(f"{k} {v}" for k, v in result.examples.items() if v)


def out_of_order_count(sent_ids: Sequence[int], received: Sequence[int]) -> int:
    """How many received ids arrived after one the sandbox sent later (unknown ids are skipped)."""
    position: dict[int, int] = {}
    for index, event_id in enumerate(sent_ids):
        position.setdefault(event_id, index)
    count = 0
    highest = -1
    for event_id in received:
        pos = position.get(event_id)
        if pos is None:
            continue
        if pos < highest:
            count += 1
        else:
            highest = pos
    return count


class _ErrorLog(logging.Handler):
    """Keeps every ERROR (or worse) record the library logs during the soak."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({record.exc_info[1]!r})"
        self.records.append(redact(text))


def _task_text(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    code = getattr(coro, "cr_code", None)
    where = f"{code.co_qualname} ({code.co_filename}:{code.co_firstlineno})" if code else repr(coro)
    return f"{task.get_name()}: {where}"


async def _settle_tasks(baseline: set[asyncio.Task[Any]], grace: float, keep: str | None) -> list[str]:
    """Tasks (not in ``baseline``, not named ``keep``*) still alive after ``grace`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    current = asyncio.current_task()
    while True:
        alive = [
            t
            for t in asyncio.all_tasks()
            if t is not current
            and t not in baseline
            and not t.done()
            and not (keep is not None and t.get_name().startswith(keep))
        ]
        if not alive or loop.time() >= deadline:
            return sorted(_task_text(t) for t in alive)
        await asyncio.sleep(0.05)


async def run_soak(config: SoakConfig, progress: IO[str] | None = None) -> SoakReport:
    """Run one soak and return its report (never raises for what the run found)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    baseline = set(asyncio.all_tasks())
    exceptions: list[str] = []
    previous_handler = loop.get_exception_handler()

    def on_exception(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        exceptions.append(redact(f"{context.get('message', 'unhandled')}: {exc!r}" if exc else str(context)))

    loop.set_exception_handler(on_exception)
    errors = _ErrorLog()
    library_log = logging.getLogger("shardtui")
    library_log.addHandler(errors)

    sandbox = Sandbox(
        SandboxSettings(
            guilds=config.guilds_per_shard * config.shards,
            shards=config.shards,
            max_concurrency=config.max_concurrency,
            identify_window=config.identify_window,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            resume_window=config.resume_window,
            event_rate=config.event_rate * config.shards,
            session_start_total=config.session_start_total,
            seed=config.seed,
        )
    )
    received: dict[int, list[int]] = {shard: [] for shard in range(config.shards)}

    def handler(dispatch: Dispatch) -> None:
        data = dispatch.data
        if isinstance(data, dict):
            event_id = data.get(EVENT_ID_KEY)
            if isinstance(event_id, int):
                received.setdefault(int(dispatch.shard_id), []).append(event_id)

    faults: Counter[str] = Counter()
    manager: ShardManager | None = None
    settled = False
    leftover: list[str] = []
    open_connections = 0
    http_closed = True
    fatal: str | None = None
    results: list[ShardResult] | None = None
    try:
        await sandbox.start()
        register_secret(sandbox.token)
        manager = ShardManager(
            ShardManagerOptions(
                token=sandbox.token,
                intents=GatewayIntents.default(),
                rest_url=sandbox.rest_url,
                compression=config.compression,
                identify_window=config.identify_window,
                event_handler=handler,
                health_interval=1.0,
                shutdown_timeout=5.0,
            )
        )
        manager.subscribe(lambda event: _note_error_event(event, exceptions))
        await manager.initialize()
        await manager.wait_until_connected(config.settle_timeout)
        rng = random.Random(config.seed)
        chaos_end = loop.time() + config.duration
        next_progress = loop.time() + config.progress_every
        while loop.time() < chaos_end and manager.fatal_error is None:
            # Jitter keeps faults from locking step with heartbeats; seeded, so runs repeat.
            await asyncio.sleep(config.fault_interval * rng.uniform(0.5, 1.5))
            applied = sandbox.inject_random(choices=config.faults)
            if applied is not None:
                faults[_fault_label(*applied)] += 1
            if progress is not None and loop.time() >= next_progress:
                next_progress += config.progress_every
                _progress(progress, loop.time() - started, faults, manager, received)
        sandbox.quiesce()
        sandbox.heal()
        settled = await manager.wait_until_connected(config.settle_timeout)
        await _drain(sandbox, manager, received, config.drain_timeout)
        if manager.fatal_error is not None:
            fatal = manager.fatal_error.message
        # Compared while every session is still alive: closing with 1000 ends them, and what a client
        # had not confirmed then counts as the server's loss, which would hide the client's own.
        live_stats = sandbox.stats()
        results = [
            _shard_result(sandbox, live_stats, s, list(received.get(s, []))) for s in range(config.shards)
        ]
    except Exception as exc:
        exceptions.append(redact(f"the soak itself failed: {exc!r}"))
    finally:
        if manager is not None:
            await manager.shutdown_all()
            http_closed = manager._session is None or manager._session.closed
        if sandbox.running:
            leftover = await _settle_tasks(baseline, 3.0, _SANDBOX_TASK_PREFIX)
            open_connections = int(sandbox.stats().get("connections_open", 0))
        stats = sandbox.stats()
        await sandbox.stop()
        leftover += [t for t in await _settle_tasks(baseline, 3.0, None) if t not in leftover]
        library_log.removeHandler(errors)
        loop.set_exception_handler(previous_handler)

    if results is None:
        results = [_shard_result(sandbox, stats, s, received.get(s, [])) for s in range(config.shards)]
    return SoakReport(
        config=asdict(config),
        seconds=round(loop.time() - started, 3),
        faults=dict(faults),
        shards=results,
        settled=settled,
        session_starts_used=int(stats.get("session_starts_used", 0)),
        identify_violations=int(stats.get("identify_violations", 0)),
        command_violations=int(stats.get("command_violations", 0)),
        exceptions=exceptions + errors.records,
        leftover_tasks=leftover,
        open_connections=open_connections,
        http_session_closed=http_closed,
        fatal_error=fatal,
    )


def _note_error_event(event: object, into: list[str]) -> None:
    """The library reports trouble through ShardLogEvents; ERROR ones mean something broke."""
    if isinstance(event, ShardLogEvent) and event.level >= logging.ERROR:
        where = f"shard {event.shard_id}" if event.shard_id is not None else "manager"
        into.append(redact(f"{where}: {event.message}"))


def _fault_label(kind: str, params: dict[str, Any]) -> str:
    if kind == "close":
        return f"close {params.get('code')}"
    if kind == "invalid_session":
        return "op 9 resumable" if params.get("resumable") else "op 9 not resumable"
    if kind == "reconnect":
        return "op 7"
    return kind


def _progress(
    out: IO[str], elapsed: float, faults: Counter[str], manager: ShardManager, received: dict[int, list[int]]
) -> None:
    connected = sum(1 for i in manager.runners.values() if i.stage is ConnectionStage.CONNECTED)
    got = sum(len(ids) for ids in received.values())
    print(
        f"soak: {elapsed:6.1f} s  faults {sum(faults.values()):5d}  "
        f"connected {connected}/{len(manager.runners)}  dispatches received {got}",
        file=out,
        flush=True,
    )


async def _drain(
    sandbox: Sandbox, manager: ShardManager, received: dict[int, list[int]], limit: float
) -> None:
    """Wait until no shard misses a replayable dispatch, or ``limit`` s (then what is missing is lost)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    shards = [int(shard) for shard in manager.runners]
    while loop.time() < deadline:
        if all(not sandbox.delivery_report(s, received.get(s, [])).lost for s in shards):
            return
        await asyncio.sleep(0.2)


def _shard_result(sandbox: Sandbox, stats: dict[str, Any], shard: int, got: list[int]) -> ShardResult:
    sent = sandbox.sent_events(shard)
    report = sandbox.delivery_report(shard, got)
    per_shard = stats.get("shards", {}).get(str(shard), {})
    return ShardResult(
        shard_id=shard,
        sent=report.sent,
        received=report.received,
        lost=len(report.lost),
        duplicated=len(report.duplicated),
        out_of_order=out_of_order_count([e.event_id for e in sent], got),
        unknown=len(report.unknown),
        not_replayable=len(report.not_replayable),
        identifies=int(per_shard.get("identifies", 0)),
        resumes=int(per_shard.get("resumes", 0)),
        session_starts=int(per_shard.get("session_starts", 0)),
        identify_violations=int(per_shard.get("identify_violations", 0)),
        command_violations=int(per_shard.get("command_violations", 0)),
        examples={
            "lost": report.lost[:5],
            "duplicated": report.duplicated[:5],
            "unknown": report.unknown[:5],
        },
    )


# -- command line ----------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def _fault_list(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown fault {unknown[0] if unknown else text!r}; known: {', '.join(FAULT_KINDS)}"
        )
    return kinds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The soak's options (shared by ``python -m shardtui.soak``, ``shardtui soak`` and bench/soak.py)."""
    defaults = SoakConfig()
    parser.add_argument(
        "--shards", type=_positive_int, default=defaults.shards, help="shard count (default: 16)"
    )
    parser.add_argument(
        "--duration", type=_non_negative_float, default=defaults.duration, metavar="SECONDS",
        help="seconds of faults (default: 30); settling and draining come on top",
    )  # fmt: skip
    parser.add_argument(
        "--fault-interval", type=_positive_float, default=defaults.fault_interval, metavar="SECONDS",
        help="seconds between injected faults (default: 0.5)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="seed of faults and traffic (default: 1)"
    )
    parser.add_argument(
        "--compression", choices=COMPRESSIONS, default=defaults.compression, help="transport compression"
    )
    parser.add_argument(
        "--event-rate", type=_non_negative_float, default=defaults.event_rate, metavar="N",
        help="dispatches per second per shard (default: 10)",
    )  # fmt: skip
    parser.add_argument(
        "--faults", type=_fault_list, default=defaults.faults, metavar="KIND,...",
        help="fault kinds to draw from (default: " + ",".join(SOAK_FAULTS) + ")",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of text")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default="error",
        help="library log level on stderr (default: error; errors always fail the run)",
    )  # fmt: skip


def run_from_args(args: argparse.Namespace) -> int:
    """Run the soak the parsed ``args`` describe; 0 when it passed, 1 when it found a problem."""
    try:
        config = SoakConfig(
            shards=args.shards,
            duration=args.duration,
            fault_interval=args.fault_interval,
            seed=args.seed,
            compression=args.compression,
            event_rate=args.event_rate,
            faults=tuple(args.faults),
        )
    except ValueError as exc:
        print(f"shardtui soak: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.log_level)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    report = asyncio.run(run_soak(config, progress=None if args.quiet else sys.stderr))
    if args.json:
        data = report.to_dict()
        data["started_at"] = started
        print(json.dumps(data, indent=2))
    else:
        print(report.render())
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="shardtui soak",
        description="Chaos soak: faults against a headless fleet on the embedded sandbox, then count "
        "every dispatch. Exits 1 on any loss, duplicate, reordering, violation, exception or leftover.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return run_from_args(args)
    return 130


if __name__ == "__main__":
    raise SystemExit(main())
