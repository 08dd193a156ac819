"""``assistant priorities``: the manager's priority rules."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from assistant.entrypoints.cli.common import (
    JsonOpt,
    PairOpt,
    emit,
    out,
    service,
    table,
)

priorities_app = typer.Typer(
    help="The manager's priorities: what reaches the assistant at once, what waits.",
    invoke_without_command=True,
)


@priorities_app.callback()
def priorities_list(ctx: typer.Context, pair: PairOpt = None, as_json: JsonOpt = False) -> None:
    """List the manager's priority rules, highest first (subcommands: add, remove)."""
    if ctx.invoked_subcommand is not None:
        return
    from assistant.services.priorities import list_rules

    with service() as svc:
        rules = list_rules(svc, pair)
    if as_json:
        emit([asdict(r) for r in rules])
    else:
        rows_ = [[r.id, r.level, r.text] for r in rules]
        table("Priorities", ["id", "level", "rule"], rows_)


@priorities_app.command("add")
def priorities_add(
    kind: Annotated[
        str, typer.Argument(help="person, domain, keyword, category, calendar or protected.")
    ],
    pattern: Annotated[
        str, typer.Argument(help="An address, a domain, a word, or e.g. 'mon-fri 07:00-09:00'.")
    ],
    level: Annotated[str, typer.Option(help="high, normal or low.")] = "high",
    note: Annotated[str, typer.Option(help="Why (shown to the assistant).")] = "",
    pair: PairOpt = None,
) -> None:
    """Add a rule (or change the level of the same rule)."""
    from assistant.services.priorities import add_rule

    with service() as svc:
        rid = add_rule(svc, pair=pair, kind=kind, pattern=pattern, level=level, note=note)
    out.print(f"rule {rid}: {level} {kind} {pattern}")


@priorities_app.command("remove")
def priorities_remove(
    rule_id: Annotated[int, typer.Argument(help="Rule id (see `assistant priorities`).")],
    pair: PairOpt = None,
) -> None:
    """Remove a rule."""
    from assistant.services.priorities import remove_rule

    with service() as svc:
        remove_rule(svc, rule_id, pair)
    out.print(f"rule {rule_id} removed")
