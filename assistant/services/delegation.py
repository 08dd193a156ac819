"""Delegated tasks and their checkpoint events in the manager's calendar.

The database is the source of truth: a task's Red Line and Dead Line rows (with a UID
chosen once, when the row is created) are committed first; then the calendar is made to
match them. Writing uses the stable UID, so a retry after a crash overwrites instead of
duplicating, and a task moved twice still has exactly two events.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from assistant.domain import delegation_lifecycle as lifecycle
from assistant.domain.delegation import (
    CheckpointKind,
    TaskBrief,
    check_term,
    checkpoint_text,
    plan_checkpoints,
)
from assistant.domain.delegation_lifecycle import CalendarEffect, TaskEvent
from assistant.domain.model import Attendee
from assistant.services.feedback import feedback_link
from assistant.services.hours import pair_hours
from assistant.services.pairs import NotFoundError, check_email, find_pair
from assistant.store.tables import Account, Checkpoint, DelegatedTask, EventSnapshot, Pair
from connectors.base import CalendarWriter, ConnectorError, OwnEvent

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from assistant.services.deps import Deps
    from assistant.store.tables import OutboxEntry

# The method's eight steps: analysis (do, delegate or delete), SMART parameters and the
# delegate are settled when a task is created (it starts "briefed"); then the delegate
# retells it ("understood"), the Red Line monitors it ("in_progress"), the Dead Line
# accepts it ("accepted"), and the delegate is thanked ("praised"). Which change may
# happen in which state, and what it does to the calendar and the score, is
# ``assistant.domain.delegation_lifecycle``'s table; ``apply_event`` carries it out.
STEPS = tuple(s.value for s in lifecycle.STEPS)
OPEN_STATES = tuple(s.value for s in lifecycle.OPEN)
PINNED = lifecycle.PINNED
DELETED_IN_CALENDAR = lifecycle.DELETED_IN_CALENDAR
CLOSED_STATES = tuple(s.value for s in lifecycle.CLOSED)
LABELS = {CheckpointKind.RED_LINE: "Red Line", CheckpointKind.DEAD_LINE: "Dead Line"}


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """What ``reconcile_checkpoints`` did to the calendar (filled in as it goes)."""

    task_id: int
    written: list[str] = field(default_factory=list)
    # (checkpoint id, start) of every line still ahead: prompts are scheduled for them
    ahead: list[tuple[int, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "task_id": self.task_id,
            "written": self.written,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "messages": self.messages,
            "ahead": self.ahead,
        }

    def summary(self) -> str:
        parts = []
        if self.written:
            parts.append(f"{len(self.written)} event(s) written")
        if self.removed:
            parts.append(f"{len(self.removed)} event(s) removed")
        return ", ".join(parts) or "calendar already up to date"


# ------------------------------------------------------------------------------ tasks


def pair_zone(deps: Deps, pair: str | int | None) -> str:
    with deps.uow.read() as session:
        return find_pair(session, pair).timezone


def task_zone(deps: Deps, task_id: int) -> str:
    with deps.uow.read() as session:
        return task_of(session, task_id)[1].timezone


def create_task(
    deps: Deps,
    *,
    pair: str | int | None,
    title: str,
    delegate: str,
    term_start: datetime | None = None,
    deadline: datetime,
    result: str = "",
    measure: str = "",
    resources: str = "",
    why: str = "",
    past_start_confirmed: bool = False,
) -> DelegatedTask:
    """A new task (term from now when ``term_start`` is None) and its checkpoint rows.

    A deadline in the past is refused (``PastDeadline``); a term that starts before the
    current minute is refused (``PastStart``) unless ``past_start_confirmed``: its
    checkpoint events could land in the past."""
    if not title.strip():
        raise ValueError("a task needs a title")
    now = deps.now()
    start = now if term_start is None else term_start
    with deps.uow.begin() as session:
        p = find_pair(session, pair)
        check_term(start, deadline, now, p.timezone, past_start_confirmed=past_start_confirmed)
        task = DelegatedTask(
            pair_id=p.id,
            title=title.strip(),
            result=result,
            measure=measure,
            resources=resources,
            why=why,
            delegator=p.manager_email,
            delegate=check_email(delegate, "delegate") if delegate else p.assistant_email,
            term_start=start,
            deadline=deadline,
            state=lifecycle.TaskState.BRIEFED.value,
            created_at=now,
            updated_at=now,
        )
        session.add(task)
        session.flush()
        ensure_checkpoints(session, task, p, deps)
    return task


def apply_event(
    session: Session, deps: Deps, task: DelegatedTask, pair: Pair, event: TaskEvent
) -> lifecycle.Transition:
    """Carry out ``event`` on ``task`` as the lifecycle table says (RefusedTransition when
    it cannot happen): its new state and its checkpoint rows (written to the calendar by
    ``reconcile_checkpoints``). The one place a task changes state."""
    now = deps.now()
    t = lifecycle.apply(task, event, now)
    if t.calendar in (CalendarEffect.REPLAN, CalendarEffect.RESTORE_DELETED):
        ensure_checkpoints(session, task, pair, deps)
    return t


def update_task(
    deps: Deps, task_id: int, *, deadline: datetime | None = None, title: str | None = None
) -> None:
    """A new deadline (not in the past, after the term's start) or title; the checkpoint
    rows are placed again."""
    with deps.uow.begin() as session:
        task, pair = task_of(session, task_id)
        lifecycle.transition(task.state, TaskEvent.UPDATE, f"task {task_id}")  # or refused
        if deadline is not None:
            check_term(task.term_start, deadline, deps.now(), pair.timezone,
                       past_start_confirmed=True)  # fmt: skip
            task.deadline = deadline
        if title:
            task.title = title
        apply_event(session, deps, task, pair, TaskEvent.UPDATE)


def cancel_task(deps: Deps, task_id: int) -> lifecycle.Transition:
    """Cancel an open task: its events leave the calendar. An accepted (or praised) task
    is refused (RefusedTransition): its calendar and its score stay as they are."""
    with deps.uow.begin() as session:
        task, pair = task_of(session, task_id)
        return apply_event(session, deps, task, pair, TaskEvent.CANCEL)


def accept_task(deps: Deps, task_id: int) -> None:
    """The task is accepted (at the Dead Line or early): checkpoints still ahead go away;
    those already passed stay in the calendar as the record of what happened."""
    with deps.uow.begin() as session:
        task, pair = task_of(session, task_id)
        apply_event(session, deps, task, pair, TaskEvent.ACCEPT)


def advance_task(deps: Deps, task_id: int, step: str) -> str:
    """Move a task to a later step of the method (``understood``, ``in_progress``,
    ``praised``); acceptance goes through ``accept_task`` (it changes the calendar)."""
    if step not in ("understood", "in_progress", "praised"):
        raise ValueError("a step is understood, in_progress or praised (accept with `task accept`)")
    with deps.uow.begin() as session:
        task, pair = task_of(session, task_id)
        apply_event(session, deps, task, pair, TaskEvent(step))
        return step


def restore_checkpoints(deps: Deps, task_id: int) -> int:
    """Put back the checkpoint events the manager removed from the calendar."""
    with deps.uow.begin() as session:
        task, pair = task_of(session, task_id)
        gone = sum(c.state == DELETED_IN_CALENDAR for c in task.checkpoints)
        if not gone:
            lifecycle.transition(task.state, TaskEvent.RESTORE, f"task {task_id}")
            return 0
        apply_event(session, deps, task, pair, TaskEvent.RESTORE)
        return gone


def checkpoint_moved(
    session: Session, cp: Checkpoint, start: datetime, end: datetime, now: datetime
) -> None:
    """The manager moved the checkpoint's event in their calendar: the line follows."""
    task = session.get(DelegatedTask, cp.task_id)
    assert task is not None
    t = lifecycle.transition(task.state, TaskEvent.MOVED_IN_CALENDAR, f"task {task.id}")
    cp.start_at, cp.end_at, cp.line_at = start, end, start
    cp.state = lifecycle.checkpoint_after(t.calendar, cp.state, start, now)
    cp.note = f"moved in the calendar by the manager at {now:%Y-%m-%d %H:%M} UTC"


def checkpoint_deleted(session: Session, cp: Checkpoint, now: datetime) -> None:
    """The manager deleted the checkpoint's event: recorded (``ask_about_deleted`` asks)."""
    task = session.get(DelegatedTask, cp.task_id)
    assert task is not None
    t = lifecycle.transition(task.state, TaskEvent.DELETED_IN_CALENDAR, f"task {task.id}")
    cp.state = lifecycle.checkpoint_after(t.calendar, cp.state, cp.start_at, now)
    cp.note = f"removed from the calendar at {now:%Y-%m-%d %H:%M} UTC"


_DELETED_TEXT = {
    "en": (
        "{label} of “{title}” removed from your calendar",
        "You removed the {label} checkpoint of the delegated task “{title}” (delegated to "
        "{delegate}) from your calendar.\n\nThe line stays on the task, at {when}, but no time "
        "is blocked for it any more. To put the event back: `assistant task restore {task}` "
        "or the task's page. To leave it off, nothing is needed.\n\n-- \nSent by exec-assistant.\n",
    ),
    "ru": (
        "{label} задачи «{title}» удалена из вашего календаря",
        "Вы удалили из календаря контрольную точку «{label}» делегированной задачи «{title}» "
        "(исполнитель: {delegate}).\n\nЛиния остаётся в задаче — {when}, но время под неё больше "
        "не заблокировано. Вернуть событие: `assistant task restore {task}` или страница "
        "задачи. Если так и задумано, ничего делать не нужно.\n\n-- \nОтправлено сервисом "
        "exec-assistant.\n",
    ),
}


def ask_about_deleted(
    session: Session, pair: Pair, cp: Checkpoint, now: datetime
) -> OutboxEntry | None:
    """Tell the manager a checkpoint event is gone and how to restore it (once per removal);
    the outbox entry queued, None when there was nothing (more) to ask."""
    from assistant.domain import timefmt
    from assistant.services import outbox

    task = session.get(DelegatedTask, cp.task_id)
    if task is None:
        return None
    lg = timefmt.lang(pair.locale)
    label = LABELS[CheckpointKind(cp.kind)]
    local = cp.line_at.astimezone(ZoneInfo(pair.timezone))
    subject, body = _DELETED_TEXT[lg]
    values = {"label": label, "title": task.title, "delegate": task.delegate, "task": task.id,
              "when": f"{timefmt.day(local.date(), lg)} {local:%H:%M}"}  # fmt: skip
    return outbox.enqueue(
        session,
        key=f"checkpoint-deleted:{cp.id}:{now:%Y%m%dT%H%M%S}:{pair.manager_email}:smtp",
        channel="smtp",
        recipient=pair.manager_email,
        subject=subject.format(**values),
        body_text=body.format(**values),
        payload={"kind": "checkpoint_deleted", "task_id": task.id, "checkpoint": cp.kind},
        pair_id=pair.id,
        now=now,
    )


def tasks_to_write(deps: Deps) -> list[int]:
    """Tasks whose calendar does not match them yet (a write job lost to a crash, a calendar
    that was down): the tick queues their write again. Writing is idempotent."""
    with deps.uow.read() as session:
        ids = session.scalars(
            select(Checkpoint.task_id)
            .where(
                Checkpoint.account_id.is_not(None),
                Checkpoint.state.in_(("planned", "to_remove")),
            )
            .distinct()
        )
        return sorted(ids)


def task_of(session: Session, task_id: int) -> tuple[DelegatedTask, Pair]:
    task = session.get(DelegatedTask, task_id)
    if task is None:
        raise NotFoundError(f"no task {task_id}")
    pair = session.get(Pair, task.pair_id)
    assert pair is not None
    return task, pair


def ensure_checkpoints(session: Session, task: DelegatedTask, pair: Pair, deps: Deps) -> None:
    """Create or re-plan both checkpoint rows from the task's term (nothing written yet)."""
    s = deps.settings.delegation
    hours = pair_hours(pair, task.term_start.year - 1, task.deadline.year + 1)
    busy = _busy(
        session,
        pair.id,
        task.term_start - timedelta(days=s.search_days),
        task.deadline + timedelta(days=s.search_days),
    )
    planned = plan_checkpoints(
        task.term_start,
        task.deadline,
        red_line_fraction=s.red_line_fraction,
        red_line_duration=timedelta(minutes=s.red_line_minutes),
        dead_line_duration=timedelta(minutes=s.dead_line_minutes),
        busy=busy,
        hours=hours,
        search=timedelta(days=s.search_days),
    )
    existing = {c.kind: c for c in task.checkpoints}
    account = _writable_account(session, pair.id)
    for plan in planned:
        row = existing.get(plan.kind.value)
        if row is not None and row.state == DELETED_IN_CALENDAR:
            continue  # the manager removed it; only restore_checkpoints() brings it back
        if (
            row is not None
            and row.state == PINNED
            and plan.kind is CheckpointKind.RED_LINE
            and row.start_at is not None
            and row.start_at < task.deadline
        ):
            continue  # the manager placed the Red Line by hand: it stays where they put it
        if row is None:
            row = Checkpoint(
                kind=plan.kind.value,
                event_uid=f"{uuid.uuid4()}@exec-assistant",
                line_at=plan.line_at,
            )
            task.checkpoints.append(row)
        elif (row.line_at, row.start_at, row.end_at) == (plan.line_at, plan.start, plan.end) and (
            row.state == "written"
        ):
            continue
        row.line_at = plan.line_at
        row.start_at, row.end_at = plan.start, plan.end
        row.account_id = account.id if account else None
        row.note = plan.reason or ""
        row.state = "planned" if plan.start is not None else "unplaced"


def _busy(
    session: Session, pair_id: int, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    stmt = (
        select(EventSnapshot.start_utc, EventSnapshot.end_utc)
        .join(Account, Account.id == EventSnapshot.account_id)
        .where(
            Account.pair_id == pair_id,
            EventSnapshot.busy.is_(True),
            EventSnapshot.status != "cancelled",
            EventSnapshot.own_marker == "",
            EventSnapshot.end_utc > start,
            EventSnapshot.start_utc < end,
        )
    )
    return [(s, e) for s, e in session.execute(stmt)]


def _writable_account(session: Session, pair_id: int) -> Account | None:
    stmt = (
        select(Account)
        .where(Account.pair_id == pair_id, Account.writable.is_(True), Account.kind == "calendar")
        .order_by(Account.id)
    )
    found = session.scalars(stmt).first()
    # A disabled calendar is left alone: checkpoints wait for it to be enabled rather than
    # moving to another calendar (which would leave the written ones behind).
    return None if found is None or found.disabled else found


# ------------------------------------------------------------------------ calendar I/O


def reconcile_checkpoints(
    deps: Deps, task_id: int, writer: CalendarWriter | None = None
) -> ReconcileReport:
    """Make the calendar hold exactly the task's planned checkpoint events."""
    report = ReconcileReport(task_id)
    with deps.uow.read() as session:
        task, pair = task_of(session, task_id)
        brief = TaskBrief(
            title=task.title,
            result=task.result,
            measure=task.measure,
            resources=task.resources,
            why=task.why,
            delegate=task.delegate,
            term_start=task.term_start,
            deadline=task.deadline,
            zone=pair.timezone,
        )
        rows = [
            (c.id, c.kind, c.event_uid, c.start_at, c.end_at, c.state, c.account_id, c.note)
            for c in task.checkpoints
        ]
        locale, zone, manager = pair.locale, pair.timezone, pair.manager_email
        accounts = {
            a.id: (a.provider, dict(a.settings))
            for a in session.scalars(select(Account).where(Account.pair_id == pair.id))
        }
        closed = task.state in CLOSED_STATES
    opened: dict[int, CalendarWriter] = {}
    try:
        _write_rows(deps, task_id, rows, accounts, writer, opened, closed, report, brief,
                    manager, locale, zone)  # fmt: skip
    finally:
        for w in opened.values():
            close = getattr(w, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()
    return report


def _write_rows(  # the loop of reconcile_checkpoints, its state passed in
    deps: Deps,
    task_id: int,
    rows: Any,
    accounts: dict[int, tuple[str, dict[str, Any]]],
    writer: CalendarWriter | None,
    opened: dict[int, CalendarWriter],
    closed: bool,
    report: ReconcileReport,
    brief: TaskBrief,
    manager: str,
    locale: str,
    zone: str,
) -> None:
    for cid, kind, uid, start, end, state, account_id, note in rows:
        label = LABELS[CheckpointKind(kind)]
        if state == lifecycle.REMOVED:
            continue  # out of the calendar, and to stay out (a cancelled task, an accepted one)
        if account_id is None or account_id not in accounts:
            if state in ("planned", "unplaced"):
                report.messages.append(f"{label}: no writable calendar connected; not blocked")
            continue
        target = writer or opened.get(account_id)
        if target is None:  # one writer per account: a second sign-in could be refused
            target = opened[account_id] = _open_writer(deps, account_id, *accounts[account_id])
        if state == "to_remove" or (closed and state in ("planned", "unplaced")):
            if state == "to_remove":
                target.delete_event(uid)
                _mark(deps, cid, "removed", "")
                report.removed.append(uid)
            continue
        if state == "unplaced":
            report.messages.append(f"{label}: {note or 'no free slot found'}")
            continue
        if state in ("written", PINNED):
            report.unchanged.append(uid)
            if start is not None and start > deps.now():
                report.ahead.append((cid, start.isoformat()))
            continue
        if state == DELETED_IN_CALENDAR:
            report.messages.append(f"{label}: removed from the calendar by the manager; kept off")
            continue
        assert start is not None
        assert end is not None
        link = feedback_link(deps.settings, task_id, brief.deadline, kind, manager)
        summary, description = checkpoint_text(CheckpointKind(kind), brief, link, locale)
        attendees: tuple[Attendee, ...] = ()
        if deps.settings.delegation.invite_delegate:
            attendees = (Attendee(brief.delegate),)
        written = target.put_event(
            OwnEvent(
                uid=uid,
                summary=summary,
                description=description,
                start=start,
                end=end,
                timezone=zone,
                marker=f"{task_id}:{kind}",
                attendees=attendees,
            )
        )
        _mark(deps, cid, "written", written.href)
        report.written.append(uid)
        if start > deps.now():
            report.ahead.append((cid, start.isoformat()))
        local = start.astimezone(ZoneInfo(zone))
        report.messages.append(f"{label}: {local:%a %d %b %H:%M} ({zone}) in the calendar")


def _open_writer(
    deps: Deps, account_id: int, provider: str, conf: dict[str, Any]
) -> CalendarWriter:
    from assistant.services.accounts import token_keeper
    from connectors.netguard import NetPolicy
    from connectors.registry import open_calendar_writer

    try:
        return open_calendar_writer(
            provider,
            conf,
            deps.settings.sync.http_timeout_seconds,
            keep_token=token_keeper(deps, account_id),
            policy=NetPolicy.from_settings(deps.settings.network),
        )
    except ValueError as exc:
        raise ConnectorError(str(exc)) from None


def _mark(deps: Deps, checkpoint_id: int, state: str, href: str) -> None:
    with deps.uow.begin() as session:
        row = session.get(Checkpoint, checkpoint_id)
        if row is None:
            return
        row.state = state
        row.event_href = href
        row.written_at = deps.now() if state == "written" else row.written_at
