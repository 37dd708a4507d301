"""Value types of the gateway library: shard ids, stages, health, presence, runner info, events."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlparse

import orjson

from shardtui.gateway.protocol import STREAMING_URL_HOSTS, ActivityType, Status


@dataclass(frozen=True, order=True, slots=True)
class ShardId:
    """A shard's index within the bot's shard total. Hashable, ordered, prints as its number."""

    id: int

    def __post_init__(self) -> None:
        if isinstance(self.id, bool) or not isinstance(self.id, int) or self.id < 0:
            raise ValueError(f"shard id must be a non-negative integer, got {self.id!r}")

    def __str__(self) -> str:
        return str(self.id)

    def __int__(self) -> int:
        return self.id

    def __index__(self) -> int:
        return self.id


class ConnectionStage(enum.Enum):
    """Where a shard's connection is."""

    CONNECTED = "connected"
    CONNECTING = "connecting"
    DISCONNECTED = "disconnected"
    HANDSHAKE = "handshake"
    IDENTIFYING = "identifying"
    RESUMING = "resuming"

    def __str__(self) -> str:
        return self.value


class ShardHealth(enum.Enum):
    """Operator-facing verdict on a shard, beyond its connection stage.

    ok: connected and receiving; quiet: connected, few dispatches but not alarming;
    wedged: heartbeats ACKed but no dispatch for far longer than its peers; failed: stopped on a
    fatal error; down: not connected (disconnected, queued or on its way back), so never "ok".
    """

    OK = "ok"
    QUIET = "quiet"
    WEDGED = "wedged"
    FAILED = "failed"
    DOWN = "down"

    def __str__(self) -> str:
        return self.value


def activity_type_of(value: ActivityType | str | int) -> ActivityType:
    """An activity type by enum, number (Discord's) or name ("playing", "CUSTOM")."""
    if isinstance(value, ActivityType):
        return value
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        try:
            return ActivityType[value.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown activity type {value!r}") from None
    try:
        return ActivityType(int(value))
    except ValueError:
        raise ValueError(f"unknown activity type {value!r}") from None


@dataclass(frozen=True, slots=True)
class Activity:
    """One activity as a bot may set it: Discord lets bots set only name, type, state and url."""

    name: str
    type: ActivityType = ActivityType.PLAYING
    state: str | None = None
    url: str | None = None

    def validate(self) -> None:
        """Raise ``ValueError`` with an operator-readable message if Discord would reject this."""
        if self.type is ActivityType.CUSTOM:
            if not (self.state or "").strip():
                raise ValueError("a custom status needs a state (the text shown)")
        elif not self.name.strip():
            raise ValueError(f"a {self.type.name.lower()} activity needs a name")
        if len(self.name) > 128:
            raise ValueError("activity name is longer than 128 characters")
        if self.state is not None and len(self.state) > 128:
            raise ValueError("activity state is longer than 128 characters")
        if self.type is ActivityType.STREAMING:
            if not self.url:
                raise ValueError("a streaming activity needs a twitch.tv or youtube.com url")
            parsed = urlparse(self.url)
            if parsed.scheme not in ("http", "https") or parsed.hostname not in STREAMING_URL_HOSTS:
                raise ValueError(f"streaming url must be on twitch.tv or youtube.com, got {self.url!r}")
        elif self.url:
            raise ValueError("only a streaming activity may carry a url")

    def to_payload(self) -> dict[str, Any]:
        name = self.name or ("Custom Status" if self.type is ActivityType.CUSTOM else "")
        payload: dict[str, Any] = {"name": name, "type": int(self.type)}
        if self.state is not None:
            payload["state"] = self.state
        if self.url is not None and self.type is ActivityType.STREAMING:
            payload["url"] = self.url
        return payload

    def describe(self) -> str:
        if self.type is ActivityType.CUSTOM:
            return self.state or ""
        verb = {
            ActivityType.PLAYING: "Playing",
            ActivityType.STREAMING: "Streaming",
            ActivityType.LISTENING: "Listening to",
            ActivityType.WATCHING: "Watching",
            ActivityType.COMPETING: "Competing in",
        }[self.type]
        return f"{verb} {self.name}"


@dataclass(frozen=True, slots=True)
class Presence:
    """The bot's presence as sent in IDENTIFY and op 3."""

    status: Status = Status.ONLINE
    activity: Activity | None = None
    afk: bool = False
    #: Unix ms since the bot went idle, or None.
    since: int | None = None

    def validate(self) -> None:
        if not isinstance(self.status, Status):
            raise ValueError(f"unknown status {self.status!r}")
        if self.activity is not None:
            self.activity.validate()

    def to_payload(self) -> dict[str, Any]:
        since = self.since
        if since is None and self.status is Status.IDLE:
            since = int(time.time() * 1000)
        return {
            "since": since,
            "activities": [self.activity.to_payload()] if self.activity is not None else [],
            # Discord ignores "offline" from bots; "invisible" is what shows them offline.
            "status": "invisible" if self.status is Status.OFFLINE else self.status.value,
            "afk": self.afk,
        }

    @classmethod
    def build(
        cls,
        status: Status | str = Status.ONLINE,
        activity_type: ActivityType | str | int | None = None,
        name: str = "",
        state: str | None = None,
        url: str | None = None,
        *,
        afk: bool = False,
        since: int | None = None,
    ) -> Presence:
        """A presence from plain values (config keys, a form, a command's parameters); the activity
        type by name ("playing"), number or enum, None for no activity. ``ValueError`` names an unknown
        status or type; ``validate()`` checks the rest."""
        try:
            status_value = Status(status)
        except ValueError:
            raise ValueError(f"unknown status {status!r}") from None
        activity = None
        if activity_type is not None:
            activity = Activity(name=name, type=activity_type_of(activity_type), state=state, url=url)
        return cls(status=status_value, activity=activity, afk=afk, since=since)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for messages between processes; :meth:`from_dict` reverses it."""
        activity = None
        if self.activity is not None:
            a = self.activity
            activity = {"name": a.name, "type": int(a.type), "state": a.state, "url": a.url}
        return {"status": self.status.value, "afk": self.afk, "since": self.since, "activity": activity}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Presence:
        """Rebuild and validate a presence from :meth:`to_dict`; ``ValueError`` names the problem."""
        try:
            raw = data.get("activity")
            presence = cls.build(
                data.get("status", "online"),
                None if raw is None else int(raw.get("type", 0)),
                str(raw.get("name", "")) if raw is not None else "",
                raw.get("state") if raw is not None else None,
                raw.get("url") if raw is not None else None,
                afk=bool(data.get("afk", False)),
                since=data.get("since"),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"malformed presence: {exc}") from None
        presence.validate()
        return presence

    def describe(self) -> str:
        text = self.status.value
        if self.activity is not None:
            text += f" · {self.activity.describe()}"
        return text


#: ``Dispatch._data`` until the ``d`` bytes a dispatch arrived with are decoded.
UNDECODED: Final = object()


class Dispatch:
    """One gateway dispatch (op 0) as handed to the user's event handler; read-only by contract.

    A dispatch taken off the wire keeps its ``d`` as the JSON bytes it arrived in and decodes them the first
    time :attr:`data` is read, once: a handler (or the proxy) that only looks at ``name`` and ``seq`` never
    pays for the decode. :attr:`raw_data` is those bytes as received, for forwarding unchanged.
    """

    __slots__ = ("_at", "_data", "_raw", "name", "seq", "shard_id")
    __match_args__ = ("shard_id", "name", "seq", "data")

    shard_id: ShardId
    name: str
    seq: int | None
    _data: Any
    #: The bytes ``d`` came in: the whole frame with ``d`` from ``_at`` to its closing brace, or (``_at`` 0)
    #: ``d`` alone. Kept whole rather than sliced: the slice would be a copy per event.
    _raw: bytes | None
    _at: int

    def __init__(self, shard_id: ShardId, name: str, seq: int | None, data: Any) -> None:
        self.shard_id = shard_id
        self.name = name
        self.seq = seq
        self._data = data
        self._raw = None
        self._at = 0

    @classmethod
    def from_wire(cls, shard_id: ShardId, name: str, seq: int | None, raw: bytes, at: int = 0) -> Dispatch:
        """A dispatch whose ``d`` is still JSON bytes: ``raw`` itself, or with ``at`` > 0 ``raw[at:-1]`` (a
        whole frame ``{…,"d":…}`` with ``d`` last, starting at ``at``)."""
        dispatch = _new_object(cls)
        dispatch.shard_id = shard_id
        dispatch.name = name
        dispatch.seq = seq
        dispatch._data = UNDECODED
        dispatch._raw = raw
        dispatch._at = at
        return dispatch

    @property
    def data(self) -> Any:
        """``d`` decoded. Raises :class:`MalformedDispatchError` when the bytes it arrived in are not JSON."""
        data = self._data
        if data is UNDECODED:
            raw, at = self._raw, self._at
            try:
                data = self._data = orjson.loads(memoryview(raw)[at:-1] if at else raw)  # type: ignore[arg-type]
            except orjson.JSONDecodeError as exc:
                raise MalformedDispatchError(
                    f"the gateway sent {self.name} (seq {self.seq}) with a d that is not valid JSON: {exc}"
                ) from None
        return data

    @property
    def raw_data(self) -> bytes | None:
        """``d`` as the JSON bytes it arrived in; None for a dispatch built in this process."""
        raw, at = self._raw, self._at
        return raw[at:-1] if at and raw is not None else raw

    def __eq__(self, other: object) -> bool:
        if type(other) is not Dispatch:
            return NotImplemented
        return (self.shard_id, self.name, self.seq, self.data) == (
            other.shard_id,
            other.name,
            other.seq,
            other.data,
        )

    __hash__ = None  # type: ignore[assignment]  # equal dispatches may hold unhashable data

    def __repr__(self) -> str:
        raw = self.raw_data
        data = (
            f"<{len(raw)} bytes undecoded>"
            if self._data is UNDECODED and raw is not None
            else repr(self._data)
        )
        return f"Dispatch(shard_id={self.shard_id!r}, name={self.name!r}, seq={self.seq!r}, data={data})"


class MalformedDispatchError(ValueError):
    """A dispatch's ``d`` was read and the bytes it arrived in are not JSON."""


_new_object = object.__new__


@dataclass(frozen=True, slots=True)
class ShardStageUpdateEvent:
    """A shard moved from one connection stage to another."""

    shard_id: ShardId
    old: ConnectionStage
    new: ConnectionStage


@dataclass(frozen=True, slots=True)
class ShardInfoUpdateEvent:
    """Something in a shard's ``ShardRunnerInfo`` changed (latency, counters, health, presence)."""

    shard_id: ShardId


@dataclass(frozen=True, slots=True)
class ShardLogEvent:
    """A line for the shard's own log: stage changes, closes, errors. ``level`` is a logging level."""

    shard_id: ShardId | None
    level: int
    message: str
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class FatalErrorEvent:
    """A fatal error that stopped one or all shards (bad token, disallowed intents, …).

    ``kind`` is a stable word: "authentication", "invalid_intents", "disallowed_intents",
    "invalid_shard", "sharding_required", "invalid_api_version", "session_start_limit", "gateway".
    ``message`` says what happened and what to do, with no secret in it.
    """

    kind: str
    message: str
    shard_ids: tuple[ShardId, ...] = ()
    close_code: int | None = None


class AlertKind(enum.Enum):
    """What an incident is about. The values are the ``kind`` words of headless JSON lines."""

    WEDGED = "wedged"
    ZOMBIE = "zombie"
    FATAL = "fatal"
    #: Every shard of this process is down at once.
    OUTAGE = "outage"
    #: A fleet process stopped publishing (its shards are unaccounted for).
    LOST_PROCESS = "lost_process"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """An incident began: emitted once per incident, not once per check (see ``gateway/alerts.py``).
    ``shard_id`` is None for process-wide incidents (outage, lost fleet process)."""

    kind: AlertKind
    shard_id: ShardId | None
    message: str
    at: float = field(default_factory=time.time)
    #: The fleet process a ``lost_process`` incident is about; None otherwise.
    process: str | None = None


@dataclass(frozen=True, slots=True)
class AlertClearedEvent:
    """The incident an earlier ``AlertEvent`` of the same kind and shard reported is over."""

    kind: AlertKind
    shard_id: ShardId | None
    message: str
    #: Seconds the incident lasted.
    duration: float
    at: float = field(default_factory=time.time)
    process: str | None = None


@dataclass(frozen=True, slots=True)
class ReshardSwitchEvent:
    """A live reshard is switching delivery to the new set: every dispatch from here on comes from
    shards ``0..new_total-1`` of ``new_total`` (``ShardManager.shard_total`` follows once the old set is
    closed). Emitted once, before the first dispatch of the new set reaches the event handler."""

    old_total: int
    new_total: int
    at: float = field(default_factory=time.time)


ManagerEvent = (
    ShardStageUpdateEvent
    | ShardInfoUpdateEvent
    | ShardLogEvent
    | FatalErrorEvent
    | AlertEvent
    | AlertClearedEvent
    | ReshardSwitchEvent
)


@dataclass(slots=True, eq=False)
class ShardRunnerInfo:
    """Live facts about one shard's runner, kept true by the runner and the manager monitor.

    Times are ``time.time()`` seconds (wall clock) so they can be shown and shared across processes.
    """

    shard_id: ShardId
    total: int
    stage: ConnectionStage = ConnectionStage.DISCONNECTED
    #: Last heartbeat round trip in seconds; None before the first ACK.
    latency: float | None = None
    health: ShardHealth = ShardHealth.OK
    health_reason: str = ""
    session_id: str | None = None
    last_seq: int | None = None
    resume_gateway_url: str | None = None
    events_received: int = 0
    events_per_second: float = 0.0
    guilds: int = 0
    resumes: int = 0
    reconnects: int = 0
    identifies: int = 0
    last_close_code: int | None = None
    last_close_reason: str = ""
    connected_since: float | None = None
    last_dispatch_at: float | None = None
    last_ack_at: float | None = None
    presence: Presence | None = None
    #: Set when the shard stopped on a fatal error; the text says why and what to do.
    fatal_error: str | None = None
    #: True while the runner exists (queued, connecting or connected); False once stopped.
    running: bool = False
    #: How the most recent session began: "identify", "resume" or None before the first.
    last_start: str | None = None
    #: Restarts the wedged-shard healer asked for (``[health] restart_wedged``).
    wedged_restarts: int = 0

    @property
    def latency_ms(self) -> float | None:
        return None if self.latency is None else self.latency * 1000.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready snapshot (no messenger, no secret)."""
        return {
            "id": self.shard_id.id,
            "total": self.total,
            "stage": self.stage.value,
            "latency_ms": None if self.latency is None else round(self.latency * 1000.0, 3),
            "health": self.health.value,
            "health_reason": self.health_reason,
            "session_id": self.session_id,
            "last_seq": self.last_seq,
            "events_received": self.events_received,
            "events_per_second": round(self.events_per_second, 3),
            "guilds": self.guilds,
            "resumes": self.resumes,
            "reconnects": self.reconnects,
            "identifies": self.identifies,
            "last_close_code": self.last_close_code,
            "last_close_reason": self.last_close_reason,
            "connected_since": self.connected_since,
            "last_dispatch_at": self.last_dispatch_at,
            "last_ack_at": self.last_ack_at,
            "presence": None if self.presence is None else self.presence.describe(),
            "fatal_error": self.fatal_error,
            "running": self.running,
            "last_start": self.last_start,
            "wedged_restarts": self.wedged_restarts,
        }
