"""The console's dialogs: confirm, presence editor, shard details, help and the fatal-error screen."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Select, Sparkline, Static

from shardtui.gateway.models import Presence
from shardtui.gateway.protocol import ActivityType, Status
from shardtui.tui.clients import ClientsFeed, ClientsTable, describe_client
from shardtui.tui.columns import stage_word
from shardtui.tui.formatting import describe_presence, format_age, format_latency
from shardtui.tui.model import ConsoleModel


class ScopeButton(RadioButton):
    """A radio button whose glyph says whether it is chosen: the stock one differs only by colour."""

    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]
        return "●" if self.value else "○"


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question that names exactly what will happen."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, title: str, body: str, *, yes: str = "Yes") -> None:
        super().__init__(classes="dialog-screen")
        self.title_text = title
        self.body_text = body
        self.yes_label = yes

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm", classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(Text(self.body_text), id="confirm-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes_label} (y)", id="yes", variant="error", compact=True)
                yield Button("No (n)", id="no", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


@dataclass(frozen=True, slots=True)
class PresenceRequest:
    presence: Presence
    #: "selected" | "marked" | "all"
    scope: str


STATUSES = (Status.ONLINE, Status.IDLE, Status.DND, Status.INVISIBLE)
ACTIVITY_CHOICES: tuple[tuple[str, ActivityType | None], ...] = (
    ("none", None),
    ("playing", ActivityType.PLAYING),
    ("streaming", ActivityType.STREAMING),
    ("listening", ActivityType.LISTENING),
    ("watching", ActivityType.WATCHING),
    ("custom", ActivityType.CUSTOM),
    ("competing", ActivityType.COMPETING),
)


def build_presence(status: str, activity: str, name: str, state: str, url: str) -> Presence:
    """The presence the form describes; raises ValueError (operator-readable) if Discord would refuse it."""
    kinds = dict(ACTIVITY_CHOICES)
    if activity not in kinds:
        raise ValueError(f"unknown activity type {activity!r}")
    kind = kinds[activity]
    name, state, url = name.strip(), state.strip(), url.strip()
    if kind is None and (name or state or url):
        raise ValueError("choose an activity type to go with the name, state or url")
    if kind is not None and url and kind is not ActivityType.STREAMING:
        raise ValueError("a url is only allowed for streaming")
    presence = Presence.build(status, kind, name, state or None, url or None)
    presence.validate()
    return presence


class PresenceScreen(ModalScreen[PresenceRequest | None]):
    """Edit status and activity; validates before anything is sent. Enter applies from any field: an
    input, a closed select (space or the arrows open its list) and the scope (taking the highlighted
    one); only a button keeps enter for itself, and an open select's list for choosing."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="presence.cancel"),
        Binding("ctrl+s", "apply", "Apply", id="presence.apply"),
        # Priority, or the focused select and radio set would take enter for themselves.
        Binding("enter", "apply_from_field", "Apply", id="presence.apply_enter", show=False, priority=True),
    ]

    def __init__(self, *, initial: Presence | None, scopes: Iterable[tuple[str, str]]) -> None:
        super().__init__(classes="dialog-screen")
        self.initial = initial
        self.scopes = list(scopes)

    def compose(self) -> ComposeResult:
        initial = self.initial
        activity = initial.activity if initial is not None else None
        status = initial.status.value if initial is not None else Status.ONLINE.value
        if status not in {s.value for s in STATUSES}:
            status = Status.INVISIBLE.value
        kind = "none" if activity is None else activity.type.name.lower()
        with Vertical(id="presence", classes="dialog"):
            yield Label("Presence", classes="dialog-title")
            with Horizontal(classes="form-row"):
                yield Label("status", classes="form-label")
                yield Select(
                    [(s.value, s.value) for s in STATUSES],
                    value=status,
                    allow_blank=False,
                    id="status",
                    compact=True,
                )
            with Horizontal(classes="form-row"):
                yield Label("activity", classes="form-label")
                yield Select(
                    [(label, label) for label, _ in ACTIVITY_CHOICES],
                    value=kind,
                    allow_blank=False,
                    id="kind",
                    compact=True,
                )
            with Horizontal(classes="form-row"):
                yield Label("name", classes="form-label")
                yield Input(
                    activity.name if activity else "", placeholder="activity name", id="name", compact=True
                )
            with Horizontal(classes="form-row"):
                yield Label("state", classes="form-label")
                yield Input(
                    (activity.state or "") if activity else "",
                    placeholder="state / custom text",
                    id="state",
                    compact=True,
                )
            with Horizontal(classes="form-row"):
                yield Label("url", classes="form-label")
                yield Input(
                    (activity.url or "") if activity else "",
                    placeholder="streaming only: twitch/youtube",
                    id="url",
                    compact=True,
                )
            with RadioSet(id="scope"):
                for index, (value, label) in enumerate(self.scopes):
                    yield ScopeButton(label, value=index == 0, name=value)
            yield Static("", id="presence-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Apply (ctrl+s)", id="apply", variant="primary", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    def _scope(self) -> str:
        radio = self.query_one("#scope", RadioSet)
        pressed = radio.pressed_button
        return pressed.name if pressed is not None and pressed.name else self.scopes[0][0]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "apply_from_field":
            # False lets the key through to the button or the open list.
            open_list = any(select.expanded for select in self.query(Select))
            return not open_list and not isinstance(self.focused, Button)
        return True

    def action_apply_from_field(self) -> None:
        radio = self.query_one("#scope", RadioSet)
        if self.focused is radio:
            # Enter on the scope takes the highlighted one (a radio set's enter would press it), then
            # applies. RadioSet names the highlighted button only in its private ``_selected``.
            highlighted = radio._selected
            buttons = list(radio.query(ScopeButton))
            if highlighted is not None and 0 <= highlighted < len(buttons) and buttons[highlighted].name:
                self.action_apply(buttons[highlighted].name)
                return
        self.action_apply()

    def action_apply(self, scope: str | None = None) -> None:
        error = self.query_one("#presence-error", Static)
        try:
            presence = build_presence(
                str(self.query_one("#status", Select).value),
                str(self.query_one("#kind", Select).value),
                self.query_one("#name", Input).value,
                self.query_one("#state", Input).value,
                self.query_one("#url", Input).value,
            )
        except ValueError as exc:
            error.update(Text(f"Not sent: {exc}"))
            error.add_class("visible")
            return
        self.dismiss(PresenceRequest(presence, scope or self._scope()))

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_apply()

    @on(Button.Pressed, "#apply")
    def _apply_pressed(self) -> None:
        self.action_apply()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.dismiss(None)


def _ago(seconds: float | None) -> str:
    return "never" if seconds is None else f"{format_age(seconds)} ago"


class DetailsScreen(ModalScreen[None]):
    """One shard up close: its info, a latency sparkline and its recent log. Refreshed by the app's tick."""

    BINDINGS = [
        Binding("escape,enter,q", "close", "Back", id="details.close"),
        Binding("k", "disconnect_client", "Disconnect client", id="details.disconnect_client"),
    ]

    def __init__(
        self, model: ConsoleModel, sid: int, *, clients: ClientsFeed | None = None, readonly: bool = False
    ) -> None:
        super().__init__(classes="dialog-screen")
        self.model = model
        self.sid = sid
        #: The local proxy's clients; None without a proxy (no client list, no disconnect key).
        self.clients = clients
        self.readonly = readonly

    def compose(self) -> ComposeResult:
        with Vertical(id="details", classes="dialog"):
            yield Label(f"Shard {self.sid}", classes="dialog-title", id="details-title")
            yield Static(id="details-info")
            yield Label("latency (ms), last samples", classes="section", id="details-latency-label")
            yield Sparkline([], id="details-latency")
            if self.clients is not None:
                yield Label("attached clients", classes="section", id="details-clients-label")
                yield ClientsTable(self.clients, self.sid, id="details-clients")
            yield Label("recent log, newest first", classes="section")
            with VerticalScroll(id="details-log-scroll"):
                yield Static(id="details-log")

    def on_mount(self) -> None:
        self.refresh_details()

    def refresh_details(self) -> None:
        # The app's tick may call this between push_screen and compose; skip until the widgets exist.
        try:
            info_widget = self.query_one("#details-info", Static)
            sparkline = self.query_one("#details-latency", Sparkline)
            log_widget = self.query_one("#details-log", Static)
        except NoMatches:
            return
        row = self.model.rows.get(self.sid)
        if row is None:
            info_widget.update(Text("This shard is no longer managed."))
            return
        info = row.info
        now = self.model.clock()
        dispatch_age = _ago(None if info.last_dispatch_at is None else now - info.last_dispatch_at)
        ack_age = _ago(None if info.last_ack_at is None else now - info.last_ack_at)
        seq = info.last_seq if info.last_seq is not None else "—"
        lines = [
            f"stage      {stage_word(info, self.sid in self.model.queue.queued)}"
            f"   health {info.health.value}{' (' + info.health_reason + ')' if info.health_reason else ''}",
            f"latency    {format_latency(info.latency)}   guilds {info.guilds}"
            f"   events {info.events_received}   seq {seq}",
            f"session    {info.session_id or '—'}   last start {info.last_start or '—'}",
            f"identifies {info.identifies}   resumes {info.resumes}   reconnects {info.reconnects}",
            f"last close {info.last_close_code if info.last_close_code is not None else '—'}"
            f"{' ' + info.last_close_reason if info.last_close_reason else ''}",
            f"dispatch   {dispatch_age}   ack {ack_age}",
            f"presence   {describe_presence(row.presence)}",
        ]
        if info.fatal_error:
            lines.append(f"FATAL      {info.fatal_error}")
        info_widget.update(Text("\n".join(lines)))
        sparkline.data = list(row.latencies)
        # An empty sparkline draws a flat baseline that reads as "0 ms"; say there is nothing yet instead.
        sparkline.display = bool(row.latencies)
        self.query_one("#details-latency-label", Label).update(
            "latency (ms), last samples" if row.latencies else "latency: no heartbeat ACK yet"
        )
        # Newest first: the pane is short and the latest line is the one an operator wants.
        log = "\n".join(line.format() for line in reversed(list(row.log)[-50:])) or "(nothing yet)"
        log_widget.update(Text(log))
        if self.clients is not None:
            table = self.query_one("#details-clients", ClientsTable)
            table.refresh_clients()
            count = len(table.shown)
            label = f"attached clients ({count})" if count else "attached clients: none"
            if count and not self.readonly:
                label += ", k disconnects the selected one"
            self.query_one("#details-clients-label", Label).update(label)

    def action_close(self) -> None:
        self.dismiss(None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "disconnect_client":
            # Hidden (not only refused) without a proxy and in a read-only console.
            return self.clients is not None and not self.readonly
        return True

    def action_disconnect_client(self) -> None:
        if self.clients is None or self.readonly:
            return
        client = self.query_one("#details-clients", ClientsTable).selected
        if client is None:
            self.notify("No client attached to this shard.", severity="warning")
            return
        feed = self.clients
        who = describe_client(client)

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            if feed.disconnect(client.session_id):
                self.model.note(f"disconnected client {who} from shard {self.sid}", shard_id=self.sid)
            else:
                self.notify(f"Client {who} had already gone.", severity="warning")
            self.refresh_details()

        self.app.push_screen(
            ConfirmScreen(
                f"Disconnect a client of shard {self.sid}?",
                f"Close {who} with 4000 and end its session. The client can reconnect and identify again.",
                yes="Disconnect",
            ),
            answered,
        )


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close", id="help.close")]

    def __init__(self, rows: Iterable[tuple[str, str, str]], legend: Text | None = None) -> None:
        super().__init__(classes="dialog-screen")
        self.rows = list(rows)
        #: What the columns and the filter syntax mean, shown under the keys.
        self.legend = legend

    def compose(self) -> ComposeResult:
        text = Text()
        for key, description, binding_id in self.rows:
            text.append(f"{key:>8}  ", style="bold")
            text.append(f"{description:<36}")
            text.append(f" {binding_id}\n", style="dim")
        with Vertical(id="help", classes="dialog"):
            yield Label("Keys (binding id on the right, for keymaps)", classes="dialog-title")
            with VerticalScroll():
                yield Static(text, id="help-body")
                if self.legend is not None:
                    yield Static(self.legend, id="help-legend")

    def action_close(self) -> None:
        self.dismiss(None)


class FatalScreen(ModalScreen[None]):
    """Shown once for an error that stops the whole fleet: what happened and what to do."""

    BINDINGS = [
        Binding("q", "app.request_quit", "Quit", id="fatal.quit"),
        Binding("escape", "close", "Dismiss", id="fatal.dismiss"),
    ]

    def __init__(self, title: str, message: str) -> None:
        super().__init__(classes="dialog-screen")
        self.title_text = title
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(id="fatal", classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(Text(self.message), id="fatal-body")
            yield Label("q quit · esc look at the shard table", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
