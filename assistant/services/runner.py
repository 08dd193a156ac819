"""Running the sync of a pair's accounts now, in this process (``assistant sync``).

The steps are the pipeline's (``assistant.services.pipeline.by_hand``); this module picks
the accounts and says in one line each what was done.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from assistant.services import outbox, pipeline
from assistant.services.pairs import find_pair
from assistant.store.tables import Account, Pair

if TYPE_CHECKING:
    from assistant.services.deps import Deps


@dataclass(frozen=True, slots=True)
class SyncLine:
    """One line of ``assistant sync``: an account synced, a pair nudged or notified, or
    the outbox drained (``account`` names which, ``kind`` what was done)."""

    account: str
    kind: str
    summary: str
    synced: pipeline.AccountSynced | None = None
    not_sent: tuple[outbox.NotSent, ...] = ()  # the outbox line: what could not go out

    @property
    def error(self) -> str:
        return self.synced.error if self.synced is not None else ""

    def to_json(self) -> dict[str, object]:
        """As ``assistant sync --json`` prints it."""
        out: dict[str, object] = {"account": self.account, "kind": self.kind}
        s = self.synced
        if s is not None and s.error:
            out["error"] = s.error
        elif s is not None and s.calendar is not None:
            report = s.calendar
            out |= {
                "baseline": s.baseline,
                "full": report.full,
                "unchanged": report.unchanged,
                "events": report.events,
                "changes": [c.kind.value for c in report.changes],
                "skipped": list(report.skipped),
            }
        elif s is not None and s.mail is not None:
            out |= {"new": s.mail.new, "seen": s.mail.seen, "skipped": list(s.mail.skipped)}
        if self.kind == "send":
            out["not_sent"] = [n.to_dict() for n in self.not_sent]
        out["summary"] = self.summary
        return out


@dataclass(frozen=True, slots=True)
class Undelivered:
    """Notifications that could not go out for one reason: how many, the reason, and when
    they are tried again (None: given up), with the zone of their pair to show it in."""

    count: int
    error: str
    retry_at: datetime | None
    zone: str


@dataclass(frozen=True, slots=True)
class SyncNow:
    """What ``assistant sync`` did, line by line, the outbox entries it queued, and what
    its delivery could not send."""

    lines: tuple[SyncLine, ...]
    outbox_ids: tuple[int, ...]
    undelivered: tuple[Undelivered, ...] = ()
    nothing_delivered: bool = False  # the drain tried, and nothing went out

    @property
    def failed(self) -> bool:
        """An account could not be synced, or no notification could be delivered."""
        return self.nothing_delivered or any(line.error for line in self.lines)

    @property
    def baseline(self) -> tuple[int, int]:
        """The calendars read for the first time in this run, and their events."""
        firsts = [line.synced.calendar for line in self.lines
                  if line.synced is not None and line.synced.baseline
                  and line.synced.calendar is not None]  # fmt: skip
        return len(firsts), sum(c.events for c in firsts)

    def to_json(self) -> list[dict[str, object]]:
        return [line.to_json() for line in self.lines]


def accounts_to_sync(
    deps: Deps, pair: str | int | None = None, account_id: int | None = None
) -> tuple[int, ...]:
    """The ids of the pair's accounts (or the one account) ``assistant sync`` syncs."""
    with deps.uow.read() as session:
        stmt = select(Account.id).order_by(Account.id)
        if account_id is not None:
            stmt = stmt.where(Account.id == account_id)
        else:
            stmt = stmt.where(Account.pair_id == find_pair(session, pair).id)
        account_ids = tuple(session.scalars(stmt))
    if not account_ids:
        raise LookupError("no accounts to sync: add one with `assistant account add`")
    return account_ids


def sync_now(
    deps: Deps,
    pair: str | int | None = None,
    account_id: int | None = None,
    send: bool = True,
    on_synced: Callable[[pipeline.AccountSynced], None] | None = None,
) -> SyncNow:
    """Sync the pair's accounts (or one account) now; see ``pipeline.by_hand``."""
    account_ids = accounts_to_sync(deps, pair, account_id)
    run = pipeline.by_hand(deps, account_ids, send=send, on_synced=on_synced)
    lines = [_synced(s) for s in run.synced]
    for n in run.nudged:
        if n.queued:
            lines.append(SyncLine(f"pair {n.pair_id}", "nudge",
                                  f"{len(n.queued)} reminder(s) queued"))  # fmt: skip
    for d in run.dispatched:
        if d.sent or d.undone:
            summary = f"{d.sent} change(s) in {len(d.outbox_ids)} message(s)"
            lines.append(SyncLine(f"pair {d.pair_id}", "notify", summary))
    if run.drained is None:
        return SyncNow(tuple(lines), run.outbox_ids)
    drained = run.drained
    lines.append(SyncLine("outbox", "send", _sent(drained), not_sent=tuple(drained.not_sent)))
    return SyncNow(tuple(lines), run.outbox_ids, _undelivered(deps, drained.not_sent),
                   drained.nothing_delivered)  # fmt: skip


def _synced(s: pipeline.AccountSynced) -> SyncLine:
    account = f"{s.account_id} {s.name}"
    if s.missing:
        summary = "no such account"
    elif s.disabled:
        summary = f"not tried: disabled (`assistant account enable {s.account_id}`)"
    elif s.parked:
        summary = f"not tried: {s.error} (parked until its credentials change)"
    elif s.error:
        summary = f"error: {s.error}"
        if s.failed is not None and s.failed.parked:
            summary += " (parked until its credentials change)"
    elif s.mail is not None:
        summary = f"{s.mail.new} new message(s)"
    else:
        assert s.calendar is not None
        changes = s.calendar.changes
        if s.baseline:
            summary = f"baseline: {_count(s.calendar.events, 'event')}"
        else:
            summary = f"{len(changes)} change(s)" if changes else "no change"
        if s.calendar.skipped:
            summary += f", {len(s.calendar.skipped)} unreadable item(s)"
    return SyncLine(account, s.kind, summary, s)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _sent(report: outbox.DrainReport) -> str:
    parts = [f"{report.sent} sent"] if report.sent else []
    if report.not_sent:
        parts.append(f"{len(report.not_sent)} not sent")
    return ", ".join(parts) or "nothing due"


def _undelivered(deps: Deps, not_sent: Sequence[outbox.NotSent]) -> tuple[Undelivered, ...]:
    """What could not be sent, one entry per reason (the earliest retry of them)."""
    if not not_sent:
        return ()
    pair_ids = {n.pair_id for n in not_sent if n.pair_id is not None}
    with deps.uow.read() as session:
        rows = session.execute(select(Pair.id, Pair.timezone).where(Pair.id.in_(pair_ids)))
        zones = {pid: zone for pid, zone in rows}
    by_error: dict[str, list[outbox.NotSent]] = {}
    for n in not_sent:
        by_error.setdefault(n.error, []).append(n)
    out = []
    for error, group in by_error.items():
        retries = [n.retry_at for n in group if n.retry_at is not None]
        zone = next((zones[n.pair_id] for n in group if n.pair_id in zones), "UTC")
        out.append(Undelivered(len(group), error, min(retries) if retries else None, zone))
    return tuple(out)
