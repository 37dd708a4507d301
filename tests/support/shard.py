"""The sans-I/O Shard in tests: a clock a test moves by hand, a Shard with the tests' defaults, the
gateway payloads it is fed and the steps that bring it to a state (connected, identified)."""

from __future__ import annotations

import random
from typing import Any

from shardtui.gateway.models import ConnectionStage
from shardtui.gateway.protocol import GatewayIntents
from shardtui.gateway.shard import SessionState, Shard

TOKEN = "MTIz.shard-unit-test.secret-token-value"
BASE = "ws://gateway.test/"
RESUME_URL = "wss://resume.gateway.test"
QUERY = "?v=10&encoding=json&compress=zstd-stream"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_shard(clock: Clock | None = None, *, saved_seq: int | None = None, **kwargs: Any) -> Shard:
    """A Shard (0 of 1 unless ``shard_id`` / ``total`` say otherwise) with the tests' token, intents and
    url, on ``clock``, with a seeded rng; any other ``Shard`` keyword overrides a default.

    ``saved_seq``: start from a saved session ("s" at that seq, resuming through RESUME_URL), as a
    restarted bot does.
    """
    defaults: dict[str, Any] = dict(
        token=TOKEN,
        intents=GatewayIntents.GUILDS | GatewayIntents.GUILD_MESSAGES,
        gateway_url=BASE,
        clock=clock or Clock(),
        rng=random.Random(7),
    )
    if saved_seq is not None:
        defaults["resume"] = SessionState("s", saved_seq, RESUME_URL)
    shard_id = kwargs.pop("shard_id", 0)
    total = kwargs.pop("total", 1)
    defaults.update(kwargs)
    return Shard(shard_id, total, **defaults)


def hello(interval_ms: float = 1000) -> dict:
    return {"op": 10, "d": {"heartbeat_interval": interval_ms}, "s": None, "t": None}


def dispatch(name: str, s: int | None, d: object = None) -> dict:
    return {"op": 0, "t": name, "s": s, "d": {} if d is None else d}


def ready(s: int = 1, session_id: str = "sess-1", guilds: int = 2) -> dict:
    return dispatch(
        "READY",
        s,
        {
            "v": 10,
            "session_id": session_id,
            "resume_gateway_url": RESUME_URL,
            "guilds": [{"id": str(i), "unavailable": True} for i in range(guilds)],
            "user": {"id": "1", "username": "bot"},
        },
    )


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def connect(shard: Shard, now: float = 100.0) -> list:
    return shard.begin_connect() + shard.connection_opened(now)


def identified(clock: Clock | None = None, **kwargs) -> Shard:
    """A shard that went through HELLO, IDENTIFY and READY (seq 1)."""
    shard = make_shard(clock, **kwargs)
    connect(shard)
    list(shard.receive(hello()))
    assert shard.identify_payload() is not None
    list(shard.receive(ready()))
    assert shard.stage is ConnectionStage.CONNECTED
    return shard
