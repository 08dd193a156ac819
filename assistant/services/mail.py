"""Mail import and reply latency: stored messages → threads → latency records → summary.

A pair's latency is kept in a ``LatencyIndex`` per process and database: each request feeds
it only the messages stored since the last one, so its cost follows the new mail, not the
whole mailbox. The index is built again from every message when what its records depend on
changes (the two addresses, time zone, working hours, the years they cover) or when rows it
was fed are gone (a deleted account; a row committed late under a lower id).
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from assistant.domain.latency import (
    Direction,
    LatencyIndex,
    LatencyRecord,
    classify,
    reply_latencies,
    summarize,
    weekly_trend,
)
from assistant.domain.model import MessageData
from assistant.services.pairs import find_pair
from assistant.services.sync import skipped_status
from assistant.store.db import UnitOfWork
from assistant.store.tables import Account, Message, Pair
from connectors.base import MailSource, TokenExpired

if TYPE_CHECKING:
    from assistant.services.deps import Deps


def import_mail(svc: Deps, account_id: int, source: MailSource) -> dict[str, Any]:
    """Store the messages the mailbox has that we have not seen; advance its token."""
    with svc.uow.read() as session:
        account = session.get(Account, account_id)
        if account is None:
            raise LookupError(f"no account with id {account_id}")
        token = account.sync_token
    try:
        delta = source.changes(token)
    except TokenExpired:
        delta = source.changes(None)
    now = svc.now()
    with svc.uow.begin() as session:
        account = session.get(Account, account_id)
        assert account is not None
        pair = account.pair
        managers, assistants = addresses(pair)
        rows = [
            _row(pair.id, account_id, m, classify(m, managers, assistants)) for m in delta.messages
        ]
        new = _insert_new(session, rows)
        account.sync_token = delta.token
        account.state = "ok"
        account.last_error = skipped_status(delta.skipped)  # e.g. a mail over a limit
        account.last_sync_at = now
    return {"new": new, "seen": len(delta.messages), "skipped": list(delta.skipped)}


def addresses(pair: Pair) -> tuple[set[str], set[str]]:
    """Every address of the manager and of the assistant (aliases included), lower-cased."""
    return (
        {a.lower() for a in (pair.manager_email, *(pair.manager_aliases or ()))},
        {a.lower() for a in (pair.assistant_email, *(pair.assistant_aliases or ()))},
    )


def _row(pair_id: int, account_id: int, m: MessageData, direction: Direction) -> dict[str, Any]:
    return {
        "pair_id": pair_id,
        "account_id": account_id,
        "message_id": m.message_id[:998],
        "thread_key": m.thread_id,
        "in_reply_to": m.in_reply_to[:998],
        "references": list(m.references),
        "subject": m.subject,
        "from_addr": m.from_addr[:320],
        "to_addrs": list(m.to),
        "cc_addrs": list(m.cc),
        "sent_at": m.sent_at,
        "direction": direction.value,
        "folder": m.folder,
        # Our own notifications, when sent from the manager's mailbox, are machine mail too.
        "auto_reply": m.auto_reply or m.message_id.strip("<>").endswith("@exec-assistant"),
    }


def _insert_new(session: Any, rows: list[dict[str, Any]]) -> int:
    """Insert rows whose (pair, Message-ID) is new; a copy in another folder counts once."""
    if not rows:
        return 0
    unique = list({(r["pair_id"], r["message_id"]): r for r in rows}.values())
    dialect = session.bind.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    total = 0
    for i in range(0, len(unique), 500):
        stmt = insert(Message).values(unique[i : i + 500])
        stmt = stmt.on_conflict_do_nothing(index_elements=["pair_id", "message_id"])
        # rowcount is -1 for multi-row inserts on some drivers; count what came back
        total += len(session.execute(stmt.returning(Message.id)).all())
    return total


def to_message(row: Message) -> MessageData:
    return MessageData(
        message_id=row.message_id,
        sent_at=row.sent_at,
        from_addr=row.from_addr,
        to=tuple(row.to_addrs),
        cc=tuple(row.cc_addrs),
        subject=row.subject,
        in_reply_to=row.in_reply_to,
        references=tuple(row.references),
        thread_id=row.thread_key,
        folder=row.folder,
        auto_reply=row.auto_reply,
    )


def latency_of_pair(
    svc: Deps, pair_ref: str | int | None, since: datetime | None
) -> dict[str, Any]:
    """The pair's latency report, from its ``LatencyIndex`` brought up to date."""
    kept = pair_latency(svc, pair_ref)
    return _report(kept.records, kept.sla_minutes, since, "working", kept.zone)


@dataclass(frozen=True)
class PairLatency:
    records: list[LatencyRecord]  # as ``reply_latencies`` gives them, in working time
    sla_minutes: float
    zone: str


def pair_latency(svc: Deps, pair_ref: str | int | None) -> PairLatency:
    """Every latency record of the pair at ``svc.now()``, from its index brought up to date."""
    from assistant.services.hours import pair_hours

    now = svc.now()
    with svc.uow.read() as session:
        pair = find_pair(session, pair_ref)
        earliest = session.scalars(
            select(Message.sent_at)
            .where(Message.pair_id == pair.id)
            .order_by(Message.sent_at)
            .limit(1)
        ).first()
        first = earliest.year if earliest is not None else now.year
        hours = pair_hours(pair, first, now.year + 1)
        depends_on = (
            pair.manager_email.lower(),
            pair.assistant_email.lower(),
            pair.timezone,
            json.dumps(pair.working_hours, sort_keys=True, default=str),
            first,
            now.year + 1,
        )
        with _indexes_lock:
            index = _pair_index(session, svc.uow, pair, depends_on, hours.working_minutes, now)
            records = index.records(now)
        return PairLatency(records, pair.sla_minutes, pair.timezone)


@dataclass
class _PairIndex:
    depends_on: tuple[Any, ...]  # what the records depend on besides the messages
    index: LatencyIndex
    last_id: int = 0  # the highest Message.id fed
    fed: int = 0  # rows fed, all with an id up to last_id


_MAX_PAIRS = 32  # indexes kept per database; the least recently used goes first
_indexes: weakref.WeakKeyDictionary[UnitOfWork, dict[int, _PairIndex]] = weakref.WeakKeyDictionary()
_indexes_lock = threading.Lock()


def cached_index(uow: UnitOfWork, pair_id: int) -> LatencyIndex | None:
    """The pair's index as this process keeps it (None: not built yet)."""
    kept = _indexes.get(uow, {}).get(pair_id)
    return kept.index if kept else None


def _pair_index(
    session: Any,
    uow: UnitOfWork,
    pair: Pair,
    depends_on: tuple[Any, ...],
    working_minutes: Callable[[datetime, datetime], float],
    now: datetime,
) -> LatencyIndex:
    """The pair's index, fed the rows stored since the last call (or built from all)."""
    per_pair = _indexes.setdefault(uow, {})
    kept = per_pair.pop(pair.id, None)
    if kept is not None and (
        kept.depends_on != depends_on
        or session.scalar(
            select(func.count())
            .select_from(Message)
            .where(Message.pair_id == pair.id, Message.id <= kept.last_id)
        )
        != kept.fed
    ):
        kept = None
    if kept is None:
        managers, assistants = addresses(pair)
        kept = _PairIndex(depends_on, LatencyIndex(managers, assistants, False, working_minutes))
    per_pair[pair.id] = kept
    while len(per_pair) > _MAX_PAIRS:
        del per_pair[next(iter(per_pair))]
    rows = session.scalars(
        select(Message)
        .where(Message.pair_id == pair.id, Message.id > kept.last_id)
        .order_by(Message.sent_at, Message.id)
    ).all()
    if rows:
        kept.index.add([to_message(m) for m in rows], now)
        kept.last_id = max(kept.last_id, *(m.id for m in rows))
        kept.fed += len(rows)
    return kept.index


def latency_of_archive(
    *,
    maildir: Path | None,
    mbox: Path | None,
    managers: Sequence[str],
    assistants: Sequence[str],
    sla_minutes: float,
    since: datetime | None,
    now: datetime,
    zone: str | None = None,
    holidays: str = "",
) -> dict[str, Any]:
    """Latency of an exported mailbox. With ``zone``, in working time (Mon–Fri 09–18 there,
    with ``holidays`` of that country); otherwise in wall time."""
    from assistant.services.hours import hours_for
    from assistant.store.tables import DEFAULT_WORKING_HOURS
    from connectors.archive.mailbox import MaildirSource, MboxSource

    messages: list[MessageData] = []
    skipped: list[str] = []
    for source in (
        [MaildirSource(maildir)] if maildir else []
    ) + ([MboxSource(mbox)] if mbox else []):  # fmt: skip
        delta = source.changes(None)
        messages.extend(delta.messages)
        skipped.extend(delta.skipped)
    working = None
    if zone:
        years = sorted({m.sent_at.year for m in messages} | {now.year})
        cfg = dict(DEFAULT_WORKING_HOURS) | ({"holidays": holidays} if holidays else {})
        working = hours_for(cfg, zone, range(years[0], years[-1] + 1)).working_minutes
    result = report(
        messages, {a.lower() for a in managers}, {a.lower() for a in assistants}, now,
        sla_minutes, since, working, zone or "UTC",
    )  # fmt: skip
    result["skipped"] = len(skipped)
    return result


def report(
    messages: Iterable[MessageData],
    managers: set[str],
    assistants: set[str],
    now: datetime,
    sla_minutes: float,
    since: datetime | None,
    working_minutes: Any,
    zone: str = "UTC",
) -> dict[str, Any]:
    records = reply_latencies(messages, managers, assistants, now, working_minutes=working_minutes)
    basis: Literal["wall", "working"] = "working" if working_minutes is not None else "wall"
    return _report(records, sla_minutes, since, basis, zone)


def _report(
    records: list[LatencyRecord],
    sla_minutes: float,
    since: datetime | None,
    basis: Literal["wall", "working"],
    zone: str,
) -> dict[str, Any]:
    if since is not None:
        records = [r for r in records if r.sent_at >= since]
    to_manager = [r for r in records if r.direction is Direction.ASSISTANT_TO_MANAGER]
    to_assistant = [r for r in records if r.direction is Direction.MANAGER_TO_ASSISTANT]
    return {
        "basis": basis,
        "summary": _summary(to_manager, sla_minutes, basis),
        "reverse_summary": _summary(to_assistant, sla_minutes, basis),
        "weekly": weekly_trend(to_manager, zone, sla_minutes, basis),
        "sla_minutes": sla_minutes,
        "messages": [_record(r, sla_minutes) for r in records],
    }


def _summary(
    records: list[LatencyRecord], sla: float, basis: Literal["wall", "working"]
) -> dict[str, Any]:
    """Figures in the SLA's basis; with working hours known, the wall figures beside them."""
    out = summarize(records, sla, basis).to_dict()
    out.pop("by_direction", None)
    out["basis"] = basis
    if basis == "working":
        wall = summarize(records, sla, "wall")
        out["wall_median_minutes"] = wall.median_minutes
        out["wall_p90_minutes"] = wall.p90_minutes
    return out


def _record(r: LatencyRecord, sla: float) -> dict[str, Any]:
    basis = r.working_minutes if r.working_minutes is not None else r.wall_minutes
    return {
        "id": r.message_id,
        "direction": r.direction.value,
        "subject": r.subject,
        "sent_at": r.sent_at.isoformat(),
        "replied_at": r.replied_at.isoformat() if r.replied_at else None,
        "wall_minutes": None if r.wall_minutes is None else round(r.wall_minutes, 1),
        "working_minutes": None if r.working_minutes is None else round(r.working_minutes, 1),
        "within_sla": None if basis is None else basis <= sla,
    }
