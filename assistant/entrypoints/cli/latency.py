"""``assistant latency``: how fast the manager and the assistant answer each other."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from assistant.entrypoints.cli.common import (
    JsonOpt,
    PairOpt,
    UserError,
    emit,
    parse_when,
    service,
    table,
)


def latency(
    pair: PairOpt = None,
    since: Annotated[str | None, typer.Option(help="Only messages sent from this date.")] = None,
    maildir: Annotated[
        Path | None, typer.Option(help="An exported Maildir: no account needed.")
    ] = None,
    mbox: Annotated[
        Path | None, typer.Option(help="An exported mbox file: no account needed.")
    ] = None,
    manager: Annotated[list[str] | None, typer.Option(help="Manager address (repeatable).")] = None,
    assistant: Annotated[
        list[str] | None, typer.Option(help="Assistant address (repeatable).")
    ] = None,
    sla: Annotated[float, typer.Option(help="SLA in minutes (with --maildir/--mbox).")] = 30,
    timezone: Annotated[
        str | None,
        typer.Option(help="With --maildir/--mbox: measure working time (Mon–Fri 09–18) here."),
    ] = None,
    holidays: Annotated[
        str, typer.Option(help="With --timezone: public holidays of this country (e.g. DE).")
    ] = "",
    chart: Annotated[
        Path | None, typer.Option(help="Write the weekly trend as an SVG chart to this file.")
    ] = None,
    csv_file: Annotated[
        Path | None, typer.Option("--csv", help="Write the per-message records as CSV here.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """How fast the manager answers the assistant (and the other way round)."""
    from assistant.services import mail
    from assistant.services.pairs import check_zone

    since_at = parse_when(since) if since else None
    if maildir or mbox:
        if not manager or not assistant:
            raise UserError("with --maildir/--mbox give --manager and --assistant addresses")
        result = mail.latency_of_archive(
            maildir=maildir, mbox=mbox, managers=manager, assistants=assistant,
            sla_minutes=sla, since=since_at, now=datetime.now(UTC),
            zone=check_zone(timezone) if timezone else None, holidays=holidays,
        )  # fmt: skip
    else:
        with service() as svc:
            result = mail.latency_of_pair(svc, pair, since_at)
    if chart is not None:
        from assistant.domain.charts import trend_svg

        unit = "working min" if result.basis == "working" else "min"
        chart.write_text(trend_svg(result.weekly, result.sla_minutes, unit=unit))
    if csv_file is not None:
        _write_csv(csv_file, [m.to_dict() for m in result.messages])
    if as_json:
        emit(result.to_dict())
        return
    s = result.summary
    unit = "working min" if result.basis == "working" else "min"
    table(
        "Reply latency (assistant → manager)",
        ["messages", "answered", "open", f"median {unit}", f"p90 {unit}", "within SLA"],
        [[s.count, s.answered, s.open, _num(s.median_minutes), _num(s.p90_minutes),
          _pct(s.within_sla_share)]],
    )  # fmt: skip


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    from assistant.domain import csvsafe

    columns = ["id", "direction", "subject", "sent_at", "replied_at", "wall_minutes",
               "working_minutes", "within_sla"]  # fmt: skip
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: csvsafe.cell(v) for k, v in r.items()} for r in rows)


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f}"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.0%}"
