"""``assistant digest``: the assistant's daily digest."""

from __future__ import annotations

from typing import Annotated

import typer

from assistant.entrypoints.cli.common import (
    JsonOpt,
    PairOpt,
    emit,
    out,
    service,
)


def digest(
    pair: PairOpt = None,
    send: Annotated[bool, typer.Option(help="Queue and send it now (once per day).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The assistant's daily digest: today and tomorrow, changes, conflicts, overdue
    replies, lines ahead. Without --send: a preview."""
    from assistant.services import outbox
    from assistant.services.digest import digest_command

    with service() as svc:
        result = digest_command(svc, pair, send=send)
        if send:
            outbox.drain(svc.uow, svc.channels, svc.now, svc.settings.outbox)
    if as_json:
        emit(result.to_dict())
        return
    message = result.report.message
    if message is None:
        out.print("no digest for this pair today", markup=False, highlight=False)
    else:
        out.print(message.text, markup=False, highlight=False)
    if result.report.already_sent:
        out.print("(already sent for this day; nothing queued again)")
