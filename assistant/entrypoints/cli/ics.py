"""``assistant ics expand``: what the service sees in an ICS feed, to debug a feed."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

import typer

from assistant.entrypoints.cli.common import (
    JsonOpt,
    UserError,
    emit,
    out,
    parse_when,
    progress,
    showing_progress,
    state,
    table,
)

ics_app = typer.Typer(help="ICS feeds and files, as the service reads them.", no_args_is_help=True)


@ics_app.command("expand")
def expand(
    source: Annotated[str, typer.Argument(help="An .ics file, or an http(s)/webcal:// URL.")],
    from_: Annotated[
        str, typer.Option("--from", help="First day (ISO date, or date-time) of the window.")
    ],
    to: Annotated[
        str, typer.Option("--to", help="Last day of the window (included), or a date-time.")
    ],
    zone: Annotated[
        str,
        typer.Option(
            "--zone", help="The calendar's zone: floating and all-day times are placed in it."
        ),
    ] = "UTC",
    as_json: JsonOpt = False,
) -> None:
    """Every occurrence in the window (uid, start, end) and every problem with the feed.

    The table shows timed values in --zone with the weekday; --json gives them as ISO
    8601 with their offset, all-day events as ISO dates (the end excluded), floating
    times without an offset. A URL is fetched as an operator's ICS account fetches it
    (the same network guard and limits); a terminal shows a spinner meanwhile.
    """
    from connectors.base import ParseLimits
    from connectors.ics.expand import expand as expand_feed
    from connectors.ics.ical_event import zoneinfo_for
    from connectors.netguard import NetPolicy

    tz = zoneinfo_for(zone)  # an unknown zone is an error before anything is read
    start, end = _day(from_, zone, 0), _day(to, zone, 1)
    if end <= start:
        raise UserError("--to must come after --from")
    settings = state.settings_or_defaults
    with progress("reading the feed", None, shown=showing_progress(as_json)):
        found = expand_feed(
            source,
            start,
            end,
            zone,
            policy=NetPolicy.from_settings(settings.network).as_operator(),
            limits=ParseLimits.of(settings.limits),
        )
    if as_json:
        emit(
            {
                "source": found.source,
                "from": start.astimezone(tz).isoformat(),
                "to": end.astimezone(tz).isoformat(),
                "zone": zone,
                "occurrences": [o.as_dict() for o in found.occurrences],
                "problems": list(found.problems),
            }
        )
        return
    rows = [[o.start, o.end, o.kind, o.uid, o.recurrence_id, o.summary] for o in found.occurrences]
    table(
        f"{found.source}: {len(rows)} occurrence(s), {zone}",
        ["start", "end", "kind", "uid", "recurrence id", "summary"],
        rows,
    )
    if found.problems:
        out.print(f"{len(found.problems)} problem(s):", markup=False, highlight=False)
        for problem in found.problems:
            out.print(f"- {problem}", markup=False, highlight=False, soft_wrap=True)
    else:
        out.print("no problems", markup=False, highlight=False)


def _day(value: str, zone: str, days_after: int) -> datetime:
    """A date's midnight in ``zone`` (``days_after`` days on), or an ISO date-time."""
    from zoneinfo import ZoneInfo

    try:
        day = date.fromisoformat(value)
    except ValueError:
        return parse_when(value, zone)
    at = datetime.combine(day + timedelta(days=days_after), time(), ZoneInfo(zone))
    return at.astimezone(UTC)
