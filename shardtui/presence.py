"""A presence from plain values (``[presence]`` keys) to the library's ``Presence``.

Interim home: ``shardtui.gateway.models.Presence.build(status, activity_type, name, state, url)`` takes
the same arguments; once it is on main, callers use it and this module goes.
"""

from __future__ import annotations

from shardtui.gateway.models import Activity, Presence
from shardtui.gateway.protocol import ActivityType, Status


def build_presence(
    status: str,
    activity_type: str | None,
    name: str = "",
    state: str | None = None,
    url: str | None = None,
) -> Presence:
    """``activity_type`` by name ("playing") or None for no activity; ``Presence.validate()`` checks
    the rest."""
    activity = None
    if activity_type is not None:
        activity = Activity(name=name, type=ActivityType[activity_type.upper()], state=state, url=url)
    return Presence(status=Status(status), activity=activity)
