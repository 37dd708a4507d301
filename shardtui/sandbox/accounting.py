"""What the sandbox sent and how clients behaved, kept so tests can prove nothing was lost.

Every dispatch the sandbox creates carries a unique event id in its data under :data:`EVENT_ID_KEY`
(one generated event delivered to two sessions keeps one id). A client-side test collects the ids its
handler saw and compares them with :meth:`ShardStats.event_ids`; what a dead session could no longer
replay is flagged so it is never confused with the client's own loss.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: Key added to every dispatch's ``d`` object: an int unique per generated event.
EVENT_ID_KEY = "_sandbox_event_id"


@dataclass(slots=True)
class SentEvent:
    event_id: int
    seq: int
    name: str
    session_id: str
    shard_id: int
    #: False once the session died (op 9 false, 4007, 4009, expiry...) before the client confirmed it.
    replayable: bool = True
    #: Why it cannot be replayed any more.
    lost_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "seq": self.seq,
            "name": self.name,
            "session_id": self.session_id,
            "shard_id": self.shard_id,
            "replayable": self.replayable,
            "lost_reason": self.lost_reason,
        }


@dataclass(slots=True)
class ShardStats:
    shard_id: int
    #: Every dispatch given a seq for a session of this shard, in order (replays are not repeated here).
    sent: list[SentEvent] = field(default_factory=list)
    replayed: int = 0
    heartbeats: int = 0
    identifies: int = 0
    resumes: int = 0
    resume_failures: int = 0
    identify_violations: int = 0
    command_violations: int = 0
    session_starts: int = 0
    connections: int = 0
    #: Close codes the sandbox sent, and close codes clients sent (1006 = vanished without a close frame).
    server_closes: Counter[int] = field(default_factory=Counter)
    client_closes: Counter[int] = field(default_factory=Counter)
    invalid_sessions: Counter[bool] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    #: The presence the bot last set for this shard (IDENTIFY's presence or op 3), as Discord holds it.
    presence: dict[str, Any] | None = None
    presence_updates: int = 0
    member_requests: int = 0
    rate_limited: int = 0

    def event_ids(self) -> list[int]:
        return [e.event_id for e in self.sent]

    def not_replayable(self) -> list[SentEvent]:
        return [e for e in self.sent if not e.replayable]

    def as_dict(self, with_events: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "shard_id": self.shard_id,
            "dispatches_sent": len(self.sent),
            "last_seq": self.sent[-1].seq if self.sent else None,
            "replayed": self.replayed,
            "heartbeats": self.heartbeats,
            "not_replayable": sum(1 for e in self.sent if not e.replayable),
            "identifies": self.identifies,
            "resumes": self.resumes,
            "resume_failures": self.resume_failures,
            "identify_violations": self.identify_violations,
            "command_violations": self.command_violations,
            "session_starts": self.session_starts,
            "connections": self.connections,
            "server_closes": {str(k): v for k, v in sorted(self.server_closes.items())},
            "client_closes": {str(k): v for k, v in sorted(self.client_closes.items())},
            "invalid_sessions": {
                "resumable": self.invalid_sessions[True],
                "not_resumable": self.invalid_sessions[False],
            },
            "faults": dict(sorted(self.faults.items())),
            "presence": self.presence,
            "presence_updates": self.presence_updates,
            "member_requests": self.member_requests,
            "rate_limited": self.rate_limited,
        }
        if with_events:
            data["events"] = [e.as_dict() for e in self.sent]
        return data


@dataclass(slots=True)
class Totals:
    """Counters that do not belong to one shard (e.g. a connection that never identified)."""

    connections: int = 0
    refused_connections: int = 0
    #: New connections by ``compress`` query value ("none" when absent).
    compressions: Counter[str] = field(default_factory=Counter)
    identify_violations: int = 0
    command_violations: int = 0
    unidentified_server_closes: Counter[int] = field(default_factory=Counter)
    unidentified_client_closes: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class DeliveryReport:
    """What a client's handler got, compared with what the sandbox sent on one shard."""

    sent: int
    received: int
    #: Sent, never received, and still replayable when the run ended: the client's loss.
    lost: list[int]
    #: Sent, never received, and not replayable by the server (dead session): Discord's loss.
    not_replayable: list[int]
    #: Received more than once.
    duplicated: list[int]
    #: Received but never sent on this shard.
    unknown: list[int]

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unknown)


def compare_delivery(sent: list[SentEvent], received: list[int]) -> DeliveryReport:
    """Compare the sandbox's record of one shard with the event ids a handler saw, in order.

    One generated event may go to several sessions of a shard (same id): it counts as received when
    any copy arrived, and as the server's loss only when every copy is no longer replayable."""
    counts: Counter[int] = Counter(received)
    replayable: dict[int, bool] = {}
    for event in sent:
        replayable[event.event_id] = replayable.get(event.event_id, False) or event.replayable
    missing = [eid for eid in replayable if eid not in counts]
    return DeliveryReport(
        sent=len(replayable),
        received=len(received),
        lost=[eid for eid in missing if replayable[eid]],
        not_replayable=[eid for eid in missing if not replayable[eid]],
        duplicated=sorted(eid for eid, n in counts.items() if n > 1),
        unknown=sorted(eid for eid in counts if eid not in replayable),
    )
