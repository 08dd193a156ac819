"""When to poll: which accounts a polling round syncs, and when the next round runs.

Huey's periodic tasks tick once a minute. For shorter intervals the jobs keep a polling
loop (``jobs.tasks.keep_polling``, with an id of its own): every round plans the next one
interval after its own planned time, as an ETA on a fixed grid (Huey's scheduler enqueues
a scheduled task up to a second late: a delay counted from the late start made a 2 s
interval poll every 3 s), and records itself as the loop's last round (a ``LoopMark``, in
Huey's storage), where the tick sees that the loop is alive and starts a new one only when
it is not. A round of a loop that is no longer the recorded one ends it. (A loop restarted
every minute broke the grid at the minute: its first round ran right after the old loop's
last and found nothing due, so a change could wait two intervals.) Without a loop, a run
may ask for a number of rounds to follow it.

These functions decide; the jobs queue the syncs, record the mark and schedule the next
round as told. ``due_at_tick`` is the same for the minute's tick: what it queues, each
a safety net for a lost job or work that falls due with time passing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select

from assistant.services import account_health
from assistant.services.delegation import tasks_to_write
from assistant.services.digest import pairs_due
from assistant.services.feedback import due_prompts
from assistant.services.notifications import pairs_with_pending
from assistant.services.push import accounts_due as push_accounts_due
from assistant.services.push import push_base
from assistant.store.db import UnitOfWork
from assistant.store.tables import Account

if TYPE_CHECKING:
    from assistant.services.deps import Deps

# Exports of a mailbox are imported by hand, never polled.
_NOT_POLLED = ("maildir", "mbox")
# Without the round's planned time, a round skips an account synced this recently.
_RECENT = 2.0


@dataclass(frozen=True, slots=True)
class LoopMark:
    """The polling loop's last round: the loop's id and the round's planned time."""

    loop: str
    planned: datetime

    @classmethod
    def start(cls, now: datetime) -> LoopMark:
        """A new loop whose first round is planned ``now``."""
        return cls(uuid.uuid4().hex, now)

    def stored(self) -> dict[str, object]:
        """As kept in the queue's storage: ``{"loop": id, "planned": datetime}``."""
        return {"loop": self.loop, "planned": self.planned}

    @classmethod
    def from_stored(cls, value: object) -> LoopMark | None:
        """What ``stored`` kept, or None (nothing kept, or not a mark)."""
        if not isinstance(value, dict):
            return None
        loop, planned = value.get("loop"), value.get("planned")
        if not isinstance(loop, str) or not isinstance(planned, datetime):
            return None
        return cls(loop, planned)


@dataclass(frozen=True, slots=True)
class PollRound:
    """What one polling round does. A round of a replaced loop does nothing at all."""

    due: tuple[int, ...]  # accounts to sync now
    mark: LoopMark | None  # to record as the loop's last round (rounds of a loop only)
    next_at: datetime | None  # when the next round runs; None: no next round
    rounds_left: int  # rounds to follow the next one, for a run without a loop


def poll_round(
    deps: Deps,
    *,
    planned_at: datetime | None,
    rounds_left: int,
    loop: str,
    recorded: LoopMark | None,
) -> PollRound:
    """The round planned at ``planned_at`` (None for a first one), running ``now``.

    ``loop`` is the id of the loop it belongs to ("" for none) and ``recorded`` the loop
    mark in the queue's storage: a round of a loop that is not the recorded one is
    superseded (the tick started another loop) and does nothing.
    """
    now, interval = deps.now(), deps.settings.sync.poll_interval_seconds
    if loop and (recorded is None or recorded.loop != loop):
        return PollRound(due=(), mark=None, next_at=None, rounds_left=0)
    if planned_at is None or not timedelta(0) <= now - planned_at < timedelta(seconds=interval):
        planned_at = now  # the first round, or one so late that catching up makes no sense
    due = accounts_due(deps.uow, now, interval, since=planned_at)
    mark = LoopMark(loop, planned_at) if loop else None
    next_at = planned_at + timedelta(seconds=interval) if loop or rounds_left > 0 else None
    return PollRound(due=due, mark=mark, next_at=next_at, rounds_left=max(rounds_left - 1, 0))


def accounts_due(
    uow: UnitOfWork, now: datetime, interval: float, *, since: datetime | None = None
) -> tuple[int, ...]:
    """Calendar and mail accounts to sync in a round planned at ``since``: every one not
    synced since then (without ``since``: not within the last half interval, 2 s at most).

    One synced since the round's planned time (a re-poll or a push while the round ran
    late, a sync of the last round that ran more than an interval late) is read again by
    the next round at most an interval later, and is skipped. One synced just before it
    is not: skipping a calendar re-polled a second before the round made a change made
    just after that re-poll wait the interval and that second, past the budget of a
    quiet period (poll interval + window + 2 s).
    """
    if since is None:
        since = now - timedelta(seconds=min(interval * 0.5, _RECENT))
    with uow.read() as session:
        rows = session.execute(
            select(Account.id, Account.last_sync_at).where(
                Account.kind.in_(("calendar", "mail")),
                Account.provider.not_in(_NOT_POLLED),
                account_health.pollable(now),  # not parked, past its back-off
            )
        )
        return tuple(aid for aid, last in rows if last is None or last < since)


def loop_alive(recorded: LoopMark | None, now: datetime, interval: float) -> bool:
    """Whether the recorded loop still runs: its last round was planned within two
    intervals and a few seconds (the scheduler's one-second resolution, a busy queue).

    A loop lost with a worker that was killed mid-round is restarted by the next tick;
    the tick runs when a consumer starts, so a restarted worker polls again at once. A
    loop wrongly thought dead costs nothing: its rounds are superseded by the new one
    (``poll_round``).
    """
    return recorded is not None and now - recorded.planned < timedelta(seconds=2 * interval + 5)


def next_poll_at(now: datetime, interval: float, recorded: LoopMark | None) -> datetime | None:
    """When the next polling round starts at the earliest, or None when unknown.

    Below a minute, the live loop's next round is one interval after its last planned
    one; from a minute up, the tick polls at the next minute (the scheduler's tick).
    """
    if interval >= 60:
        return now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if recorded is None:
        return None
    return max(now, recorded.planned + timedelta(seconds=interval))


@dataclass(frozen=True, slots=True)
class TickWork:
    """What the minute's tick queues (``jobs.tasks.tick``), in this order."""

    poll_loop: bool  # keep the polling loop alive (below a minute); else one round now
    prompts: tuple[int, ...]  # checkpoints whose line passed: the prompt (sent once)
    writes: tuple[int, ...]  # tasks whose calendar does not match them yet
    dispatches: tuple[int, ...]  # pairs with changes waiting: a lost dispatch
    nudges: tuple[int, ...]  # pairs with a mailbox: reminders fall due with time
    digests: tuple[int, ...]  # pairs whose digest is overdue: a lost chain
    push_ensure: tuple[int, ...]  # webhook subscriptions to create or renew
    push_drop: tuple[int, ...]  # webhook subscriptions to delete
    inbox: bool  # the service's own mailbox is read


def due_at_tick(deps: Deps) -> TickWork:
    """What is due at the tick, ``deps.now()``.

    Push upkeep runs when ``web.public_url`` is https (ensure) or unset (drop); a loopback
    http URL, for local protocol servers, is neither.
    """
    now, settings = deps.now(), deps.settings
    with deps.uow.read() as session:
        mail_pairs = sorted(
            set(session.scalars(select(Account.pair_id).where(Account.kind == "mail")))
        )
    base = push_base(settings)
    ensure: list[int] = []
    drop: list[int] = []
    if base is None or base.startswith("https://"):
        ensure, drop = push_accounts_due(deps, now)
    return TickWork(
        poll_loop=settings.sync.poll_interval_seconds < 60,
        prompts=tuple(due_prompts(deps)),
        writes=tuple(tasks_to_write(deps)),
        dispatches=tuple(pairs_with_pending(deps.uow)),
        nudges=tuple(mail_pairs),
        digests=tuple(pairs_due(deps)),
        push_ensure=tuple(ensure),
        push_drop=tuple(drop),
        inbox=bool(settings.inbox.provider),
    )
