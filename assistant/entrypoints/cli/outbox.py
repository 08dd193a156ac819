"""``assistant outbox``: notifications waiting, sent or failed."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from assistant.entrypoints.cli.common import (
    JsonOpt,
    emit,
    out,
    service,
    table,
)

outbox_app = typer.Typer(help="Notifications waiting, sent or failed.", invoke_without_command=True)


@outbox_app.callback()
def outbox_list(
    ctx: typer.Context,
    state_filter: Annotated[
        str | None, typer.Option("--state", help="pending, sending, sent or dead.")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List notifications (subcommands: retry, send)."""
    if ctx.invoked_subcommand is not None:
        return
    from assistant.services.queries import outbox_entries

    with service() as svc:
        rows = [asdict(e) for e in outbox_entries(svc, state_filter, limit)]
    if as_json:
        emit(rows)
    else:
        cols = ["id", "state", "channel", "recipient", "subject", "attempts", "last_error"]
        table("Outbox", cols, [[r[c] for c in cols] for r in rows])


@outbox_app.command("retry")
def outbox_retry(entry_id: Annotated[int, typer.Argument(help="Outbox entry id.")]) -> None:
    """Put a dead (or pending) entry back in the queue for delivery now."""
    from assistant.services.queries import retry_entry

    with service() as svc:
        retry_entry(svc, entry_id)
    out.print(f"entry {entry_id} queued again")


@outbox_app.command("send")
def outbox_send(as_json: JsonOpt = False) -> None:
    """Deliver every due notification now."""
    from assistant.services import outbox

    with service() as svc:
        report = outbox.drain(svc.uow, svc.channels, svc.now, svc.settings.outbox)
    if as_json:
        emit(report.to_dict())
    else:
        out.print(report.to_dict())
