"""shards.toml loading: every bad input gets one line naming file, key, expectation and finding."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shardtui.cli import main
from shardtui.config import Config, ConfigError, FaultRule, load_config
from shardtui.credentials import resolve_token
from shardtui.gateway.models import Activity, Presence
from shardtui.gateway.protocol import ActivityType, GatewayIntents, Status

REPO_ROOT = Path(__file__).resolve().parent.parent

# (name, file text, [substrings the message must contain: key, expectation, finding])
FILE_ERRORS = [
    (
        "unknown key with suggestion",
        "[gateway]\nshard = 3\n",
        [
            "gateway.shard",
            "expected a key of [gateway]",
            'found unknown key "shard"',
            'did you mean "shards"',
        ],
    ),
    (
        "unknown section",
        "[gatway]\nmode = 'sandbox'\n",
        ["gatway", "expected one of the sections", 'did you mean "gateway"'],
    ),
    (
        "key outside its section",
        "mode = 'sandbox'\n",
        ["mode", 'unknown key "mode"', '"mode" belongs under [gateway]'],
    ),
    ("wrong type", '[gateway]\nshards = "8"\n', ["gateway.shards", '"auto"', 'found string "8"']),
    ("wrong type bool", "[ui]\nreadonly = 1\n", ["ui.readonly", "expected true or false", "found integer 1"]),
    (
        "shard range past the total",
        '[gateway]\nshards = 4\nshard_range = "2-5"\n',
        ["gateway.shard_range", "expected shard ids within 0..3 (gateway.shards = 4)", "found 2-5"],
    ),
    (
        "shard range past the sandbox's count",
        '[gateway]\nshard_range = "0-9"\n[sandbox]\nshards = 8\n',
        ["gateway.shard_range", "within 0..7 (sandbox.shards = 8)", "found 0-9"],
    ),
    (
        "shard range reversed",
        '[gateway]\nshard_range = "5-2"\n',
        ["gateway.shard_range", "first <= last", "5-2"],
    ),
    (
        "shard range garbage",
        '[gateway]\nshard_range = "a-b"\n',
        ["gateway.shard_range", "first-last", '"a-b"'],
    ),
    (
        "compression not in the set",
        '[gateway]\ncompression = "zstd"\n',
        [
            "gateway.compression",
            '"zstd-stream", "zlib-stream", "none"',
            'found string "zstd"',
            "did you mean",
        ],
    ),
    (
        "large_threshold out of range",
        "[gateway]\nlarge_threshold = 300\n",
        ["gateway.large_threshold", "from 50 to 250", "found integer 300"],
    ),
    (
        "refresh interval zero",
        "[ui]\nrefresh_interval = 0\n",
        ["ui.refresh_interval", "greater than 0", "found integer 0"],
    ),
    ("unknown mode", '[gateway]\nmode = "prod"\n', ["gateway.mode", '"sandbox", "discord"', '"prod"']),
    (
        "unknown intent",
        '[bot]\nintents = ["guilds", "guild_mesages"]\n',
        ["bot.intents", "intent names", 'unknown intent "guild_mesages"', 'did you mean "guild_messages"'],
    ),
    ("intents wrong type", "[bot]\nintents = 3\n", ["bot.intents", "array of strings", "integer 3"]),
    (
        "unknown status",
        '[presence]\nstatus = "busy"\n',
        ["presence.status", '"online", "idle", "dnd", "invisible"', 'found string "busy"'],
    ),
    (
        "unknown activity type",
        '[presence]\nactivity_type = "gaming"\n',
        ["presence.activity_type", '"playing"', 'found string "gaming"'],
    ),
    (
        "streaming without url",
        '[presence]\nactivity_type = "streaming"\nactivity_name = "speedruns"\n',
        ["presence.activity_url", "streaming", "twitch.tv", "found nothing"],
    ),
    (
        "url on a non-streaming activity",
        '[presence]\nactivity_type = "playing"\nactivity_name = "chess"\nactivity_url = "https://twitch.tv/x"\n',
        ["presence.activity_url", "only a streaming activity may carry a url"],
    ),
    (
        "custom status without text",
        '[presence]\nactivity_type = "custom"\nactivity_name = ""\n',
        ["presence.activity_state", "custom status needs a state", "found nothing"],
    ),
    (
        "bad event handler spec",
        '[bot]\nevent_handler = "not a spec"\n',
        ["bot.event_handler", '"module:callable"', '"not a spec"'],
    ),
    (
        "bad rest url",
        '[gateway]\nrest_url = "localhost:8790"\n',
        ["gateway.rest_url", "http:// or https:// URL", '"localhost:8790"'],
    ),
    (
        "non-privileged in privileged_intents",
        '[sandbox]\nprivileged_intents = ["guilds"]\n',
        ["sandbox.privileged_intents", "privileged intent names", '"guilds"'],
    ),
    (
        "fault without every",
        '[[sandbox.faults]]\nkind = "reconnect"\n',
        ["sandbox.faults[0].every", "seconds between faults", "missing"],
    ),
    (
        "fault with negative every",
        '[[sandbox.faults]]\nkind = "reconnect"\nevery = -1\n',
        ["sandbox.faults[0].every", "greater than 0", "-1"],
    ),
    (
        "unknown fault kind",
        '[[sandbox.faults]]\nkind = "recconect"\nevery = 3\n',
        ["sandbox.faults[0].kind", '"drop"', 'found string "recconect"', 'did you mean "reconnect"'],
    ),
    (
        "choices on a non-random fault",
        '[[sandbox.faults]]\nkind = "drop"\nevery = 3\nchoices = ["drop"]\n',
        ["sandbox.faults[0].choices", 'no choices unless kind = "random"'],
    ),
    (
        "unknown fault in choices",
        '[[sandbox.faults]]\nkind = "random"\nevery = 3\nchoices = ["drop", "zombi"]\n',
        ["sandbox.faults[0].choices", 'found string "zombi"', 'did you mean "zombie"'],
    ),
    ("negative guilds", "[sandbox]\nguilds = -1\n", ["sandbox.guilds", "from 0 to", "integer -1"]),
    ("negative outage grace", "[health]\noutage_after = -1\n", ["health.outage_after", "at least 0"]),
    ("section is a value", "ui = 3\n", ["ui", "a [ui] table", "integer 3"]),
    ("syntax error", "[gateway]\nshards = \n", ["line 2", "TOML syntax error"]),
    ("syntax error in table header", "[bot]\n\n[gateway\n", ["line 3", "TOML syntax error"]),
]


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "shards.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "parts"), [(t, p) for _, t, p in FILE_ERRORS], ids=[n for n, _, _ in FILE_ERRORS]
)
def test_bad_file_gives_one_line_naming_file_key_expected_found(
    tmp_path: Path, text: str, parts: list[str]
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, environ={})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(path + ": ")
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


@pytest.mark.parametrize(
    ("text", "parts"), [(t, p) for _, t, p in FILE_ERRORS], ids=[n for n, _, _ in FILE_ERRORS]
)
def test_bad_file_exits_2_with_one_line_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, parts: list[str]
) -> None:
    path = _write(tmp_path, text)
    assert main(["--config", path, "run", "--headless", "--duration", "1"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"shardtui: {path}: ")
    assert parts[0] in lines[0]
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="no such file"):
        load_config(path, {})
    assert main(["--config", path]) == 2
    assert capsys.readouterr().err.strip() == f"shardtui: {path}: cannot read config file: no such file"


def test_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() == 0:
        # root reads anything; a directory is unreadable as a file for everyone.
        path = str(tmp_path)
        expected = "it is a directory"
    else:
        p = tmp_path / "locked.toml"
        p.write_text("[ui]\n")
        p.chmod(0)
        path = str(p)
        expected = "permission denied"
    assert main(["--config", path, "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"shardtui: {path}: cannot read config file: {expected}"


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "shards.toml"
    p.write_bytes(b"[ui]\ntheme = '\xff'\n")
    with pytest.raises(ConfigError, match=r"line 2: TOML syntax error: file is not valid UTF-8"):
        load_config(str(p), {})


def test_discord_mode_needs_the_token_variable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, '[bot]\ntoken_env = "MY_BOT_TOKEN"\n[gateway]\nmode = "discord"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, environ={})
    message = str(info.value)
    assert message.startswith(path + ": bot.token_env: ")
    assert "MY_BOT_TOKEN" in message and "found MY_BOT_TOKEN unset" in message
    with pytest.raises(ConfigError, match="found MY_BOT_TOKEN empty"):
        load_config(path, {}, environ={"MY_BOT_TOKEN": "  "})
    config = load_config(path, {}, environ={"MY_BOT_TOKEN": "abc.def.ghi"})
    assert resolve_token(config, environ={"MY_BOT_TOKEN": "abc.def.ghi"}) == "abc.def.ghi"


def test_discord_mode_from_flag_names_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    with pytest.raises(ConfigError) as info:
        load_config(None, {"gateway.mode": "discord"}, flags={"gateway.mode": "--mode"})
    assert str(info.value).startswith("command line --mode: bot.token_env: ")


def test_defaults_without_a_file() -> None:
    config = load_config(None, {}, environ={})
    assert config == Config()
    assert config.source == "<defaults>"
    assert set(config.provenance.values()) == {"default"}
    assert config.intents() == GatewayIntents.default()
    assert config.initial_presence() == Presence(Status.ONLINE, Activity("the shards", ActivityType.WATCHING))


def test_repo_shards_toml_is_valid_and_lively() -> None:
    config = load_config(str(REPO_ROOT / "shards.toml"), {}, environ={})
    assert config.gateway.mode == "sandbox"
    assert config.embeds_sandbox()
    assert config.sandbox.shards >= 8 and config.sandbox.guilds >= 100
    assert config.sandbox.event_rate >= 10
    assert config.shard_total() == config.sandbox.shards
    # Every key of the schema appears in the file, so the file documents all of them.
    text = (REPO_ROOT / "shards.toml").read_text()
    for key in config.values():
        assert key.split(".", 1)[1] in text, key


def test_full_file_parses_into_typed_values(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[bot]
token_env = "BOT_TOKEN"
intents = ["guilds", "guild_messages", "message_content"]
event_handler = "mybot.events:on_dispatch"
[gateway]
mode = "sandbox"
shards = 16
shard_range = [4, 7]
compression = "zlib-stream"
large_threshold = 100
rest_url = "http://127.0.0.1:8790/api/v10/"
identify_window = 0.5
[presence]
status = "dnd"
activity_type = "streaming"
activity_name = "speedruns"
activity_url = "https://twitch.tv/example"
[sandbox]
guilds = 40
privileged_intents = ["message_content"]
token = "fixed"
[[sandbox.faults]]
kind = "close"
every = 2.5
shard = 3
code = 4000
[ui]
theme = "shardtui-light"
refresh_interval = 0.25
readonly = true
""",
    )
    config = load_config(path, {}, environ={})
    assert config.intents() == (
        GatewayIntents.GUILDS | GatewayIntents.GUILD_MESSAGES | GatewayIntents.MESSAGE_CONTENT
    )
    assert config.bot.event_handler == "mybot.events:on_dispatch"
    assert config.gateway.shard_range == (4, 7)
    assert config.gateway.rest_url == "http://127.0.0.1:8790/api/v10"
    assert not config.embeds_sandbox()
    assert config.gateway.identify_window == 0.5
    assert config.sandbox.faults == [FaultRule(kind="close", every=2.5, shard=3, params={"code": 4000})]
    presence = config.initial_presence()
    assert presence.status is Status.DND
    assert presence.activity == Activity("speedruns", ActivityType.STREAMING, url="https://twitch.tv/example")
    assert config.ui.readonly is True and config.ui.refresh_interval == 0.25
    assert config.provenance["gateway.shards"] == path
    assert config.provenance["ui.readonly"] == path
    assert resolve_token(config, environ={}) == "fixed"


def test_activity_none_turns_activity_off(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, '[presence]\nactivity_type = "none"\n'), {}, environ={})
    assert config.initial_presence().activity is None


def test_precedence_default_file_env_flag(tmp_path: Path) -> None:
    path = _write(tmp_path, "[gateway]\nshards = 8\nlarge_threshold = 100\n[sandbox]\nguilds = 10\n")
    environ = {"SHARDTUI_GATEWAY_SHARDS": "12", "SHARDTUI_SANDBOX_GUILDS": "30"}
    config = load_config(
        path, {"gateway.shards": "16"}, flags={"gateway.shards": "--shards"}, environ=environ
    )
    assert config.gateway.shards == 16
    assert config.provenance["gateway.shards"] == "--shards"
    assert config.sandbox.guilds == 30
    assert config.provenance["sandbox.guilds"] == "env SHARDTUI_SANDBOX_GUILDS"
    assert config.gateway.large_threshold == 100
    assert config.provenance["gateway.large_threshold"] == path
    assert config.provenance["gateway.compression"] == "default"


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {}, environ={"SHARDTUI_GATEWAY_SHARDS": "many"})
    assert str(info.value) == (
        'environment SHARDTUI_GATEWAY_SHARDS: gateway.shards: expected an integer, found string "many"'
    )


def test_unknown_override_key_suggests() -> None:
    with pytest.raises(ConfigError, match=r'did you mean "gateway\.shards"'):
        load_config(None, {"gateway.shard": "3"})


def test_sandbox_mode_external_needs_a_token() -> None:
    config = load_config(None, {"gateway.rest_url": "http://127.0.0.1:9/api/v10"}, environ={})
    with pytest.raises(ConfigError) as info:
        resolve_token(config, environ={})
    assert "sandbox.token" in str(info.value) and "neither set" in str(info.value)
    assert resolve_token(config, environ={"DISCORD_TOKEN": "t.o.k"}) == "t.o.k"


def test_sandbox_token_never_in_repr() -> None:
    config = load_config(None, {"sandbox.token": "very-secret-token"})
    assert "very-secret-token" not in repr(config)
    assert config.values()["sandbox.token"] == "<set>"


def test_random_fault_choices_reach_the_sandbox_settings(tmp_path: Path) -> None:
    from shardtui.sandbox import SandboxSettings

    text = '[[sandbox.faults]]\nkind = "random"\nevery = 2\nchoices = ["drop", "reconnect"]\n'
    text += '[[sandbox.faults]]\nkind = "close"\nevery = 5\nshard = 1\ncode = 4001\n'
    config = load_config(_write(tmp_path, text), {}, environ={})
    settings = SandboxSettings.from_config(config.sandbox)
    assert [(f.kind, f.every, f.shard, f.params, f.choices) for f in settings.faults] == [
        ("random", 2.0, None, {}, ("drop", "reconnect")),
        ("close", 5.0, 1, {"code": 4001}, ()),
    ]


def test_the_sandbox_section_is_the_sandbox_settings_with_its_defaults(tmp_path: Path) -> None:
    from shardtui.sandbox import SandboxSettings

    # One type: an unset [sandbox] key has the value the sandbox itself defaults to.
    assert Config().sandbox == SandboxSettings()
    config = load_config(_write(tmp_path, '[[sandbox.faults]]\nkind = "close"\nevery = 5\ncode = 4001\n'))
    settings = SandboxSettings.from_config(config.sandbox, seed=3)
    assert (settings.seed, settings.faults) == (3, config.sandbox.faults)
    # The running sandbox's copy is its own: changing it leaves the loaded config as it was.
    settings.faults[0].params["code"] = 4009
    settings.privileged_intents.append("guild_members")
    assert config.sandbox.faults[0].params == {"code": 4001}
    assert config.sandbox.privileged_intents == []


def test_readme_and_shards_toml_document_every_key_and_fault_kind() -> None:
    from shardtui.sandbox import FAULT_KINDS

    readme = (REPO_ROOT / "README.md").read_text()
    shards_toml = (REPO_ROOT / "shards.toml").read_text()
    for dotted in Config().values():
        section, key = dotted.split(".", 1)
        assert f"`{key}`" in readme, f"README does not document {dotted}"
        assert f"### `[{section}]`" in readme
    for kind in FAULT_KINDS:
        assert f"| `{kind}` |" in readme, f"README does not document fault kind {kind}"
        assert f'"{kind}"' in shards_toml, f"shards.toml does not mention fault kind {kind}"


def test_cluster_table_is_read_for_the_fleet_and_its_password_never_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(
        tmp_path,
        '[gateway]\nshards = 8\n[cluster]\nredis_url = "redis://bot:s3cret-pw@127.0.0.1:6379/0"\n'
        'name = "node-a"\nshard_range = "0-3"\n',
    )
    config = load_config(path, {}, environ={})
    assert config.cluster.name == "node-a" and config.cluster.shard_range == (0, 3)
    assert load_config(None, {}, environ={}).cluster is None
    assert main(["--config", path, "--print-config"]) == 0
    out = capsys.readouterr().out
    # [cluster] prints as its own table, one key a line like every other section.
    assert _printed_rows(out, "cluster.") == {
        "cluster.redis_url": ('"redis://127.0.0.1:6379/0"', path),
        "cluster.name": ('"node-a"', path),
        "cluster.cluster": ('"shardtui"', "default"),
        "cluster.shard_range": ('"0-3"', path),
        "cluster.heartbeat_interval": ("1.0", "default"),
        "cluster.heartbeat_ttl": ("5.0", "default"),
        "cluster.command_timeout": ("5.0", "default"),
    }
    assert "s3cret-pw" not in out and "s3cret-pw" not in repr(config)
    bad = _write(tmp_path, '[cluster]\nredis = "redis://127.0.0.1"\n')
    assert main(["--config", bad]) == 2
    assert capsys.readouterr().err.startswith(f"shardtui: {bad}: cluster.redis: expected a key of [cluster]")


def test_print_config_names_the_variable_a_cluster_shard_range_came_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(
        tmp_path, '[gateway]\nshards = 8\n[cluster]\nredis_url = "redis://127.0.0.1"\nshard_range = "0-3"\n'
    )
    monkeypatch.setenv("SHARDTUI_GATEWAY_SHARD_RANGE", "4-7")
    assert main(["--config", path, "--print-config"]) == 0
    rows = _printed_rows(capsys.readouterr().out, "cluster.shard_range")
    assert rows == {"cluster.shard_range": ('"4-7"', "env SHARDTUI_GATEWAY_SHARD_RANGE")}


def _printed_rows(out: str, prefix: str) -> dict[str, tuple[str, str]]:
    """--print-config lines starting with ``prefix``: key -> (value, source)."""
    rows: dict[str, tuple[str, str]] = {}
    for line in out.splitlines():
        if line.startswith(prefix):
            left, _, source = line.rpartition(" # ")
            key, _, value = left.partition(" = ")
            rows[key.strip()] = (value.strip(), source.strip())
    return rows


def test_an_unknown_cluster_key_gets_a_did_you_mean(tmp_path: Path) -> None:
    path = _write(tmp_path, '[cluster]\nredis_url = "redis://127.0.0.1"\nheartbeat_tl = 3.0\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, environ={})
    assert str(info.value) == (
        f"{path}: cluster.heartbeat_tl: expected a key of [cluster] (redis_url, name, cluster, shard_range, "
        'heartbeat_interval, heartbeat_ttl, command_timeout), found unknown key "heartbeat_tl" '
        '(did you mean "heartbeat_ttl"?)'
    )


# --- SHARDTUI_* variables that set nothing -----------------------------------------------------------
# An error (exit 2) like an unknown key in the file: a misspelt SHARDTUI_GATEWAY_SHARD_RANGE that was
# ignored would run every shard of the bot in this process.

_UNKNOWN = "expected SHARDTUI_<SECTION>_<KEY> naming a config key, found an unknown variable"


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("SHARDTUI_GATEWAY_SHARD_RANGES", 'did you mean "SHARDTUI_GATEWAY_SHARD_RANGE"?'),
        ("SHARDTUI_SANDBOX_GUILD", 'did you mean "SHARDTUI_SANDBOX_GUILDS"?'),
        ("shardtui_gateway_mode", 'did you mean "SHARDTUI_GATEWAY_MODE"?'),
        ("SHARDTUI_SHARDS", 'did you mean "SHARDTUI_GATEWAY_SHARDS" or "SHARDTUI_SANDBOX_SHARDS"?'),
        ("SHARDTUI_CLUSTER_SHARD_RANGE", 'did you mean "SHARDTUI_GATEWAY_SHARD_RANGE"?'),
        ("SHARDTUI_CLUSTER_NAME", "[cluster] is set in the config file only"),
    ],
)
def test_a_misspelt_variable_is_an_error_with_did_you_mean(name: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {}, environ={name: "0-3", "SHARDTUI_UI_THEME": "shardtui-light"})
    assert str(info.value) == f"environment {name}: {_UNKNOWN} ({hint})"


def test_an_unrelated_variable_is_an_error_saying_to_unset_it() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {}, environ={"SHARDTUI_HOME": "/opt/bot-home"})
    message = str(info.value)
    assert message == (
        f"environment SHARDTUI_HOME: {_UNKNOWN} (unset it: the SHARDTUI_ prefix is for config keys)"
    )
    assert "/opt/bot-home" not in message  # names only, never values


def test_unknown_variables_exit_2_naming_each_on_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHARDTUI_UI_THEEM", "shardtui-light")
    monkeypatch.setenv("SHARDTUI_HOME", "/opt/bot-home")
    monkeypatch.setenv("SHARDTUI_GATEWAY_SHARD", "4")
    # --print-config too: it would otherwise show values the operator believes are set.
    for argv in (["--print-config"], ["run", "--headless", "--duration", "1"]):
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err == (
            f"shardtui: environment SHARDTUI_GATEWAY_SHARD: {_UNKNOWN} "
            '(did you mean "SHARDTUI_GATEWAY_SHARDS"?); also unknown: SHARDTUI_HOME, '
            'SHARDTUI_UI_THEEM (did you mean "SHARDTUI_UI_THEME"?)\n'
        )


def test_a_token_kept_in_a_shardtui_variable(tmp_path: Path) -> None:
    token = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.not-a-real-token-but-shaped-like-one"
    # Named by bot.token_env, it is the token's variable, not an unknown one.
    environ = {"SHARDTUI_BOT_TOKEN_ENV": "SHARDTUI_BOT_TOKEN", "SHARDTUI_BOT_TOKEN": token}
    config = load_config(None, {"gateway.mode": "discord"}, environ=environ)
    assert resolve_token(config, environ=environ) == token
    path = _write(tmp_path, '[bot]\ntoken_env = "SHARDTUI_BOT_TOKEN"\n')
    assert load_config(path, {}, environ={"SHARDTUI_BOT_TOKEN": token}).bot.token_env == "SHARDTUI_BOT_TOKEN"
    # Not named: the error says how to use it and never suggests SHARDTUI_BOT_TOKEN_ENV (a name's variable).
    with pytest.raises(ConfigError) as info:
        load_config(None, {}, environ={"SHARDTUI_BOT_TOKEN": token})
    message = str(info.value)
    assert message == (
        f"environment SHARDTUI_BOT_TOKEN: {_UNKNOWN} (the bot token is read from the variable "
        'bot.token_env names, now "DISCORD_TOKEN"; to keep it in this one set bot.token_env = '
        '"SHARDTUI_BOT_TOKEN")'
    )
    assert token not in message


def test_a_shard_range_flag_or_variable_outranks_the_files_cluster_shard_range(tmp_path: Path) -> None:
    # The README's fleet example starts each process with --shard-range; a [cluster] shard_range in the
    # shared file must not silently win over it (flags and variables outrank the file everywhere else).
    path = _write(
        tmp_path,
        '[gateway]\nshards = 16\n[cluster]\nredis_url = "redis://127.0.0.1:6379/0"\nshard_range = "0-7"\n',
    )
    assert load_config(path, environ={}).cluster.shard_range == (0, 7)
    by_flag = load_config(
        path, {"gateway.shard_range": "8-9"}, flags={"gateway.shard_range": "--shard-range"}
    )
    assert by_flag.cluster.shard_range == (8, 9)
    by_env = load_config(path, environ={"SHARDTUI_GATEWAY_SHARD_RANGE": "10-15"})
    assert by_env.cluster.shard_range == (10, 15)


@pytest.mark.parametrize(
    ("table", "line"),
    [
        (
            'kind = "close"\nevery = 1.0\ncod = 4000\n',
            "sandbox.faults[0].cod: expected a parameter of the close fault (code, reason), "
            'found unknown key "cod" (did you mean "code"?)',
        ),
        (
            'kind = "drop"\nevery = 1.0\nseconds = 2\n',
            "sandbox.faults[0].seconds: expected no parameters for the drop fault (only kind, every, shard), "
            'found unknown key "seconds"',
        ),
    ],
)
def test_a_typod_fault_parameter_is_refused_not_ignored(tmp_path: Path, table: str, line: str) -> None:
    # "cod = 4000" used to load fine and the sandbox then closed with its default code.
    path = _write(tmp_path, "[[sandbox.faults]]\n" + table)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == f"{path}: {line}"


def test_every_documented_fault_parameter_loads(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[[sandbox.faults]]\nkind = "invalid_session"\nevery = 1.0\nresumable = true\n'
        '[[sandbox.faults]]\nkind = "close"\nevery = 1.0\nshard = 0\ncode = 4000\nreason = "x"\n'
        '[[sandbox.faults]]\nkind = "oversized"\nevery = 1.0\nsize = 1000\n'
        '[[sandbox.faults]]\nkind = "delay_hello"\nevery = 1.0\nseconds = 1\ncount = 2\n'
        '[[sandbox.faults]]\nkind = "refuse"\nevery = 1.0\nseconds = 1\n'
        '[[sandbox.faults]]\nkind = "outage"\nevery = 1.0\nseconds = 1\n'
        '[[sandbox.faults]]\nkind = "random"\nevery = 1.0\nchoices = ["drop", "close"]\ncode = 4000\n',
    )
    rules = load_config(path, environ={}).sandbox.faults
    assert [r.params for r in rules] == [
        {"resumable": True},
        {"code": 4000, "reason": "x"},
        {"size": 1000},
        {"seconds": 1, "count": 2},
        {"seconds": 1},
        {"seconds": 1},
        {"code": 4000},
    ]


def test_a_client_identify_window_sets_the_embedded_sandboxs_unless_that_is_set_too() -> None:
    config = load_config(None, {"gateway.identify_window": "0.2"}, environ={})
    assert config.sandbox.identify_window == 0.2
    assert config.provenance["sandbox.identify_window"] == "--identify-window (gateway.identify_window)"
    environ = {"SHARDTUI_SANDBOX_IDENTIFY_WINDOW": "0.2"}
    config = load_config(None, {"gateway.identify_window": "0.5"}, environ=environ)
    assert (config.gateway.identify_window, config.sandbox.identify_window) == (0.5, 0.2)


def test_an_identify_window_shorter_than_the_servers_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "[sandbox]\nidentify_window = 1.0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {"gateway.identify_window": "0.2"}, environ={})
    message = str(info.value)
    assert message.startswith("command line --identify-window: gateway.identify_window: ")
    assert f"sandbox.identify_window = 1 s (from {path})" in message and "found 0.2 s" in message
    environ = {"DISCORD_TOKEN": "a.b.c"}
    with pytest.raises(ConfigError, match=r"at least Discord's 5 s .*found 1 s"):
        load_config(None, {"gateway.mode": "discord", "gateway.identify_window": "1"}, environ=environ)
    # A gateway of unknown pace (a proxy, a sandbox elsewhere) is taken at its word.
    overrides = {
        "gateway.mode": "discord",
        "gateway.identify_window": "1",
        "gateway.rest_url": "http://127.0.0.1:9",
    }
    assert load_config(None, overrides, environ=environ).gateway.identify_window == 1.0


def test_an_unknown_theme_name_is_a_config_error_listing_the_themes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, '[ui]\ntheme = "nope"\n')
    assert main(["--config", path, "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"shardtui: {path}: ui.theme: expected one of ")
    for name in ("shardtui-dark", "shardtui-light", "shardtui-high-contrast"):
        assert name in err
    assert err.rstrip().endswith("found 'nope'")
    # The flag is named as the source when it was the flag.
    assert main(["--theme", "nope", "--print-config"]) == 2
    assert "--theme: ui.theme: expected one of" in capsys.readouterr().err


def test_a_theme_file_path_is_left_to_the_console(tmp_path: Path) -> None:
    # A file that cannot be used is the console's notification (and the default theme), not exit 2.
    broken = tmp_path / "mine.toml"
    broken.write_text("primary = 12\n")
    config = load_config(_write(tmp_path, f'[ui]\ntheme = "{broken}"\n'), {})
    assert config.ui.theme == str(broken)
    assert load_config(_write(tmp_path, '[ui]\ntheme = "shardtui-light"\n'), {}).ui.theme == "shardtui-light"
