"""A sandbox in its own process, driven over stdin/stdout with one JSON object per line.

The benches run the client in one process and the sandbox in another so that, on a 2-core machine,
the client's CPU time is its own and the sandbox's frame generation does not count against it.

    python3 bench/sandbox_child.py '{"guilds": 16, "shards": 16, ...}'   # SandboxSettings overrides

Prints ``{"rest_url", "gateway_url", "token"}`` once listening, then answers each request line:
``{"op": "stats"}``, ``{"op": "inject", "kind", "shard", "params"}``, ``{"op": "flood", "count",
"batch"}`` (emit as fast as the writers drain), ``{"op": "emit", "count"}``, ``{"op": "quit"}``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import orjson

from shardtui.sandbox import Sandbox, SandboxSettings

#: Emitted but unwritten payloads allowed per connection before the flood waits for the writers.
BACKLOG = 2_000


async def _flood(sandbox: Sandbox, count: int, batch: int) -> dict[str, Any]:
    state = sandbox._state
    started = time.perf_counter()
    cpu = time.process_time()
    emitted = 0
    while emitted < count:
        step = min(batch, count - emitted)
        sandbox.emit(step)
        emitted += step
        # The writers' queues have no "drained" event to wait on; polling them is the bench's cost only.
        while any(c.socket.writer.queued_messages > BACKLOG for c in state.connections.values()):  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        await asyncio.sleep(0)
    while any(c.socket.writer.queued_messages for c in state.connections.values()):  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    seconds = time.perf_counter() - started
    return {"emitted": emitted, "seconds": seconds, "cpu": time.process_time() - cpu}


async def _serve(settings: dict[str, Any]) -> None:
    sandbox = Sandbox(SandboxSettings(**settings))
    await sandbox.start(host="127.0.0.1", port=0)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(value: Any) -> None:
        sys.stdout.buffer.write(orjson.dumps(value) + b"\n")
        sys.stdout.flush()

    # The token is the sandbox's own throwaway token, handed to the parent over a pipe.
    answer({"rest_url": sandbox.rest_url, "gateway_url": sandbox.gateway_url, "token": sandbox.token})
    try:
        while line := await reader.readline():
            request = orjson.loads(line)
            op = request["op"]
            if op == "stats":
                answer(sandbox.stats())
            elif op == "inject":
                answer(
                    {
                        "affected": sandbox.inject(
                            request["kind"], request.get("shard"), **request.get("params", {})
                        )
                    }
                )
            elif op == "emit":
                answer({"delivered": sandbox.emit(request["count"])})
            elif op == "flood":
                answer(await _flood(sandbox, request["count"], request.get("batch", 200)))
            elif op == "quit":
                break
            else:
                answer({"error": f"unknown op {op!r}"})
    finally:
        await sandbox.stop()


if __name__ == "__main__":
    asyncio.run(_serve(orjson.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))
