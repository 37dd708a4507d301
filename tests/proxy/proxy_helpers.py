"""A proxy in front of a real ShardManager of a sandbox, as the runtime wires it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from support.manager import options_for

from shardtui.gateway.manager import ShardManager
from shardtui.proxy.cache import GuildStateCache
from shardtui.proxy.server import Proxy, ProxySettings


@dataclass
class ProxyRig:
    sandbox: Any
    manager: ShardManager
    proxy: Proxy

    @property
    def url(self) -> str:
        return self.proxy.ws_url

    async def stop(self) -> None:
        await self.proxy.stop()
        await self.manager.shutdown_all()


async def start_rig(
    sandbox: Any,
    *,
    settings: ProxySettings | None = None,
    cache: GuildStateCache | None = None,
    connect: bool = True,
    **manager_options: Any,
) -> ProxyRig:
    """Manager (event handler = the proxy) + proxy serving; with ``connect`` every shard connected."""
    manager_options.setdefault("shard_total", sandbox.settings.shards)
    manager = ShardManager(options_for(sandbox, **manager_options))
    proxy = Proxy(
        manager, token=sandbox.token, rest_upstream=sandbox.rest_url, settings=settings, cache=cache
    )
    manager.options.event_handler = proxy.on_dispatch
    await proxy.start()
    rig = ProxyRig(sandbox, manager, proxy)
    try:
        await manager.initialize()
        if connect:
            assert await manager.wait_until_connected(timeout=20)
    except BaseException:
        await rig.stop()
        raise
    return rig
