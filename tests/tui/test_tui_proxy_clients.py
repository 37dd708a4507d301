"""Bot clients attached through the proxy, as the console shows them: the clients column, the log
lines, the details pane's client list and its disconnect key — a real proxy in front of the
embedded sandbox, a raw WebSocket client, Textual's pilot."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support.tui import fast_config, wait_until
from textual.widgets import RichLog

from shardtui.tui.app import ShardTUI
from shardtui.tui.clients import ClientsTable
from shardtui.tui.columns import SortKey
from shardtui.tui.export import export_rows
from shardtui.tui.model import ConsoleModel
from shardtui.tui.screens import ConfirmScreen, DetailsScreen

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sandbox"))

from rawclient import RawClient

pytest.importorskip("shardtui.proxy.server")

SIZE = (160, 40)
INTENTS = 513


def cell(app: ShardTUI, sid: int, column: str) -> str:
    value = app.table.get_cell(str(sid), column)
    return getattr(value, "text", value).plain


def proxy_config(shards: int = 2):
    config = fast_config(shards=shards)
    config.proxy.listen = "127.0.0.1:0"
    return config


async def connected(pilot, shards: int) -> ShardTUI:
    app: ShardTUI = pilot.app

    def ready() -> bool:
        rows = app.model.rows
        return len(rows) == shards and all(cell(app, sid, "stage") == "connected" for sid in rows)

    await wait_until(pilot, ready, "every shard connected")
    return app


async def attach(app: ShardTUI, shard: tuple[int, int]) -> RawClient:
    proxy = app.runtime.proxy
    client = await RawClient.connect(proxy.ws_url)
    await client.ready(app.runtime.sandbox.token, shard, INTENTS)
    return client


def log_text(app: ShardTUI) -> str:
    return "\n".join(line.message for line in app.model.console_log)


async def test_the_clients_column_details_and_k_disconnect_a_proxy_client() -> None:
    app = ShardTUI(proxy_config())
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, 2)
        if not app.query_one("#log").display:
            await pilot.press("l")
        assert [c.key for c in app.table.shown_columns].count("clients") == 1
        assert cell(app, 0, "clients") == "0" and cell(app, 1, "clients") == "0"
        client = await attach(app, (0, 2))
        try:
            await wait_until(pilot, lambda: cell(app, 0, "clients") == "1", "the clients column to show 1")
            assert cell(app, 1, "clients") == "0"
            assert [row["clients"] for row in export_rows(app.model)] == [1, 0]
            await wait_until(
                pilot, lambda: "client attached to shard 0: rawclient from 127.0.0.1" in log_text(app), "log"
            )
            await wait_until(
                pilot,
                lambda: (
                    "client attached to shard 0"
                    in "\n".join(line.text for line in app.query_one("#log", RichLog).lines)
                ),
                "the attach line in the log pane",
            )

            app.table.select_shard(0)
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, DetailsScreen), "the details pane")
            table = app.screen.query_one("#details-clients", ClientsTable)
            await wait_until(pilot, lambda: table.row_count == 1, "the client listed in the details pane")
            (session,) = app.runtime.proxy.clients(0)
            row = [text.plain for text in table.get_row_at(0)]
            assert row[0] == session.address == "127.0.0.1"
            assert row[1] == "rawclient"
            assert row[2] == session.session_id[:8]

            await pilot.press("k")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
            body = str(app.screen.query_one("#confirm-body").render())
            assert "rawclient" in body and session.session_id[:8] in body and "127.0.0.1" in body
            await pilot.press("y")
            assert await client.expect_close() == 4000
            await wait_until(pilot, lambda: app.runtime.proxy.clients() == [], "the session to end")
            await wait_until(pilot, lambda: table.row_count == 0, "the pane to list no client")
            await pilot.press("enter")
            await wait_until(pilot, lambda: not isinstance(app.screen, DetailsScreen), "enter to close")
            await wait_until(pilot, lambda: cell(app, 0, "clients") == "0", "the column back to 0")
            assert "client detached from shard 0" in log_text(app)
            assert "disconnected client rawclient from 127.0.0.1" in log_text(app)
            assert app.refresh_errors == 0
        finally:
            await client.close()


async def test_n_keeps_the_client_attached() -> None:
    app = ShardTUI(proxy_config(shards=1))
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, 1)
        client = await attach(app, (0, 1))
        try:
            await wait_until(pilot, lambda: cell(app, 0, "clients") == "1", "the clients column to show 1")
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, DetailsScreen), "the details pane")
            table = app.screen.query_one("#details-clients", ClientsTable)
            await wait_until(pilot, lambda: table.row_count == 1, "the client listed")
            await pilot.press("k")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirmation")
            await pilot.press("n")
            await wait_until(pilot, lambda: isinstance(app.screen, DetailsScreen), "back to the details")
            for _ in range(5):
                await pilot.pause(0.05)
            assert len(app.runtime.proxy.clients(0)) == 1
            assert cell(app, 0, "clients") == "1"
            # With the client list focused, enter still closes the pane.
            await pilot.press("enter")
            await wait_until(pilot, lambda: not isinstance(app.screen, DetailsScreen), "the pane closed")
        finally:
            await client.close()


async def test_readonly_lists_clients_but_has_no_disconnect_key() -> None:
    app = ShardTUI(proxy_config(shards=1), readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, 1)
        client = await attach(app, (0, 1))
        try:
            await wait_until(pilot, lambda: cell(app, 0, "clients") == "1", "the clients column to show 1")
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, DetailsScreen), "the details pane")
            table = app.screen.query_one("#details-clients", ClientsTable)
            await wait_until(pilot, lambda: table.row_count == 1, "the client listed")
            bindings = app.screen.active_bindings.values()
            shown = {active.binding.action for active in bindings if active.enabled}
            assert "disconnect_client" not in shown
            await pilot.press("k")
            for _ in range(5):
                await pilot.pause(0.05)
            assert isinstance(app.screen, DetailsScreen)
            assert len(app.runtime.proxy.clients(0)) == 1
        finally:
            await client.close()


async def test_without_a_proxy_there_is_no_clients_column_or_client_list() -> None:
    app = ShardTUI(fast_config(shards=1))
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, 1)
        assert app.runtime.proxy is None and app.clients is None
        assert "clients" not in [c.key for c in app.table.shown_columns]
        assert "clients" not in export_rows(app.model)[0]
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DetailsScreen), "the details pane")
        assert not app.screen.query("#details-clients")
        await pilot.press("k")
        await pilot.pause(0.05)
        assert isinstance(app.screen, DetailsScreen)


async def test_the_clients_column_sorts_and_filters() -> None:
    app = ShardTUI(proxy_config(shards=3))
    async with app.run_test(size=SIZE) as pilot:
        await connected(pilot, 3)
        clients = [await attach(app, (1, 3)), await attach(app, (1, 3)), await attach(app, (2, 3))]
        try:
            await wait_until(
                pilot, lambda: [cell(app, s, "clients") for s in range(3)] == ["0", "2", "1"], "the counts"
            )
            while app.model.sort_key is not SortKey.CLIENTS:
                await pilot.press("greater_than_sign")
            await pilot.pause()
            assert "clients▼" in app.table.header_labels()
            assert app.model.visible_ids() == [1, 2, 0]  # most clients first
            await pilot.press("slash")
            for key in "clients>0":
                await pilot.press(key)
            await pilot.press("enter")
            await wait_until(pilot, lambda: app.model.visible_ids() == [1, 2], "the filter to apply")
            await clients[0].close()
            await wait_until(pilot, lambda: cell(app, 1, "clients") == "1", "the count to drop")
        finally:
            for client in clients:
                await client.close()


def test_without_a_proxy_the_sort_never_lands_on_clients() -> None:
    model = ConsoleModel()
    seen = {model.cycle_sort(1) for _ in range(len(SortKey) * 2)}
    assert SortKey.CLIENTS not in seen and SortKey.GUILDS in seen
    model.client_counts = {}
    seen = {model.cycle_sort(1) for _ in range(len(SortKey) * 2)}
    assert SortKey.CLIENTS in seen
