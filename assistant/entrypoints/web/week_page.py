"""The week calendar pages: one pair's week or day, and every pair of the viewer's at once.

``/pairs/{id}/week`` shows one pair; ``/week`` shows every pair the viewer may see (an
assistant of several managers: in the week view their events share a day's column, one
colour per manager; in the day view each manager has a column of their own). Both take
``?date=2026-11-24`` and ``?view=day|week``. The events come from ``views.agenda`` (which
masks private events for the viewer); ``week`` places them in the time grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from assistant.domain import privacy, timefmt
from assistant.entrypoints.web import views, week
from assistant.entrypoints.web.guard import Ctx, HTTPProblem
from assistant.entrypoints.web.i18n import translator
from assistant.services.users import PairAccess, access_to, visible_pairs
from assistant.store.tables import Pair, User

if TYPE_CHECKING:
    from assistant.entrypoints.web.pages import Pages

MAX_PAIRS = 8  # managers shown side by side; more would not fit a screen anyway


@dataclass
class Manager:
    access: PairAccess
    name: str
    owner: int  # its index on the page; the colour is ``owner % 6`` (o0 … o5 in week.css)


@dataclass
class Column:
    heading: str
    day: date
    href: str = ""  # the day view of this day (week view only)
    today: bool = False
    owner: int | None = None  # one manager's column (day view of several)
    blocks: list[week.Block] = field(default_factory=list)
    all_day: list[week.Entry] = field(default_factory=list)
    now: int | None = None


def parse_day(raw: str | None, today: date) -> date:
    if not raw:
        return today
    try:
        d = date.fromisoformat(raw)
    except ValueError:
        raise HTTPProblem(400, "date must look like 2026-11-24") from None
    if not 1900 <= d.year <= 2999:
        raise HTTPProblem(400, "date must look like 2026-11-24")
    return d


def _at(raw: Any) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None


def entries_of(
    item: dict[str, Any], owner: int, sees_private: bool, locale: str
) -> list[week.Entry]:
    """The calendar entries of one agenda item: the event, and where it was if it moved."""
    masked = privacy.hides(bool(item.get("private")), sees_private)
    title = privacy.busy_label(locale) if masked else str(item.get("summary") or "")
    start, end = _at(item.get("start")), _at(item.get("end"))
    kind = "event"
    if item.get("status") == "cancelled":
        kind = "cancelled"
    elif item.get("checkpoint"):
        kind = "checkpoint"
    elif masked:
        kind = "busy"
    key = f"{item.get('uid', '')}{item.get('recurrence_id') or ''}"
    change = item.get("change") or {}
    kinds = ", ".join(str(k) for k in change.get("kinds") or []) if change else ""
    before = change.get("before") or {} if change else {}
    was = (_at(before.get("start")), _at(before.get("end")))
    moved = None
    if kind != "cancelled" and was[0] and was[1] and start and end and was != (start, end):
        moved = (was[0], was[1])
    base = week.Entry(
        key=key,
        title=title,
        kind=kind,
        private=bool(item.get("private")),
        conflict=str(item.get("conflict") or ""),
        owner=owner,
        location="" if masked else str(item.get("location") or ""),
        change=kinds,
        moved_from=moved,
    )
    if item.get("all_day"):
        first = date.fromisoformat(str(item["date"]))
        last = end.date() if end is not None and end.date() > first else first
        return [replace(base, days=(first, max(last, first + timedelta(days=1))))]
    if start is None:
        return []
    out = [replace(base, start=start, end=end or start + timedelta(minutes=30))]
    if moved is not None:
        out.append(
            replace(base, key=key + "~was", kind="ghost", start=moved[0], end=moved[1],
                     moved_from=None, conflict="")
        )  # fmt: skip
    return out


class WeekPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.svc = pages.svc

    async def pair_week(self, request: Request, ctx: Ctx) -> Response:
        access = ctx.pair
        with self.svc.uow.read() as session:
            pair = session.get(Pair, access.pair_id)
            name = (pair.manager_name or pair.manager_email) if pair else access.pair_name
        managers = [Manager(access=access, name=name, owner=0)]
        return self._page(request, ctx, managers, f"/pairs/{access.pair_id}/week")

    async def all_weeks(self, request: Request, ctx: Ctx) -> Response:
        managers: list[Manager] = []
        more = False
        with self.svc.uow.read() as session:
            user = session.get(User, ctx.viewer.user_id)
            pairs = visible_pairs(session, user) if user is not None else []
            more = len(pairs) > MAX_PAIRS
            for pair in pairs[:MAX_PAIRS]:
                access = access_to(session, user, pair.id) if user is not None else None
                if access is not None:
                    name = pair.manager_name or pair.manager_email
                    managers.append(Manager(access, name, len(managers)))
        return self._page(request, ctx, managers, "/week", more=more)

    def _page(
        self, request: Request, ctx: Ctx, managers: list[Manager], here: str, more: bool = False
    ) -> Response:
        locale = ctx.viewer.locale
        t = translator(locale)
        zone_name = managers[0].access.timezone if managers else "UTC"
        zone = ZoneInfo(zone_name)
        now = self.svc.now()
        today = now.astimezone(zone).date()
        day_view = request.query_params.get("view") == "day"
        picked = parse_day(request.query_params.get("date"), today)
        first = picked if day_view else picked - timedelta(days=picked.weekday())
        n = 1 if day_view else 7
        days = [first + timedelta(days=k) for k in range(n)]
        entries: list[week.Entry] = []
        for m in managers:
            data = views.agenda(self.svc, m.access, first - timedelta(days=1), n + 2)
            for d in data["days"]:
                for item in d["events"]:
                    entries.extend(entries_of(item, m.owner, m.access.sees_private, locale))
        hours = week.hour_range(entries, days, zone, now=now)
        columns: list[Column] = []
        split = day_view and len(managers) > 1
        groups: list[Manager | None] = list(managers) if split else [None]
        for d in days:
            for who in groups:
                mine = [e for e in entries if who is None or e.owner == who.owner]
                columns.append(
                    Column(
                        heading=who.name if who is not None else timefmt.day(d, locale),
                        day=d,
                        href="" if day_view else f"{here}?view=day&date={d.isoformat()}",
                        today=d == today,
                        owner=who.owner if who is not None else None,
                        blocks=week.place(mine, d, zone, hours),
                        all_day=week.all_day(mine, d),
                        now=week.now_row(now, d, zone, hours),
                    )
                )
        step = timedelta(days=n)
        view = "day" if day_view else "week"
        title = timefmt.day(first, locale)
        if not day_view:
            title += " – " + timefmt.day(days[-1], locale)
        return self.pages.render(
            request,
            ctx.viewer,
            "week.html",
            ctx=ctx,
            title=f"{title} {days[-1].year}",
            view=view,
            here=here,
            zone=timefmt.zone_label(zone_name),
            columns=columns,
            managers=managers if len(managers) > 1 else [],
            more=more,
            nobody=not managers,
            rows=week.rows(hours),
            hour_labels=week.hour_labels(hours),
            all_day_rows=max((len(c.all_day) for c in columns), default=0),
            prev=(first - step).isoformat(),
            next=(first + step).isoformat(),
            today=today.isoformat(),
            date=first.isoformat(),
            day_date=(today if first <= today < first + step else first).isoformat(),
            hm=lambda t_: t_.astimezone(zone).strftime("%H:%M"),
            when=lambda a, b: timefmt.span(a, b, zone_name, locale),
            conflict_text=lambda k: t(f"conflict_{k}") if k in ("overlap", "travel") else k,
        )

    def routes(self) -> list[BaseRoute]:
        g = self.pages.g
        return [
            Route("/week", g(self.all_weeks, pair=False), methods=["GET"]),
            Route("/pairs/{pair_id:int}/week", g(self.pair_week), methods=["GET"]),
        ]
