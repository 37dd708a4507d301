"""``ShardTUI``: the operator console behind the ``shardtui`` command.

One worker owns the Runtime (embedded sandbox + ShardManager) from start to clean shutdown. Manager
events only touch the model; a timer flushes the changed rows into the table. The shard actions
(``actions.py``) hand the chosen shards to ``self.control``, a ``ShardControl`` (``control.py``) —
no protocol logic here.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Label, RichLog, Static

from shardtui.config import Config, ConfigError
from shardtui.gateway.errors import FatalGatewayError
from shardtui.gateway.models import FatalErrorEvent, ShardId, ShardRunnerInfo
from shardtui.tui.actions import ShardActions
from shardtui.tui.charts import ChartScreen
from shardtui.tui.clients import ClientsFeed, ProxyView
from shardtui.tui.columns_screen import ColumnsScreen
from shardtui.tui.control import LocalControl, ShardControl
from shardtui.tui.export import ExportScreen
from shardtui.tui.filter_bar import FilterBar
from shardtui.tui.formatting import fit_items
from shardtui.tui.jump import JumpScreen
from shardtui.tui.legend import legend_text
from shardtui.tui.log_screen import LogScreen
from shardtui.tui.model import Clock, ConsoleModel, QueueView
from shardtui.tui.ports import ConsoleManager, ConsoleRuntime
from shardtui.tui.screens import (
    ConfirmScreen,
    DetailsScreen,
    FatalScreen,
    HelpScreen,
)
from shardtui.tui.startup_bar import StartupBar
from shardtui.tui.table import ShardTable
from shardtui.tui.themes import (
    DEFAULT_THEME,
    STAGE_VARIABLES,
    THEMES_DIR,
    ThemeLoad,
    load_themes,
    resolve_theme,
)

log = logging.getLogger("shardtui.tui")

REFRESH_STEPS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
#: Actions that change the fleet; ``--readonly`` hides them everywhere (footer, help, palette).
MUTATING_ACTIONS = frozenset({"restart", "shutdown", "boot", "rolling_restart", "presence", "reshard"})
#: Exit status after a fatal error stopped the fleet: the same as headless mode's.
EXIT_FATAL = 3

RuntimeFactory = Callable[[Config], ConsoleRuntime]


def _default_runtime_factory(config: Config) -> ConsoleRuntime:
    from shardtui.runtime import Runtime

    return Runtime(config)


class ShardTUI(ShardActions):
    """The console. ``return_code`` is 0 after a clean quit, 3 (``EXIT_FATAL``) when a fatal error
    stopped the fleet; ``fatal_report()`` is then the line to print once the terminal is back."""

    CSS_PATH = "console.tcss"
    TITLE = "shardtui"
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        Binding("r", "restart", "Restart", id="restart"),
        Binding("s", "shutdown", "Shutdown", id="shutdown"),
        Binding("b", "boot", "Boot", id="boot"),
        Binding("R", "rolling_restart", "Rolling", id="rolling_restart", key_display="R"),
        Binding("p", "presence", "Presence", id="presence"),
        Binding("question_mark", "help", "Help", id="help", key_display="?"),
        Binding("q", "request_quit", "Quit", id="quit"),
        Binding("enter", "details", "Details", id="details"),
        Binding("space", "mark", "Mark", id="mark"),
        Binding("slash", "filter", "Filter", id="filter", key_display="/"),
        Binding("less_than_sign", "sort(-1)", "Sort ←", id="sort_prev", key_display="<", show=False),
        Binding("greater_than_sign", "sort(1)", "Sort →", id="sort_next", key_display=">", show=False),
        Binding("l", "toggle_log", "Log", id="log"),
        Binding("t", "next_theme", "Theme", id="theme", show=False),
        Binding(
            "plus", "refresh_rate(1)", "Slower refresh", id="refresh_slower", key_display="+", show=False
        ),
        Binding(
            "minus", "refresh_rate(-1)", "Faster refresh", id="refresh_faster", key_display="-", show=False
        ),
        Binding("escape", "clear", "Clear marks/filter", id="clear", show=False),
        # Marks, sort direction, jump, columns, log view, export and charts (htop/k9s habits: I inverts
        # the sort, : jumps). Off the footer, which has no room left at 80 columns; ? lists them.
        Binding("ctrl+a", "mark_all", "Mark all shards", id="mark_all", show=False),
        Binding("M", "mark_filtered", "Mark filtered", id="mark_filtered", key_display="M", show=False),
        Binding("U", "clear_marks", "Clear marks", id="clear_marks", key_display="U", show=False),
        Binding("I", "reverse_sort", "Reverse sort", id="reverse_sort", key_display="I", show=False),
        Binding("colon", "jump", "Go to shard", id="jump", key_display=":", show=False),
        Binding("C", "choose_columns", "Columns", id="columns", key_display="C", show=False),
        Binding("L", "log_view", "Log view", id="log_view", key_display="L", show=False),
        Binding("x", "export", "Export", id="export", show=False),
        Binding("c", "charts", "Charts", id="charts", show=False),
        Binding("ctrl+c", "request_quit", "Quit", id="quit_ctrl_c", show=False, priority=True),
        # Textual's own ctrl+q quits at once; here it asks like q does, so shards always close cleanly.
        Binding("ctrl+q", "request_quit", "Quit", id="quit_ctrl_q", show=False, priority=True),
        Binding(
            "ctrl+p",
            "command_palette",
            "palette",
            id="command_palette",
            show=False,
            priority=True,
        ),
    ]

    def __init__(
        self,
        config: Config,
        *,
        readonly: bool = False,
        runtime_factory: RuntimeFactory | None = None,
        clock: Clock | None = None,
        themes_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.readonly = readonly or config.ui.readonly
        self._runtime_factory = runtime_factory or _default_runtime_factory
        identify_window = config.gateway.identify_window
        if identify_window is None:
            identify_window = 5.0 if config.gateway.mode == "discord" else config.sandbox.identify_window
        self.model = ConsoleModel(identify_window=identify_window, **({"clock": clock} if clock else {}))
        self.model.mode = config.gateway.mode
        self._theme_load: ThemeLoad = load_themes(themes_dir or THEMES_DIR)
        self._theme_problem: str | None = None
        self.refresh_interval = max(0.05, float(config.ui.refresh_interval))
        self.runtime: ConsoleRuntime | None = None
        #: None until the runtime runs, and always in a fleet viewer (it runs no shard).
        self.manager: ConsoleManager | None = None
        #: The one line the CLI prints once the terminal is back when this process could not start
        #: at all (the fleet console sets it when the fleet refused this process).
        self.startup_error: str | None = None
        #: How actions reach the shards (the fleet console puts its own here).
        self.control: ShardControl = LocalControl(self)
        #: This process's proxy clients (None without ``[proxy] listen``): column, log lines, details.
        self.clients: ClientsFeed | None = None
        self._exit_code = 0
        self._quit_requested = asyncio.Event()
        self._shutting_down = False
        self._runtime_done = False
        #: The fatal error came as a manager event (cleared again by a boot), not from start-up.
        self._fatal_from_manager = False
        self._sigterm_installed = False
        #: The quit confirmation on screen (ctrl+c again answers it), or None.
        self._quit_screen: ConfirmScreen | None = None
        self._tick_timer: Timer | None = None
        #: Ticks that raised; tests assert it stays 0.
        self.refresh_errors = 0
        #: Terminal bells rung for new alerts (``[ui] bell``).
        self.bells = 0
        super().__init__()
        for theme in self._theme_load.themes.values():
            self.register_theme(theme)
        chosen, problem = resolve_theme(config.ui.theme, self._theme_load)
        if chosen.name not in self._theme_load.themes:
            self.register_theme(chosen)
        self._theme_problem = problem
        self.theme = chosen.name

    # -- layout ----------------------------------------------------------------------------------

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(STAGE_VARIABLES)

    def compose(self) -> ComposeResult:
        yield Static(id="fleet")
        yield Static(id="outage-banner")
        yield StartupBar(id="startup")
        yield FilterBar(id="filter")
        yield Label(id="filter-error")
        yield ShardTable(self.model, id="shards")
        yield RichLog(id="log", max_lines=2000, wrap=False, markup=False, highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        # Kept as references: app-level queries search the active screen, which may be a dialog.
        self._table = self.query_one(ShardTable)
        self._fleet = self.query_one("#fleet", Static)
        self._outage_banner = self.query_one("#outage-banner", Static)
        self._startup = self.query_one(StartupBar)
        self._filter = self.query_one(FilterBar)
        self._filter_error = self.query_one("#filter-error", Label)
        self._log = self.query_one("#log", RichLog)
        table = self._table
        table.theme_colour = self._theme_colour
        table.focus()
        if self.readonly:
            self.sub_title = "read-only"
        problems = list(self._theme_load.errors)
        if self._theme_problem and self._theme_problem not in problems:
            problems.append(self._theme_problem)
        if problems:
            # One notification however many files were bad.
            self.notify("\n".join(problems), title="Theme problem", severity="warning", timeout=10)
        self.theme_changed_signal.subscribe(self, self._on_theme_changed)
        self._apply_width(self.size.width)
        self._update_header()
        self._tick_timer = self.set_interval(self.refresh_interval, self._tick)
        self._install_sigterm()
        self._own_runtime()

    def _install_sigterm(self) -> None:
        # A service manager's SIGTERM must close every shard cleanly and restore the terminal,
        # not kill the process mid-frame; Textual itself leaves SIGTERM at its default.
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self._on_sigterm)
        except (NotImplementedError, RuntimeError, ValueError):
            return
        self._sigterm_installed = True

    def _on_sigterm(self) -> None:
        self.model.note("SIGTERM received: shutting down every shard")
        self._begin_quit()

    def on_unmount(self) -> None:
        if self._sigterm_installed:
            try:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
            self._sigterm_installed = False

    def _theme_colour(self, name: str) -> str | None:
        return self.theme_variables.get(name) or STAGE_VARIABLES.get(name)

    def _on_theme_changed(self, _theme: Any) -> None:
        table = self._table
        table.reset_styles()
        table.rebuild()

    def _apply_width(self, width: int) -> None:
        if width:
            self._table.set_width(width)

    # -- the runtime worker ----------------------------------------------------------------------

    #: The log line when quitting shuts the shards down (the fleet console says whose).
    shutdown_note = "shutting down every shard"

    @work(exclusive=True, group="runtime", exit_on_error=False, name="runtime")
    async def _own_runtime(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fatal_from_exception(exc)
            await self._quit_requested.wait()
        finally:
            self._runtime_done = True
        self.exit(self._exit_code, return_code=self._exit_code)

    async def _run(self) -> None:
        """What the runtime worker does until quit (a fleet viewer runs no shards instead)."""
        await self._run_runtime()

    async def _run_runtime(self) -> None:
        """Own a Runtime from start to clean shutdown: one worker for this and the fleet console."""
        runtime = self._runtime_factory(self.config)
        async with runtime:
            self._adopt_runtime(runtime)
            # Here, not in _adopt_runtime, so the fleet console's member process gets it too.
            self._adopt_proxy(runtime.proxy)
            manager = runtime.manager
            unsubscribe = manager.subscribe(self._on_manager_event)
            try:
                try:
                    await runtime.start()
                except Exception as exc:
                    if not self._start_failed(exc):
                        return
                self._runtime_started()
                self._tick()
                await self._quit_requested.wait()
                self._runtime_stopping()
                self._shutting_down = True
                self.model.note(self.shutdown_note)
                await manager.shutdown_all()
            finally:
                unsubscribe()

    def _adopt_runtime(self, runtime: ConsoleRuntime) -> None:
        self.runtime = runtime
        self.manager = runtime.manager
        self.model.mode = runtime.mode

    def _start_failed(self, exc: Exception) -> bool:
        """Show why the start failed; True keeps the console open (on its fatal screen) until quit."""
        self._fatal_from_exception(exc)
        return True

    def _runtime_started(self) -> None:
        """The shards are starting (hook: the fleet console starts reading Redis)."""

    def _runtime_stopping(self) -> None:
        """Quit was asked for, the shards are about to shut down (hook)."""

    def _adopt_proxy(self, proxy: ProxyView | None) -> None:
        """With a proxy: the clients column appears and attach/detach lines go to the log."""
        if proxy is None:
            return
        self.clients = ClientsFeed(proxy, self.model)
        self._table.refresh_columns()

    def _on_manager_event(self, event: Any) -> None:
        # Runs on every event: only the model is touched; the timer does the drawing.
        self.model.apply(event)

    def _fatal_from_exception(self, exc: BaseException) -> None:
        message = str(exc) or type(exc).__name__
        close_code: int | None = None
        if isinstance(exc, FatalGatewayError):
            kind, close_code = exc.kind, exc.code
        elif isinstance(exc, ConfigError):
            kind = "configuration"
        else:
            kind = type(exc).__name__
        self.model.apply(FatalErrorEvent(kind=kind, message=message, close_code=close_code))
        self._show_fatal()
        self._fatal_from_manager = False

    def _show_fatal(self) -> None:
        fatal = self.model.fatal
        if fatal is None or not self.model.fatal_is_new:
            return
        self.model.fatal_is_new = False
        self._fatal_from_manager = True
        self._exit_code = EXIT_FATAL
        if any(isinstance(screen, FatalScreen) for screen in self.screen_stack):
            return
        title = {
            "authentication": "The gateway rejected the bot token",
            "configuration": "The configuration cannot be used",
            "session_start_limit": "The daily session start budget is used up",
            "disallowed_intents": "Privileged intents are not enabled for this bot",
            "invalid_intents": "The configured intents are invalid",
        }.get(fatal.kind, "The fleet stopped on a fatal error")
        self.push_screen(FatalScreen(title, fatal.message))

    # -- the tick ----------------------------------------------------------------------------------

    def _tick(self) -> None:
        if not self.screen_stack:
            return  # closing: a last poll of the fleet has nothing left to draw on
        # A drawing bug must not end the console (and with it every shard): log it, say so once.
        try:
            self._refresh_view()
        except Exception as exc:
            self.refresh_errors += 1
            log.exception("console refresh failed")
            if self.refresh_errors == 1:
                self.notify(f"Display refresh failed: {exc!r} (see the log)", severity="error", timeout=15)

    def _refresh_view(self) -> None:
        self._sync_model()
        self._draw()

    def _sync_model(self) -> None:
        """Bring the view model up to date with the shards (the fleet console reads Redis too)."""
        manager = self.manager
        model = self.model
        infos = self._shard_infos()
        if infos is not None:
            model.sync(infos)
            model.scan()
        if self.clients is not None:
            self.clients.tick()
        if manager is not None:
            model.queue = QueueView.from_status(manager.queue_status())
            model.session_start_limit = manager.session_start_limit
            model.identifies_saved = manager.identifies_saved
            model.set_bot_user(manager.bot_user)
            if model.fatal is not None and self._fatal_from_manager and not model.fatal_is_new:
                if manager.fatal_error is None:
                    # The operator booted shards again after fixing the cause: a clean quit is a
                    # clean exit again.
                    model.fatal = None
                    self._exit_code = 0

    def _shard_infos(self) -> Mapping[ShardId, ShardRunnerInfo] | None:
        """The shards to show, keyed by id (None before the manager exists)."""
        return None if self.manager is None else self.manager.runners

    def _draw(self) -> None:
        model = self.model
        with self.batch_update():
            self._table.flush()
            self._update_header()
            lines = model.take_log()
            if lines:
                pane = self._log
                for line in lines:
                    pane.write(Text(line.format()))
            if isinstance(self.screen, DetailsScreen):
                self.screen.refresh_details()
            elif isinstance(self.screen, ChartScreen):
                self.screen.refresh_charts()
            if lines:
                for screen in self.screen_stack:
                    if isinstance(screen, LogScreen):
                        screen.add_lines(lines)
        for toast in model.take_toasts():
            self.notify(toast.message, title=toast.title, severity=toast.severity, timeout=toast.timeout)  # type: ignore[arg-type]
            if toast.raised and self.config.ui.bell:
                self.bells += 1
                self.bell()
        if model.fatal_is_new:
            self._show_fatal()

    def _update_header(self) -> None:
        model = self.model
        first, second = model.stats().header_lines()
        # (text, shorter text or "" to drop): at 80 columns the match count and the marks must not be
        # wrapped out of the three-line header, so the refresh rate goes first, then the filter's text
        # (the filter box under the header shows it).
        view: list[tuple[str, str | None]] = [
            (f"refresh {self.refresh_interval:g}s", ""),
            (f"sort {model.sort_key.value}" + (" reversed" if model.sort_reverse else ""), None),
        ]
        if model.filter_text:
            view.append((f"filter {model.filter_text!r}", "filter"))
            view.append((f"{self._table.row_count:,} of {len(model.rows):,} match", None))
        if model.marked:
            view.append((f"{len(model.marked)} marked", None))
        if self.readonly:
            view.append(("READ-ONLY", None))
        rolling = self.control.rolling_progress()
        if rolling is not None:
            view.append((rolling.describe(), f"rolling {len(rolling.done)}/{rolling.total}"))
        line = fit_items(view, max(0, self._fleet.size.width - 2))
        self._fleet.update(Text(f"{first}\n{second}\n{line}"))
        self._update_outage_banner()
        self._update_startup()

    def _update_outage_banner(self) -> None:
        outage = self.model.outage
        banner = self._outage_banner
        if outage is not None:
            since = time.strftime("%H:%M:%S", time.localtime(outage.at))
            banner.update(Text(f"OUTAGE since {since} — {outage.message}"))
        banner.set_class(outage is not None, "visible")

    def fatal_report(self) -> str | None:
        """What stopped the fleet, in one line for the terminal after the UI closed (None: nothing did)."""
        fatal = self.model.fatal
        if fatal is None or self._exit_code != EXIT_FATAL:
            return None
        code = f" (close code {fatal.close_code})" if fatal.close_code is not None else ""
        return f"fatal {fatal.kind}{code}: {fatal.message}"

    def _update_startup(self) -> None:
        self._startup.show_progress(self.model, stopping=self._shutting_down)

    # -- helpers ---------------------------------------------------------------------------------

    @property
    def table(self) -> ShardTable:
        return self._table

    def _targets(self) -> list[int]:
        return self.model.targets(self.table.selected_shard)

    def _plan_text(self, action: str, ids: list[int]) -> str:
        return self.control.plan_text(action, ids)

    def _need_manager(self) -> bool:
        problem = self.control.unavailable()
        if problem is not None:
            self.notify(problem, severity="warning")
            return False
        return True

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.readonly and action in MUTATING_ACTIONS:
            return False
        return True

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        commands: list[tuple[str, str, str, Callable[[], Any]]] = [
            ("restart", "Restart shards", "Resume the selected or marked shards", self.action_restart),
            ("shutdown", "Shut down shards", "Stop the selected or marked shards", self.action_shutdown),
            ("boot", "Boot shards", "Start the selected or marked stopped shards", self.action_boot),
            (
                "rolling_restart",
                "Rolling restart",
                "Restart every shard, batch by batch",
                self.action_rolling_restart,
            ),
            ("presence", "Edit presence", "Set status and activity", self.action_presence),
            (
                "reshard",
                "Live reshard",
                "Move to a new shard total without a gap in events",
                self.action_reshard,
            ),
            ("details", "Shard details", "Info, latency and log of the selected shard", self.action_details),
            ("mark", "Mark shard", "Mark or unmark the selected shard", self.action_mark),
            ("filter", "Filter shards", "Show only matching shards", self.action_filter),
            ("sort_next", "Next sort column", "Sort by the next column", lambda: self.action_sort(1)),
            (
                "sort_prev",
                "Previous sort column",
                "Sort by the previous column",
                lambda: self.action_sort(-1),
            ),
            ("log", "Toggle log pane", "Show or hide the fleet log", self.action_toggle_log),
            ("theme", "Next theme", "Switch to the next console theme", self.action_next_theme),
            (
                "refresh_slower",
                "Slower refresh",
                "Flush the table less often",
                lambda: self.action_refresh_rate(1),
            ),
            (
                "refresh_faster",
                "Faster refresh",
                "Flush the table more often",
                lambda: self.action_refresh_rate(-1),
            ),
            ("help", "Help: keys", "List every key and its binding id", self.action_help),
            ("mark_all", "Mark all shards", "Mark every shard, filtered or not", self.action_mark_all),
            ("mark_filtered", "Mark filtered", "Mark the shards the filter shows", self.action_mark_filtered),
            ("clear_marks", "Clear marks", "Unmark every shard", self.action_clear_marks),
            ("reverse_sort", "Reverse sort", "Sort the other way round", self.action_reverse_sort),
            ("jump", "Go to shard", "Move the cursor to a shard id", self.action_jump),
            ("columns", "Choose columns", "Show or hide table columns", self.action_choose_columns),
            ("log_view", "Log view", "The whole log, full screen, with search", self.action_log_view),
            ("export", "Export table", "Write the shown rows to CSV or JSON", self.action_export),
            ("charts", "Fleet charts", "Events/s and latency over the last minutes", self.action_charts),
        ]
        for action, title, help_text, callback in commands:
            if self.readonly and action in MUTATING_ACTIONS:
                continue
            yield SystemCommand(title, help_text, callback)

    # -- actions: view ---------------------------------------------------------------------------

    def action_details(self) -> None:
        sid = self.table.selected_shard
        if sid is None:
            self.notify("No shard selected.", severity="warning")
            return
        self.push_screen(DetailsScreen(self.model, sid, clients=self.clients, readonly=self.readonly))

    @on(DataTable.RowSelected, "#shards")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        # The table consumes enter itself; selecting a row is the same as asking for its details.
        event.stop()
        self.action_details()

    def action_mark(self) -> None:
        sid = self.table.selected_shard
        if sid is None:
            return
        self.model.toggle_mark(sid)
        self.table.flush()
        self.table.action_cursor_down()
        self._update_header()

    def action_clear(self) -> None:
        filter_bar = self._filter
        if self.focused is filter_bar:
            # Escape while editing undoes the edit: back to the filter in force before "/".
            self._set_filter(filter_bar.before)
            return
        if filter_bar.display or self.model.filter_text:
            self._set_filter("")
            return
        if self.model.marked:
            self.model.clear_marks()
            self.table.flush()
            self._update_header()

    def action_filter(self) -> None:
        self._filter.edit(self.model.filter_text)

    @property
    def filter_debounce(self) -> float:
        """Seconds typing must pause before the filter applies (a test may lengthen it)."""
        return self._filter.debounce

    @filter_debounce.setter
    def filter_debounce(self, seconds: float) -> None:
        self._filter.debounce = seconds

    def _show_filter_problem(self, problem: str | None) -> None:
        label = self._filter_error
        label.update(Text(f"not applied: {problem}") if problem else "")
        label.display = problem is not None
        self._filter.set_class(problem is not None, "-invalid")

    @on(FilterBar.Typed)
    def _filter_typed(self, event: FilterBar.Typed) -> None:
        self._show_filter_problem(event.problem)
        if event.problem is not None or event.text.strip() == self.model.filter_text:
            return
        self.model.filter_text = event.text.strip()
        self.table.rebuild()
        self._update_header()

    @on(FilterBar.Chosen)
    def _filter_chosen(self, event: FilterBar.Chosen) -> None:
        if event.problem is not None:
            # Keep the box open with what was typed, so it can be fixed.
            self._show_filter_problem(event.problem)
            return
        self._set_filter(event.text)

    def on_key(self, event: Any) -> None:
        if event.key == "escape" and self.focused is self._filter:
            event.stop()
            self.action_clear()

    def _set_filter(self, text: str) -> None:
        self.model.filter_text = text.strip()
        self._filter.show(self.model.filter_text)
        self._show_filter_problem(None)
        self.table.rebuild()
        self.table.focus()
        self._update_header()

    def action_sort(self, step: int) -> None:
        key = self.model.cycle_sort(step)
        self.table.resort()
        self._update_header()
        self.notify(f"Sorted by {key.value}", timeout=2)

    # -- marks, sort direction, jump, columns, log view, export, charts --------------------------------

    def _marks_changed(self, message: str) -> None:
        self.table.flush()
        self._update_header()
        self.notify(message, timeout=2)

    def action_mark_all(self) -> None:
        count = self.model.mark_all()
        self._marks_changed(f"{count:,} shards marked")

    def action_mark_filtered(self) -> None:
        added = self.model.mark_visible()
        self._marks_changed(f"{added:,} shown shards marked ({len(self.model.marked):,} marked)")

    def action_clear_marks(self) -> None:
        if not self.model.marked:
            return
        self.model.clear_marks()
        self._marks_changed("Marks cleared")

    def action_reverse_sort(self) -> None:
        reverse = self.model.reverse_sort()
        self.table.resort()
        self._update_header()
        self.notify(f"Sorted by {self.model.sort_key.value}{' reversed' if reverse else ''}", timeout=2)

    def jump_problem(self, sid: int) -> str | None:
        """Why the cursor cannot go to shard ``sid`` (None: it can)."""
        model = self.model
        if sid not in model.rows:
            if not model.rows:
                return f"no shard {sid}: no shards yet"
            return f"no shard {sid} (shards {min(model.rows)} to {max(model.rows)})"
        if sid not in self.table.rendered:
            filter_text = model.filter_text
            return f"shard {sid} is hidden by the filter {filter_text!r} (esc on the table clears it)"
        return None

    def action_jump(self) -> None:
        def done(sid: int | None) -> None:
            if sid is not None:
                self.table.select_shard(sid)
                self.table.focus()

        self.push_screen(JumpScreen(self.jump_problem), done)

    def action_choose_columns(self) -> None:
        def apply(hidden: set[str]) -> None:
            self.model.hidden_columns = hidden
            self.table.refresh_columns()

        self.push_screen(ColumnsScreen(self.model.columns, self.model.hidden_columns, apply))

    def action_log_view(self) -> None:
        self.push_screen(LogScreen(self.model.delivered_log()))

    def action_export(self) -> None:
        def done(path: Path | None) -> None:
            if path is not None:
                self.model.note(f"exported the table to {path}")
                self.notify(f"Exported to {path}", timeout=5)

        self.push_screen(ExportScreen(self.model), done)

    def action_charts(self) -> None:
        self.push_screen(ChartScreen(self.model))

    def action_toggle_log(self) -> None:
        pane = self._log
        pane.display = not pane.display

    def action_next_theme(self) -> None:
        names = sorted(self._theme_load.themes)
        if self.theme not in names:
            names.append(self.theme)
        index = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(index + 1) % len(names)]
        self.notify(f"Theme: {self.theme}", timeout=2)

    def action_refresh_rate(self, step: int) -> None:
        current = self.refresh_interval
        if step > 0:
            bigger = [s for s in REFRESH_STEPS if s > current]
            new = bigger[0] if bigger else REFRESH_STEPS[-1]
        else:
            smaller = [s for s in REFRESH_STEPS if s < current]
            new = smaller[-1] if smaller else REFRESH_STEPS[0]
        self.refresh_interval = new
        if self._tick_timer is not None:
            self._tick_timer.stop()
        self._tick_timer = self.set_interval(new, self._tick)
        self._update_header()
        self.notify(f"Refreshing every {new:g}s", timeout=2)

    def action_help(self) -> None:
        rows = []
        for binding in [*self.BINDINGS, *ShardTable.BINDINGS]:
            assert isinstance(binding, Binding)
            action = binding.action.split("(")[0]
            if self.readonly and action in MUTATING_ACTIONS:
                continue
            key = binding.key_display or binding.key
            rows.append((key, binding.description, binding.id or ""))
        self.push_screen(HelpScreen(rows, legend_text(self.model.columns)))

    # -- quitting ----------------------------------------------------------------------------------

    async def action_quit(self) -> None:
        # The palette's built-in "Quit" lands here: same confirmation and clean shutdown as q.
        self.action_request_quit()

    def action_request_quit(self) -> None:
        if self._shutting_down:
            return
        if self._quit_screen is not None and self.screen is self._quit_screen:
            # ctrl+c twice: the second press answers yes.
            self.screen.dismiss(True)
            return
        question = self._quit_question()
        if question is None:
            self._begin_quit()
            return
        screen = ConfirmScreen("Quit shardtui", question, yes="Quit")
        self._quit_screen = screen

        def done(answer: bool | None) -> None:
            self._quit_screen = None
            if answer:
                self._begin_quit()

        self.push_screen(screen, done)

    def _quit_question(self) -> str | None:
        """What to ask before quitting, or None when nothing live would be shut down."""
        return None if self._runtime_done else self.control.quit_question()

    def _begin_quit(self) -> None:
        self._shutting_down = self.manager is not None
        if self._runtime_done:
            self.exit(self._exit_code, return_code=self._exit_code)
            return
        if self._shutting_down:
            self.notify("Shutting down the shards…", timeout=30)
        self._quit_requested.set()


__all__ = ["DEFAULT_THEME", "ShardTUI"]
