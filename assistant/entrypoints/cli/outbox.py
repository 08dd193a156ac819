"""``assistant outbox``: notifications waiting, sent or failed."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from assistant.entrypoints.cli.common import (
    JsonOpt,
    emit,
    err,
    out,
    service,
    table,
    when,
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
        table("Outbox", ["id", "state", "to / subject", "last error"],
              [[r["id"], _state(r["state"], r["attempts"]), f"{r['recipient']}\n{r['subject']}",
                r["last_error"]] for r in rows])  # fmt: skip


def _state(state: str, attempts: int) -> str:
    return f"{state}\n{attempts} tries" if attempts > 1 else state


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
        return
    said = [f"{report.sent} sent"] if report.sent else []
    if report.not_sent:
        said.append(f"{len(report.not_sent)} not sent")
    out.print(", ".join(said) or "nothing due", markup=False, highlight=False)
    for n in report.not_sent:
        later = f"will retry at {when(n.retry_at)} UTC" if n.retry_at else "given up"
        err.print(f"entry {n.entry_id} not sent: {n.error} ({later})", markup=False,
                  highlight=False, soft_wrap=True)  # fmt: skip
    if report.nothing_delivered:
        raise typer.Exit(1)
