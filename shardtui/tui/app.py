"""``ShardTUI``: the operator console behind the ``shardtui`` command.

One worker owns the Runtime (embedded sandbox + ShardManager) from start to clean shutdown. Manager
events only touch the view model; a timer flushes the changed rows into the table. Every operator
action goes through ShardManager methods or a shard's ShardMessenger — no protocol logic here.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input, Label, ProgressBar, RichLog, Static

from shardtui.config import Config
from shardtui.gateway.models import ConnectionStage, FatalErrorEvent, Presence, ShardId
from shardtui.tui.screens import (
    ConfirmScreen,
    DetailsScreen,
    FatalScreen,
    HelpScreen,
    PresenceRequest,
    PresenceScreen,
)
from shardtui.tui.table import ShardTable
from shardtui.tui.themes import (
    DEFAULT_THEME,
    STAGE_VARIABLES,
    THEMES_DIR,
    ThemeLoad,
    load_themes,
    resolve_theme,
)
from shardtui.tui.viewmodel import (
    Clock,
    FilterError,
    FleetModel,
    QueueView,
    parse_filter,
    shard_count,
    shard_ids_phrase,
)

log = logging.getLogger("shardtui.tui")

REFRESH_STEPS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
#: Actions that change the fleet; ``--readonly`` hides them everywhere (footer, help, palette).
MUTATING_ACTIONS = frozenset({"restart", "shutdown", "boot", "rolling_restart", "presence", "reshard"})
#: How long a rolling restart waits for one batch to come back before moving on.
ROLLING_BATCH_TIMEOUT = 60.0
#: The filter applies once typing pauses this long (seconds), not on every key.
FILTER_DEBOUNCE = 0.15

RuntimeFactory = Callable[[Config], Any]


def _default_runtime_factory(config: Config) -> Any:
    from shardtui.runtime import Runtime

    return Runtime(config)


class ShardTUI(App[int]):
    """The console. ``return_code`` is 0 after a clean quit, 1 when a fatal error stopped the fleet."""

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
        self.readonly = readonly or bool(getattr(config.ui, "readonly", False))
        self._runtime_factory = runtime_factory or _default_runtime_factory
        identify_window = getattr(config.gateway, "identify_window", None)
        if identify_window is None:
            identify_window = 5.0 if config.gateway.mode == "discord" else config.sandbox.identify_window
        self.model = FleetModel(identify_window=identify_window, **({"clock": clock} if clock else {}))
        self.model.mode = config.gateway.mode
        self._theme_load: ThemeLoad = load_themes(themes_dir or THEMES_DIR)
        self._theme_problem: str | None = None
        self.refresh_interval = max(0.05, float(config.ui.refresh_interval))
        self.runtime: Any = None
        self.manager: Any = None
        self._exit_code = 0
        self._quit_requested = asyncio.Event()
        self._shutting_down = False
        self._runtime_done = False
        #: The fatal error came as a manager event (cleared again by a boot), not from start-up.
        self._fatal_from_manager = False
        self._tick_timer: Timer | None = None
        self._startup_over = False
        #: Ticks that raised; tests assert it stays 0.
        self.refresh_errors = 0
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
        with Horizontal(id="startup"):
            yield Label(id="startup-label")
            yield ProgressBar(total=1, show_eta=False, id="startup-bar")
        yield Input(
            placeholder="filter: id, stage:conn, close:4000, any text · enter keeps · esc undoes",
            id="filter",
        )
        yield Label(id="filter-error")
        yield ShardTable(self.model, id="shards")
        yield RichLog(id="log", max_lines=2000, wrap=False, markup=False, highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        # Kept as references: app-level queries search the active screen, which may be a dialog.
        self._table = self.query_one(ShardTable)
        self._fleet = self.query_one("#fleet", Static)
        self._startup = self.query_one("#startup", Horizontal)
        self._startup_label = self.query_one("#startup-label", Label)
        self._startup_bar = self.query_one("#startup-bar", ProgressBar)
        self._filter = self.query_one("#filter", Input)
        self._filter_error = self.query_one("#filter-error", Label)
        self._filter_before = ""
        self._filter_timer: Timer | None = None
        #: Seconds typing must pause before the filter applies (a test may lengthen it).
        self.filter_debounce = FILTER_DEBOUNCE
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
        if getattr(self, "_sigterm_installed", False):
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

    @work(exclusive=True, group="runtime", exit_on_error=False, name="runtime")
    async def _own_runtime(self) -> None:
        try:
            runtime = self._runtime_factory(self.config)
            async with runtime:
                self.runtime = runtime
                manager = runtime.manager
                self.manager = manager
                self.model.mode = str(getattr(runtime, "mode", self.config.gateway.mode))
                unsubscribe = manager.subscribe(self._on_manager_event)
                try:
                    try:
                        await runtime.start()
                    except Exception as exc:
                        self._fatal_from_exception(exc)
                    self._tick()
                    await self._quit_requested.wait()
                    self._shutting_down = True
                    self.model.note("shutting down every shard")
                    await manager.shutdown_all()
                finally:
                    unsubscribe()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fatal_from_exception(exc)
            await self._quit_requested.wait()
        finally:
            self._runtime_done = True
        self.exit(self._exit_code, return_code=self._exit_code)

    def _on_manager_event(self, event: Any) -> None:
        # Runs on every event: only the model is touched; the timer does the drawing.
        self.model.apply(event)

    def _fatal_from_exception(self, exc: BaseException) -> None:
        message = str(exc) or type(exc).__name__
        kind = getattr(exc, "kind", None)
        if not isinstance(kind, str):
            kind = "configuration" if type(exc).__name__ == "ConfigError" else type(exc).__name__
        code = getattr(exc, "code", None)
        close_code = code if isinstance(code, int) else None
        self.model.apply(FatalErrorEvent(kind=kind, message=message, close_code=close_code))
        self._show_fatal()
        self._fatal_from_manager = False

    def _show_fatal(self) -> None:
        fatal = self.model.fatal
        if fatal is None or not self.model.fatal_is_new:
            return
        self.model.fatal_is_new = False
        self._fatal_from_manager = True
        self._exit_code = 1
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
        if manager is not None:
            queue_status = getattr(manager, "queue_status", None)
            if queue_status is not None:
                model.queue = QueueView.from_status(queue_status())
            model.session_start_limit = getattr(manager, "session_start_limit", None)
            model.identifies_saved = int(getattr(manager, "identifies_saved", 0) or 0)
            model.set_bot_user(getattr(manager, "bot_user", None))
            if model.fatal is not None and self._fatal_from_manager and not model.fatal_is_new:
                if getattr(manager, "fatal_error", None) is None:
                    # The operator booted shards again after fixing the cause: a clean quit is a
                    # clean exit again.
                    model.fatal = None
                    self._exit_code = 0

    def _shard_infos(self) -> Mapping[ShardId, Any] | None:
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
        if model.alerts:
            alerts, model.alerts = model.alerts, []
            self.notify("\n".join(alerts), title="Shard stopped", severity="error", timeout=15)
        if model.fatal_is_new:
            self._show_fatal()

    def _update_header(self) -> None:
        model = self.model
        first, second = model.stats().header_lines()
        view = [f"refresh {self.refresh_interval:g}s", f"sort {model.sort_key.value}"]
        if model.filter_text:
            view.append(f"filter {model.filter_text!r}")
        if model.marked:
            view.append(f"{len(model.marked)} marked")
        if self.readonly:
            view.append("READ-ONLY")
        self._fleet.update(Text(f"{first}\n{second}\n{' · '.join(view)}"))
        self._update_startup()

    def _update_startup(self) -> None:
        """The start-up bar shows until every running shard has been connected once."""
        model = self.model
        startup = self._startup
        if self._startup_over or self._shutting_down or model.fatal is not None:
            startup.display = False
            return
        # Both walk every row: only worth it while the bar can still show (bench/console.py).
        progress = model.startup()
        pending = any(
            row.info.running and row.info.stage is not ConnectionStage.CONNECTED
            for row in model.rows.values()
        )
        if progress.total and not pending:
            self._startup_over = True
            startup.display = False
            return
        startup.display = True
        self._startup_label.update(progress.label())
        self._startup_bar.update(total=max(1, progress.total), progress=progress.ready)

    # -- helpers ---------------------------------------------------------------------------------

    @property
    def table(self) -> ShardTable:
        return self._table

    def _targets(self) -> list[int]:
        return self.model.targets(self.table.selected_shard)

    def _ids_text(self, ids: Iterable[int]) -> str:
        ids = list(ids)
        shown = ", ".join(str(i) for i in ids[:12])
        return shown + (f" and {len(ids) - 12} more" if len(ids) > 12 else "")

    def _plan_text(self, action: str, ids: list[int]) -> str:
        try:
            plan = self.manager.plan(action, [ShardId(i) for i in ids])
        except Exception as exc:
            return f"(no cost estimate: {exc})"
        return str(plan.text)

    def _need_manager(self) -> bool:
        if self.manager is None:
            self.notify("The shard manager is not running yet.", severity="warning")
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
        ]
        for action, title, help_text, callback in commands:
            if self.readonly and action in MUTATING_ACTIONS:
                continue
            yield SystemCommand(title, help_text, callback)

    # -- actions: fleet --------------------------------------------------------------------------

    def action_restart(self) -> None:
        if not self._need_manager():
            return
        ids = self._targets()
        if not ids:
            self.notify("No shard selected.", severity="warning")
            return
        self.model.note(f"restart {shard_ids_phrase(ids)} (resume first): {self._plan_text('restart', ids)}")
        self.notify(f"Restarting {shard_ids_phrase(ids)} (resume first)")
        self._run_each("restart", ids, lambda sid: self.manager.restart(ShardId(sid)))

    def action_shutdown(self) -> None:
        if not self._need_manager():
            return
        ids = [i for i in self._targets() if self._is_running(i)]
        if not ids:
            self.notify("No running shard selected.", severity="warning")
            return
        body = f"Shut down {shard_ids_phrase(ids)}?\n\n{self._plan_text('shutdown', ids)}"

        def done(answer: bool | None) -> None:
            if answer:
                self.model.note(f"shut down {shard_ids_phrase(ids)}")
                self._run_each("shutdown", ids, lambda sid: self.manager.shutdown(ShardId(sid)))

        self.push_screen(ConfirmScreen("Shut down shards", body, yes="Shut down"), done)

    def action_boot(self) -> None:
        if not self._need_manager():
            return
        ids = [i for i in self._targets() if not self._is_running(i)]
        if not ids:
            self.notify("Only a stopped shard can be booted; select or mark one.", severity="warning")
            return
        self.model.note(f"boot {shard_ids_phrase(ids)}: {self._plan_text('boot', ids)}")
        self.notify(f"Booting {shard_ids_phrase(ids)}")
        self._run_each("boot", ids, lambda sid: self.manager.boot(ShardId(sid)))

    def action_rolling_restart(self) -> None:
        if not self._need_manager():
            return
        status = getattr(self.manager, "rolling_status", None)
        if status is not None and getattr(status.state, "value", "") == "running":
            # R again while one runs: offer to stop it before its next round.
            def abort(answer: bool | None) -> None:
                if answer and self.manager.abort_rolling_restart():
                    self.model.note("rolling restart abort requested")

            body = f"{status.describe()}\n\nStop it before the next round?"
            self.push_screen(ConfirmScreen("Abort rolling restart", body, yes="Abort"), abort)
            return
        ids = sorted(self.model.rows)
        if not ids:
            self.notify("No shards to restart.", severity="warning")
            return
        action = "rolling_restart" if hasattr(self.manager, "rolling_restart") else "restart"
        body = (
            f"Restart all {len(ids)} shards, a batch at a time, each batch back before the next?\n\n"
            f"{self._plan_text(action, ids)}"
        )
        if action == "rolling_restart":
            body += "\n\nPress R again while it runs to abort it."

        def done(answer: bool | None) -> None:
            if answer:
                self._rolling_restart(ids)

        self.push_screen(ConfirmScreen("Rolling restart", body, yes="Restart all"), done)

    def action_reshard(self) -> None:
        from shardtui.tui.reshard_screen import ReshardScreen

        if not self._need_manager():
            return
        manager = self.manager
        if not hasattr(manager, "reshard"):
            self.notify("This shard manager cannot reshard live.", severity="warning")
            return

        def plan_text(total: int) -> str:
            return str(manager.plan("reshard", [ShardId(i) for i in range(total)]).text)

        def done(total: int | None) -> None:
            if total is not None:
                self._reshard(total)

        current = getattr(manager, "shard_total", None)
        self.push_screen(ReshardScreen(current, plan_text), done)

    @work(group="reshard", exit_on_error=False, exclusive=True)
    async def _reshard(self, total: int) -> None:
        self.model.note(f"reshard to {total} shards started")
        self.notify(f"Resharding to {total} shards")
        try:
            await self.manager.reshard(total)
        except Exception as exc:
            self.model.note(f"reshard failed: {exc}", logging.ERROR)
            self.notify(str(exc), title="Reshard failed", severity="error")
            return
        self.model.note(f"reshard to {total} shards finished")
        self.notify(f"Now running {total} shards")

    def _is_running(self, sid: int) -> bool:
        row = self.model.rows.get(sid)
        return row is not None and (row.info.running or row.info.stage is not ConnectionStage.DISCONNECTED)

    @work(group="actions", exit_on_error=False)
    async def _run_each(self, verb: str, ids: list[int], call: Callable[[int], Any]) -> None:
        failures: list[str] = []
        for sid in ids:
            try:
                await call(sid)
            except Exception as exc:
                failures.append(f"shard {sid}: {exc}")
        if failures:
            self.model.note(f"{verb} failed: " + "; ".join(failures), logging.ERROR)
            self.notify("\n".join(failures), title=f"{verb} failed", severity="error")

    @work(group="actions", exit_on_error=False, exclusive=True)
    async def _rolling_restart(self, ids: list[int]) -> None:
        manager = self.manager
        self.model.note(f"rolling restart of {len(ids)} shards")
        rolling = getattr(manager, "rolling_restart", None)
        try:
            if rolling is not None:
                status = await rolling()
                describe = getattr(status, "describe", None)
                if callable(describe) and getattr(status.state, "value", "") != "finished":
                    self.model.note(describe(), logging.WARNING)
                    self.notify(describe(), title="Rolling restart", severity="warning")
                    return
            else:
                limit = getattr(manager, "session_start_limit", None)
                batch_size = max(1, getattr(limit, "max_concurrency", 1) or 1)
                for start in range(0, len(ids), batch_size):
                    batch = ids[start : start + batch_size]
                    before = {sid: self._starts(sid) for sid in batch}
                    for sid in batch:
                        await manager.restart(ShardId(sid))
                    await self._wait_restarted(batch, before, ROLLING_BATCH_TIMEOUT)
        except Exception as exc:
            self.model.note(f"rolling restart failed: {exc}", logging.ERROR)
            self.notify(str(exc), title="Rolling restart failed", severity="error")
            return
        self.model.note("rolling restart finished")
        self.notify("Rolling restart finished")

    def _starts(self, sid: int) -> int:
        info = self.manager.runners.get(ShardId(sid))
        return -1 if info is None else info.resumes + info.identifies

    async def _wait_restarted(self, ids: list[int], starts_before: dict[int, int], limit: float) -> None:
        """Until every shard in ``ids`` began a new session and is connected (or failed, or time ran out)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while loop.time() < deadline:
            done = True
            for sid in ids:
                info = self.manager.runners.get(ShardId(sid))
                if info is None or info.fatal_error:
                    continue
                if self._starts(sid) <= starts_before[sid] or info.stage is not ConnectionStage.CONNECTED:
                    done = False
                    break
            if done:
                return
            await asyncio.sleep(0.05)

    # -- actions: presence -----------------------------------------------------------------------

    def action_presence(self) -> None:
        if not self._need_manager():
            return
        selected = self.table.selected_shard
        scopes: list[tuple[str, str]] = []
        if self.model.marked:
            scopes.append(("marked", f"the {len(self.model.marked)} marked shards"))
        if selected is not None:
            scopes.append(("selected", f"shard {selected}"))
        scopes.append(("all", f"all {len(self.model.rows)} shards"))
        initial = self.model.rows[selected].presence if selected in self.model.rows else None

        def done(request: PresenceRequest | None) -> None:
            if request is not None:
                self._apply_presence(request.presence, self._scope_ids(request.scope, selected))

        self.push_screen(PresenceScreen(initial=initial, scopes=scopes), done)

    def _scope_ids(self, scope: str, selected: int | None) -> list[int]:
        if scope == "marked":
            return sorted(self.model.marked)
        if scope == "selected":
            return [] if selected is None else [selected]
        return sorted(self.model.rows)

    def _apply_presence(self, presence: Presence, ids: list[int]) -> None:
        sent: list[int] = []
        skipped: list[int] = []
        for sid in ids:
            row = self.model.rows.get(sid)
            messenger = None if row is None or self.manager is None else self.manager.messenger(ShardId(sid))
            if messenger is None:
                skipped.append(sid)
                continue
            try:
                messenger.set_presence(presence)
            except ValueError as exc:
                self.notify(f"Presence not sent: {exc}", severity="error")
                return
            self.model.record_sent_presence(sid, presence)
            sent.append(sid)
        text = presence.describe()
        if sent:
            self.model.note(f"presence {text!r} sent to {shard_ids_phrase(sent)}")
            self.notify(f"Presence sent to {shard_count(len(sent))}: {text}")
        if skipped:
            self.notify(f"Not sent to {shard_ids_phrase(skipped)}: not running", severity="warning")

    # -- actions: view ---------------------------------------------------------------------------

    def action_details(self) -> None:
        sid = self.table.selected_shard
        if sid is None:
            self.notify("No shard selected.", severity="warning")
            return
        self.push_screen(DetailsScreen(self.model, sid))

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
        filter_input = self._filter
        if self.focused is filter_input:
            # Escape while editing undoes the edit: back to the filter in force before "/".
            self._set_filter(self._filter_before)
            return
        if filter_input.display or self.model.filter_text:
            self._set_filter("")
            return
        if self.model.marked:
            self.model.clear_marks()
            self.table.flush()
            self._update_header()

    def action_filter(self) -> None:
        filter_input = self._filter
        # What escape goes back to: the filter in force before this edit.
        self._filter_before = self.model.filter_text
        filter_input.display = True
        filter_input.value = self.model.filter_text
        filter_input.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        # Applied as it is typed, but once typing pauses: a 5,000-row table rebuilds per pause, not per key.
        self._stop_filter_timer()
        if self.focused is self._filter:
            self._filter_timer = self.set_timer(self.filter_debounce, self._apply_typed_filter)

    def _stop_filter_timer(self) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
            self._filter_timer = None

    def _filter_problem(self, text: str) -> str | None:
        """Why ``text`` cannot be applied (shown under the box), or None."""
        try:
            parse_filter(text)
        except FilterError as error:
            return str(error)
        return None

    def _show_filter_problem(self, problem: str | None) -> None:
        label = self._filter_error
        label.update(Text(f"not applied: {problem}") if problem else "")
        label.display = problem is not None
        self._filter.set_class(problem is not None, "-invalid")

    def _apply_typed_filter(self) -> None:
        self._filter_timer = None
        text = self._filter.value
        problem = self._filter_problem(text)
        self._show_filter_problem(problem)
        if problem is not None or text.strip() == self.model.filter_text:
            return
        self.model.filter_text = text.strip()
        self.table.rebuild()
        self._update_header()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self._stop_filter_timer()
        problem = self._filter_problem(event.value)
        if problem is not None:
            # Keep the box open with what was typed, so it can be fixed.
            self._show_filter_problem(problem)
            return
        self._set_filter(event.value)

    def on_key(self, event: Any) -> None:
        if event.key == "escape" and self.focused is self._filter:
            event.stop()
            self.action_clear()

    def _set_filter(self, text: str) -> None:
        self._stop_filter_timer()
        filter_input = self._filter
        self.model.filter_text = text.strip()
        self._filter_before = self.model.filter_text
        self._show_filter_problem(None)
        filter_input.display = bool(self.model.filter_text)
        filter_input.value = self.model.filter_text
        self.table.rebuild()
        self.table.focus()
        self._update_header()

    def action_sort(self, step: int) -> None:
        key = self.model.cycle_sort(step)
        self.table.resort()
        self._update_header()
        self.notify(f"Sorted by {key.value}", timeout=2)

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
        self.push_screen(HelpScreen(rows))

    # -- quitting ----------------------------------------------------------------------------------

    async def action_quit(self) -> None:
        # The palette's built-in "Quit" lands here: same confirmation and clean shutdown as q.
        self.action_request_quit()

    def action_request_quit(self) -> None:
        if self._shutting_down:
            return
        if isinstance(self.screen, ConfirmScreen) and getattr(self.screen, "is_quit", False):
            # ctrl+c twice: the second press answers yes.
            self.screen.dismiss(True)
            return
        question = self._quit_question()
        if question is None:
            self._begin_quit()
            return
        screen = ConfirmScreen("Quit shardtui", question, yes="Quit")
        screen.is_quit = True  # type: ignore[attr-defined]

        def done(answer: bool | None) -> None:
            if answer:
                self._begin_quit()

        self.push_screen(screen, done)

    def _quit_question(self) -> str | None:
        """What to ask before quitting, or None when nothing live would be shut down."""
        live = self.model.is_live() and self.manager is not None and not self._runtime_done
        if not live:
            return None
        running = sum(1 for sid in self.model.rows if self._is_running(sid))
        return (
            f"{shard_count(running)} {'is' if running == 1 else 'are'} live. "
            "Quit and shut them all down cleanly (close 1000)?"
        )

    def _begin_quit(self) -> None:
        self._shutting_down = self.manager is not None
        if self._runtime_done:
            self.exit(self._exit_code, return_code=self._exit_code)
            return
        if self._shutting_down:
            self.notify("Shutting down the shards…", timeout=30)
        self._quit_requested.set()


__all__ = ["DEFAULT_THEME", "ShardTUI"]
