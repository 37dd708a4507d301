"""The fleet console (pilot): two Runtime members over one sandbox and a real Redis."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from support.redis_server import REDIS_SERVER, RedisServer, free_port
from support.tui import wait_until

from shardtui.config import Config
from shardtui.fleet import ClusterConfig, CommandResult, CommandStatus
from shardtui.gateway.models import ConnectionStage, ShardId
from shardtui.runtime import Runtime
from shardtui.tui.fleet import FleetConsole
from shardtui.tui.screens import ConfirmScreen

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sandbox"))

from rawclient import RawClient

SIZE = (160, 40)


def _need_redis() -> None:
    if REDIS_SERVER is None:
        pytest.skip("no redis-server binary on PATH (.ci/run installs one); fleet tests need a real Redis")


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A Redis of this test alone (it may stop and start it)."""
    _need_redis()
    server = RedisServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def cluster_name(redis_url: str) -> AsyncIterator[str]:
    name = f"tui-{uuid.uuid4().hex[:12]}"
    yield name
    client = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
    try:
        keys = [key async for key in client.scan_iter(match=f"shardtui:{{{name}}}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def member_config(
    sandbox, redis_url: str, cluster: str, name: str, shard_range: tuple[int, int] | None, **cluster_kw
) -> Config:
    """A process of the fleet: the shared sandbox at its URL, fast windows and heartbeats."""
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
        heartbeat_interval=cluster_kw.pop("heartbeat_interval", 0.2),
        heartbeat_ttl=cluster_kw.pop("heartbeat_ttl", 1.0),
        command_timeout=cluster_kw.pop("command_timeout", 3.0),
    )
    return config


def viewer_config(redis_url: str, cluster: str, **cluster_kw) -> Config:
    config = Config()
    config.ui.fleet = True
    config.ui.refresh_interval = 0.05
    config.cluster = ClusterConfig(redis_url=redis_url, name="viewer", cluster=cluster, **cluster_kw)
    return config


def cell(app: FleetConsole, sid: int, column: str) -> str:
    return str(app.table.get_cell(str(sid), column))


def all_connected(app: FleetConsole, count: int) -> bool:
    rows = app.model.rows
    return len(rows) == count and all(r.info.stage is ConnectionStage.CONNECTED for r in rows.values())


def logged(app: FleetConsole, text: str) -> bool:
    return any(text in line.message for line in app.model.console_log)


async def test_member_console_shows_both_processes_and_restarts_the_others_shard(
    sandbox_factory, redis_url: str, cluster_name: str
):
    sandbox = await sandbox_factory(shards=4, max_concurrency=2, identify_window=0.05)
    beta = Runtime(member_config(sandbox, redis_url, cluster_name, "beta", (2, 3)))
    app = FleetConsole(member_config(sandbox, redis_url, cluster_name, "alpha", (0, 1)))
    async with beta:
        await beta.start()
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: all_connected(app, 4), "all 4 fleet shards connected")
            await wait_until(pilot, lambda: cell(app, 3, "process") == "beta", "the process column")
            assert app.member and app.manager is not None
            assert sorted(int(i) for i in app.manager.runners) == [0, 1]  # only its own shards run here
            assert [cell(app, sid, "process") for sid in range(4)] == ["alpha", "alpha", "beta", "beta"]
            summary = app.summary_text()
            assert summary.startswith("processes: 2 alive, 0 lost")
            assert "alpha" in summary and "beta" in summary and "connected 2" in summary

            resumes = sandbox.stats()["shards"]["2"]["resumes"]
            app.table.select_shard(2)
            app.clear_notifications()
            await pilot.press("r")
            await wait_until(
                pilot,
                lambda: sandbox.stats()["shards"]["2"]["resumes"] == resumes + 1,
                "shard 2 resumed in the other process",
            )
            await wait_until(
                pilot, lambda: logged(app, "restart of shard 2: done by process beta"), "the acknowledgement"
            )
            await pilot.pause()
            # One notification per command: its outcome (no "sending…" before it, nothing after).
            assert [(n.title, n.message) for n in app._notifications] == [
                ("restart: acknowledged", "restart of shard 2: done by process beta")
            ]
            # This process's own shard: the same one notification.
            app.clear_notifications()
            app.table.select_shard(0)
            await pilot.press("r")
            await wait_until(pilot, lambda: len(app._notifications) >= 1, "the local restart's outcome")
            await wait_until(
                pilot, lambda: app.manager.runners[ShardId(0)].resumes == 1, "shard 0 to resume here"
            )
            await pilot.pause()
            assert [n.title for n in app._notifications] == ["restart: acknowledged"]
            # The sandbox counts the RESUME before beta's runner has read the RESUMED answering it.
            await wait_until(
                pilot, lambda: beta.manager.runners[ShardId(2)].resumes == 1, "beta's runner to resume"
            )
            await wait_until(pilot, lambda: all_connected(app, 4), "shard 2 connected again")
            assert sandbox.stats()["identify_violations"] == 0

            # The other process goes away cleanly: its shards leave the console, ours stay.
            await beta.close()
            await wait_until(pilot, lambda: sorted(app.model.rows) == [0, 1], "beta's shards gone")
            assert "beta" not in app.summary_text()

            await pilot.press("q")
            await pilot.press("y")  # alpha's own shards are live: it asks first
            await wait_until(pilot, lambda: app.return_code is not None, "the console to exit")
    assert app.return_code == 0


async def test_member_console_rolling_restart_shutdown_and_boot_reach_every_process(
    sandbox_factory, redis_url: str, cluster_name: str
):
    # The same keys as the one-process console, through the fleet's control: R restarts every live
    # shard of both processes one at a time; s and b reach a shard of the other process.
    sandbox = await sandbox_factory(shards=4, max_concurrency=2, identify_window=0.05)
    beta = Runtime(member_config(sandbox, redis_url, cluster_name, "beta", (2, 3)))
    app = FleetConsole(member_config(sandbox, redis_url, cluster_name, "alpha", (0, 1)))
    async with beta:
        await beta.start()
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: all_connected(app, 4), "all 4 fleet shards connected")
            await wait_until(pilot, lambda: cell(app, 3, "process") == "beta", "the process column")

            before = {sid: sandbox.stats()["shards"][str(sid)]["resumes"] for sid in range(4)}
            await pilot.press("R")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the rolling confirmation")
            body = str(app.screen.query_one("#confirm-body").render())
            assert "Restart all 4 live shards of the fleet" in body
            assert "This process runs shards 0, 1" in body and "process beta (shards 2, 3)" in body
            await pilot.press("y")
            await wait_until(pilot, lambda: logged(app, "rolling restart finished"), "the rolling restart")
            after = {sid: sandbox.stats()["shards"][str(sid)]["resumes"] for sid in range(4)}
            assert all(after[sid] == before[sid] + 1 for sid in range(4)), (before, after)
            assert sandbox.stats()["identify_violations"] == 0

            app.table.select_shard(3)
            await pilot.press("s")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the shutdown question")
            assert str(app.screen.query_one(".dialog-title").render()) == "Shut down shard"
            await pilot.press("y")
            await wait_until(
                pilot,
                lambda: not beta.manager.runners[ShardId(3)].running and cell(app, 3, "stage") == "stopped",
                "shard 3 stopped in the other process and shown stopped",
            )
            assert beta.manager.runners[ShardId(2)].running
            await pilot.press("b")
            await wait_until(pilot, lambda: all_connected(app, 4), "shard 3 booted again by beta")
            assert logged(app, "boot of shard 3: done by process beta")

            await pilot.press("q")
            await pilot.press("y")
            await wait_until(pilot, lambda: app.return_code is not None, "the console to exit")
    assert app.return_code == 0


async def test_viewer_banner_while_redis_is_down_and_unacknowledged_commands(
    sandbox_factory, redis_server: RedisServer, cluster_name: str
):
    sandbox = await sandbox_factory(shards=4, max_concurrency=2, identify_window=0.05)
    member = Runtime(member_config(sandbox, redis_server.url, cluster_name, "worker", None))
    app = FleetConsole(viewer_config(redis_server.url, cluster_name, command_timeout=0.5))
    async with member:
        await member.start()
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: all_connected(app, 4), "the viewer to show 4 connected shards")
            assert app.manager is None  # a viewer runs no shard
            banner = app.query_one("#fleet-banner")
            assert not banner.has_class("visible")

            # A process that stopped answering commands: the console says so, never drops it.
            assert member.fleet is not None and member.fleet.listener is not None
            await member.fleet.listener.close()
            app.table.select_shard(1)
            await pilot.press("r")
            await wait_until(
                pilot, lambda: logged(app, "no acknowledgement within 0.5 s"), "the unacknowledged result"
            )
            note = next(line for line in app.model.console_log if "no acknowledgement" in line.message)
            assert note.shard_id == 1 and "sent to process worker" in note.message

            redis_server.stop()
            await wait_until(pilot, lambda: banner.has_class("visible"), "the Redis banner")
            text = str(banner.render())
            assert "unreachable" in text and f"127.0.0.1:{redis_server.port}" in text
            # The last picture stays and the shards keep running.
            assert len(app.model.rows) == 4
            assert all(info.stage is ConnectionStage.CONNECTED for info in member.manager.runners.values())
            result = await app.fleet.control.restart(0)
            assert result.status is CommandStatus.UNREACHABLE

            redis_server.start()
            await wait_until(pilot, lambda: not banner.has_class("visible"), "the banner to clear")
            await wait_until(pilot, lambda: all_connected(app, 4), "the fleet back in view")
            app.action_reshard()  # one process's live reshard cannot move a fleet's shards
            await pilot.pause()
            assert any("not available in a fleet" in n.message for n in app._notifications)
            await pilot.press("q")  # a viewer has nothing live here: quits at once
            await wait_until(pilot, lambda: app.return_code is not None, "the viewer to exit")


async def test_a_member_refused_by_the_fleet_exits_with_one_line(sandbox_factory, cluster_name: str):
    sandbox = await sandbox_factory(shards=4)
    dead = f"redis://127.0.0.1:{free_port()}/0"
    app = FleetConsole(member_config(sandbox, dead, cluster_name, "alpha", (0, 1)))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.return_code is not None, "the console to give up")
    assert app.return_code == 2
    assert app.startup_error is not None
    assert "\n" not in app.startup_error
    assert app.startup_error.startswith("<defaults>: cluster.redis_url: Redis at redis://127.0.0.1:")
    assert "unreachable" in app.startup_error


def header(app: FleetConsole) -> str:
    return str(app.query_one("#fleet").render())


def alert_notes(app: FleetConsole, prefix: str) -> list[str]:
    return [n.title for n in app._notifications if n.title.startswith(prefix)]


async def test_viewer_header_rolling_plan_and_progress_lost_replaced_and_forgotten_processes(
    sandbox_factory, redis_url: str, cluster_name: str
):
    sandbox = await sandbox_factory(shards=4, max_concurrency=2, identify_window=0.05)
    alpha = Runtime(member_config(sandbox, redis_url, cluster_name, "alpha", (0, 1)))
    beta = Runtime(member_config(sandbox, redis_url, cluster_name, "beta", (2, 3)))
    gamma = Runtime(member_config(sandbox, redis_url, cluster_name, "gamma", (2, 3)))
    app = FleetConsole(viewer_config(redis_url, cluster_name))
    async with alpha, beta, gamma:
        await alpha.start()
        await beta.start()
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: all_connected(app, 4), "all 4 fleet shards connected")
            # Fleet-wide figures, though no shard and no gate run here.
            await wait_until(
                pilot,
                lambda: "starts —" not in header(app) and "ready 4/4" in header(app),
                "the fleet's figures in the header",
            )
            text = header(app)
            assert "2 processes alive" in text and "(not ready)" not in text
            assert "ready 4/4" in text and "starts 996/1000" in text, text
            # The identify buckets the fleet runs under, for the start-up ETA (was 0 in a viewer).
            assert app.model.session_start_limit.max_concurrency == 2

            # The rolling restart shows its plan first, then its progress while it runs.
            await pilot.press("R")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the rolling plan")
            body = str(app.screen.query_one("#confirm-body").render())
            assert "Plan: 4 batches of one shard" in body
            assert "batches 1-2: shards 0, 1 on alpha" in body and "batches 3-4: shards 2, 3 on beta" in body
            # Every header the console draws from now on (the run may be over before a poll here).
            drawn: list[str] = []
            fleet_header = app.query_one("#fleet")
            draw = fleet_header.update

            def spy(content: object = "", **kw: object) -> None:
                drawn.append(str(content))
                draw(content, **kw)

            fleet_header.update = spy
            await pilot.press("y")
            await wait_until(pilot, lambda: logged(app, "rolling restart finished"), "the rolling restart")
            status = app.control.rolling
            assert status is not None and len(status.done) == 4 and status.resumes == 4
            await wait_until(pilot, lambda: "rolling restart" not in header(app), "the progress to go")
            lines = [line for text in drawn for line in text.splitlines()]
            progress = [line for line in lines if "rolling restart running" in line]
            assert progress and all("(" in line and "/4 shards" in line for line in progress), drawn[-3:]
            del fleet_header.update

            # R again while one runs offers to stop it; it stops before its next shard. The second
            # shard's command is held until the question is answered, so the run is surely mid-way.
            release = asyncio.Event()
            sent: list[int] = []
            fleet_control = app.fleet.control
            send = fleet_control.restart

            async def held(sid: int, **kw: bool) -> CommandResult:
                sent.append(sid)
                if len(sent) == 2:
                    await release.wait()
                return await send(sid, **kw)

            fleet_control.restart = held
            await pilot.press("R")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the rolling plan")
            await pilot.press("y")
            await wait_until(pilot, lambda: len(sent) == 2, "the second shard's command")
            await pilot.press("R")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the abort question")
            body = str(app.screen.query_one("#confirm-body").render())
            assert "rolling restart running: 1/4 shards" in body and "Stop it" in body
            await pilot.press("y")
            release.set()
            await wait_until(pilot, lambda: logged(app, "rolling restart aborted"), "the run to stop")
            del fleet_control.restart
            aborted = app.control.rolling
            assert aborted is not status and aborted.done == [ShardId(0), ShardId(1)] and sent == [0, 1]

            # beta stops beating without a goodbye: one lost_process alert, raised once.
            await beta.fleet.publisher.close(forget=False)
            await wait_until(pilot, lambda: alert_notes(app, "Alert: lost_process"), "the lost alert")
            assert alert_notes(app, "Alert: lost_process") == ["Alert: lost_process · process beta"]
            assert "1 lost (F forgets a lost one)" in app.summary_text()

            # gamma takes over beta's shards: beta has nothing left to report and leaves the summary.
            await gamma.start()
            await wait_until(pilot, lambda: "beta" not in app.summary_text(), "beta to leave the summary")
            await wait_until(pilot, lambda: cell(app, 2, "process") == "gamma", "gamma's shard 2")
            await wait_until(pilot, lambda: alert_notes(app, "Cleared: lost_process"), "the alert to clear")
            assert logged(app, "process beta replaced")
            assert alert_notes(app, "Alert: lost_process") == ["Alert: lost_process · process beta"]

            # gamma is lost too; F forgets it (after asking) and its shards leave the table.
            await gamma.fleet.publisher.close(forget=False)
            await wait_until(pilot, lambda: "gamma" in app.summary_text() and app.model.lost, "gamma lost")
            app.table.select_shard(3)
            await pilot.press("F")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the forget question")
            assert "Forget lost process gamma?" in str(app.screen.query_one("#confirm-body").render())
            await pilot.press("y")
            await wait_until(pilot, lambda: sorted(app.model.rows) == [0, 1], "gamma's shards gone")
            await wait_until(pilot, lambda: logged(app, "process gamma forgotten"), "gamma's alert cleared")
            assert "gamma" not in app.summary_text()
            await pilot.press("q")
            await wait_until(pilot, lambda: app.return_code is not None, "the viewer to exit")
    assert app.return_code == 0


def test_a_shard_range_clash_is_reported_under_the_process_that_clashes() -> None:
    from shardtui.fleet.state import FleetProcess, FleetSnapshot, ProcessState

    config = viewer_config("redis://127.0.0.1:1/0", "clash")
    app = FleetConsole(config)
    alive = ProcessState.ALIVE
    app.snapshot = FleetSnapshot(
        (
            FleetProcess("alpha", alive, shard_range=(0, 3), shard_ids=(0, 1, 2, 3)),
            FleetProcess("beta", alive, shard_range=(2, 5), shard_ids=(2, 3, 4, 5)),
            FleetProcess("gamma", alive, shard_range=(6, 7), shard_ids=(6, 7)),
        ),
        (),
    )
    lines = app.summary_text().splitlines()
    clash = "  ⚠ shard range clash: shards 2, 3 also claimed by"
    assert lines[1].startswith("alpha") and lines[2] == f"{clash} beta"
    assert lines[3].startswith("beta") and lines[4] == f"{clash} alpha"
    assert lines[5].startswith("gamma") and len(lines) == 6
    # Forgetting changes the fleet: --readonly hides it like the other mutating keys.
    assert app.check_action("forget_lost", ()) is True
    assert FleetConsole(config, readonly=True).check_action("forget_lost", ()) is False


async def test_the_viewer_shows_every_process_proxy_clients(
    sandbox_factory, redis_url: str, cluster_name: str
) -> None:
    """Each process publishes its proxy's clients per shard; the fleet viewer (no proxy of its own)
    shows the clients column for them, and a dash for a process that runs no proxy."""
    sandbox = await sandbox_factory(shards=4, max_concurrency=2, identify_window=0.05)
    alpha = Runtime(member_config(sandbox, redis_url, cluster_name, "alpha", (0, 1)))
    beta_config = member_config(sandbox, redis_url, cluster_name, "beta", (2, 3))
    beta_config.proxy.listen = "127.0.0.1:0"
    beta = Runtime(beta_config)
    app = FleetConsole(viewer_config(redis_url, cluster_name))
    async with alpha, beta:
        await alpha.start()
        await beta.start()
        assert beta.proxy is not None
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: all_connected(app, 4), "all 4 fleet shards connected")
            await wait_until(
                pilot, lambda: "clients" in [c.key for c in app.table.shown_columns], "the clients column"
            )
            client = await RawClient.connect(beta.proxy.ws_url)
            try:
                await client.ready(sandbox.token, (3, 4), 513)
                await wait_until(pilot, lambda: cell(app, 3, "clients") == "1", "beta's client on shard 3")
                assert [cell(app, sid, "clients") for sid in range(4)] == ["—", "—", "0", "1"]
                await pilot.press("slash")
                for key in "clients>0":
                    await pilot.press(key)
                await pilot.press("enter")
                await wait_until(pilot, lambda: app.model.visible_ids() == [3], "the clients filter")
            finally:
                await client.close()
            # The detach is published too: shard 3 leaves the filtered table.
            await wait_until(pilot, lambda: app.model.visible_ids() == [], "the detach to be published")
            assert app.model.rows[3].clients == 0
