"""``shardtui run --headless``: run the shards with no UI.

stdout carries one JSON object per line — every shard stage change, every fatal error, and every alert
(``"event": "alert"``) and its end (``"event": "alert_cleared"``) — so it can be
piped into ``jq`` or a log shipper; logs go to stderr. On exit (duration over, SIGINT/SIGTERM, or a fatal
error that stopped the shards) a JSON summary of every shard is written to ``--report``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from shardtui.config import Config, ConfigError
from shardtui.gateway.aio import wait_for
from shardtui.gateway.errors import GatewayError
from shardtui.gateway.models import (
    AlertClearedEvent,
    AlertEvent,
    ConnectionStage,
    FatalErrorEvent,
    ShardLogEvent,
    ShardStageUpdateEvent,
)
from shardtui.logsafe import redact, redact_value
from shardtui.runtime import Runtime

log = logging.getLogger(__name__)
shard_log = logging.getLogger("shardtui.shard")

EXIT_OK = 0
EXIT_NO_REPORT = 1
EXIT_CONFIG = 2
EXIT_FATAL = 3
#: Shards ran, but not one of them ever reached READY/RESUMED (a wrong url, a TLS or proxy problem…):
#: the run did nothing a bot needs, so systemd and CI must see it fail.
EXIT_NEVER_CONNECTED = 4
#: Never-connected shards are reported grouped by their last error, at most this many groups.
MAX_ERROR_GROUPS = 10
#: "…; retrying in 1.3 s": left out so that shards failing the same way group together.
_RETRY_TAIL = re.compile(r";\s*retrying in [0-9.]+ s$")
#: How often the run checks whether a fatal error has left no shard running.
_POLL = 0.1


@dataclass(slots=True)
class _RunState:
    out: IO[str]
    fatal: list[FatalErrorEvent] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = "duration"
    out_closed: bool = False
    #: Every shard's info as the run ended, taken before the shutdown turns them all "disconnected".
    shards: list[dict[str, Any]] = field(default_factory=list)
    #: Which shards resumed a saved session at start, and the identifies that saved (state file).
    sessions: dict[str, Any] | None = None
    #: Shards that reached CONNECTED at least once during the run.
    ever_connected: set[int] = field(default_factory=set)
    #: Each shard's last warning or error (why it is not connected), as its log said it.
    last_error: dict[int, str] = field(default_factory=dict)
    #: The gateway url the shards connect to (named in the never-connected lines).
    gateway_url: str | None = None
    #: ``[proxy]`` counts as the run ended (clients, sessions, slow clients cut...), None without a proxy.
    proxy: dict[str, Any] | None = None

    def snapshot(self, runtime: Runtime) -> None:
        if runtime._manager is None:
            return
        infos = sorted(runtime.manager.runners.values(), key=lambda info: int(info.shard_id))
        self.shards = [info.to_dict() for info in infos]
        self.gateway_url = runtime.manager.gateway_url
        restore = getattr(runtime.manager, "session_restore", None)
        if restore is not None:
            self.sessions = restore.summary()
        if runtime.proxy is not None:
            self.proxy = runtime.proxy.stats()

    def on_proxy_event(self, event: Any) -> None:
        """A bot client attached to or detached from the proxy: one JSON line."""
        line: dict[str, Any] = {
            "ts": round(time.time(), 6),
            "shard": event.shard_id,
            "session": event.session_id,
        }
        from shardtui.proxy.server import ClientAttached

        if isinstance(event, ClientAttached):
            line.update(
                event="client_attach", address=event.address, library=event.library, resumed=event.resumed
            )
        else:
            line.update(event="client_detach", code=event.code, by_client=event.by_client)
        self.emit(line)

    def never_connected(self) -> list[dict[str, Any]]:
        """Shards of the run that never reached CONNECTED, grouped by their last error (first shard first)."""
        groups: dict[str, list[int]] = {}
        for shard in self.shards:
            shard_id = shard["id"]
            if shard_id in self.ever_connected or shard["stage"] == "connected":
                continue
            error = (
                shard["fatal_error"]
                or self.last_error.get(shard_id)
                or f"no error reported (last stage: {shard['stage']})"
            )
            groups.setdefault(error, []).append(shard_id)
        return [{"shards": ids, "error": error} for error, ids in groups.items()]

    def emit(self, obj: dict[str, Any]) -> None:
        if self.out_closed:
            return
        # Redacted even though no event should carry the token: a close reason or error text could.
        try:
            self.out.write(redact(json.dumps(obj, separators=(",", ":"))) + "\n")
            self.out.flush()
        except (BrokenPipeError, ValueError):
            # The reader went away (``| head``): stop cleanly rather than fail inside the manager.
            self.out_closed = True
            self.reason = "stdout closed"
            self.stop.set()

    def on_event(self, event: Any) -> None:
        if isinstance(event, ShardStageUpdateEvent):
            if event.new is ConnectionStage.CONNECTED:
                self.ever_connected.add(int(event.shard_id))
            self.emit(
                {
                    "ts": round(time.time(), 6),
                    "event": "stage",
                    "shard": int(event.shard_id),
                    "old": event.old.value,
                    "new": event.new.value,
                }
            )
        elif isinstance(event, FatalErrorEvent):
            self.fatal.append(event)
            self.emit(
                _fatal_line(event.kind, event.message, [int(s) for s in event.shard_ids], event.close_code)
            )
        elif isinstance(event, AlertEvent | AlertClearedEvent):
            self.emit(_alert_line(event))
        elif isinstance(event, ShardLogEvent):
            prefix = f"shard {event.shard_id}: " if event.shard_id is not None else ""
            if event.shard_id is not None and event.level >= logging.WARNING:
                self.last_error[int(event.shard_id)] = _RETRY_TAIL.sub("", event.message)
            shard_log.log(event.level, "%s%s", prefix, event.message)


def _alert_line(event: AlertEvent | AlertClearedEvent) -> dict[str, Any]:
    line: dict[str, Any] = {
        "ts": round(event.at, 6),
        "event": "alert" if isinstance(event, AlertEvent) else "alert_cleared",
        "kind": event.kind.value,
        "shard": None if event.shard_id is None else int(event.shard_id),
        "message": event.message,
    }
    if event.process is not None:
        line["process"] = event.process
    if isinstance(event, AlertClearedEvent):
        line["duration_s"] = round(event.duration, 3)
    return line


def _fatal_line(kind: str, message: str, shards: list[int], close_code: int | None) -> dict[str, Any]:
    return {
        "ts": round(time.time(), 6),
        "event": "fatal",
        "kind": kind,
        "message": message,
        "shards": shards,
        "close_code": close_code,
    }


async def run_headless(
    config: Config,
    *,
    duration: float | None = None,
    report_path: str | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    runtime_factory: Callable[[Config], Runtime] = Runtime,
) -> int:
    """Run until ``duration`` seconds pass, a signal arrives, or a fatal error stops every shard.

    Returns the exit status: 0 normal stop, 3 when a fatal gateway error stopped shards, 4 when shards
    failed to connect and none ever did, else 1 when the report could not be written. Shards that
    never connected get a line on ``err`` (stderr), grouped by their last error, even when others did.
    ``ConfigError`` propagates (the CLI turns it into one line and status 2).
    """
    state = _RunState(out=out if out is not None else sys.stdout)
    loop = asyncio.get_running_loop()
    installed: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, _on_signal, state, signum)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / platform
            pass
    started = time.time()
    runtime = runtime_factory(config)
    status = EXIT_OK
    try:
        try:
            await runtime.open()
            # Stays subscribed through the shutdown, so the final transitions are on stdout too.
            runtime.manager.subscribe(state.on_event)
            if runtime.proxy is not None:
                runtime.proxy.subscribe(state.on_proxy_event)
            await runtime.start()
            await _wait(runtime, state, duration)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, ConfigError):
                raise
            # Start-up failures (REST 401, unreachable gateway) are fatal gateway errors, said once.
            state.reason = "fatal"
            if not state.fatal:
                message = str(exc) if isinstance(exc, GatewayError) else f"{type(exc).__name__}: {exc}"
                state.on_event(
                    FatalErrorEvent(
                        kind=str(getattr(exc, "kind", "gateway")),
                        message=message,
                        close_code=getattr(exc, "code", None),
                    )
                )
            log.error("cannot run the shards: %s", state.fatal[0].message)
            status = EXIT_FATAL
        finally:
            state.snapshot(runtime)
            await runtime.close()
        if state.fatal:
            status = EXIT_FATAL
        never = state.never_connected()
        if never:
            _say_never_connected(never, state, err if err is not None else sys.stderr)
            # Not when the run ended before any shard had the chance to connect or fail (a short
            # --duration, an early SIGTERM): a stalled connect fails within its connect timeout.
            if status == EXIT_OK and not state.ever_connected and state.last_error:
                status = EXIT_NEVER_CONNECTED
        if report_path is not None and not _write_report(report_path, config, state, started, status):
            # A script reading status 0 would look for a report that is not there.
            status = max(status, EXIT_NO_REPORT)
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    return status


def _say_never_connected(groups: list[dict[str, Any]], state: _RunState, err: IO[str]) -> None:
    where = f" to {state.gateway_url}" if state.gateway_url else ""
    shown = groups[:MAX_ERROR_GROUPS]
    lines = [f"shardtui: {_shard_list(g['shards'])} never connected{where}: {g['error']}" for g in shown]
    rest = groups[MAX_ERROR_GROUPS:]
    if rest:
        count = sum(len(g["shards"]) for g in rest)
        lines.append(
            f"shardtui: {count} more shards never connected, with {len(rest)} other errors (see the report)"
        )
    with contextlib.suppress(OSError, ValueError):
        err.write(redact("\n".join(lines)) + "\n")
        err.flush()


def _shard_list(ids: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> "shards 0-2, 5"; ``[3]`` -> "shard 3"."""
    runs: list[str] = []
    start = prev = ids[0]
    for shard in [*ids[1:], None]:
        if shard is not None and shard == prev + 1:
            prev = shard
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if shard is not None:
            start = prev = shard
    return ("shard " if len(ids) == 1 else "shards ") + ", ".join(runs)


def _on_signal(state: _RunState, signum: int) -> None:
    state.reason = f"signal {signal.Signals(signum).name}"
    log.warning("%s received: shutting the shards down", signal.Signals(signum).name)
    state.stop.set()


async def _wait(runtime: Runtime, state: _RunState, duration: float | None) -> None:
    deadline = None if duration is None else asyncio.get_running_loop().time() + duration
    loop = asyncio.get_running_loop()
    while not state.stop.is_set():
        timeout = _POLL if deadline is None else min(_POLL, max(0.0, deadline - loop.time()))
        with contextlib.suppress(TimeoutError):
            await wait_for(state.stop.wait(), timeout)
        if state.stop.is_set():
            return
        if deadline is not None and loop.time() >= deadline:
            state.reason = "duration"
            return
        if state.fatal or runtime.manager.fatal_error is not None:
            if runtime.manager.fatal_error is not None and not state.fatal:
                state.on_event(runtime.manager.fatal_error)
            if not any(info.running for info in runtime.manager.runners.values()):
                state.reason = "fatal"
                return


def build_report(
    config: Config,
    shards: list[dict[str, Any]],
    state_reason: str,
    started: float,
    status: int,
    fatal: list[FatalErrorEvent],
    sessions: dict[str, Any] | None = None,
    never_connected: list[dict[str, Any]] | None = None,
    proxy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    ended = time.time()
    report: dict[str, Any] = {
        "mode": config.gateway.mode,
        "config": config.source,
        "started_at": round(started, 3),
        "ended_at": round(ended, 3),
        "duration_s": round(ended - started, 3),
        "stopped_by": state_reason,
        "exit_status": status,
        "exit_reason": _EXIT_REASONS.get(status),
        "shard_total": shards[0]["total"] if shards else config.shard_total(),
        "connected": sum(1 for s in shards if s["stage"] == "connected"),
        "fatal_errors": [
            {
                "kind": e.kind,
                "message": e.message,
                "shards": [int(s) for s in e.shard_ids],
                "close_code": e.close_code,
            }
            for e in fatal
        ],
        #: [{"shards": [ids], "error": last error}], also when other shards connected (exit status 0).
        "never_connected": never_connected or [],
        "shards": shards,
    }
    if sessions is not None:
        # Persisted sessions (gateway.state_file): identifies_saved, resumed / rejected / stale ids.
        report["sessions"] = sessions
    if proxy is not None:
        report["proxy"] = proxy
    return report


_EXIT_REASONS: dict[int, str] = {
    EXIT_NO_REPORT: "the report could not be written",
    EXIT_FATAL: "a fatal gateway error stopped the shards",
    EXIT_NEVER_CONNECTED: "no shard ever connected",
}


def _write_report(path: str, config: Config, state: _RunState, started: float, status: int) -> bool:
    report = build_report(
        config,
        state.shards,
        state.reason,
        started,
        status,
        state.fatal,
        state.sessions,
        state.never_connected(),
        state.proxy,
    )
    text = json.dumps(redact_value(report), indent=2) + "\n"
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        log.error("cannot write the report to %s: %s", path, exc.strerror or exc)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return False
    return True
