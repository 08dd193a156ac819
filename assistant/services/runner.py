"""Running the sync of a pair's accounts now, in this process (``assistant sync``).

The steps are the pipeline's (``assistant.services.pipeline.by_hand``); this module picks
the accounts and says in one line each what was done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from assistant.services import outbox, pipeline
from assistant.services.pairs import find_pair
from assistant.store.tables import Account

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
                "full": report.full,
                "unchanged": report.unchanged,
                "events": report.events,
                "changes": [c.kind.value for c in report.changes],
                "skipped": list(report.skipped),
            }
        elif s is not None and s.mail is not None:
            out |= {"new": s.mail.new, "seen": s.mail.seen, "skipped": list(s.mail.skipped)}
        out["summary"] = self.summary
        return out


@dataclass(frozen=True, slots=True)
class SyncNow:
    """What ``assistant sync`` did, line by line, and the outbox entries it queued."""

    lines: tuple[SyncLine, ...]
    outbox_ids: tuple[int, ...]

    @property
    def failed(self) -> bool:
        return any(line.error for line in self.lines)

    def to_json(self) -> list[dict[str, object]]:
        return [line.to_json() for line in self.lines]


def sync_now(
    deps: Deps, pair: str | int | None = None, account_id: int | None = None, send: bool = True
) -> SyncNow:
    """Sync the pair's accounts (or one account) now; see ``pipeline.by_hand``."""
    with deps.uow.read() as session:
        stmt = select(Account.id).order_by(Account.id)
        if account_id is not None:
            stmt = stmt.where(Account.id == account_id)
        else:
            stmt = stmt.where(Account.pair_id == find_pair(session, pair).id)
        account_ids = list(session.scalars(stmt))
    if not account_ids:
        raise LookupError("no accounts to sync: add one with `assistant account add`")
    run = pipeline.by_hand(deps, account_ids, send=send)
    lines = [_synced(s) for s in run.synced]
    for n in run.nudged:
        if n.queued:
            lines.append(SyncLine(f"pair {n.pair_id}", "nudge",
                                  f"{len(n.queued)} reminder(s) queued"))  # fmt: skip
    for d in run.dispatched:
        if d.sent or d.undone:
            summary = f"{d.sent} change(s) in {len(d.outbox_ids)} message(s)"
            lines.append(SyncLine(f"pair {d.pair_id}", "notify", summary))
    if run.drained is not None:
        lines.append(SyncLine("outbox", "send", _sent(run.drained)))
    return SyncNow(tuple(lines), run.outbox_ids)


def _synced(s: pipeline.AccountSynced) -> SyncLine:
    account = f"{s.account_id} {s.name}"
    if s.missing:
        summary = "no such account"
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
        summary = f"{len(changes)} change(s)" if changes else "no change"
        if s.calendar.skipped:
            summary += f", {len(s.calendar.skipped)} unreadable item(s)"
    return SyncLine(account, s.kind, summary, s)


def _sent(report: outbox.DrainReport) -> str:
    d = report.to_dict()
    return (
        ", ".join(f"{k}: {v}" for k, v in d.items() if v not in (None, 0, [], "")) or "nothing due"
    )
