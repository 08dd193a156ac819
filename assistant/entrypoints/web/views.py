"""What the pages and the API show: plain dicts, built for one user's access to one pair.

Every function takes a ``PairAccess`` (see ``assistant.services.users``) and reads only
that pair's rows; private events are masked here (``assistant.domain.privacy`` decides what is
shown), once, for pages and API alike.
"""

from __future__ import annotations

import csv
import io
import statistics
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from assistant.domain import privacy
from assistant.domain.account_health import Failure, describe
from assistant.domain.conflicts import find_conflicts
from assistant.domain.latency import Direction, LatencyRecord
from assistant.services.account_health import AccountHealth, account_health, troubles
from assistant.services.mail import latency_of_pair, pair_latency
from assistant.services.pairs import AccountView, NotFoundError, list_accounts
from assistant.services.queries import FeedNotification, change_feed
from assistant.services.users import PairAccess
from assistant.store.snapshots import from_row
from assistant.store.tables import (
    Account,
    EventSnapshot,
    OutboxEntry,
    Pair,
    ScheduleChange,
)

if TYPE_CHECKING:
    from assistant.bootstrap import Service

RECENT = timedelta(hours=48)  # changes this recent are highlighted in the agenda
BUSY = privacy.busy_label("en")


def _iso(t: datetime | None, tz: ZoneInfo) -> str | None:
    return None if t is None else t.astimezone(tz).isoformat(timespec="minutes")


def mask_event(data: dict[str, Any] | None, sees_private: bool) -> dict[str, Any] | None:
    """An event dict (snapshot JSON) as this viewer may see it: private → busy only."""
    return privacy.visible_json(data, sees_private, label=BUSY)


# ------------------------------------------------------------------------------ agenda


def agenda(svc: Service, access: PairAccess, first: date, days: int) -> dict[str, Any]:
    tz = ZoneInfo(access.timezone)
    start = datetime.combine(first, time(0), tz)
    end = datetime.combine(first + timedelta(days=days), time(0), tz)
    now = svc.now()
    with svc.uow.read() as session:
        pair = session.get(Pair, access.pair_id)
        assert pair is not None
        rows = list(
            session.scalars(
                select(EventSnapshot)
                .join(Account, Account.id == EventSnapshot.account_id)
                .where(
                    Account.pair_id == access.pair_id,
                    EventSnapshot.end_utc > start - timedelta(days=1),
                    EventSnapshot.start_utc < end + timedelta(days=1),
                )
                .order_by(EventSnapshot.start_utc, EventSnapshot.id)
            )
        )
        changes = list(
            session.scalars(
                select(ScheduleChange)
                .where(
                    ScheduleChange.pair_id == access.pair_id,
                    ScheduleChange.detected_at >= now - RECENT,
                )
                .order_by(ScheduleChange.detected_at, ScheduleChange.id)
            )
        )
        manager = frozenset({pair.manager_email.lower()})
    events = [from_row(r) for r in rows]
    buffer = timedelta(minutes=svc.settings.notify.travel_buffer_minutes)
    clashes: dict[tuple[str, str], str] = {}
    for clash in find_conflicts(events, events, travel_buffer=buffer, manager_emails=manager):
        for key in (clash.event.key, clash.other.key):
            clashes.setdefault(key, clash.kind)
    latest = {(c.uid, c.recurrence_id): c for c in changes}
    items: list[dict[str, Any]] = []
    for e in (privacy.visible(e, access.sees_private) for e in events):
        if e.all_day:
            assert e.start_date is not None
            last = e.end_date or e.start_date + timedelta(days=1)
            if not (e.start_date < first + timedelta(days=days) and last > first):
                continue
        elif not (e.end > start and e.start < end):
            continue
        if e.status.value == "cancelled" and e.key not in latest:
            continue
        item = {
            "uid": e.uid,
            "recurrence_id": e.recurrence_id,
            "summary": privacy.title(e.summary, e.private, access.sees_private),
            "start": _iso(e.start, tz),
            "end": _iso(e.end, tz),
            "all_day": e.all_day,
            "date": (e.start_date or e.start.astimezone(tz).date()).isoformat(),
            "location": privacy.place(e, access.sees_private),
            "description": e.description,
            "organizer": e.organizer,
            "online_meeting_url": e.online_meeting_url,
            "attendees": [a.email for a in e.attendees],
            "categories": list(e.categories),
            "status": e.status.value,
            "busy": e.busy,
            "private": e.private,
            "checkpoint": e.is_ours,
            "conflict": clashes.get(e.key),
            "change": None,
        }
        items.append(item)
    by_key = {(i["uid"], i["recurrence_id"]): i for i in items}
    for key, c in latest.items():
        change = {
            "kind": c.kind,
            "kinds": (c.after or c.before or {}).get("kinds", [c.kind]),
            "detected_at": _iso(c.detected_at, tz),
            "priority": c.priority,
            "before": _brief(mask_event(c.before, access.sees_private), tz),
            "after": _brief(mask_event(c.after, access.sees_private), tz),
        }
        if key in by_key:
            by_key[key]["change"] = change
        elif c.before and c.after is None and start <= c.starts_at < end:  # cancelled: show it
            shown = mask_event(c.before, access.sees_private) or {}
            items.append(
                {
                    "uid": c.uid,
                    "recurrence_id": c.recurrence_id,
                    "summary": shown.get("summary", ""),
                    "start": _iso(c.starts_at, tz),
                    "end": change["before"]["end"] if change["before"] else None,
                    "all_day": bool(shown.get("all_day")),
                    "date": c.starts_at.astimezone(tz).date().isoformat(),
                    "location": shown.get("location", ""),
                    "description": "",
                    "organizer": "",
                    "online_meeting_url": "",
                    "attendees": [],
                    "categories": [],
                    "status": "cancelled",
                    "busy": False,
                    "private": bool(shown.get("private")),
                    "checkpoint": False,
                    "conflict": None,
                    "change": change,
                }
            )
    items.sort(key=lambda i: (i["date"], not i["all_day"], i["start"] or ""))
    out_days = []
    for n in range(days):
        d = (first + timedelta(days=n)).isoformat()
        out_days.append({"date": d, "events": [i for i in items if i["date"] == d]})
    return {"pair": access.pair_name, "timezone": access.timezone, "days": out_days}


def _brief(data: dict[str, Any] | None, tz: ZoneInfo) -> dict[str, Any] | None:
    if data is None:
        return None
    start = datetime.fromisoformat(data["start"]) if data.get("start") else None
    end = datetime.fromisoformat(data["end"]) if data.get("end") else None
    return {
        "summary": data.get("summary", ""),
        "start": _iso(start, tz),
        "end": _iso(end, tz),
        "location": data.get("location", ""),
        "status": data.get("status", ""),
    }


# ----------------------------------------------------------------------------- changes


def changes(svc: Service, access: PairAccess, limit: int = 100) -> dict[str, Any]:
    """The changes page and API: the shared change feed, in the pair's zone."""
    tz = ZoneInfo(access.timezone)
    feed = change_feed(svc, access.ref, sees_private=access.sees_private, limit=limit, locale="en")
    outbox = {n.id: _notification(n, tz) for n in feed.outbox}
    return {
        "changes": [
            {
                "id": c.id,
                "kind": c.kind,
                "kinds": list(c.kinds),
                "summary": c.summary,
                "starts_at": _iso(c.starts_at, tz),
                "detected_at": _iso(c.detected_at, tz),
                "priority": c.priority,
                "state": c.state,
                "by_assistant": c.by_assistant,
                "conflicts": [dict(x) for x in c.conflicts],
                "before": _brief(c.before, tz),
                "after": _brief(c.after, tz),
                "notifications": [
                    outbox.get(n.id) or _notification(n, tz) for n in c.notifications
                ],
            }
            for c in feed.changes
        ],
        "outbox": list(outbox.values()),
    }


def _notification(n: FeedNotification, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "id": n.id,
        "channel": n.channel,
        "recipient": n.recipient,
        "subject": n.subject,
        "state": n.state,
        "attempts": n.attempts,
        "last_error": n.last_error,
        "created_at": _iso(n.created_at, tz),
        "delivered_at": _iso(n.sent_at, tz),
        "retryable": n.retryable,
    }


def outbox_entry_of(svc: Service, access: PairAccess, entry_id: int) -> None:
    """Raise NotFoundError unless the outbox entry belongs to this pair."""
    with svc.uow.read() as session:
        entry = session.get(OutboxEntry, entry_id)
        if entry is None or entry.pair_id != access.pair_id:
            raise NotFoundError(f"no outbox entry {entry_id}")


# ----------------------------------------------------------------------------- latency


def latency(svc: Service, access: PairAccess, weeks: int = 12) -> dict[str, Any]:
    now = svc.now()
    tz = ZoneInfo(access.timezone)
    figures = latency_of_pair(svc, access.ref, None)
    kept = pair_latency(svc, access.ref)  # the same index, already up to date
    records, sla = kept.records, kept.sla_minutes
    waiting = sorted(
        (r for r in records if not r.answered and r.direction is Direction.ASSISTANT_TO_MANAGER),
        key=lambda r: -(r.waiting_working_minutes or r.waiting_minutes or 0),
    )
    open_ = [
        {
            "subject": r.subject,
            "direction": r.direction.value,
            "sent_at": _iso(r.sent_at, tz),
            "waiting_minutes": _round(r.waiting_minutes),
            "waiting_working_minutes": _round(r.waiting_working_minutes),
            "overdue": (r.waiting_working_minutes or 0) > sla,
        }
        for r in waiting
    ]
    return {
        "sla_minutes": sla,
        "summary": figures.summary.to_dict(),
        "reverse_summary": figures.reverse_summary.to_dict(),
        "open": open_,
        "trend": weekly_trend(records, now, tz, weeks, sla),
        "records": [_record(r, tz) for r in records],
    }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def _record(r: LatencyRecord, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "subject": r.subject,
        "direction": r.direction.value,
        "sent_at": _iso(r.sent_at, tz),
        "replied_at": _iso(r.replied_at, tz),
        "wall_minutes": _round(r.wall_minutes),
        "working_minutes": _round(r.working_minutes),
        "waiting_working_minutes": _round(r.waiting_working_minutes),
    }


def weekly_trend(
    records: list[LatencyRecord], now: datetime, tz: ZoneInfo, weeks: int, sla: float
) -> list[dict[str, Any]]:
    """Median working minutes of the manager's answers, per week (Monday) of sending."""
    today = now.astimezone(tz).date()
    monday = today - timedelta(days=today.weekday())
    starts = [monday - timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]
    buckets: dict[date, list[float]] = {s: [] for s in starts}
    for r in records:
        if r.direction is not Direction.ASSISTANT_TO_MANAGER or r.working_minutes is None:
            continue
        d = r.sent_at.astimezone(tz).date()
        week = d - timedelta(days=d.weekday())
        if week in buckets:
            buckets[week].append(r.working_minutes)
    return [
        {
            "week": s.isoformat(),
            "answered": len(v),
            "median_working_minutes": round(statistics.median(v), 1) if v else None,
            "within_sla": sum(1 for x in v if x <= sla),
        }
        for s, v in buckets.items()
    ]


def latency_csv(data: dict[str, Any]) -> str:
    from assistant.domain import csvsafe

    out = io.StringIO()
    w = csv.writer(out)
    cols = [
        "direction",
        "subject",
        "sent_at",
        "replied_at",
        "wall_minutes",
        "working_minutes",
        "waiting_working_minutes",
    ]
    w.writerow(cols)
    for r in data["records"]:
        w.writerow(csvsafe.row("" if r[c] is None else r[c] for c in cols))
    return out.getvalue()


# ------------------------------------------------------------------------------- tasks


def tasks(svc: Service, access: PairAccess) -> dict[str, Any]:
    """The tasks page and API: the pair's tasks as ``task list``/``task show`` read them."""
    from assistant.services.delegation_views import pair_tasks
    from assistant.services.feedback import score

    out = [v.to_json() for v in pair_tasks(svc, access.ref)]
    figures = score(svc, access.pair_id)
    return {"tasks": out, "delegation_score": figures.share, "score": figures.to_json()}


def task(svc: Service, access: PairAccess, task_id: int) -> dict[str, Any]:
    from assistant.services.delegation_views import task_view
    from assistant.services.feedback import feedback_of

    try:
        found = task_view(svc, task_id)
    except LookupError:
        found = None
    if found is None or found.pair_id != access.pair_id:
        raise NotFoundError(f"no task {task_id}")
    view = found.to_json()
    view["feedback"] = [f.to_json() for f in feedback_of(svc, task_id)]
    return view


# ---------------------------------------------------------------------------- accounts

_PLAIN = (
    (
        ("stored secret cannot be read",),
        "The stored password or token cannot be read any more (the service's key changed):"
        " reconnect the account.",
    ),
    (
        ("invalid_grant", "revoked", "expired or revoked"),
        "Access was revoked or has expired: reconnect the account.",
    ),
    (
        (
            "401",
            "unauthor",
            "auth",
            "credential",
            "password",
            "invalid_grant",
            "revoked",
            "refused the login",
            "login failed",
        ),
        "Access refused: the password or the connection is no longer valid. Reconnect the account.",
    ),
    (
        ("403", "forbidden", "permission"),
        "The provider refuses access to this calendar or mailbox. Check the account's rights.",
    ),
    (("404", "not found"), "The calendar or mailbox was not found at its address."),
    (("429", "rate", "throttl"), "The provider asked us to slow down; we retry later."),
    (("timeout", "timed out"), "The server did not answer in time; we retry."),
    (
        ("connection refused", "name or service", "unreachable", "connect"),
        "The server could not be reached. Check the address or the network.",
    ),
    (
        ("410", "sync token", "invalid state", "token expired"),
        "The provider reset its change list; the next sync reads everything again.",
    ),
    (("ssl", "certificate"), "The server's certificate was not accepted."),
)


def plain_error(error: str) -> str:
    if not error:
        return ""
    low = error.lower()
    for words, text in _PLAIN:
        if any(w in low for w in words):
            return text
    return "The last sync failed: " + error.splitlines()[0][:200]


SIGN_IN_PROVIDERS = ("google", "gmail", "graph", "graph-mail")


def signs_in(a: Account | AccountView) -> bool:
    """Connected through the provider's sign-in page (a refresh token): reconnect there."""
    conf = a.settings
    return (
        a.provider in SIGN_IN_PROVIDERS
        and str(conf.get("auth", "oauth")) == "oauth"
        and "refresh_token" in conf
    )


def accounts(svc: Service, access: PairAccess, locale: str = "en") -> list[dict[str, Any]]:
    tz = ZoneInfo(access.timezone)
    health = {h.account_id: h for h in account_health(svc, access.pair_id)}
    rows = list_accounts(svc, access.ref)  # what `assistant account list` reads
    out = []
    for a in rows:
        h = health.get(a.id)
        if a.state == "new":
            words = "Not synced yet."
        elif a.state == "error":
            words = plain_error(a.last_error)
        else:  # working; what a sync left out at a limit is said after
            words = " ".join(["Working.", a.last_error]).strip()
        out.append(
            {
                "id": a.id,
                "name": a.name,
                "provider": a.provider,
                "kind": a.kind,
                "state": a.state,
                "last_sync_at": _iso(a.last_sync_at, tz),
                "status": words,
                "writable": a.writable,
                "signs_in": signs_in(a),
                "disabled": a.disabled,
                "health": _health(h, tz, locale) if h is not None and h.failing else None,
            }
        )
    return out


def _health(h: AccountHealth, tz: ZoneInfo, locale: str) -> dict[str, Any]:
    """How a failing account is tried: since when, how often, when next, or parked."""
    what, fix = describe(h.failure or Failure.OTHER, locale)
    return {
        "parked": h.parked,
        "unhealthy": h.unhealthy,
        "since": _iso(h.failing_since, tz),
        "tries": h.failures,
        "next_try_at": _iso(h.next_try_at, tz),
        "what": what,
        "fix": fix,
    }


def unhealthy(svc: Service, pair_id: int, locale: str) -> list[dict[str, Any]]:
    """The pair's accounts to show in the banner: parked, or failing long enough."""
    return [
        {"id": h.account_id, "name": h.name, "what": describe(h.failure or Failure.OTHER,
                                                                locale)[0]}
        for h in troubles(svc, pair_id)
    ]  # fmt: skip
