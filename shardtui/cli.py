"""The ``shardtui`` command.

    shardtui                      the operator console (embedded sandbox unless the config says otherwise)
    shardtui run --headless       no UI: stage changes as JSON lines on stdout, a report on exit
    shardtui sandbox              the embedded gateway as a standalone server for any bot
    shardtui soak                 chaos soak: faults against a headless fleet, every dispatch counted
    shardtui --print-config       every setting, its value and where it came from

Configuration problems print one line on stderr and exit with status 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from shardtui import __version__
from shardtui.config import (
    COMPRESSIONS,
    MODES,
    Config,
    ConfigError,
    find_default_config,
    format_config,
    load_config,
)
from shardtui.logsafe import LEVELS, setup_logging

EXIT_OK = 0
EVENT_LOOPS = ("asyncio", "uvloop", "auto")
EXIT_CONFIG = 2
RUN_EPILOG = """\
exit status (headless):
  0  normal stop (duration, SIGINT/SIGTERM), also when only some shards never connected
     (they are listed on stderr and in the report's never_connected)
  1  the --report file could not be written
  2  configuration error (one line on stderr)
  3  a fatal gateway error (rejected token, disallowed intents...) stopped the shards
  4  shards ran but none ever connected (each group's last error on stderr and in the report)
  130 interrupted before the run started
"""
DEFAULT_SANDBOX_PORT = 8790

log = logging.getLogger("shardtui.cli")


@dataclass(frozen=True, slots=True)
class _Flag:
    flag: str
    key: str
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    switch: bool = False


#: Command-line flags that override shards.toml keys (and are named as the source in --print-config).
CONFIG_FLAGS: tuple[_Flag, ...] = (
    _Flag("--mode", "gateway.mode", "connect to the embedded sandbox or to Discord", choices=MODES),
    _Flag("--shards", "gateway.shards", 'total shard count, or "auto"', "N|auto"),
    _Flag("--shard-range", "gateway.shard_range", "shards this process runs, first-last inclusive", "A-B"),
    _Flag("--compression", "gateway.compression", "gateway transport compression", choices=COMPRESSIONS),
    _Flag("--large-threshold", "gateway.large_threshold", "members before a guild counts as large", "N"),
    _Flag("--rest-url", "gateway.rest_url", "REST base URL (Discord's, or a running sandbox's)", "URL"),
    _Flag("--identify-window", "gateway.identify_window", "seconds per identify bucket slot", "SECONDS"),
    _Flag("--state-file", "gateway.state_file", "file to persist sessions in for resumable restarts", "PATH"),
    _Flag("--ca-file", "gateway.ca_file", "PEM CA certificates to trust for https/wss", "PATH"),
    _Flag("--state-max-age", "gateway.state_max_age", "saved sessions older than this identify", "SECONDS"),
    _Flag("--metrics-listen", "metrics.listen", 'serve Prometheus metrics on "HOST:PORT"', "HOST:PORT"),
    _Flag("--proxy-listen", "proxy.listen", 'serve the gateway proxy for bots on "HOST:PORT"', "HOST:PORT"),
    _Flag("--intents", "bot.intents", 'comma-separated intent names, or "default"', "NAMES"),
    _Flag("--token-env", "bot.token_env", "environment variable holding the bot token", "VAR"),
    _Flag("--event-handler", "bot.event_handler", 'dispatch handler as "module:callable"', "SPEC"),
    _Flag("--status", "presence.status", "initial presence status", "STATUS"),
    _Flag("--guilds", "sandbox.guilds", "sandbox: number of guilds", "N"),
    _Flag("--sandbox-shards", "sandbox.shards", "sandbox: shard count /gateway/bot recommends", "N"),
    _Flag("--max-concurrency", "sandbox.max_concurrency", "sandbox: identify buckets", "N"),
    _Flag("--event-rate", "sandbox.event_rate", "sandbox: dispatches per second across shards", "RATE"),
    _Flag("--heartbeat-ms", "sandbox.heartbeat_interval_ms", "sandbox: heartbeat interval (ms)", "MS"),
    _Flag("--theme", "ui.theme", "console theme name or theme file", "THEME"),
    _Flag("--refresh", "ui.refresh_interval", "console: seconds between table refreshes", "SECONDS"),
    _Flag("--readonly", "ui.readonly", "console: hide every action that changes a shard", switch=True),
    _Flag(
        "--fleet",
        "ui.fleet",
        "console: watch every process of the [cluster] fleet through Redis (runs no shards)",
        switch=True,
    ),
)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, found {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds greater than 0, found {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, found {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, found {text!r}")
    return value


def _common_parser() -> argparse.ArgumentParser:
    # Defaults are SUPPRESS so that a flag given before the subcommand is not reset by the
    # subcommand's own copy of it: ``shardtui --mode discord run`` and ``shardtui run --mode discord``
    # mean the same.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    group = common.add_argument_group("configuration")
    group.add_argument("--config", metavar="PATH", help="config file (default: ./shards.toml if present)")
    group.add_argument("--print-config", action="store_true", help="print every setting and its source, exit")
    group.add_argument("--log-level", choices=LEVELS, help="log level (default: warning)")
    group.add_argument("--log-file", metavar="PATH", help="write logs to PATH instead of stderr")
    group.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        help="asyncio (default), uvloop (pip install 'shardtui[fast]') or auto (uvloop when installed)",
    )
    for spec in CONFIG_FLAGS:
        dest = "cfg:" + spec.key
        if spec.switch:
            group.add_argument(spec.flag, dest=dest, action="store_const", const=True, help=spec.help)
        else:
            group.add_argument(
                spec.flag, dest=dest, metavar=spec.metavar, choices=spec.choices, help=spec.help
            )
    return common


def _parsed_defaults() -> argparse.Namespace:
    """The common flags' values when not given. Not ``set_defaults``: the common parser's actions are
    shared with every subcommand (``parents``), so a default there would reset a flag given before
    the subcommand; a pre-filled namespace is only written where a flag was given."""
    return argparse.Namespace(
        config=None, print_config=False, log_level=None, log_file=None, event_loop="asyncio"
    )


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors in one line: the usage block above it buried what was wrong."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    common = _common_parser()
    parser = _Parser(
        prog="shardtui",
        description="Operator console and gateway library for sharded Discord bots.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"shardtui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("tui", parents=[common], help="the operator console (the default)")
    run = sub.add_parser(
        "run",
        parents=[common],
        help="run the shards (with --headless: no UI)",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--headless", action="store_true", default=False, help="no UI: JSON lines on stdout")
    run.add_argument(
        "--duration", type=_positive_float, metavar="SECONDS", default=None, help="stop after SECONDS"
    )
    run.add_argument("--report", metavar="FILE", default=None, help="write a JSON summary to FILE on exit")
    sandbox = sub.add_parser("sandbox", parents=[common], help="run the embedded gateway as a server")
    sandbox.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    sandbox.add_argument(
        "--port", type=_port, default=DEFAULT_SANDBOX_PORT, help=f"port (default: {DEFAULT_SANDBOX_PORT})"
    )
    sandbox.add_argument(
        "--tls-cert", metavar="PEM", default=None, help="serve TLS (https/wss) with this certificate chain"
    )
    sandbox.add_argument(
        "--tls-key",
        metavar="PEM",
        default=None,
        help="the certificate's private key (default: in --tls-cert)",
    )
    from shardtui.soak import add_arguments as add_soak_arguments

    soak = sub.add_parser("soak", help="chaos soak on the embedded sandbox; exit 1 on any lost event")
    add_soak_arguments(soak)
    return parser


def overrides_from_args(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """The config overrides the flags ask for, and the flag each came from."""
    overrides: dict[str, Any] = {}
    flags: dict[str, str] = {}
    by_key = {spec.key: spec for spec in CONFIG_FLAGS}
    for dest, value in vars(args).items():
        if dest.startswith("cfg:"):
            key = dest[4:]
            overrides[key] = value
            flags[key] = by_key[key].flag
    return overrides, flags


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Ctrl+C at any stage (imports, start-up, a soak): asyncio.run has already cancelled and
        # closed what ran, so one line is all that is left to say.
        print("shardtui: interrupted", file=sys.stderr)
        return 130


def select_event_loop(choice: str) -> str:
    """Install the event loop policy ``--event-loop`` asks for and return the loop's name: asyncio's own
    (the default; bench/README.md has the figures behind that), uvloop, or auto (uvloop when installed).
    A missing uvloop asked for by name is a ValueError with one line."""
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        if choice == "auto":
            return "asyncio"
        raise ValueError(
            "--event-loop uvloop: uvloop is not installed (pip install 'shardtui[fast]')"
        ) from None
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv, namespace=_parsed_defaults())
    except SystemExit as exc:  # --help, --version and usage errors; argparse already printed
        return exc.code if isinstance(exc.code, int) else EXIT_CONFIG
    command = args.command or "tui"
    level = args.log_level or "warning"
    log_file = args.log_file
    try:
        if log_file is None and command == "tui":
            # Writing to stderr under a full-screen UI garbles it: log nowhere unless asked to.
            setup_logging(level, stream=_NullStream())
        else:
            setup_logging(level, file=log_file)
    except OSError as exc:
        print(f"shardtui: {log_file}: cannot open log file: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        loop_name = select_event_loop(args.event_loop)
    except ValueError as exc:
        print(f"shardtui: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    log.info("event loop: %s", loop_name)
    if command == "soak":  # self-contained: its own sandbox and options, no shards.toml
        from shardtui.soak import run_from_args

        return run_from_args(args)

    overrides, flags = overrides_from_args(args)
    path = args.config or find_default_config()
    printing = args.print_config
    try:
        config = load_config(path, overrides, flags=flags, check_token=not printing)
    except ConfigError as exc:
        print(f"shardtui: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if printing:
        print(format_config(config))
        return EXIT_OK

    try:
        if command != "sandbox" and not (command == "tui" and config.ui.fleet):
            # (A fleet viewer runs no shard: it needs no token or event handler.)
            from shardtui.runtime import preflight

            preflight(config)
        if command == "sandbox":
            return _serve_sandbox_command(config, args)
        if command == "run" and config.ui.fleet:
            print(
                "shardtui: ui.fleet (--fleet) is the fleet console, which runs no shards; "
                "drop it to run this process's shards",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        if command == "run" and args.headless:
            from shardtui.headless import run_headless

            if args.report is not None:
                problem = _unwritable(args.report)
                if problem:
                    print(f"shardtui: --report {args.report}: {problem}", file=sys.stderr)
                    return EXIT_CONFIG

            return _run_async(run_headless(config, duration=args.duration, report_path=args.report))
        if command == "run" and (args.duration is not None or args.report is not None):
            print("shardtui: --duration and --report need --headless", file=sys.stderr)
            return EXIT_CONFIG
        return _run_tui(config)
    except ConfigError as exc:
        print(f"shardtui: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def _unwritable(path: str) -> str | None:
    """Why a report could not be written to ``path`` — checked before the run, not after it."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return "is a directory"
    if not os.path.isdir(directory):
        return f"directory {directory} does not exist"
    # Create a file where the report will go: os.access says yes to root even where the file
    # system refuses (/proc, /sys, a read-only mount).
    probe = os.path.join(directory, f".shardtui-report-probe-{os.getpid()}")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        return f"cannot create files in {directory}: {exc.strerror or exc}"
    os.unlink(probe)
    return None


class _NullStream:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class _Headed:
    """stdout that writes ``header`` before its first line: the banner only once the sandbox listens."""

    def __init__(self, header: str) -> None:
        self._header: str | None = header

    def write(self, text: str) -> int:
        if self._header is not None:
            sys.stdout.write(self._header)
            self._header = None
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _run_async(coro: Any) -> int:
    return int(asyncio.run(coro))


def _run_tui(config: Config) -> int:
    from shardtui.tui.app import ShardTUI

    if config.cluster is not None:
        # A fleet member or viewer: the console shows every process of the fleet.
        from shardtui.tui.fleet import FleetConsole

        app: ShardTUI = FleetConsole(config, readonly=config.ui.readonly)
    else:
        app = ShardTUI(config, readonly=config.ui.readonly)
    app.run()
    startup_error = app.startup_error
    if startup_error:
        # The fleet refused this process (Redis away, name or shards taken): one line, now that
        # the terminal is back.
        print(f"shardtui: {startup_error}", file=sys.stderr)
        return EXIT_CONFIG
    report = app.fatal_report()
    if report:
        # The fatal screen went with the UI: the reason stays on the terminal (no token in it:
        # fatal messages are built from close codes and the gateway's reasons).
        print(f"shardtui: {report}", file=sys.stderr)
    code = app.return_code
    return 0 if code is None else code


def _serve_sandbox_command(config: Config, args: argparse.Namespace) -> int:
    from shardtui.sandbox.standalone import server_tls_context

    if args.tls_key is not None and args.tls_cert is None:
        print("shardtui: --tls-key needs --tls-cert", file=sys.stderr)
        return EXIT_CONFIG
    context = None
    if args.tls_cert is not None:
        try:
            context = server_tls_context(args.tls_cert, args.tls_key)
        except ValueError as exc:
            print(f"shardtui: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    return _run_async(_serve_sandbox(config, args.host, args.port, context))


async def _serve_sandbox(
    config: Config, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> int:
    from shardtui.sandbox import SandboxSettings, run_standalone

    banner = (
        f"shardtui sandbox: {config.sandbox.shards} shards, {config.sandbox.guilds} guilds, "
        f"max_concurrency {config.sandbox.max_concurrency}\n"
    )
    try:
        await run_standalone(
            host,
            port,
            SandboxSettings.from_config(config.sandbox),
            out=_Headed(banner),
            ssl_context=ssl_context,
        )
    except OSError as exc:
        # str() of an OSError leads with "[Errno 98]"; its strerror is the sentence itself.
        detail = exc.strerror or str(exc)
        if f"{host}:{port}" not in detail:
            detail = f"cannot listen on {host}:{port}: {detail}"
        print(f"shardtui: {detail}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
