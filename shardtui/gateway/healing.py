"""The wedged-shard healer (``[health] restart_wedged``): restart a wedged shard by itself.

A restart resumes first (``ShardManager.restart`` without ``force_identify``), so healing a wedged
shard normally costs no session start. Restarts of the same shard back off (doubling from
``base_backoff`` up to ``max_backoff``) so a shard that wedges again at once is not hammered, and
no restart is made while the daily identify budget is spent (a failed resume would identify). Each
restart is logged and counted in ``ShardRunnerInfo.wedged_restarts``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from shardtui.gateway.models import ShardHealth, ShardId, ShardRunnerInfo

#: (shard, logging level, message): the manager's shard log.
LogFn = Callable[[ShardId, int, str], None]


@dataclass(slots=True)
class _Backoff:
    attempts: int = 0
    last_at: float = 0.0
    next_at: float = 0.0


@dataclass(slots=True)
class WedgedHealer:
    base_backoff: float = 30.0
    max_backoff: float = 600.0
    _backoff: dict[ShardId, _Backoff] = field(default_factory=dict)
    #: Shards whose restart waits for the identify budget (said once until it changes).
    _held: set[ShardId] = field(default_factory=set)

    def check(
        self,
        infos: Iterable[ShardRunnerInfo],
        now: float,
        *,
        restart: Callable[[ShardId], None],
        budget: int | None,
        log: LogFn,
    ) -> list[ShardId]:
        """Restart (``restart(shard_id)``, resuming first) the wedged shards whose backoff allows it;
        ``budget`` is the session starts left today (None: unknown). Returns the shards restarted."""
        restarted: list[ShardId] = []
        for info in infos:
            sid = info.shard_id
            if info.health is not ShardHealth.WEDGED or not info.running:
                continue
            state = self._backoff.setdefault(sid, _Backoff())
            if state.attempts and now - state.last_at > 2 * self.max_backoff:
                state.attempts = 0  # healthy for long enough: start the backoff over
            if now < state.next_at:
                continue
            if budget is not None and budget < 1:
                if sid not in self._held:
                    self._held.add(sid)
                    log(
                        sid,
                        logging.WARNING,
                        "wedged, but not restarting it: the identify budget is spent "
                        "(a resume that fails would identify)",
                    )
                continue
            self._held.discard(sid)
            state.attempts += 1
            state.last_at = now
            state.next_at = now + min(self.max_backoff, self.base_backoff * 2 ** (state.attempts - 1))
            info.wedged_restarts += 1
            log(
                sid,
                logging.WARNING,
                f"wedged: restarting it (resume first), restart {info.wedged_restarts}",
            )
            restart(sid)
            restarted.append(sid)
        return restarted

    def forget(self, shard_id: ShardId) -> None:
        self._backoff.pop(shard_id, None)
        self._held.discard(shard_id)
