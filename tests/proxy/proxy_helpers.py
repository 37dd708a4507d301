"""A proxy in front of a real ShardManager of a sandbox, as the runtime wires it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from support.manager import options_for

from shardtui.config import load_config
from shardtui.gateway.manager import ShardManager
from shardtui.proxy.cache import GuildStateCache
from shardtui.proxy.server import Proxy, ProxySettings
from shardtui.runtime import Runtime


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


def config_for(sandbox: Any, listen: str = "127.0.0.1:0", **extra: str) -> Any:
    """A runtime config with a proxy on ``listen`` in front of ``sandbox`` (``extra``: more keys)."""
    return load_config(
        None,
        {
            "gateway.rest_url": sandbox.rest_url,
            "sandbox.token": sandbox.token,
            "gateway.identify_window": str(sandbox.settings.identify_window),
            "proxy.listen": listen,
            **extra,
        },
        environ={},
    )


class Restarts:
    """shardtui run, stopped and started again on the same port with one state file, as an operator's
    restart; every runtime is closed by :meth:`close`."""

    def __init__(self, sandbox: Any, state_file: str) -> None:
        self.sandbox = sandbox
        self.state_file = state_file
        self.runtimes: list[Runtime] = []

    @property
    def current(self) -> Runtime:
        return self.runtimes[-1]

    async def start(self, listen: str = "127.0.0.1:0") -> Runtime:
        runtime = Runtime(config_for(self.sandbox, listen, **{"gateway.state_file": self.state_file}))
        self.runtimes.append(runtime)
        await runtime.start()
        assert await runtime.manager.wait_until_connected(timeout=20) and runtime.proxy is not None
        return runtime

    async def restart(self) -> list[int]:
        """Stop cleanly, emit MESSAGE_CREATEs while down, start again; the sandbox event ids sent upstream
        meanwhile (to every shard)."""
        sandbox, proxy = self.sandbox, self.current.proxy
        assert proxy is not None
        port = proxy.port
        await self.current.close()
        shards = range(sandbox.settings.shards)
        before = {s: len(sandbox.event_ids(s)) for s in shards}
        sandbox.emit(16, "MESSAGE_CREATE")
        missed = [i for s in shards for i in sandbox.event_ids(s)[before[s] :]]
        assert missed, "no event reached a shard"
        runtime = Runtime(config_for(sandbox, f"127.0.0.1:{port}", **{"gateway.state_file": self.state_file}))
        self.runtimes.append(runtime)
        await runtime.start()
        return missed

    async def close(self) -> None:
        for runtime in reversed(self.runtimes):
            await runtime.close()
