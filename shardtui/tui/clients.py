"""Bot clients attached through the proxy (issue 16): the table's "clients" column, the log lines for
attach/detach, and the client list in the details pane with its disconnect key.

The console reads the proxy only at its tick (``ClientsFeed.tick``); the per-event work is one log
line per attach or detach, which are rare next to dispatches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from shardtui.tui.columns import Column
from shardtui.tui.formatting import format_age, format_count

if TYPE_CHECKING:
    from shardtui.proxy.server import ClientEvent
    from shardtui.proxy.session import ClientStats
    from shardtui.tui.model import ConsoleModel

#: Live attached clients per shard; shown after the guild count, before the rarer counters.
#: Eight wide: the label and the sort arrow.
CLIENTS_COLUMN = Column("clients", "clients", 8, 3)
#: Session ids are long hex strings; this much tells two apart in a pane and a log line.
SESSION_CHARS = 8


class ProxyView(Protocol):
    """What the console uses of ``shardtui.proxy.server.Proxy``."""

    def clients(self, shard_id: int | None = None) -> list[ClientStats]: ...

    def clients_per_shard(self) -> dict[int, int]: ...

    def disconnect(self, session_id: str) -> bool: ...

    def subscribe(self, listener: Callable[[ClientEvent], Any]) -> Callable[[], None]: ...


def short_session(session_id: str) -> str:
    return session_id[:SESSION_CHARS]


def describe_client(client: ClientStats) -> str:
    """One client as the confirmation names it: address, library and session."""
    library = client.library or "unknown library"
    return f"{library} from {client.address} (session {short_session(client.session_id)})"


def client_event_line(event: ClientEvent) -> str:
    from shardtui.proxy.server import ClientAttached

    if isinstance(event, ClientAttached):
        how = " (resumed)" if event.resumed else ""
        library = event.library or "unknown library"
        return f"client attached to shard {event.shard_id}: {library} from {event.address}{how}"
    who = "by the client" if event.by_client else "by the proxy"
    code = "" if event.code is None else f", close {event.code}"
    return (
        f"client detached from shard {event.shard_id}: session {short_session(event.session_id)}"
        f" ({who}{code})"
    )


def with_clients_column(columns: tuple[Column, ...]) -> tuple[Column, ...]:
    """``columns`` with the clients column after the guild count (appended if there is none)."""
    if any(c.key == CLIENTS_COLUMN.key for c in columns):
        return columns
    keys = [c.key for c in columns]
    at = keys.index("guilds") + 1 if "guilds" in keys else len(columns)
    return (*columns[:at], CLIENTS_COLUMN, *columns[at:])


def show_clients_column(model: ConsoleModel) -> bool:
    """Give ``model`` the clients column; False when it had it already."""
    if model.client_counts is not None:
        return False
    model.columns = with_clients_column(model.columns)
    model.client_counts = {}
    return True


class ClientsFeed:
    """The local runtime's proxy, wired into the console model."""

    def __init__(self, proxy: ProxyView, model: ConsoleModel) -> None:
        self.proxy = proxy
        self.model = model
        show_clients_column(model)
        self.unsubscribe = proxy.subscribe(self._on_client_event)

    def _on_client_event(self, event: ClientEvent) -> None:
        self.model.note(client_event_line(event), shard_id=event.shard_id)

    def tick(self) -> None:
        self.model.set_client_counts(self.proxy.clients_per_shard())

    def clients(self, shard_id: int) -> list[ClientStats]:
        """The shard's clients with a socket attached (detached sessions awaiting a resume are not
        something an operator can disconnect)."""
        return [c for c in self.proxy.clients(shard_id) if c.connected_since is not None]

    def disconnect(self, session_id: str) -> bool:
        return self.proxy.disconnect(session_id)


class ClientsTable(DataTable[Text], inherit_bindings=False):
    """A shard's attached clients in the details pane; the cursor picks the one ``k`` disconnects."""

    # Only the cursor keys: enter (and the rest) stays the details pane's, which closes it.
    BINDINGS = [
        Binding("up", "cursor_up", "Previous client", show=False),
        Binding("down", "cursor_down", "Next client", show=False),
    ]

    COLUMNS = ("address", "library", "session", "seq", "backlog", "connected")

    def __init__(self, feed: ClientsFeed, shard_id: int, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self.feed = feed
        self.shard_id = shard_id
        self.shown: list[ClientStats] = []

    def on_mount(self) -> None:
        for label in self.COLUMNS:
            self.add_column(label, key=label)
        self.refresh_clients()

    def refresh_clients(self) -> None:
        clients = sorted(self.feed.clients(self.shard_id), key=lambda c: (c.address, c.session_id))
        now = self.feed.model.clock()
        selected = self.selected
        rows = [
            (
                c.session_id,
                [
                    Text(c.address),
                    Text(c.library or "—"),
                    Text(short_session(c.session_id)),
                    Text(format_count(c.seq)),
                    Text(f"{format_count(c.backlog_events)}/{format_bytes(c.backlog_bytes)}"),
                    Text(format_age(None if c.connected_since is None else now - c.connected_since)),
                ],
            )
            for c in clients
        ]
        self.shown = clients
        self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)
        if selected is not None:
            for index, client in enumerate(clients):
                if client.session_id == selected.session_id:
                    self.move_cursor(row=index, animate=False)
                    break

    @property
    def selected(self) -> ClientStats | None:
        if not self.shown or not 0 <= self.cursor_row < len(self.shown):
            return None
        return self.shown[self.cursor_row]


def format_bytes(count: int) -> str:
    if count < 1024:
        return f"{count}B"
    if count < 1024 * 1024:
        return f"{count // 1024}KiB"
    return f"{count // (1024 * 1024)}MiB"
