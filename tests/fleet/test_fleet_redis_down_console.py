"""The member console while Redis is down (pilot): "r" on its own shard restarts it, "r" on another
process's shards gives one line saying Redis is unreachable, and the banner says which commands work."""

from __future__ import annotations

from support.tui import wait_until

from shardtui.config import Config
from shardtui.fleet import ClusterConfig
from shardtui.gateway.models import ConnectionStage
from shardtui.runtime import Runtime
from shardtui.tui.fleet import FleetConsole


def member_config(sandbox, redis_url: str, cluster: str, name: str, shard_range: tuple[int, int]) -> Config:
    config = Config()
    config.gateway.mode = "sandbox"
    config.gateway.rest_url = sandbox.rest_url
    config.gateway.shards = 4
    config.gateway.identify_window = 0.05
    config.sandbox.token = sandbox.token
    config.ui.refresh_interval = 0.05
    config.cluster = ClusterConfig(
        redis_url=redis_url,
        name=name,
        cluster=cluster,
        shard_range=shard_range,
        heartbeat_interval=0.2,
        heartbeat_ttl=1.0,
        command_timeout=3.0,
    )
    return config


def logged(app: FleetConsole, text: str) -> list[str]:
    return [line.message for line in app.model.console_log if text in line.message]


async def test_member_console_restarts_its_own_shard_without_redis_and_says_why_others_cannot(
    sandbox_factory, private_redis, cluster_name: str
):
    sandbox = await sandbox_factory(shards=4, max_concurrency=2, identify_window=0.05)
    beta = Runtime(member_config(sandbox, private_redis.url, cluster_name, "beta", (2, 3)))
    app = FleetConsole(member_config(sandbox, private_redis.url, cluster_name, "alpha", (0, 1)))
    async with beta:
        await beta.start()
        async with app.run_test(size=(160, 40)) as pilot:
            await wait_until(
                pilot,
                lambda: (
                    len(app.model.rows) == 4
                    and all(r.info.stage is ConnectionStage.CONNECTED for r in app.model.rows.values())
                ),
                "all 4 fleet shards connected",
            )
            banner = app.query_one("#fleet-banner")
            private_redis.stop()
            await wait_until(pilot, lambda: banner.has_class("visible"), "the Redis banner")
            text = str(banner.render())
            assert "unreachable" in text
            assert "commands reach only this process's shards" in text

            resumes = sandbox.stats()["shards"]["0"]["resumes"]
            app.table.select_shard(0)
            await pilot.press("r")
            await wait_until(
                pilot,
                lambda: sandbox.stats()["shards"]["0"]["resumes"] == resumes + 1,
                "shard 0 resumed with Redis down",
            )
            await wait_until(
                pilot,
                lambda: logged(app, "restart of shard 0: done by this process (alpha)"),
                "the local result",
            )

            # Both of beta's shards at once: one line for both, naming the reason.
            notes_before = len(app._notifications)
            app.table.select_shard(2)
            await pilot.press("space")
            app.table.select_shard(3)
            await pilot.press("space")
            await pilot.press("r")
            await wait_until(pilot, lambda: logged(app, "not sent"), "the unreachable result")
            lines = logged(app, "not sent")
            assert len(lines) == 1, lines
            assert lines[0].startswith(
                f"restart of shards 2, 3 not sent: Redis at {private_redis.url} unreachable"
            )
            results = [n for n in list(app._notifications)[notes_before:] if n.title]
            assert [n.title for n in results] == ["restart: 2 of 2 not done"]
            assert results[0].message == lines[0]
            assert results[0].severity == "error"
            assert all(info.resumes == 0 for info in beta.manager.runners.values())

            # Confirmations read as sentences: singular and plural, local and remote shards.
            assert app._plan_text("restart", [0, 2, 3]) == (
                "This process runs shard 0: done here directly, without Redis. "
                "Sent through Redis to process beta (shards 2, 3), which acknowledges each command."
            )
            assert app._quit_question().startswith(
                "2 shards of this process (alpha) are live. Quit and shut them"
            )

            private_redis.start()
            await wait_until(pilot, lambda: not banner.has_class("visible"), "the banner to clear")
            await pilot.press("q")
            await pilot.press("y")
            await wait_until(pilot, lambda: app.return_code is not None, "the console to exit")
    assert app.return_code == 0
