"""Gateway command payloads the runner sends on a user's behalf, built beside the sans-I/O ``Shard``
(which builds its own: IDENTIFY, RESUME, heartbeats). Pure functions of their input, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shardtui.gateway.models import Presence
from shardtui.gateway.protocol import Opcode


def presence_update(presence: Presence) -> dict[str, Any]:
    """Op 3: set the bot's status and activity on this shard."""
    return {"op": int(Opcode.PRESENCE_UPDATE), "d": presence.to_payload()}


def request_guild_members(
    guild_id: int,
    *,
    query: str | None,
    limit: int | None,
    user_ids: Iterable[int] | None,
    presences: bool,
    nonce: str | None,
) -> dict[str, Any]:
    """Op 8: members of one guild, by ``user_ids`` or by name prefix ``query`` ("" with limit 0 = all)."""
    d: dict[str, Any] = {"guild_id": str(guild_id), "presences": presences}
    if user_ids is not None:
        d["user_ids"] = [str(u) for u in user_ids]
        if limit is not None:
            d["limit"] = limit
    else:
        d["query"] = query or ""
        d["limit"] = limit if limit is not None else 0
    if nonce is not None:
        d["nonce"] = nonce
    return {"op": int(Opcode.REQUEST_GUILD_MEMBERS), "d": d}
