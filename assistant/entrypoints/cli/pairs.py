"""``assistant pair``: manager–assistant pairs."""

from __future__ import annotations

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

pair_app = typer.Typer(help="Manager–assistant pairs.", no_args_is_help=True)


@pair_app.command("add")
def pair_add(
    name: Annotated[str, typer.Argument(help="A short name for the pair.")],
    manager: Annotated[str, typer.Option(help="The manager's email address.")],
    assistant: Annotated[str, typer.Option(help="The assistant's email address.")],
    manager_name: Annotated[str, typer.Option(help="The manager's name.")] = "",
    assistant_name: Annotated[str, typer.Option(help="The assistant's name.")] = "",
    timezone: Annotated[str, typer.Option(help="The manager's time zone (IANA).")] = "UTC",
    assistant_timezone: Annotated[
        str, typer.Option(help="The assistant's zone, if different.")
    ] = "",
    sla: Annotated[int, typer.Option(help="Reply SLA in working minutes.")] = 30,
    locale: Annotated[str, typer.Option(help="Messages to the assistant in: en or ru.")] = "en",
    manager_alias: Annotated[
        list[str] | None, typer.Option(help="Another address of the manager (repeatable).")
    ] = None,
    assistant_alias: Annotated[
        list[str] | None, typer.Option(help="Another address of the assistant (repeatable).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a manager–assistant pair."""
    from assistant.services.pairs import add_pair

    with service() as svc:
        pair = add_pair(
            svc,
            name=name,
            manager_email=manager,
            assistant_email=assistant,
            manager_name=manager_name,
            assistant_name=assistant_name,
            timezone=timezone,
            assistant_timezone=assistant_timezone,
            sla_minutes=sla,
            locale=locale,
            manager_aliases=manager_alias or (),
            assistant_aliases=assistant_alias or (),
        )
    if as_json:
        emit({"id": pair.id, "name": pair.name})
    else:
        out.print(f"pair {pair.id} ({pair.name}) added")


@pair_app.command("aliases")
def pair_aliases(
    pair: PairOpt = None,
    manager_alias: Annotated[
        list[str] | None,
        typer.Option(help="Another address of the manager (repeatable; replaces the list)."),
    ] = None,
    assistant_alias: Annotated[
        list[str] | None,
        typer.Option(help="Another address of the assistant (repeatable; replaces the list)."),
    ] = None,
    clear: Annotated[bool, typer.Option(help="Remove every alias of both.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show or set the other addresses of the manager and the assistant: mail from or to
    any of them counts as theirs (reply latency, nudges)."""
    from assistant.services.pairs import set_aliases

    with service() as svc:
        found = set_aliases(
            svc, pair,
            manager=[] if clear else manager_alias, assistant=[] if clear else assistant_alias,
        )  # fmt: skip
    data = {"manager": found.manager_aliases, "assistant": found.assistant_aliases}
    if as_json:
        emit(data)
    else:
        for who, values in data.items():
            out.print(f"{who} aliases: {', '.join(values) if values else '(none)'}")


@pair_app.command("feed-url")
def pair_feed_url(pair: PairOpt = None) -> None:
    """A calendar subscription URL for the pair's checkpoints (keep it private)."""
    from assistant.services.checkpoint_feed import feed_url

    with service() as svc:
        out.print(feed_url(svc, pair), soft_wrap=True)


@pair_app.command("list")
def pair_list(as_json: JsonOpt = False) -> None:
    """List the pairs."""
    from assistant.services.pairs import list_pairs

    with service() as svc:
        pairs = list_pairs(svc)
    rows = [
        {
            "id": p.id,
            "name": p.name,
            "manager": p.manager_email,
            "assistant": p.assistant_email,
            "timezone": p.timezone,
            "sla_minutes": p.sla_minutes,
            "locale": p.locale,
        }
        for p in pairs
    ]
    if as_json:
        emit(rows)
    else:
        table("Pairs", ["id", "name", "manager / assistant", "zone, SLA, language"],
              [[p.id, p.name, f"{p.manager_email}\n{p.assistant_email}",
                f"{p.timezone}\nSLA {p.sla_minutes} min\n{p.locale}"] for p in pairs])  # fmt: skip
