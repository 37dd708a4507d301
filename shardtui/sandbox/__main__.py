"""``python -m shardtui.sandbox [--host H] [--port P] [--guilds N] [--shards N] [--seed S]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from .settings import SandboxSettings
from .standalone import run_standalone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shardtui.sandbox", description="Run the gateway sandbox."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--guilds", type=int, default=100)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--event-rate", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        settings = SandboxSettings(
            guilds=args.guilds, shards=args.shards, event_rate=args.event_rate, seed=args.seed
        )
    except ValueError as exc:
        parser.error(str(exc))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_standalone(args.host, args.port, settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
