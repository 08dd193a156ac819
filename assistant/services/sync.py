"""Calendar sync: provider delta → snapshots → detected changes, in one transaction.

Decide and do are split: the provider is asked for its changes outside any database
transaction; then one transaction loads the old snapshot of the affected resources,
detects the changes (a pure function), stores the new snapshot and the changes (ranked
by the manager's priorities, pending notification), and moves the change token forward.
If anything fails before the commit nothing is stored and the token stays where it was,
so the next run repeats the same work; if it committed, the next run finds nothing new.
``assistant.services.notifications.dispatch`` then turns pending changes into one
message per burst, through the outbox. Either way the assistant is told once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Row, Table, bindparam, delete, insert, select, tuple_, update
from sqlalchemy.orm import Session

from assistant.domain.changes import Change, DetectionRules, detect_changes
from assistant.domain.model import EventData
from assistant.domain.priorities import rank
from assistant.services.priorities import load_rules
from assistant.store.db import UnitOfWork
from assistant.store.snapshots import from_row, to_json, to_values
from assistant.store.tables import (
    Account,
    CalendarResourceRow,
    ChangeBatch,
    EventSnapshot,
    Pair,
    ScheduleChange,
)
from config.settings import SyncSettings
from connectors.base import CalendarDelta, CalendarSource, ConnectorError, TokenExpired, Window
from connectors.netguard import redact_text

log = logging.getLogger(__name__)

# A full listing that comes back empty after this many events is a provider fault, not
# a mass cancellation (cf. vdirsyncer's StorageEmpty).
EMPTY_GUARD_MIN_EVENTS = 5
# Re-list everything when the expansion window has moved on by more than this.
WINDOW_REFRESH = timedelta(days=1)
# What went beyond a limit (or could not be read) is kept on the account, this much of it.
SKIPPED_KEPT = 20


class SuspiciousEmptyCalendar(ConnectorError):
    """The provider returned an empty calendar where we knew many events."""


@dataclass(frozen=True, slots=True)
class SyncPolicy:
    window_past: timedelta = timedelta(days=7)
    window_future: timedelta = timedelta(days=120)
    horizon: timedelta = timedelta(days=14)
    include_description: bool = False

    @classmethod
    def of(cls, settings: SyncSettings) -> SyncPolicy:
        """The policy the settings' ``[sync]`` section sets."""
        return cls(
            window_past=timedelta(days=settings.window_past_days),
            window_future=timedelta(days=settings.window_future_days),
            horizon=timedelta(days=settings.horizon_days),
        )


@dataclass(frozen=True, slots=True)
class OwnEventsSeen:
    """What one sync saw of the events this service wrote itself (``EventData.is_ours``).

    Handed to the sync's ``on_own_events`` inside its transaction, so that the feature that
    wrote them (delegation's checkpoints) follows the manager's moves and deletions in the
    same commit as the snapshot.
    """

    account_id: int
    before: Mapping[str, EventData]  # ours by UID, as stored before (the part read again)
    after: Mapping[str, EventData]  # ours by UID, as read now
    gone: frozenset[str]  # last path segments of the resources the provider deleted
    full: bool  # a full listing: what is not in it is gone
    window: Window


# Called in the sync's transaction with what it saw of our own events; the ids of the
# outbox entries it queued come back (they are reported with the sync).
OwnEventsHook = Callable[[Session, Pair, OwnEventsSeen, datetime], Sequence[int]]


@dataclass(frozen=True, slots=True)
class SyncReport:
    account_id: int
    full: bool = False
    unchanged: bool = False
    resources: int = 0
    events: int = 0
    changes: list[Change] = field(default_factory=list)
    batch_id: int | None = None
    outbox_ids: tuple[int, ...] = ()  # queued by the sync itself (a question to the manager)
    skipped: tuple[str, ...] = ()
    superseded: bool = False


@dataclass(frozen=True, slots=True)
class SyncStart:
    """What a sync starts from: the account's change token and sync state, its pair's zone
    (read with the account by whoever reads it first: ``account_row``)."""

    token: str | None
    state: Mapping[str, object]
    zone: str

    @classmethod
    def of(cls, row: Row[Any]) -> SyncStart:
        """From an ``account_row``."""
        return cls(row.sync_token, dict(row.sync_state), row.timezone)


# The statements of a poll that finds nothing new (most polls), built once and run as
# Core statements: the ORM's per-statement work cost more than the database did.
_ACCOUNTS = cast(Table, Account.__table__)
_ACCOUNT_ROW = (
    select(_ACCOUNTS, cast(Table, Pair.__table__).c.timezone)
    .join_from(_ACCOUNTS, Pair.__table__, _ACCOUNTS.c.pair_id == Pair.__table__.c.id)
    .where(_ACCOUNTS.c.id == bindparam("account_id"))
)
_UNCHANGED = (
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == bindparam("account_id"),
           _ACCOUNTS.c.sync_token.is_not_distinct_from(bindparam("token_used")))
    .values(sync_token=bindparam("new_token"), state="ok", last_sync_at=bindparam("now"),
            last_error=bindparam("new_error"), sync_state=bindparam("new_state"))
)  # fmt: skip


def account_row(session: Session, account_id: int) -> Row[Any] | None:
    """The account's columns and its pair's ``timezone``, in one statement (None: gone)."""
    return session.connection().execute(_ACCOUNT_ROW, {"account_id": account_id}).one_or_none()


def sync_start(session: Session, account_id: int) -> SyncStart:
    """The account's ``SyncStart``."""
    row = account_row(session, account_id)
    if row is None:
        raise LookupError(f"no account with id {account_id}")
    return SyncStart.of(row)


def sync_calendar(
    uow: UnitOfWork,
    account_id: int,
    source: CalendarSource,
    now: datetime,
    policy: SyncPolicy = SyncPolicy(),
    *,
    on_own_events: OwnEventsHook | None = None,
    start: SyncStart | None = None,
) -> SyncReport:
    """Sync one calendar account. Raises ConnectorError (recorded on the account).

    ``on_own_events`` is told, in the sync's transaction, what became of the events this
    service wrote (``assistant.services.pipeline`` passes the checkpoints' follower).
    ``start``: the account as the caller just read it (None: read here). A stale one is
    harmless: the transaction that stores the result checks the token it started from.
    """
    if start is None:
        with uow.read() as session:
            start = sync_start(session, account_id)
    token, state, zone = start.token, dict(start.state), start.zone
    window = Window(now - policy.window_past, now + policy.window_future, zone)
    known_until = _parse_time(state.get("window_end"))
    if known_until is not None and window.end - known_until > WINDOW_REFRESH:
        token = None  # re-expand recurring series over the moved window
    try:
        try:
            delta = source.changes(token, window)
        except TokenExpired:
            log.info("account %s: change token expired, full resync", account_id)
            delta = source.changes(None, window)
    except ConnectorError as exc:
        record_failure(uow, account_id, exc, now)
        raise
    try:
        if delta.unchanged and not delta.full:
            return _unchanged(uow, account_id, token, state, delta, window, now)
        return _apply(uow, account_id, token, delta, window, known_until, now, policy,
                      on_own_events)  # fmt: skip
    except SuspiciousEmptyCalendar as exc:
        record_failure(uow, account_id, exc, now)
        raise


def record_failure(uow: UnitOfWork, account_id: int, exc: Exception, now: datetime) -> None:
    with uow.begin() as session:
        account = session.get(Account, account_id)
        if account is not None:
            account.state = "error"
            account.last_error = redact_text(str(exc))[:500]  # no credentials of URLs
            account.sync_state = {**account.sync_state, "last_error_at": now.isoformat()}


def _unchanged(
    uow: UnitOfWork,
    account_id: int,
    token_used: str | None,
    state: Mapping[str, object],
    delta: CalendarDelta,
    window: Window,
    now: datetime,
) -> SyncReport:
    """Nothing changed (most polls): one UPDATE moves the token on and marks the account
    synced, where its token is still the one this sync started from; otherwise another
    worker synced it meanwhile and its result stands (as ``_apply`` decides, with a lock).
    What was skipped last time still stands."""
    report = SyncReport(account_id, full=False, unchanged=True, skipped=tuple(delta.skipped))
    values = _ok_values(state, delta.token, window, now, None)
    with uow.begin() as session:
        done = session.connection().execute(_UNCHANGED, {
            "account_id": account_id, "token_used": token_used, "new_token": values["sync_token"],
            "now": now, "new_error": values["last_error"], "new_state": values["sync_state"],
        })  # fmt: skip
        if rowcount(done):
            return report
        if session.get(Account, account_id) is None:
            raise LookupError(f"no account with id {account_id}")
    return replace(report, superseded=True)


def rowcount(result: object) -> int:
    """The rows an UPDATE or DELETE matched (a ``CursorResult``'s ``rowcount``)."""
    count = getattr(result, "rowcount", 0)
    return count if isinstance(count, int) else 0


def _apply(
    uow: UnitOfWork,
    account_id: int,
    token_used: str | None,
    delta: CalendarDelta,
    window: Window,
    known_until: datetime | None,
    now: datetime,
    policy: SyncPolicy,
    on_own_events: OwnEventsHook | None,
) -> SyncReport:
    # Items left out, and series kept as one item or texts cut at a limit.
    skipped = (*delta.skipped, *(n for r in delta.resources for n in r.notes))
    report = SyncReport(account_id, full=delta.full, unchanged=delta.unchanged, skipped=skipped)
    with uow.begin() as session:
        account = _account(session, account_id, lock=True)
        if account.sync_token != token_used and not delta.full:
            # Another worker synced this account meanwhile; its result stands.
            return replace(report, superseded=True)
        if delta.unchanged:  # what was skipped last time still stands
            _mark_ok(account, delta.token, window, now, None)
            return report
        pair = account.pair
        affected = {r.href for r in delta.resources} | set(delta.deleted)
        old_rows = _old_rows(session, account_id, None if delta.full else affected)
        new_events = [e for r in delta.resources for e in r.events]
        if delta.full and not new_events and len(old_rows) >= EMPTY_GUARD_MIN_EVENTS:
            raise SuspiciousEmptyCalendar(
                f"the calendar came back empty after holding {len(old_rows)} events; "
                "not treating that as cancellations"
            )
        new_keys = {e.key for e in new_events}
        # Occurrences that moved here from an unaffected resource are in old_rows too.
        if not delta.full:  # a full sync read every row of the account already
            known = {(r.uid, r.recurrence_id) for r in old_rows}
            old_rows.extend(_rows_for_keys(session, account_id, new_keys - known))
        old = {(r.uid, r.recurrence_id): from_row(r) for r in old_rows}
        new = {e.key: e for e in new_events}
        rules = DetectionRules(
            horizon=policy.horizon,
            manager_emails=frozenset({pair.manager_email.lower()}),
            include_description=policy.include_description,
        )
        changes: list[Change] = []
        if account.last_sync_at is not None:
            changes = detect_changes(old, new, now, rules, known_until=known_until)
        # else: the first sync is the baseline; nothing in it is news to the assistant.
        _store_snapshot(session, account_id, old_rows, new_events, delta, now)
        outbox_ids: tuple[int, ...] = ()
        if on_own_events is not None:
            seen = OwnEventsSeen(
                account_id,
                before={k[0]: e for k, e in old.items() if e.is_ours},
                after={k[0]: e for k, e in new.items() if e.is_ours},
                gone=frozenset(resource_name(h) for h in delta.deleted),
                full=delta.full,
                window=window,
            )
            outbox_ids = tuple(on_own_events(session, pair, seen, now))
        batch_id = None
        if changes:
            batch_id = _record_changes(session, pair, account, changes, delta.full, now)
        _mark_ok(account, delta.token, window, now, skipped)
    return replace(report, resources=len(delta.resources), events=len(new_events),
                   changes=changes, batch_id=batch_id, outbox_ids=outbox_ids)  # fmt: skip


def _account(session: Session, account_id: int, lock: bool = False) -> Account:
    stmt = select(Account).where(Account.id == account_id)
    if lock:
        stmt = stmt.with_for_update()
    account = session.scalars(stmt).one_or_none()
    if account is None:
        raise LookupError(f"no account with id {account_id}")
    return account


def _old_rows(session: Session, account_id: int, hrefs: set[str] | None) -> list[EventSnapshot]:
    stmt = select(EventSnapshot).where(EventSnapshot.account_id == account_id)
    if hrefs is not None:
        if not hrefs:
            return []
        rows: list[EventSnapshot] = []
        hl = sorted(hrefs)
        for i in range(0, len(hl), 500):
            rows.extend(session.scalars(stmt.where(EventSnapshot.href.in_(hl[i : i + 500]))))
        return rows
    return list(session.scalars(stmt))


def _rows_for_keys(
    session: Session, account_id: int, keys: set[tuple[str, str]]
) -> list[EventSnapshot]:
    if not keys:
        return []
    rows: list[EventSnapshot] = []
    kl = sorted(keys)
    for i in range(0, len(kl), 300):
        rows.extend(
            session.scalars(
                select(EventSnapshot).where(
                    EventSnapshot.account_id == account_id,
                    tuple_(EventSnapshot.uid, EventSnapshot.recurrence_id).in_(kl[i : i + 300]),
                )
            )
        )
    return rows


def _store_snapshot(
    session: Session,
    account_id: int,
    old_rows: list[EventSnapshot],
    new_events: Iterable[EventData],
    delta: CalendarDelta,
    now: datetime,
) -> None:
    for row in old_rows:
        session.delete(row)
    session.flush()
    rows = [to_values(account_id, e, now) for e in new_events]
    if rows:  # one multi-row insert, not an ORM object per event
        session.execute(insert(EventSnapshot), rows)
    if delta.full:
        session.execute(
            delete(CalendarResourceRow).where(CalendarResourceRow.account_id == account_id)
        )
    else:
        gone = {r.href for r in delta.resources} | set(delta.deleted)
        if gone:
            hl = sorted(gone)
            for i in range(0, len(hl), 500):
                session.execute(
                    delete(CalendarResourceRow).where(
                        CalendarResourceRow.account_id == account_id,
                        CalendarResourceRow.href.in_(hl[i : i + 500]),
                    )
                )
    resources = [{"account_id": account_id, "href": r.href, "etag": r.etag, "synced_at": now}
                 for r in delta.resources]  # fmt: skip
    if resources:
        session.execute(insert(CalendarResourceRow), resources)


def resource_name(href: str) -> str:
    """The last path segment of an href (servers give paths, clients may keep URLs)."""
    return href.rstrip("/").rsplit("/", 1)[-1]


def _record_changes(
    session: Session,
    pair: Pair,
    account: Account,
    changes: Sequence[Change],
    full: bool,
    now: datetime,
) -> int:
    """Store the changes as pending notifications, ranked by the manager's priorities.

    Nothing is sent here: ``assistant.services.notifications.dispatch`` coalesces the
    pending changes of a pair and writes the outbox rows, in its own transaction.
    """
    batch = ChangeBatch(pair_id=pair.id, account_id=account.id, detected_at=now, full_resync=full)
    session.add(batch)
    session.flush()
    rules = load_rules(session, pair.id)
    # Providers name the last modifier by address (CalDAV X-MODIFIED-BY) or display name
    # (EWS LastModifiedName): either identifies the assistant.
    assistant = {pair.assistant_email.lower(), pair.assistant_name.strip().lower()} - {""}
    for c in changes:
        ranked = rank(c, rules, pair.timezone, calendar=account.name, lang=pair.locale)
        side = c.after if c.after is not None else c.before
        by_assistant = side is not None and side.modified_by.strip().lower() in assistant
        session.add(
            ScheduleChange(
                batch_id=batch.id,
                pair_id=pair.id,
                kind=c.kind.value,
                uid=c.event.uid,
                recurrence_id=c.event.recurrence_id,
                summary=c.event.summary,
                starts_at=c.event.start,
                before=to_json(c.before) | {"kinds": sorted(c.kinds)} if c.before else None,
                after=to_json(c.after) | {"kinds": sorted(c.kinds)} if c.after else None,
                detected_at=now,
                priority=ranked.level.label,
                reasons=list(ranked.reasons),
                by_assistant=by_assistant,
                state="pending",
            )
        )
    return batch.id


def _mark_ok(
    account: Account,
    token: str | None,
    window: Window,
    now: datetime,
    skipped: tuple[str, ...] | None,
) -> None:
    """The sync went through. ``skipped`` (None: as it was) is kept on the account: its
    status (``last_error``, the account stays ``ok``) says how many items were not read
    in full and why, and ``sync_state["skipped"]`` lists the first reasons."""
    for name, value in _ok_values(account.sync_state, token, window, now, skipped).items():
        setattr(account, name, value)


def _ok_values(
    state_was: Mapping[str, object],
    token: str | None,
    window: Window,
    now: datetime,
    skipped: tuple[str, ...] | None,
) -> dict[str, object]:
    """The account's columns after a sync that went through (see ``_mark_ok``)."""
    state = dict(state_was)
    state.pop("last_error_at", None)
    state["window_end"] = window.end.isoformat()
    if skipped:
        state["skipped"] = [s[:300] for s in skipped[:SKIPPED_KEPT]]
        state["skipped_status"] = skipped_status(skipped)
    elif skipped is not None:
        state.pop("skipped", None)
        state.pop("skipped_status", None)
    return {"sync_token": token, "state": "ok", "last_sync_at": now,
            "last_error": str(state.get("skipped_status", "")), "sync_state": state}  # fmt: skip


def skipped_status(skipped: tuple[str, ...]) -> str:
    """One line for the account's status: how many items were not read in full, the first
    reason (reasons name the item and the limit, never its content)."""
    if not skipped:
        return ""
    first = " ".join(skipped[0].split())[:300]
    more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
    return f"{len(skipped)} item(s) not read in full: {first}{more}"[:500]


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=ZoneInfo("UTC"))
