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
    out,
    parse_when,
    progress,
    service,
    showing_progress,
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
    # The archive path imports no database layer: a Maildir is measured from a cold start.
    from assistant.services import latency_report

    since_at = parse_when(since) if since else None
    read: int | None = None
    if maildir or mbox:
        if not manager or not assistant:
            raise UserError("with --maildir/--mbox give --manager and --assistant addresses")
        _archive_exists(maildir, mbox)
        zone = None
        if timezone:
            from assistant.services.pairs import check_zone

            zone = check_zone(timezone)
        with progress("reading mail", None, shown=showing_progress(as_json)) as meter:
            result = latency_report.latency_of_archive(
                maildir=maildir, mbox=mbox, managers=manager, assistants=assistant,
                sla_minutes=sla, since=since_at, now=datetime.now(UTC), zone=zone,
                holidays=holidays, on_read=meter.at,
            )  # fmt: skip
        read = result.read or 0
        found = read + (result.skipped or 0)
        if found == 0:  # never a report on nothing
            raise UserError(f"the {_archive_name(maildir, mbox)} holds no messages")
        if read == 0:
            raise UserError(f"none of the {found} file(s) read is a mail message")
    else:
        from assistant.services import mail

        with service() as svc:
            result = mail.latency_of_pair(svc, pair, since_at)
    unit = "working min" if result.basis == "working" else "min"
    data = result.to_dict()
    written: list[str] = []
    if chart is not None:
        from assistant.domain.charts import trend_svg

        chart.write_text(trend_svg(result.weekly, result.sla_minutes, unit=unit))
        data["chart"] = str(chart)
        written.append(f"chart (weekly trend, SVG) written to {chart}")
    if csv_file is not None:
        _write_csv(csv_file, data["messages"])
        data["csv"] = str(csv_file)
        written.append(f"{len(result.messages)} record(s) written as CSV to {csv_file}")
    if as_json:
        emit(data)
        return
    if read is not None:
        skipped = f", {result.skipped} skipped" if result.skipped else ""
        out.print(f"read {read} message(s) from {maildir or mbox}{skipped}")
    else:
        out.print(f"measured {len(result.messages)} stored message(s) between the two")
    rows = []
    for label, s in (
        ("assistant → manager", result.summary),
        ("manager → assistant", result.reverse_summary),
    ):
        rows.append([label, s.count, s.answered, s.open, _num(s.median_minutes),
                     _num(s.p90_minutes), _pct(s.within_sla_share)])  # fmt: skip
    table(
        f"Reply latency (SLA {result.sla_minutes:g} {unit})",
        ["direction", "messages", "answered", "open", f"median {unit}", f"p90 {unit}",
         "within SLA"],
        rows,
    )  # fmt: skip
    for line in written:
        out.print(line, soft_wrap=True)


def _archive_exists(maildir: Path | None, mbox: Path | None) -> None:
    """A UserError when the Maildir folder or the mbox file is not there (a file that is
    not an mbox is refused when it is read: InvalidData)."""
    if maildir is not None and not maildir.is_dir():
        raise UserError(f"no Maildir folder at {maildir}")
    if mbox is not None and not mbox.is_file():
        raise UserError(f"no mbox file at {mbox}")


def _archive_name(maildir: Path | None, mbox: Path | None) -> str:
    names = [f"Maildir {maildir}" if maildir else "", f"mbox {mbox}" if mbox else ""]
    return " and the ".join(n for n in names if n)


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
