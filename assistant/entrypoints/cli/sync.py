"""``assistant sync`` and ``assistant changes``: sync now, and the schedule changes found."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from assistant.entrypoints.cli.common import (
    JsonOpt,
    PairOpt,
    count,
    emit,
    err,
    out,
    pair_zone,
    progress,
    service,
    showing_progress,
    table,
    when,
)

if TYPE_CHECKING:
    from assistant.services.runner import SyncNow


def sync(
    pair: PairOpt = None,
    account: Annotated[int | None, typer.Option(help="Only this account id.")] = None,
    send: Annotated[bool, typer.Option(help="Deliver the notifications now.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Sync calendars and mailboxes now, and deliver what they produced.

    Exits 1 when an account could not be synced or no notification could be delivered.
    """
    from assistant.services.runner import accounts_to_sync, sync_now

    with service() as svc:
        total = len(accounts_to_sync(svc, pair, account))
        with progress("syncing", total, shown=showing_progress(as_json)) as meter:
            report = sync_now(svc, pair=pair, account_id=account, send=send,
                              on_synced=lambda s: meter.advance(s.name))  # fmt: skip
    if as_json:
        emit(report.to_json())
    else:
        _show(report)
    if report.failed:
        raise typer.Exit(1)


def _show(report: SyncNow) -> None:
    table(
        "Sync",
        ["account", "kind", "result"],
        [[line.account, line.kind, line.summary] for line in report.lines],
    )
    calendars, events = report.baseline
    if calendars:
        out.print(f"baseline: {count(events, 'event')} in {count(calendars, 'calendar')}; "
                  "changes from now on are notified", markup=False, highlight=False)  # fmt: skip
    for u in report.undelivered:
        later = f"will retry at {when(u.retry_at, u.zone)}" if u.retry_at else "given up"
        err.print(f"{count(u.count, 'notification')} not sent: {u.error} ({later})",
                  markup=False, highlight=False, soft_wrap=True)  # fmt: skip


def changes(
    pair: PairOpt = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The detected schedule changes and where their notification went."""
    from assistant.services.queries import recent_changes

    with service() as svc:
        rows = [asdict(c) for c in recent_changes(svc, pair, limit)]
        zone = pair_zone(svc, pair)
    if as_json:
        emit(rows)
    else:
        cols = ["detected_at", "kind", "summary", "starts_at", "notified"]
        table("Schedule changes", ["found", "kind", "event", "starts", "told by"],
              [[r[c] for c in cols] for r in rows], zone=zone)  # fmt: skip
