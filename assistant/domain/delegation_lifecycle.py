"""The lifecycle of a delegated task: one transition table, state × event → state.

Every change to a task goes through ``transition``: created, updated, an answer at a line,
accepted, cancelled, its removed events restored, a checkpoint event moved or deleted in the
manager's calendar, a step of the method. A transition says what becomes of the task, what
becomes of its checkpoint events (``CalendarEffect``) and of its score (``ScoreEffect``);
a transition that is not in the table is refused with its reason (``RefusedTransition``).

Cancelling an open task ends it: its events leave the calendar. An accepted (or praised)
task is closed: cancelling it is refused, so its passed lines stay in the calendar as the
record, the lines the acceptance removed stay out, and its score stands (a score changes
only on an acceptance; a wrong one is corrected by accepting again). Pure code: no clock,
no database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class TaskState(StrEnum):
    BRIEFED = "briefed"
    UNDERSTOOD = "understood"
    IN_PROGRESS = "in_progress"
    ACCEPTED = "accepted"
    PRAISED = "praised"
    CANCELLED = "cancelled"


class TaskEvent(StrEnum):
    UPDATE = "update"  # a new deadline or title
    RED_LINE_ANSWER = "red_line_answer"  # an answer at the Red Line (anyone's)
    DEAD_LINE_ANSWER = "dead_line_answer"  # a Dead Line answer that does not accept
    ACCEPT = "accept"  # the manager's Dead Line answer with a percentage, `task accept`
    CANCEL = "cancel"
    RESTORE = "restore"  # put back the events the manager removed from the calendar
    MOVED_IN_CALENDAR = "moved_in_calendar"
    DELETED_IN_CALENDAR = "deleted_in_calendar"
    UNDERSTOOD = "understood"  # the delegate retold the task
    IN_PROGRESS = "in_progress"
    PRAISED = "praised"  # the delegate was thanked (after acceptance)


class CalendarEffect(StrEnum):
    NONE = "none"
    REPLAN = "replan"  # place both lines again from the term
    REMOVE_ALL = "remove_all"
    REMOVE_AHEAD = "remove_ahead"  # lines still ahead leave; passed ones stay as the record
    RESTORE_DELETED = "restore_deleted"
    PIN = "pin"  # the event stays where the manager moved it; the line follows
    MARK_DELETED = "mark_deleted"  # recorded and asked about, not recreated


class ScoreEffect(StrEnum):
    KEEP = "keep"
    COUNT = "count"  # the task counts in the delegation score with this answer


@dataclass(frozen=True, slots=True)
class Transition:
    source: TaskState
    event: TaskEvent
    target: TaskState
    calendar: CalendarEffect = CalendarEffect.NONE
    score: ScoreEffect = ScoreEffect.KEEP


class RefusedTransition(ValueError):
    """The event cannot happen to a task in this state (the message says why)."""

    def __init__(self, state: TaskState, event: TaskEvent, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.event = event


OPEN = (TaskState.BRIEFED, TaskState.UNDERSTOOD, TaskState.IN_PROGRESS)
DONE = (TaskState.ACCEPTED, TaskState.PRAISED)
CLOSED = (*DONE, TaskState.CANCELLED)
STEPS = (*OPEN, *DONE)  # the method's order
SCORED = DONE  # states in which a task counts in the score

S, E, C, K = TaskState, TaskEvent, CalendarEffect, ScoreEffect


def _table() -> dict[tuple[TaskState, TaskEvent], Transition]:
    table: dict[tuple[TaskState, TaskEvent], Transition] = {}

    def put(source: TaskState, event: TaskEvent, target: TaskState,
            calendar: CalendarEffect = C.NONE, score: ScoreEffect = K.KEEP) -> None:  # fmt: skip
        table[(source, event)] = Transition(source, event, target, calendar, score)

    for s in S:
        put(s, E.MOVED_IN_CALENDAR, s, C.PIN)
        put(s, E.DELETED_IN_CALENDAR, s, C.MARK_DELETED)
        put(s, E.DEAD_LINE_ANSWER, s)
        put(s, E.RED_LINE_ANSWER, S.IN_PROGRESS if s in (S.BRIEFED, S.UNDERSTOOD) else s)
    for s in OPEN:
        put(s, E.UPDATE, s, C.REPLAN)
        put(s, E.ACCEPT, S.ACCEPTED, C.REMOVE_AHEAD, K.COUNT)
        put(s, E.CANCEL, S.CANCELLED, C.REMOVE_ALL)
        put(s, E.RESTORE, s, C.RESTORE_DELETED)
        for step in (E.UNDERSTOOD, E.IN_PROGRESS):
            if STEPS.index(S(step.value)) > STEPS.index(s):
                put(s, step, S(step.value))
    for s in DONE:
        put(s, E.ACCEPT, s, score=K.COUNT)  # a corrected answer: the latest one counts
    put(S.ACCEPTED, E.PRAISED, S.PRAISED)
    put(S.CANCELLED, E.CANCEL, S.CANCELLED)
    return table


TABLE = _table()


def transition(state: str | TaskState, event: TaskEvent, subject: str = "the task") -> Transition:
    """The transition of ``event`` from ``state``; RefusedTransition when there is none."""
    s = TaskState(state)
    found = TABLE.get((s, event))
    if found is None:
        raise RefusedTransition(s, event, f"{subject} {_why_not(s, event)}")
    return found


def _why_not(s: TaskState, event: TaskEvent) -> str:
    if s is TaskState.CANCELLED and event is E.ACCEPT:
        return "is cancelled; it cannot be accepted"
    if s is TaskState.CANCELLED and event not in (E.RESTORE, E.UPDATE):
        return "is cancelled"
    if event is E.PRAISED:
        return f"is already {s}" if s is S.PRAISED else f"is {s}: praise comes after acceptance"
    if event in (E.UNDERSTOOD, E.IN_PROGRESS):
        return f"is already {s}"
    if event is E.RESTORE:
        return f"is {s}; nothing to restore"
    if event is E.CANCEL:
        return (f"is {s}; an accepted task cannot be cancelled (its score stands; correct "
                "the acceptance by accepting it again)")  # fmt: skip
    return f"is {s}; it cannot change"


# ------------------------------------------------------------------------ checkpoints

# Checkpoint states: planned → written (in the calendar); pinned (moved there by the
# manager, the task follows); user_deleted (the manager removed it: asked, not recreated);
# to_remove → removed; unplaced (no free slot).
PLANNED, WRITTEN, PINNED, UNPLACED = "planned", "written", "pinned", "unplaced"
DELETED_IN_CALENDAR = "user_deleted"  # fits the 16-character state column
TO_REMOVE, REMOVED = "to_remove", "removed"
IN_CALENDAR = (WRITTEN, PINNED)  # what the calendar holds once writing is done


def checkpoint_after(
    effect: CalendarEffect, state: str, start: datetime | None, now: datetime
) -> str:
    """A checkpoint's state after a task's ``effect`` (REPLAN is the planner's work:
    its rows keep their state here)."""
    if effect is C.REMOVE_ALL:
        return state if state == REMOVED else TO_REMOVE
    if effect is C.REMOVE_AHEAD:
        ahead = start is None or start > now
        return TO_REMOVE if ahead and state not in (REMOVED, DELETED_IN_CALENDAR) else state
    if effect is C.RESTORE_DELETED and state == DELETED_IN_CALENDAR:
        return PLANNED if start is not None else UNPLACED
    if effect is C.PIN and state in IN_CALENDAR:
        return PINNED
    if effect is C.MARK_DELETED and state in IN_CALENDAR:
        return DELETED_IN_CALENDAR
    return state


class CheckpointRow(Protocol):
    state: str

    @property
    def start_at(self) -> datetime | None: ...


class TaskRow(Protocol):
    state: str
    updated_at: datetime

    @property
    def id(self) -> int: ...

    @property
    def checkpoints(self) -> Sequence[CheckpointRow]: ...


def apply(task: TaskRow, event: TaskEvent, now: datetime) -> Transition:
    """Carry out ``event`` on a task and its checkpoints (their states; RefusedTransition
    when it cannot happen). The planner's part (REPLAN) and the score's are the caller's."""
    t = transition(task.state, event, f"task {task.id}")
    if t.target.value != task.state or t.calendar is not C.NONE:
        task.updated_at = now
    task.state = t.target.value
    for c in task.checkpoints:
        c.state = checkpoint_after(t.calendar, c.state, c.start_at, now)
    return t
