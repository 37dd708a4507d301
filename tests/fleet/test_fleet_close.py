"""A fleet publisher stops when closed even if its cancellation is lost on the way (Python 3.11's
wait_for, or a client library, can drop one that lands with a reply): a publisher that outlived its
close() kept a stopped process's heartbeat alive, so the process never showed as lost."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from shardtui.fleet.keys import FleetKeys
from shardtui.fleet.state import StatePublisher


class SwallowingPublisher(StatePublisher):
    """Loses every cancellation that reaches it while publishing, as a misbehaving client would."""

    async def publish_once(self) -> bool:
        try:
            await asyncio.sleep(0.05)
            return await super().publish_once()
        except asyncio.CancelledError:
            return False


async def test_close_stops_a_publisher_whose_cancellation_is_lost(redis: Redis, cluster_name: str) -> None:
    keys = FleetKeys(cluster_name)
    publisher = SwallowingPublisher(redis, keys, "alpha", dict, interval=0.01, ttl=1.0)
    publisher.start()
    await asyncio.sleep(0.2)  # publishing every ~60 ms: a close lands inside publish_once at once
    task = publisher._task
    assert task is not None
    await asyncio.wait_for(publisher.close(forget=True), 5)
    assert task.done()
    assert await redis.exists(keys.heartbeat("alpha")) == 0
    await asyncio.sleep(0.2)  # nothing publishes it again
    assert await redis.exists(keys.heartbeat("alpha")) == 0
    assert await redis.hget(keys.processes, "alpha") is None
