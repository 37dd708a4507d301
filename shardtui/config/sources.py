"""Where values come from: built-in defaults < the TOML file < ``SHARDTUI_<SECTION>_<KEY>`` environment
variables < command-line flags. Every value remembers which of those set it (``Config.provenance``),
so ``--print-config`` can say why a value is what it is.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
import re
import tomllib
from collections.abc import Mapping
from typing import Any

from shardtui.config.errors import ConfigError, closest, describe, did_you_mean, where_of
from shardtui.config.model import DEFAULT_SOURCE, Config
from shardtui.config.parsers import KeyContext
from shardtui.config.schema import KEYS, SCHEMA, SECTIONS, parse_cluster_config
from shardtui.config.validate import validate

ENV_PREFIX = "SHARDTUI_"


def load_config(
    path: str | None,
    overrides: Mapping[str, Any] | None = None,
    *,
    flags: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    check_token: bool = True,
) -> Config:
    """Load, merge and validate a configuration.

    ``path``: a shards.toml, or None for built-in defaults. ``overrides``: dotted key -> value from the
    command line (strings are parsed like flags: ``"8"``, ``"0-3"``, ``"guilds,guild_messages"``);
    ``flags`` names the flag each override came from, for provenance and errors (default ``--key``).
    ``environ`` (default ``os.environ``) supplies ``SHARDTUI_<SECTION>_<KEY>`` overrides and the token.
    ``check_token=False`` skips the "mode = discord needs a token" check (for ``--print-config``).
    Raises ``ConfigError`` with one line naming file, key, expectation and finding.
    """
    environ = os.environ if environ is None else environ
    config = Config()
    for key in KEYS:
        config.provenance[key] = DEFAULT_SOURCE

    if path is not None:
        config.source = path
        data = read_toml(path)
        _apply_file(config, data, path)

    for key in KEYS:
        name = env_var_for(key)
        if name in environ:
            _set(config, key, environ[name], f"env {name}", from_text=True)

    for key, value in (overrides or {}).items():
        if key not in KEYS:
            raise ConfigError(
                "command line", key, "a known config key", f'"{key}"', hint=did_you_mean(key, KEYS)
            )
        source = (flags or {}).get(key) or "--" + key.split(".", 1)[1].replace("_", "-")
        _set(config, key, value, source, from_text=isinstance(value, str))

    if (
        config.cluster is not None
        and config.cluster.shard_range is not None
        and config.provenance["gateway.shard_range"] not in (DEFAULT_SOURCE, path)
    ):
        # [cluster] shard_range only comes from the file; a variable or flag for the shard range
        # (each fleet process started with its own --shard-range) outranks it like any file value.
        config.cluster = dataclasses.replace(config.cluster, shard_range=config.gateway.shard_range)
        config.provenance["cluster.shard_range"] = config.provenance["gateway.shard_range"]

    _check_environment(environ, config.bot.token_env)
    validate(config, environ, check_token=check_token)
    return config


def find_default_config(cwd: str | None = None) -> str | None:
    """``shards.toml`` in ``cwd`` (default: the working directory) when it exists, else None."""
    if cwd is None:
        return "shards.toml" if os.path.isfile("shards.toml") else None
    candidate = os.path.join(cwd, "shards.toml")
    return candidate if os.path.isfile(candidate) else None


# --- the file ----------------------------------------------------------------------------------------


def read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise ConfigError(path, None, message="cannot read config file: no such file") from None
    except IsADirectoryError:
        raise ConfigError(path, None, message="cannot read config file: it is a directory") from None
    except PermissionError:
        raise ConfigError(path, None, message="cannot read config file: permission denied") from None
    except OSError as exc:
        raise ConfigError(path, None, message=f"cannot read config file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            path, f"line {line}", message="TOML syntax error: file is not valid UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        detail = str(exc)
        match = re.search(r"\(at line (\d+), column (\d+)\)", detail)
        where_in = f"line {match.group(1)}" if match else "line ?"
        detail = re.sub(r"\s*\(at line \d+, column \d+\)", "", detail)
        if match:
            detail += f" (column {match.group(2)})"
        raise ConfigError(path, where_in, message=f"TOML syntax error: {detail}") from None


def _apply_file(config: Config, data: dict[str, Any], path: str) -> None:
    for section, table in data.items():
        if section == "cluster":
            _require_redis(path)
            config.cluster = parse_cluster_config(table, where=path)
            config.provenance["cluster"] = path
            for key in table:
                config.provenance[f"cluster.{key}"] = path
            continue
        if section not in SCHEMA:
            hint = did_you_mean(section, (*SECTIONS, "cluster"))
            if hint is None and not isinstance(table, dict):
                owner = next((s for s in SECTIONS if section in SCHEMA[s]), None)
                if owner:
                    hint = f'"{section}" belongs under [{owner}]'
            raise ConfigError(
                path,
                section,
                "one of the sections " + ", ".join(f"[{s}]" for s in (*SECTIONS, "cluster")),
                f'unknown key "{section}"',
                hint=hint,
            )
        if not isinstance(table, dict):
            raise ConfigError(path, section, f"a [{section}] table", describe(table))
        for key, value in table.items():
            dotted = f"{section}.{key}"
            if key not in SCHEMA[section]:
                raise ConfigError(
                    path,
                    dotted,
                    f"a key of [{section}] (" + ", ".join(SCHEMA[section]) + ")",
                    f'unknown key "{key}"',
                    hint=did_you_mean(key, tuple(SCHEMA[section])),
                )
            _set(config, dotted, value, path, from_text=False)


def _require_redis(path: str) -> None:
    # A fleet needs the redis package, said here rather than as a traceback when the fleet starts.
    # Looked up, not imported: loading a config never imports redis.
    if importlib.util.find_spec("redis") is None:
        raise ConfigError(
            path, "cluster", "the redis package for a [cluster] fleet (pip install 'shardtui[redis]')",
            "it missing (No module named 'redis')",
        )  # fmt: skip


def _set(config: Config, dotted: str, value: Any, source: str, *, from_text: bool) -> None:
    section, key = dotted.split(".", 1)
    parsed = SCHEMA[section][key](value, KeyContext(where_of(source), dotted, from_text))
    setattr(getattr(config, section), key, parsed)
    config.provenance[dotted] = source


# --- the environment ---------------------------------------------------------------------------------


def env_var_for(dotted: str) -> str:
    """The variable overriding a key: ``gateway.shard_range`` -> ``SHARDTUI_GATEWAY_SHARD_RANGE``."""
    return ENV_PREFIX + dotted.replace(".", "_").upper()


def unknown_environment(environ: Mapping[str, str], token_env: str) -> list[str]:
    """``SHARDTUI_*`` variables (any case) that set no config key, sorted; ``token_env`` (the variable the
    token is read from, which an operator may name ``SHARDTUI_...``) is not one of them."""
    known = {env_var_for(key) for key in KEYS}
    known.add(token_env)
    return sorted(n for n in environ if n.upper().startswith(ENV_PREFIX) and n not in known)


def _env_suggestion(name: str) -> str | None:
    """``did you mean "SHARDTUI_..."?`` for an unknown variable, or None."""
    rest = name[len(ENV_PREFIX) :].lower()
    # A key without its section (SHARDTUI_SHARDS): every section that has it.
    owners = [env_var_for(f"{s}.{rest}") for s in SECTIONS if rest in SCHEMA[s]]
    if not owners and rest == "cluster_shard_range":
        owners = [env_var_for("gateway.shard_range")]  # which outranks [cluster] shard_range
    if owners:
        return "did you mean " + " or ".join(f'"{o}"' for o in owners) + "?"
    if rest.startswith("cluster_"):
        return None
    suffixes = tuple(env_var_for(key)[len(ENV_PREFIX) :] for key in KEYS)
    if "token" in rest:
        # Only a plain misspelling: SHARDTUI_BOT_TOKEN is no near miss of SHARDTUI_BOT_TOKEN_ENV, which
        # holds a variable's name (a token put there would be shown as one).
        close = difflib.get_close_matches(rest.upper(), suffixes, n=1, cutoff=0.9)
        best = close[0] if close else None
    else:
        best = closest(rest, suffixes)
    return f'did you mean "{ENV_PREFIX}{best}"?' if best else None


def _env_hint(name: str, token_env: str) -> str:
    """What to do about an unknown ``SHARDTUI_`` variable."""
    hints = [_env_suggestion(name)]
    rest = name[len(ENV_PREFIX) :].lower()
    if rest.startswith("cluster_") and rest != "cluster_shard_range":
        hints.append("[cluster] is set in the config file only")
    if "token" in rest:
        hints.append(
            f'the bot token is read from the variable bot.token_env names, now "{token_env}"; '
            f'to keep it in this one set bot.token_env = "{name}"'
        )
    text = "; ".join(h for h in hints if h)
    return text or f"unset it: the {ENV_PREFIX} prefix is for config keys"


def _check_environment(environ: Mapping[str, str], token_env: str) -> None:
    """An unknown ``SHARDTUI_`` variable is an error, like an unknown key in the file: a misspelt
    ``SHARDTUI_GATEWAY_SHARD_RANGE`` ignored would run every shard. Only names are shown, never values."""
    unknown = unknown_environment(environ, token_env)
    if not unknown:
        return
    first, *others = unknown
    message = (
        f"expected {ENV_PREFIX}<SECTION>_<KEY> naming a config key, found an unknown variable "
        f"({_env_hint(first, token_env)})"
    )
    if others:
        also = []
        for name in others:
            suggestion = _env_suggestion(name)
            also.append(f"{name} ({suggestion})" if suggestion else name)
        message += "; also unknown: " + ", ".join(also)
    raise ConfigError(f"environment {first}", None, message=message)
