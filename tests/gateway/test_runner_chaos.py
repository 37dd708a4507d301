"""A short chaos run: four runners against the sandbox while it injects random faults (drops, zombies,
op 7, op 9 both ways, close codes, broken frames, wedges) under steady traffic. At the end every
dispatch the sandbox could still replay must have reached the handler exactly once, in order."""

from __future__ import annotations

import asyncio
import random
import time

from shardtui.gateway.models import ConnectionStage

SHARDS = 4
CHAOS_SECONDS = 4.0


async def test_random_faults_lose_and_duplicate_nothing(sandbox_factory, harness_factory) -> None:
    sandbox = await sandbox_factory(guilds=12, shards=SHARDS, heartbeat_interval_ms=200, seed=99)
    first = harness_factory(sandbox, shard_id=0, total=SHARDS)
    shards = [first] + [
        harness_factory(sandbox, shard_id=i, total=SHARDS, gate=first.gate) for i in range(1, SHARDS)
    ]
    for h in shards:
        await h.wait_connected(within=10.0)

    rng = random.Random(5)
    faults: list[str] = []
    deadline = time.monotonic() + CHAOS_SECONDS
    while time.monotonic() < deadline:
        sandbox.emit(4)
        if rng.random() < 0.4:
            applied = sandbox.inject_random()
            if applied is not None:
                faults.append(applied[0])
        await asyncio.sleep(0.05)
    assert len(set(faults)) >= 5, faults

    # A wedged connection (ACKs, no dispatches) is the manager's health check's to catch; here a
    # restart stands in for it: it resumes, and the replay brings what the wedge held back.
    for h in shards:
        h.runner.messenger.restart()
    for h in shards:
        await h.wait_for(lambda h=h: h.runner.stage is ConnectionStage.CONNECTED, within=10.0, what="settle")
    sandbox.emit(10)

    for i, h in enumerate(shards):

        def complete(h=h, i=i) -> bool:
            report = sandbox.delivery_report(i, h.event_ids())
            return not report.lost and not report.duplicated

        await h.wait_for(complete, within=10.0, what=f"shard {i} to receive everything")
        await asyncio.sleep(0.1)
        report = sandbox.delivery_report(i, h.event_ids())
        assert report.ok, (i, report, faults)
        assert report.received > 0
        # Within each session seqs only go up: replays after a resume were never delivered twice.
        last = 0
        for d in h.received:
            if d.name == "READY":
                last = 0
            assert d.seq is not None and d.seq > last, (i, d.name, d.seq, last)
            last = d.seq
        assert h.info.running and h.info.fatal_error is None
        assert "unexpected error" not in h.log_text()
