"""The ``shardtui`` command line: flags, overrides, --print-config provenance, exit statuses."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from shardtui import __version__
from shardtui.cli import CONFIG_FLAGS, build_parser, main, overrides_from_args
from shardtui.config import KEYS, load_config


def _print_config(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, tuple[str, str]]:
    assert main([*argv, "--print-config"]) == 0
    out = capsys.readouterr().out
    rows: dict[str, tuple[str, str]] = {}
    for line in out.splitlines():
        if line.startswith("#"):
            continue
        left, _, source = line.rpartition(" # ")
        key, _, value = left.partition(" = ")
        rows[key.strip()] = (value.strip(), source.strip())
    return rows


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"shardtui {__version__}"


def test_print_config_lists_every_key_with_its_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text('[gateway]\nshards = 8\ncompression = "zlib-stream"\n[ui]\ntheme = "shardtui-light"\n')
    monkeypatch.setenv("SHARDTUI_SANDBOX_GUILDS", "33")
    rows = _print_config(
        capsys,
        "--config",
        str(path),
        "--shard-range",
        "0-3",
        "--theme",
        "shardtui-high-contrast",
        "--readonly",
    )
    assert set(rows) == set(KEYS)
    assert rows["gateway.shards"] == ("8", str(path))
    assert rows["gateway.compression"] == ('"zlib-stream"', str(path))
    assert rows["gateway.shard_range"] == ('"0-3"', "--shard-range")
    assert rows["ui.theme"] == ('"shardtui-high-contrast"', "--theme")
    assert rows["ui.readonly"] == ("true", "--readonly")
    assert rows["sandbox.guilds"] == ("33", "env SHARDTUI_SANDBOX_GUILDS")
    assert rows["gateway.large_threshold"] == ("250", "default")


def test_flags_work_before_and_after_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    before = _print_config(capsys, "--shards", "6", "--mode", "sandbox", "run")
    after = _print_config(capsys, "run", "--shards", "6", "--mode", "sandbox")
    assert before == after
    assert before["gateway.shards"] == ("6", "--shards")


def test_print_config_in_discord_mode_without_token_still_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    rows = _print_config(capsys, "--mode", "discord")
    assert rows["gateway.mode"] == ('"discord"', "--mode")


def test_default_config_is_shards_toml_in_the_working_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rows = _print_config(capsys)
    assert rows["gateway.shards"] == ('"auto"', "default")
    (tmp_path / "shards.toml").write_text("[gateway]\nshards = 5\n")
    rows = _print_config(capsys)
    assert rows["gateway.shards"] == ("5", "shards.toml")


def test_every_config_flag_maps_to_a_key() -> None:
    for spec in CONFIG_FLAGS:
        assert spec.key in KEYS, spec


def test_overrides_reach_the_config() -> None:
    args = build_parser().parse_args(
        ["run", "--headless", "--shards", "12", "--shard-range", "4-7", "--compression", "none",
         "--intents", "guilds,guild_messages", "--refresh", "0.5", "--event-rate", "3"]
    )  # fmt: skip
    overrides, flags = overrides_from_args(args)
    config = load_config(None, overrides, flags=flags)
    assert config.gateway.shards == 12
    assert config.gateway.shard_range == (4, 7)
    assert config.gateway.compression == "none"
    assert config.bot.intents == ["guilds", "guild_messages"]
    assert config.ui.refresh_interval == 0.5
    assert config.sandbox.event_rate == 3.0
    assert config.provenance["bot.intents"] == "--intents"


BAD_FLAGS = [
    (["--shard-range", "5-2"], "gateway.shard_range", "expected first <= last, found 5-2"),
    (
        ["--shards", "4", "--shard-range", "0-4"],
        "gateway.shard_range",
        "expected shard ids within 0..3 (gateway.shards = 4), found 0-4",
    ),
    (["--shards", "zero"], "gateway.shards", 'expected an integer, found string "zero"'),
    (
        ["--large-threshold", "20"],
        "gateway.large_threshold",
        "expected a value from 50 to 250, found integer 20",
    ),
    (["--refresh", "-1"], "ui.refresh_interval", "expected a number greater than 0, found float -1.0"),
    (
        ["--intents", "guilds,gilds"],
        "bot.intents",
        "expected intent names such as default, guilds, guild_messages, message_content, "
        'found unknown intent "gilds" (did you mean "guilds"?)',
    ),
    (
        ["--status", "away"],
        "presence.status",
        'expected one of "online", "idle", "dnd", "invisible", "offline", found string "away"',
    ),
]


@pytest.mark.parametrize(("argv", "key", "rest"), BAD_FLAGS)
def test_bad_flag_values_exit_2_with_one_line(
    argv: list[str],
    key: str,
    rest: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "run", "--headless", "--duration", "1"]) == 2
    captured = capsys.readouterr()
    flag = argv[-2]
    assert captured.err.strip() == f"shardtui: command line {flag}: {key}: {rest}"
    assert captured.out == ""


def test_discord_mode_without_token_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    assert main(["--mode", "discord", "run", "--headless", "--duration", "1"]) == 2
    assert capsys.readouterr().err.strip() == (
        "shardtui: command line --mode: bot.token_env: expected the bot token in environment variable "
        'DISCORD_TOKEN (gateway.mode = "discord"), found DISCORD_TOKEN unset'
    )


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--no-such-flag"]) == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
    assert main(["run", "--headless", "--duration", "0"]) == 2
    assert "greater than 0" in capsys.readouterr().err
    assert main(["--mode", "prod"]) == 2
    assert "invalid choice: 'prod'" in capsys.readouterr().err
    assert main(["sandbox", "--port", "70000"]) == 2
    assert "port from 0 to 65535" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--log-level", "loud"], "shardtui: argument --log-level: invalid choice: 'loud'"),
        (["run", "--headless", "--duration", "-1"], "shardtui run: argument --duration: expected a number"),
        (["sandbox", "--port", "99999"], "shardtui sandbox: argument --port: expected a port from 0 to"),
        (["soak", "--shards", "0"], "shardtui soak: argument --shards: must be at least 1, got 0"),
        (["--bogus"], "shardtui: unrecognized arguments: --bogus"),
    ],
)
def test_a_usage_error_is_one_line_pointing_at_help(
    capsys: pytest.CaptureFixture[str], argv: list[str], line: str
) -> None:
    # argparse printed its whole usage block (a dozen lines) above the one line that matters.
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert err.startswith(line)
    assert err.rstrip().endswith("--help)")


def test_duration_without_headless_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert (
        main(["--config", str(Path(__file__).parent.parent / "shards.toml"), "run", "--duration", "1"]) == 2
    )
    assert capsys.readouterr().err.strip() == "shardtui: --duration and --report need --headless"


def test_unwritable_log_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "log.txt"
    assert main(["--log-file", str(target), "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"shardtui: {target}: cannot open log file:")
    assert len(err.splitlines()) == 1


def test_console_refuses_bad_handler_and_missing_token_before_the_ui_starts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    assert main(["--event-handler", "json:no_such_handler"]) == 2
    assert capsys.readouterr().err.strip() == (
        "shardtui: command line --event-handler: bot.event_handler: expected json to define "
        "no_such_handler, found json:no_such_handler (no no_such_handler)"
    )
    assert main(["--rest-url", "http://127.0.0.1:9/api/v10"]) == 2
    assert capsys.readouterr().err.strip() == (
        "shardtui: command line --rest-url: sandbox.token: expected the token of the sandbox at "
        "http://127.0.0.1:9/api/v10 in [sandbox] token or DISCORD_TOKEN, found neither set"
    )


def test_report_in_a_missing_directory_is_refused_before_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "no-such-dir" / "report.json"
    assert main(["run", "--headless", "--duration", "1", "--report", str(target)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"shardtui: --report {target}: directory {target.parent} does not exist"
    )


def test_print_config_says_whether_the_token_is_set_never_its_value(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_TOKEN", "secret-token-value")
    assert main(["--token-env", "MY_TOKEN", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "environment variable MY_TOKEN is set" in out
    assert "secret-token-value" not in out
    monkeypatch.delenv("MY_TOKEN")
    assert main(["--token-env", "MY_TOKEN", "--print-config"]) == 0
    assert "environment variable MY_TOKEN is unset" in capsys.readouterr().out


def test_soak_subcommand_runs_a_clean_short_soak(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["soak", "--shards", "2", "--duration", "1", "--quiet"]) == 0


def test_soak_subcommand_refuses_bad_options_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["soak", "--shards", "0", "--duration", "1", "--quiet"]) == 2
    assert capsys.readouterr().err.strip()


@pytest.mark.skipif(not os.path.isdir("/sys"), reason="needs a directory no one can create files in")
def test_report_in_a_directory_that_refuses_files_is_refused_before_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /sys refuses new files even to root, for whom a chmod'ed directory would still be writable.
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--headless", "--duration", "1", "--report", "/sys/shardtui-report.json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # refused before any shard ran
    err = captured.err.strip()
    assert err.startswith("shardtui: --report /sys/shardtui-report.json: cannot create files in /sys: ")
    assert "\n" not in err
    assert not os.path.exists("/sys/shardtui-report.json")


def test_sandbox_port_in_use_is_one_line_naming_the_address(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["sandbox", "--port", str(port)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no banner for a sandbox that never listened
    assert captured.err.strip() == (
        f"shardtui: sandbox cannot listen on 127.0.0.1:{port}: "
        f"error while attempting to bind on address ('127.0.0.1', {port}): address already in use"
    )
