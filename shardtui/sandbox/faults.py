"""Fault injection: the ways a real gateway misbehaves, on request or on a schedule."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import orjson

from shardtui.gateway.protocol import CloseCode, Opcode

from .gateway import control
from .payloads import message_data
from .settings import FAULT_KINDS, ScheduledFault
from .state import SandboxState
from .transport import Connection

log = logging.getLogger("shardtui.sandbox")

#: Faults a "random" schedule draws from (those that hit one live connection and heal by reconnecting).
RANDOM_KINDS: tuple[str, ...] = (
    "drop",
    "zombie",
    "wedge",
    "reconnect",
    "invalid_session",
    "close",
    "malformed",
    "truncated",
    "split",
    "oversized",
    "heartbeat_request",
    # These two also drop the chosen shard, so its reconnect meets the slow or refusing server.
    "delay_hello",
    "refuse",
)
#: Close codes a random "close" fault chooses from.
RANDOM_CLOSE_CODES: tuple[int, ...] = (4000, 4001, 4002, 4003, 4005, 4007, 4008, 4009)

SANDBOX_WIDE = frozenset({"delay_hello", "refuse", "outage"})


def _apply(state: SandboxState, conn: Connection, kind: str, params: dict[str, Any]) -> None:
    session = conn.session
    if kind == "drop":
        conn.abort()
    elif kind == "zombie":
        conn.zombie = True
    elif kind == "wedge":
        conn.wedged = True
    elif kind == "reconnect":
        conn.send(control(Opcode.RECONNECT))
        grace = state.settings.reconnect_drop_after
        if grace is not None:
            conn.reconnect_deadline = state.now() + grace
    elif kind == "invalid_session":
        resumable = bool(params.get("resumable", False))
        conn.send(control(Opcode.INVALID_SESSION, resumable))
        if session is not None:
            state.shard(session.shard_id).invalid_sessions[resumable] += 1
            if not resumable:
                session.kill("op 9 not resumable")
                conn.session = None
    elif kind == "close":
        code = int(params.get("code", CloseCode.UNKNOWN_ERROR))
        reason = str(params.get("reason") or _reason(code))
        conn.close(code, reason)
    elif kind == "malformed":
        conn.send_raw(b'{"t":"MESSAGE_CREATE","s":')
    elif kind == "latency":
        conn.socket.ack_delay = max(0.0, float(params.get("seconds", 0.25)))
    elif kind == "split":
        conn.split_next = True
    elif kind == "truncated":
        conn.send_raw(orjson.dumps(control(Opcode.HEARTBEAT_ACK)), truncated=True)
    elif kind == "oversized":
        size = int(params.get("size", 2 * 1024 * 1024))
        if session is not None:
            world = state.world
            # A guild of this session's shard (a guild_id from another shard is one no gateway sends),
            # else the bot's DM channel.
            guild = next((g for g in world.guilds if session.covers_guild(g.id)), None)
            channel_id, guild_id, channel_type = (
                (world.dm_channel_id, None, 1) if guild is None else (guild.text_channel_ids[0], guild.id, 0)
            )
            content, author = "x" * size, world.users[0].payload()
            data = message_data(world.snowflakes.now(), channel_id, guild_id, channel_type, content, author)
            session.dispatch("MESSAGE_CREATE", data, state.next_event_id())
    elif kind == "heartbeat_request":
        conn.send(control(Opcode.HEARTBEAT))


def _reason(code: int) -> str:
    try:
        return CloseCode(code).description
    except ValueError:
        return "sandbox fault"


def inject(state: SandboxState, kind: str, shard_id: int | None = None, **params: Any) -> int:
    """Apply a fault now; returns how many connections it touched (for sandbox-wide kinds: all open)."""
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown sandbox fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
    if kind == "close":
        code = params.get("code", CloseCode.UNKNOWN_ERROR)
        if (
            not isinstance(code, int)
            or code in (1004, 1005, 1006)
            or not (1000 <= code <= 1014 or 3000 <= code <= 4999)
        ):
            raise ValueError(
                f"close code {code} is not one a server may send (1000-1014 except 1004-1006, 3000-4999)"
            )
    now = state.now()
    state.totals.faults[kind] += 1
    if kind == "delay_hello":
        seconds, count = float(params.get("seconds", 2.0)), int(params.get("count", 1))
        state.pending_hello_delays.extend([seconds] * count)
        return count
    if kind == "refuse":
        state.refuse_until = max(state.refuse_until, now + float(params.get("seconds", 2.0)))
        return 0
    if kind == "outage":
        state.refuse_until = max(state.refuse_until, now + float(params.get("seconds", 1.0)))
        targets = list(state.connections.values())
        for conn in targets:
            if conn.shard_id is not None:
                state.shard(conn.shard_id).faults[kind] += 1
            conn.abort()
        return len(targets)
    targets = state.connections_for(shard_id)
    for conn in targets:
        if conn.session is not None:
            conn.session.faults[kind] += 1
        _apply(state, conn, kind, params)
        if conn.shard_id is not None:
            state.shard(conn.shard_id).faults[kind] += 1
    return len(targets)


def inject_random(
    state: SandboxState,
    rng: random.Random,
    shard_id: int | None = None,
    choices: tuple[str, ...] = (),
    params: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]] | None:
    """One random transient fault on ``shard_id`` (a random live shard when None).

    Returns (kind, params) as applied, or None when no shard is connected."""
    params = dict(params or {})
    kind = rng.choice(choices or RANDOM_KINDS)
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown sandbox fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
    if shard_id is None:
        live = sorted({c.session.shard_id for c in state.connections_for(None) if c.session is not None})
        if not live:
            return None
        shard_id = rng.choice(live)
    if kind == "close":
        params.setdefault("code", rng.choice(RANDOM_CLOSE_CODES))
    elif kind == "invalid_session":
        params.setdefault("resumable", rng.random() < 0.5)
    elif kind == "oversized":
        params.setdefault("size", 1_500_000)
    elif kind in ("delay_hello", "refuse"):
        params.setdefault("seconds", round(rng.uniform(0.2, 1.0), 3))
        inject(state, kind, None, **params)
        inject(state, "drop", shard_id)
        return kind, params
    inject(state, kind, shard_id, **params)
    return kind, params


async def run_schedule(state: SandboxState, rule: ScheduledFault, rng: random.Random) -> None:
    """Fire ``rule`` forever (until cancelled)."""
    if rule.every <= 0:
        raise ValueError(f"fault schedule {rule.kind!r}: every must be > 0, got {rule.every}")
    while True:
        await asyncio.sleep(rule.every)
        try:
            if rule.kind == "random":
                inject_random(state, rng, rule.shard, rule.choices, rule.params)
                continue
            shard = rule.shard
            if shard is None and rule.kind not in SANDBOX_WIDE:
                live = sorted(
                    {c.session.shard_id for c in state.connections_for(None) if c.session is not None}
                )
                if not live:
                    continue
                shard = rng.choice(live)
            inject(state, rule.kind, shard, **rule.params)
        except (ValueError, TypeError) as exc:
            log.warning("sandbox fault schedule %s: %s", rule.kind, exc)
