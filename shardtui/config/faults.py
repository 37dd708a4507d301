"""``[[sandbox.faults]]``: scheduled sandbox faults, read into the sandbox's own ``ScheduledFault``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shardtui.config.errors import ConfigError, describe, did_you_mean
from shardtui.config.parsers import (
    KeyContext,
    parse_choice,
    parse_float,
    parse_int,
    parse_names,
)
from shardtui.sandbox.settings import FAULT_KINDS, ScheduledFault

#: Every kind a schedule may name: the sandbox's, and "random" (a transient kind drawn each time).
SCHEDULE_KINDS: tuple[str, ...] = (*FAULT_KINDS, "random")

#: The parameters each fault kind reads (the README's fault table). The sandbox takes them with
#: ``params.get(name, default)``, so a misspelt one would be ignored without a word.
FAULT_PARAMS: dict[str, tuple[str, ...]] = {
    "invalid_session": ("resumable",),
    "close": ("code", "reason"),
    "oversized": ("size",),
    "delay_hello": ("seconds", "count"),
    "refuse": ("seconds",),
    "latency": ("seconds",),
    "outage": ("seconds",),
}


def parse_faults(value: Any, ctx: KeyContext) -> list[ScheduledFault]:
    if ctx.from_text:
        raise ctx.error(
            "faults in the config file ([[sandbox.faults]] tables)", "a command-line value", raw=True
        )
    if not isinstance(value, list):
        raise ctx.error("an array of tables ([[sandbox.faults]])", value)
    return [_parse_fault(item, ctx.where, f"{ctx.key}[{index}]") for index, item in enumerate(value)]


def _parse_fault(item: Any, where: str, base: str) -> ScheduledFault:
    if not isinstance(item, dict):
        raise ConfigError(where, base, "a table with kind and every", describe(item))
    params = dict(item)
    try:
        kind_raw = params.pop("kind")
    except KeyError:
        raise ConfigError(where, f"{base}.kind", "a fault kind", "nothing (missing)") from None
    kind = parse_choice(kind_raw, KeyContext(where, f"{base}.kind", False), SCHEDULE_KINDS)
    if "every" not in params:
        raise ConfigError(where, f"{base}.every", "seconds between faults", "nothing (missing)")
    every = parse_float(params.pop("every"), KeyContext(where, f"{base}.every", False), lo=0.0, lo_open=True)
    shard_raw = params.pop("shard", None)
    shard = (
        None if shard_raw is None else parse_int(shard_raw, KeyContext(where, f"{base}.shard", False), lo=0)
    )
    choices: tuple[str, ...] = ()
    if "choices" in params:
        choices_ctx = KeyContext(where, f"{base}.choices", False)
        if kind != "random":
            raise choices_ctx.error('no choices unless kind = "random"', params["choices"])
        names = parse_names(params.pop("choices"), choices_ctx)
        choices = tuple(parse_choice(name, choices_ctx, tuple(FAULT_KINDS)) for name in names)
    _check_fault_params(kind, params, where, base)
    return ScheduledFault(kind=kind, every=every, shard=shard, params=params, choices=choices)


def _check_fault_params(kind: str, params: Mapping[str, Any], where: str, base: str) -> None:
    if kind == "random":  # passed on to whichever kind it draws
        allowed = tuple(dict.fromkeys(name for names in FAULT_PARAMS.values() for name in names))
    else:
        allowed = FAULT_PARAMS.get(kind, ())
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


def fault_as_table(rule: ScheduledFault) -> dict[str, Any]:
    """A scheduled fault as the ``[[sandbox.faults]]`` table that would read back into it."""
    table: dict[str, Any] = {"kind": rule.kind, "every": rule.every}
    if rule.shard is not None:
        table["shard"] = rule.shard
    if rule.choices:
        table["choices"] = list(rule.choices)
    table.update(rule.params)
    return table
