"""``assistant sync`` and ``assistant changes``: sync now, and the schedule changes found."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from assistant.entrypoints.cli.common import (
    JsonOpt,
    PairOpt,
    emit,
    service,
    table,
)


def sync(
    pair: PairOpt = None,
    account: Annotated[int | None, typer.Option(help="Only this account id.")] = None,
    send: Annotated[bool, typer.Option(help="Deliver the notifications now.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Sync calendars and mailboxes now, and deliver what they produced."""
    from assistant.services.runner import sync_now

    with service() as svc:
        report = sync_now(svc, pair=pair, account_id=account, send=send)
    if as_json:
        emit(report.to_json())
        return
    table(
        "Sync",
        ["account", "kind", "result"],
        [[line.account, line.kind, line.summary] for line in report.lines],
    )
    if report.failed:
        raise typer.Exit(1)


def changes(
    pair: PairOpt = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The detected schedule changes and where their notification went."""
    from assistant.services.queries import recent_changes

    with service() as svc:
        rows = [asdict(c) for c in recent_changes(svc, pair, limit)]
    if as_json:
        emit(rows)
    else:
        cols = ["detected_at", "kind", "summary", "starts_at", "notified"]
        table("Schedule changes", cols, [[r[c] for c in cols] for r in rows])
