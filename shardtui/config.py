"""shards.toml: typed configuration.

The dataclasses below are the contract other modules read. Loading, validation and CLI overrides
live in this module too (owned by the foundation work).

Precedence, lowest first: built-in defaults < the TOML file < ``SHARDTUI_<SECTION>_<KEY>`` environment
variables < command-line flags. Every value remembers which of those it came from
(``Config.provenance``), so ``--print-config`` can say why a value is what it is.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from shardtui.gateway.models import Presence
    from shardtui.gateway.protocol import GatewayIntents

Mode = Literal["sandbox", "discord"]
Compression = Literal["zstd-stream", "zlib-stream", "none"]

MODES: tuple[str, ...] = ("sandbox", "discord")
COMPRESSIONS: tuple[str, ...] = ("zstd-stream", "zlib-stream", "none")
STATUSES: tuple[str, ...] = ("online", "idle", "dnd", "invisible", "offline")
ACTIVITY_TYPES: tuple[str, ...] = ("playing", "streaming", "listening", "watching", "custom", "competing")
LARGE_THRESHOLD_RANGE = (50, 250)
DISCORD_REST_URL = "https://discord.com/api/v10"
ENV_PREFIX = "SHARDTUI_"
DEFAULT_SOURCE = "default"


@dataclass(slots=True)
class BotConfig:
    #: Name of the environment variable holding the token (the token itself is never in the file).
    token_env: str = "DISCORD_TOKEN"
    #: Intent names, or ["default"].
    intents: list[str] = field(default_factory=lambda: ["default"])
    #: Optional "module:callable" receiving every Dispatch.
    event_handler: str | None = None


@dataclass(slots=True)
class GatewayConfig:
    mode: Mode = "sandbox"
    #: Total shard count, or None for "auto" (from /gateway/bot).
    shards: int | None = None
    #: This process's shard range, first..last inclusive; None = all shards.
    shard_range: tuple[int, int] | None = None
    compression: Compression = "zstd-stream"
    large_threshold: int = 250
    #: REST base for mode = "discord"; for mode = "sandbox", a running sandbox's REST url, None = embed one.
    rest_url: str | None = None
    #: Persisted sessions for zero-downtime restarts; None = off.
    state_file: str | None = None
    #: Saved sessions older than this many seconds identify instead of resuming; None = the library's default.
    state_max_age: float | None = None
    #: Seconds per identify bucket slot; None = Discord's 5 s (or the embedded sandbox's own window).
    identify_window: float | None = None
    #: PEM file of CA certificates to trust for https:// REST and wss:// gateway; None = the system store.
    ca_file: str | None = None


@dataclass(slots=True)
class PresenceConfig:
    status: str = "online"
    #: "playing" | "streaming" | "listening" | "watching" | "custom" | "competing" | None
    activity_type: str | None = "watching"
    activity_name: str | None = "the shards"
    activity_state: str | None = None
    activity_url: str | None = None


@dataclass(slots=True)
class FaultRule:
    """A scheduled sandbox fault: ``kind`` every ``every`` seconds (on a random shard unless ``shard``)."""

    kind: str
    every: float
    shard: int | None = None
    #: Extra parameters for the fault (e.g. ``code`` for a close, ``seconds`` for a delay).
    params: dict[str, Any] = field(default_factory=dict)
    #: For ``kind = "random"``: the kinds to draw from (empty = every transient kind).
    choices: tuple[str, ...] = ()


@dataclass(slots=True)
class SandboxConfig:
    guilds: int = 100
    #: Shard count /gateway/bot recommends.
    shards: int = 4
    max_concurrency: int = 1
    identify_window: float = 5.0
    heartbeat_interval_ms: int = 41_250
    #: Seconds a dropped session stays resumable.
    resume_window: float = 180.0
    #: Dispatches per second across all shards (0 = none after the guild burst).
    event_rate: float = 5.0
    session_start_total: int = 1000
    #: Privileged intents the sandbox's "developer portal" has enabled.
    privileged_intents: list[str] = field(default_factory=list)
    #: A fixed token; None = generate one at start.
    token: str | None = field(default=None, repr=False)
    faults: list[FaultRule] = field(default_factory=list)


@dataclass(slots=True)
class UiConfig:
    theme: str = "shardtui-dark"
    #: Seconds between table flushes.
    refresh_interval: float = 1.0
    #: Hide every mutating action (restart, shutdown, boot, presence).
    readonly: bool = False
    #: Fleet console: watch every shard of every ``[cluster]`` process through Redis, run none here.
    fleet: bool = False


@dataclass(slots=True)
class MetricsConfig:
    #: "HOST:PORT" serving Prometheus text on /metrics; None = no metrics endpoint.
    listen: str | None = None


@dataclass(slots=True)
class HealthConfig:
    #: Seconds of silence (while peers receive) before a connected shard reads "wedged"; None = 60.
    wedged_after: float | None = None
    #: Restart a wedged shard by itself (resume first, with backoff, within the identify budget).
    restart_wedged: bool = False


@dataclass(slots=True)
class Config:
    bot: BotConfig = field(default_factory=BotConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    presence: PresenceConfig = field(default_factory=PresenceConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    ui: UiConfig = field(default_factory=UiConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    proxy: ProxyConfig = field(default_factory=lambda: ProxyConfig())
    #: Where the config came from (a path, or "<defaults>").
    source: str = "<defaults>"
    #: Dotted key -> where its value came from: "default", a file path, "--flag" or "env NAME".
    provenance: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    #: ``[cluster]`` as a ``shardtui.fleet.ClusterConfig`` (multi-process fleet), or None: one process.
    cluster: Any = None

    def intents(self) -> GatewayIntents:
        from shardtui.gateway.protocol import GatewayIntents

        return GatewayIntents.from_names(self.bot.intents)

    def initial_presence(self) -> Presence:
        """``[presence]`` as the library's ``Presence`` (a method named ``presence`` would shadow the
        ``presence`` section field)."""
        return build_presence(self.presence)

    def shard_total(self) -> int | None:
        """The shard total this config leads to, when known before connecting: explicit, else the
        embedded sandbox's recommendation, else None (``/gateway/bot`` decides)."""
        if self.gateway.shards is not None:
            return self.gateway.shards
        if self.embeds_sandbox():
            return self.sandbox.shards
        return None

    def embeds_sandbox(self) -> bool:
        return self.gateway.mode == "sandbox" and self.gateway.rest_url is None

    def values(self) -> dict[str, Any]:
        """Every leaf value by dotted key (secrets shown as set/unset, never their value)."""
        out: dict[str, Any] = {}
        for section in SECTIONS:
            obj = getattr(self, section)
            for key in _SCHEMA[section]:
                value = getattr(obj, key)
                if (section, key) == ("sandbox", "token"):
                    value = None if value is None else "<set>"
                elif key == "faults":
                    value = [_fault_as_table(rule) for rule in value]
                out[f"{section}.{key}"] = value
        return out


class ConfigError(Exception):
    """A configuration problem, said in one line: where, which key, what was expected, what was found."""

    def __init__(
        self,
        where: str,
        key: str | None,
        expected: str | None = None,
        found: str | None = None,
        *,
        hint: str | None = None,
        message: str | None = None,
    ) -> None:
        self.where = where
        self.key = key
        self.expected = expected
        self.found = found
        self.hint = hint
        if message is None:
            message = f"expected {expected}, found {found}"
        parts = [where] + ([key] if key else []) + [message]
        text = ": ".join(parts)
        if hint:
            text += f" ({hint})"
        super().__init__(" ".join(text.split("\n")))


# --- value parsing -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Ctx:
    where: str
    key: str
    #: The value came from text (a flag or an environment variable), so "8" may mean 8.
    from_text: bool

    def error(self, expected: str, found: Any, *, hint: str | None = None, raw: bool = False) -> ConfigError:
        return ConfigError(self.where, self.key, expected, found if raw else describe(found), hint=hint)


def describe(value: Any) -> str:
    """How a found value is shown in an error: its TOML type and value."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, str):
        return f'string "{value}"' if value else "an empty string"
    if isinstance(value, list):
        return f"array {_short(value)}"
    if isinstance(value, dict):
        return "a table"
    return f"{type(value).__name__} {value!r}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _closest(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    prefixed = [c for c in choices if word and c.lower().startswith(word.lower())]
    if len(prefixed) == 1:
        return prefixed[0]
    match = difflib.get_close_matches(word.lower(), [c.lower() for c in choices], n=1, cutoff=0.6)
    if not match:
        return None
    for choice in choices:
        if choice.lower() == match[0]:
            return choice
    return None


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """``did you mean "x"?`` for the choice closest to ``word`` (a unique prefix, else difflib), or None."""
    best = _closest(word, choices)
    return f'did you mean "{best}"?' if best else None


def _p_str(value: Any, ctx: _Ctx, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ctx.error("a string", value)
    if not allow_empty and not value.strip():
        raise ctx.error("a non-empty string", value)
    return value


def _p_opt_str(value: Any, ctx: _Ctx) -> str | None:
    # TOML has no null: an empty string (or "none" from a flag) switches an optional value off.
    if isinstance(value, str) and (value == "" or (ctx.from_text and value.lower() == "none")):
        return None
    return _p_str(value, ctx)


def _p_bool(value: Any, ctx: _Ctx) -> bool:
    if ctx.from_text and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
    if not isinstance(value, bool):
        raise ctx.error("true or false", value)
    return value


def _p_int(value: Any, ctx: _Ctx, *, lo: int | None = None, hi: int | None = None) -> int:
    if ctx.from_text and isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ctx.error("an integer", value) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ctx.error("an integer", value)
    _check_range(value, ctx, lo, hi)
    return value


def _p_float(
    value: Any, ctx: _Ctx, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False
) -> float:
    if ctx.from_text and isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ctx.error("a number", value) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ctx.error("a number", value)
    found = value
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ctx.error("a finite number", found)
    if lo_open and lo is not None and value <= lo:
        raise ctx.error(f"a number greater than {_num(lo)}", found)
    try:
        _check_range(value, ctx, None if lo_open else lo, hi)
    except ConfigError:
        raise ctx.error(_range_text(None if lo_open else lo, hi), found) from None
    return value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _range_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"a value from {_num(lo)} to {_num(hi)}"
    if lo is not None:
        return f"a value of at least {_num(lo)}"
    return f"a value of at most {_num(hi or 0)}"


def _check_range(value: float, ctx: _Ctx, lo: float | None, hi: float | None) -> None:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ctx.error(_range_text(lo, hi), value)


def _p_choice(value: Any, ctx: _Ctx, choices: tuple[str, ...]) -> str:
    expected = "one of " + ", ".join(f'"{c}"' for c in choices)
    if not isinstance(value, str):
        raise ctx.error(expected, value)
    if value not in choices:
        lowered = value.strip().lower()
        if lowered in choices:
            return lowered
        raise ctx.error(expected, value, hint=did_you_mean(value, choices))
    return value


def _p_names(value: Any, ctx: _Ctx) -> list[str]:
    if ctx.from_text and isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ctx.error("an array of strings", value)
    return list(value)


def _p_intents(value: Any, ctx: _Ctx) -> list[str]:
    from shardtui.gateway.protocol import GatewayIntents

    names = _p_names(value, ctx)
    if not names:
        raise ctx.error('at least one intent name (or "default")', value)
    known = ["default", "all", "privileged", *(m.lower() for m in GatewayIntents.__members__)]
    for name in names:
        try:
            GatewayIntents.from_names([name])
        except ValueError:
            raise ctx.error(
                "intent names such as default, guilds, guild_messages, message_content",
                f'unknown intent "{name}"',
                hint=did_you_mean(name, known),
                raw=True,
            ) from None
    return names


def _p_privileged(value: Any, ctx: _Ctx) -> list[str]:
    from shardtui.gateway.protocol import GatewayIntents

    names = _p_intents(value, ctx) if value else []
    for name in names:
        if GatewayIntents.from_names([name]) & ~GatewayIntents.privileged():
            raise ctx.error(
                "privileged intent names (guild_members, guild_presences, message_content)",
                f'non-privileged intent "{name}"',
                raw=True,
            )
    return names


def _p_shards(value: Any, ctx: _Ctx) -> int | None:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    if isinstance(value, str) and not ctx.from_text:
        raise ctx.error('a shard count (integer of at least 1) or "auto"', value)
    return _p_int(value, _Ctx(ctx.where, ctx.key, ctx.from_text), lo=1)


_RANGE_RE = re.compile(r"^\s*(\d+)\s*(?:-|\.\.)\s*(\d+)\s*$")


def _p_shard_range(value: Any, ctx: _Ctx) -> tuple[int, int] | None:
    expected = 'a shard range "first-last" (e.g. "0-3") or [first, last]'
    if isinstance(value, str):
        if value.strip().lower() in ("", "all"):
            return None
        if value.strip().isdigit():
            first = last = int(value)
        else:
            match = _RANGE_RE.match(value)
            if match is None:
                raise ctx.error(expected, value)
            first, last = int(match.group(1)), int(match.group(2))
    elif isinstance(value, list):
        if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ctx.error(expected, value)
        first, last = value
        if first < 0 or last < 0:
            raise ctx.error("non-negative shard ids", value)
    else:
        raise ctx.error(expected, value)
    if first > last:
        raise ctx.error("first <= last", f"{first}-{last}", raw=True)
    return (first, last)


def _p_url(value: Any, ctx: _Ctx) -> str | None:
    url = _p_opt_str(value, ctx)
    if url is None:
        return None
    if not re.match(r"^https?://[^/\s]+", url):
        raise ctx.error("an http:// or https:// URL", value)
    return url.rstrip("/")


def _p_token_env(value: Any, ctx: _Ctx) -> str:
    name = _p_str(value, ctx)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ctx.error("an environment variable name (letters, digits, _)", value)
    return name


def _p_handler(value: Any, ctx: _Ctx) -> str | None:
    spec = _p_opt_str(value, ctx)
    if spec is None:
        return None
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", spec.strip()):
        raise ctx.error('"module:callable" (e.g. "mybot.events:on_dispatch")', value)
    return spec.strip()


def _p_listen(value: Any, ctx: _Ctx) -> str | None:
    """ "HOST:PORT" (IPv6 as "[::1]:9100"); port 0 picks a free one."""
    text = _p_opt_str(value, ctx)
    if text is None:
        return None
    host, sep, port = text.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ctx.error('"HOST:PORT" (e.g. "127.0.0.1:9100"; IPv6 as "[::1]:9100")', value)
    return text.strip()


def _p_activity_type(value: Any, ctx: _Ctx) -> str | None:
    if isinstance(value, str) and value.strip().lower() in ("", "none"):
        return None
    return _p_choice(value, ctx, ACTIVITY_TYPES)


def _p_faults(value: Any, ctx: _Ctx) -> list[FaultRule]:
    if ctx.from_text:
        raise ctx.error(
            "faults in the config file ([[sandbox.faults]] tables)", "a command-line value", raw=True
        )
    if not isinstance(value, list):
        raise ctx.error("an array of tables ([[sandbox.faults]])", value)
    kinds = _fault_kinds()
    rules: list[FaultRule] = []
    for index, item in enumerate(value):
        base = f"{ctx.key}[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(ctx.where, base, "a table with kind and every", describe(item))
        params = dict(item)
        try:
            kind_raw = params.pop("kind")
        except KeyError:
            raise ConfigError(ctx.where, f"{base}.kind", "a fault kind", "nothing (missing)") from None
        kind_ctx = _Ctx(ctx.where, f"{base}.kind", False)
        kind = _p_choice(kind_raw, kind_ctx, kinds) if kinds else _p_str(kind_raw, kind_ctx)
        if "every" not in params:
            raise ConfigError(ctx.where, f"{base}.every", "seconds between faults", "nothing (missing)")
        every = _p_float(params.pop("every"), _Ctx(ctx.where, f"{base}.every", False), lo=0.0, lo_open=True)
        shard_raw = params.pop("shard", None)
        shard = (
            None if shard_raw is None else _p_int(shard_raw, _Ctx(ctx.where, f"{base}.shard", False), lo=0)
        )
        choices: tuple[str, ...] = ()
        if "choices" in params:
            choices_ctx = _Ctx(ctx.where, f"{base}.choices", False)
            if kind != "random":
                raise choices_ctx.error('no choices unless kind = "random"', params["choices"])
            names = _p_names(params.pop("choices"), choices_ctx)
            concrete = tuple(k for k in kinds if k != "random")
            choices = tuple(_p_choice(n, choices_ctx, concrete) if concrete else n for n in names)
        if kinds:
            _check_fault_params(kind, params, ctx.where, base)
        rules.append(FaultRule(kind=kind, every=every, shard=shard, params=params, choices=choices))
    return rules


#: The parameters each fault kind reads (the README's fault table). The sandbox takes them with
#: ``params.get(name, default)``, so a misspelt one would be ignored without a word.
_FAULT_PARAMS: dict[str, tuple[str, ...]] = {
    "invalid_session": ("resumable",),
    "close": ("code", "reason"),
    "oversized": ("size",),
    "delay_hello": ("seconds", "count"),
    "refuse": ("seconds",),
    "outage": ("seconds",),
}


def _check_fault_params(kind: str, params: Mapping[str, Any], where: str, base: str) -> None:
    if kind == "random":  # passed on to whichever kind it draws
        allowed = tuple(dict.fromkeys(name for names in _FAULT_PARAMS.values() for name in names))
    else:
        allowed = _FAULT_PARAMS.get(kind, ())
    for name in params:
        if name in allowed:
            continue
        expected = (
            f"a parameter of the {kind} fault ({', '.join(allowed)})"
            if allowed
            else f"no parameters for the {kind} fault (only kind, every, shard)"
        )
        hint = did_you_mean(name, allowed or ("kind", "every", "shard"))
        raise ConfigError(where, f"{base}.{name}", expected, f'unknown key "{name}"', hint=hint)


def _fault_kinds() -> tuple[str, ...]:
    """The sandbox's fault kinds, when the sandbox says what they are (else any word is accepted)."""
    try:
        module = importlib.import_module("shardtui.sandbox.faults")
    except ImportError:
        return ()
    kinds = getattr(module, "FAULT_KINDS", None)
    if kinds is None:
        return ()
    # "random" draws a transient kind each time (the sandbox's schedule understands it).
    return (*(str(getattr(k, "value", k)) for k in kinds), "random")


def _fault_as_table(rule: FaultRule) -> dict[str, Any]:
    table: dict[str, Any] = {"kind": rule.kind, "every": rule.every}
    if rule.shard is not None:
        table["shard"] = rule.shard
    if rule.choices:
        table["choices"] = list(rule.choices)
    table.update(rule.params)
    return table


Parser = Callable[[Any, _Ctx], Any]


def _ranged_int(lo: int | None = None, hi: int | None = None) -> Parser:
    return lambda v, c: _p_int(v, c, lo=lo, hi=hi)


def _positive_float(v: Any, c: _Ctx) -> float:
    return _p_float(v, c, lo=0.0, lo_open=True)


def _opt_positive_float(v: Any, c: _Ctx) -> float | None:
    if isinstance(v, str) and v.strip().lower() in ("", "none", "auto"):
        return None
    return _positive_float(v, c)


# --- [proxy] (issue #16): the gateway proxy bots connect to. One block: dataclass, schema, checks. ---


@dataclass(slots=True)
class ProxyConfig:
    #: "HOST:PORT" where bots connect (gateway WebSocket + REST); None = no proxy.
    listen: str | None = None
    #: Allow a non-loopback ``listen`` (bots on other hosts; anyone who can reach it may try tokens).
    allow_remote: bool = False
    #: Name of an environment variable holding a separate client token bot code uses instead of the real one.
    client_token_env: str | None = None
    #: Per client: unsent events / bytes before it is cut with a resumable close; also its replay buffer.
    max_backlog_events: int = 10_000
    max_backlog_bytes: int = 32 * 1024 * 1024
    #: Seconds a client session without a socket stays resumable.
    resume_window: float = 120.0
    #: Client sessions kept at most (the oldest detached ones are dropped first).
    max_sessions: int = 1_000
    #: Keep members / presences in the cache a late client's GUILD_CREATEs are built from.
    cache_members: bool = True
    cache_presences: bool = True


_PROXY_SCHEMA: dict[str, Parser] = {
    "listen": _p_listen,
    "allow_remote": _p_bool,
    "client_token_env": _p_opt_str,
    "max_backlog_events": _ranged_int(1, 10_000_000),
    "max_backlog_bytes": _ranged_int(1024, 1 << 34),
    "resume_window": lambda v, c: _p_float(v, c, lo=1.0, hi=86_400.0),
    "max_sessions": _ranged_int(1, 1_000_000),
    "cache_members": _p_bool,
    "cache_presences": _p_bool,
}


def is_loopback_host(host: str) -> bool:
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host == "localhost" or host.startswith("127.") or host == "::1"


def _validate_proxy(config: Config, environ: Mapping[str, str], where: Callable[..., str]) -> None:
    proxy = config.proxy
    if proxy.listen is not None and not proxy.allow_remote:
        host = proxy.listen.rpartition(":")[0]
        if not is_loopback_host(host):
            raise ConfigError(
                where("proxy.listen"),
                "proxy.listen",
                "a loopback address (127.0.0.1, ::1) unless proxy.allow_remote = true",
                describe(proxy.listen),
                hint="bots on other hosts can reach a non-loopback proxy; set allow_remote to allow it",
            )
    name = proxy.client_token_env
    if proxy.listen is not None and name is not None and not environ.get(name, "").strip():
        raise ConfigError(
            where("proxy.client_token_env"),
            "proxy.client_token_env",
            f"the client token in environment variable {name}",
            f"{name} {'empty' if name in environ else 'unset'}",
        )


def proxy_client_token(config: Config, environ: Mapping[str, str] | None = None) -> str | None:
    """The client token ``[proxy] client_token_env`` names, or None."""
    name = config.proxy.client_token_env
    if name is None:
        return None
    value = (os.environ if environ is None else environ).get(name, "").strip()
    return value or None


# --- end of [proxy] --------------------------------------------------------------------------------


_SCHEMA: dict[str, dict[str, Parser]] = {
    "bot": {
        "token_env": _p_token_env,
        "intents": _p_intents,
        "event_handler": _p_handler,
    },
    "gateway": {
        "mode": lambda v, c: _p_choice(v, c, MODES),
        "shards": _p_shards,
        "shard_range": _p_shard_range,
        "compression": lambda v, c: _p_choice(v, c, COMPRESSIONS),
        "large_threshold": _ranged_int(*LARGE_THRESHOLD_RANGE),
        "rest_url": _p_url,
        "state_file": _p_opt_str,
        "state_max_age": _opt_positive_float,
        "identify_window": _opt_positive_float,
        "ca_file": _p_opt_str,
    },
    "presence": {
        "status": lambda v, c: _p_choice(v, c, STATUSES),
        "activity_type": _p_activity_type,
        "activity_name": _p_opt_str,
        "activity_state": _p_opt_str,
        "activity_url": _p_opt_str,
    },
    "sandbox": {
        "guilds": _ranged_int(0, 1_000_000),
        "shards": _ranged_int(1, 100_000),
        "max_concurrency": _ranged_int(1, 1024),
        "identify_window": _positive_float,
        "heartbeat_interval_ms": _ranged_int(1, 3_600_000),
        "resume_window": lambda v, c: _p_float(v, c, lo=0.0),
        "event_rate": lambda v, c: _p_float(v, c, lo=0.0, hi=100_000.0),
        "session_start_total": _ranged_int(1, 1_000_000),
        "privileged_intents": _p_privileged,
        "token": _p_opt_str,
        "faults": _p_faults,
    },
    "ui": {
        "theme": _p_str,
        "refresh_interval": _positive_float,
        "readonly": _p_bool,
        "fleet": _p_bool,
    },
    "metrics": {
        "listen": _p_listen,
    },
    "health": {
        "wedged_after": _opt_positive_float,
        "restart_wedged": _p_bool,
    },
    "proxy": _PROXY_SCHEMA,
}
SECTIONS: tuple[str, ...] = tuple(_SCHEMA)
KEYS: tuple[str, ...] = tuple(f"{s}.{k}" for s, keys in _SCHEMA.items() for k in keys)


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
    owners = [env_var_for(f"{s}.{rest}") for s in SECTIONS if rest in _SCHEMA[s]]
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
        best = _closest(rest, suffixes)
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


# --- loading -----------------------------------------------------------------------------------------


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

    if getattr(config.cluster, "shard_range", None) is not None and config.provenance[
        "gateway.shard_range"
    ] not in (DEFAULT_SOURCE, path):
        # [cluster] shard_range only comes from the file; a variable or flag for the shard range
        # (each fleet process started with its own --shard-range) outranks it like any file value.
        config.cluster = dataclasses.replace(config.cluster, shard_range=config.gateway.shard_range)
        config.provenance["cluster.shard_range"] = config.provenance["gateway.shard_range"]

    _check_environment(environ, config.bot.token_env)
    _validate(config, environ, check_token=check_token)
    return config


def _apply_file(config: Config, data: dict[str, Any], path: str) -> None:
    for section, table in data.items():
        if section == "cluster":
            config.cluster = _parse_cluster(table, path)
            config.provenance["cluster"] = path
            for key in table:
                config.provenance[f"cluster.{key}"] = path
            continue
        if section not in _SCHEMA:
            hint = did_you_mean(section, (*SECTIONS, "cluster"))
            if hint is None and not isinstance(table, dict):
                owner = next((s for s in SECTIONS if section in _SCHEMA[s]), None)
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
            if key not in _SCHEMA[section]:
                raise ConfigError(
                    path,
                    dotted,
                    f"a key of [{section}] (" + ", ".join(_SCHEMA[section]) + ")",
                    f'unknown key "{key}"',
                    hint=did_you_mean(key, tuple(_SCHEMA[section])),
                )
            _set(config, dotted, value, path, from_text=False)


def where_of(source: str) -> str:
    """A provenance as the first word of an error: a file path, "command line --flag" or "environment X"."""
    if source.startswith("--"):
        return f"command line {source}"
    if source.startswith("env "):
        return f"environment {source[4:]}"
    return source


def _parse_cluster(table: Any, path: str) -> Any:
    # The fleet (and with it the redis package) is only imported by configs that ask for a fleet.
    try:
        from shardtui.fleet.config import parse_cluster_config
    except ImportError as exc:
        raise ConfigError(
            path, "cluster", "the redis package for a [cluster] fleet (pip install 'shardtui[redis]')",
            f"it missing ({exc})",
        ) from None  # fmt: skip
    return parse_cluster_config(table, where=path)


def _set(config: Config, dotted: str, value: Any, source: str, *, from_text: bool) -> None:
    section, key = dotted.split(".", 1)
    parsed = _SCHEMA[section][key](value, _Ctx(where_of(source), dotted, from_text))
    setattr(getattr(config, section), key, parsed)
    config.provenance[dotted] = source


def _validate(config: Config, environ: Mapping[str, str], *, check_token: bool) -> None:
    """Checks that involve more than one key."""
    gw = config.gateway

    def where(*keys: str) -> str:
        # Name the first of ``keys`` that was set somewhere, so the error points at a line to edit.
        for key in keys:
            if config.provenance[key] != DEFAULT_SOURCE:
                return where_of(config.provenance[key])
        return config.source

    if gw.shard_range is not None:
        total = config.shard_total()
        if total is not None:
            first, last = gw.shard_range
            if last > total - 1:
                by = "gateway.shards" if gw.shards is not None else "sandbox.shards"
                raise ConfigError(
                    where("gateway.shard_range"),
                    "gateway.shard_range",
                    f"shard ids within 0..{total - 1} ({by} = {total})",
                    f"{first}-{last}",
                )
    cluster_range = getattr(config.cluster, "shard_range", None)
    if cluster_range is not None:
        total = config.shard_total()
        first, last = cluster_range
        if total is not None and last > total - 1:
            by = "gateway.shards" if gw.shards is not None else "sandbox.shards"
            raise ConfigError(
                where_of(config.provenance.get("cluster", config.source)),
                "cluster.shard_range",
                f"shard ids within 0..{total - 1} ({by} = {total})",
                f"{first}-{last}",
            )
    _check_identify_window(config, where)
    _validate_proxy(config, environ, where)
    if config.ui.fleet and config.cluster is None:
        raise ConfigError(
            where("ui.fleet"),
            "ui.fleet",
            "a [cluster] table with the fleet's redis_url (the fleet console reads it from Redis)",
            "no [cluster]",
        )
    if config.presence.activity_type is None:
        for key in ("activity_state", "activity_url"):
            if getattr(config.presence, key) is not None:
                raise ConfigError(
                    where(f"presence.{key}"),
                    f"presence.{key}",
                    "no value while presence.activity_type is none",
                    describe(getattr(config.presence, key)),
                )
    try:
        presence = build_presence(config.presence)
        if presence is not None:
            presence.validate()
    except ValueError as exc:
        message = str(exc)
        key = "activity_name"
        if "url" in message:
            key = "activity_url"
        elif "custom" in message or "state" in message:
            key = "activity_state"
        value = getattr(config.presence, key)
        raise ConfigError(
            where(f"presence.{key}", "presence.activity_type", "presence.activity_name"),
            f"presence.{key}",
            f"a valid presence for a {config.presence.activity_type} activity ({message})",
            "nothing" if value is None else describe(value),
        ) from None
    if check_token and gw.mode == "discord":
        name = config.bot.token_env
        if not environ.get(name, "").strip():
            raise ConfigError(
                where("gateway.mode", "bot.token_env"),
                "bot.token_env",
                f'the bot token in environment variable {name} (gateway.mode = "discord")',
                f"{name} {'empty' if name in environ else 'unset'}",
            )


def _check_identify_window(config: Config, where: Callable[..., str]) -> None:
    """The client's identify window against the server's, where the server's is known: a shorter one
    has identifies refused (op 9) and spends session starts from the daily budget on every retry."""
    from shardtui.gateway.protocol import IDENTIFY_WINDOW_SECONDS

    window = config.gateway.identify_window
    if window is None:
        return
    if config.embeds_sandbox():
        source = config.provenance["sandbox.identify_window"]
        if source == DEFAULT_SOURCE:
            # The embedded sandbox is this run's Discord: it keeps the pace its client is told to keep.
            config.sandbox.identify_window = window
            config.provenance["sandbox.identify_window"] = (
                f"{config.provenance['gateway.identify_window']} (gateway.identify_window)"
            )
        elif window < config.sandbox.identify_window:
            raise ConfigError(
                where("gateway.identify_window"),
                "gateway.identify_window",
                f"at least the embedded sandbox's window, sandbox.identify_window = "
                f"{config.sandbox.identify_window:g} s (from {where_of(source)})",
                f"{window:g} s",
                hint="sooner identifies are refused with op 9; set the two alike, or leave "
                "gateway.identify_window unset to use the sandbox's",
            )
    elif (
        config.gateway.mode == "discord"
        and config.gateway.rest_url is None
        and window < IDENTIFY_WINDOW_SECONDS
    ):
        raise ConfigError(
            where("gateway.identify_window"),
            "gateway.identify_window",
            f"at least Discord's {IDENTIFY_WINDOW_SECONDS:g} s (one IDENTIFY per bucket per window)",
            f"{window:g} s",
            hint="sooner identifies are refused with op 9 and spend session starts; leave it unset",
        )


def build_presence(cfg: PresenceConfig) -> Presence:
    from shardtui.gateway.models import Presence

    return Presence.build(
        cfg.status, cfg.activity_type, cfg.activity_name or "", cfg.activity_state, cfg.activity_url
    )


def resolve_token(config: Config, sandbox: Any = None, environ: Mapping[str, str] | None = None) -> str:
    """The bot token to connect with.

    Embedded sandbox: its token. Sandbox at ``gateway.rest_url``: ``[sandbox] token`` or the token
    variable. Discord: the variable named by ``bot.token_env``. Raises ``ConfigError`` if there is none.
    """
    environ = os.environ if environ is None else environ
    if config.gateway.mode == "sandbox":
        if sandbox is not None:
            return str(sandbox.token)
        if config.sandbox.token:
            return config.sandbox.token
    name = config.bot.token_env
    token = environ.get(name, "").strip()
    if token:
        return token
    where = where_of(config.provenance.get("gateway.rest_url", config.source))
    if config.gateway.mode == "sandbox":
        raise ConfigError(
            where,
            "sandbox.token",
            f"the token of the sandbox at {config.gateway.rest_url} in [sandbox] token or {name}",
            "neither set",
        )
    raise ConfigError(
        where_of(config.provenance.get("gateway.mode", config.source)),
        "bot.token_env",
        f'the bot token in environment variable {name} (gateway.mode = "discord")',
        f"{name} {'empty' if name in environ else 'unset'}",
    )


def find_default_config(cwd: str | None = None) -> str | None:
    """``shards.toml`` in ``cwd`` (default: the working directory) when it exists, else None."""
    if cwd is None:
        return "shards.toml" if os.path.isfile("shards.toml") else None
    candidate = os.path.join(cwd, "shards.toml")
    return candidate if os.path.isfile(candidate) else None


def format_config(config: Config, environ: Mapping[str, str] | None = None) -> str:
    """``--print-config``: one line per key, its value (TOML-ish) and where it came from."""
    environ = os.environ if environ is None else environ
    values = config.values()
    if config.cluster is not None:
        # [cluster] is a table like the others: one line per key (the Redis URL without its password).
        from shardtui.fleet.config import CLUSTER_KEYS, describe_redis_url

        for key in CLUSTER_KEYS:
            value = getattr(config.cluster, key)
            values[f"cluster.{key}"] = describe_redis_url(value) if key == "redis_url" else value
    width = max(len(k) for k in values)
    lines = [f"# config: {config.source}"]
    for key, value in values.items():
        if value is None and key in _NONE_WORDS:
            value = _NONE_WORDS[key]
        lines.append(
            f"{key:<{width}} = {_toml_value(value):<28} # {config.provenance.get(key, DEFAULT_SOURCE)}"
        )
    name = config.bot.token_env
    state = "set" if environ.get(name, "").strip() else "unset"
    lines.append(f"# bot token: environment variable {name} is {state} (its value is never shown)")
    return "\n".join(lines)


#: How --print-config shows an unset value where "none" would mislead.
_NONE_WORDS = {"gateway.shards": "auto", "gateway.shard_range": "all", "presence.activity_type": "none"}


def _toml_value(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        return f'"{value[0]}-{value[1]}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)
