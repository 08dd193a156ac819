"""The task lifecycle's table and the term a task may be given (pure domain)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from assistant.domain.delegation import PastDeadline, PastStart, check_term
from assistant.domain.delegation_lifecycle import (
    TABLE,
    CalendarEffect,
    RefusedTransition,
    ScoreEffect,
    TaskEvent,
    TaskState,
    apply,
    checkpoint_after,
    transition,
)

NOW = datetime(2026, 11, 23, 8, 0, 30, tzinfo=UTC)
S, E = TaskState, TaskEvent


@dataclass
class Cp:
    state: str
    start_at: datetime | None


@dataclass
class Task:
    state: str
    checkpoints: list[Cp] = field(default_factory=list)
    updated_at: datetime = NOW - timedelta(days=1)
    id: int = 5


def test_an_accepted_task_is_not_cancelled() -> None:
    for done in (S.ACCEPTED, S.PRAISED):
        with pytest.raises(RefusedTransition, match="an accepted task cannot be cancelled"):
            transition(done, E.CANCEL)
    t = transition(S.BRIEFED, E.CANCEL)
    assert (t.target, t.calendar, t.score) == (S.CANCELLED, CalendarEffect.REMOVE_ALL,
                                               ScoreEffect.KEEP)  # fmt: skip


def test_only_acceptance_touches_the_score() -> None:
    touching = {e for (_, e), t in TABLE.items() if t.score is not ScoreEffect.KEEP}
    assert touching == {E.ACCEPT}
    assert {TABLE[(s, E.ACCEPT)].target for s in S if (s, E.ACCEPT) in TABLE} == {
        S.ACCEPTED, S.PRAISED}  # fmt: skip


def test_refusals_say_why() -> None:
    cases = {
        (S.CANCELLED, E.ACCEPT): "task 5 is cancelled; it cannot be accepted",
        (S.ACCEPTED, E.UPDATE): "task 5 is accepted; it cannot change",
        (S.PRAISED, E.RESTORE): "task 5 is praised; nothing to restore",
        (S.BRIEFED, E.PRAISED): "task 5 is briefed: praise comes after acceptance",
        (S.IN_PROGRESS, E.UNDERSTOOD): "task 5 is already in_progress",
        (S.CANCELLED, E.UNDERSTOOD): "task 5 is cancelled",
    }
    for (state, event), message in cases.items():
        with pytest.raises(RefusedTransition) as refused:
            transition(state, event, "task 5")
        assert str(refused.value) == message
        assert isinstance(refused.value, ValueError)


def test_every_state_follows_the_calendar() -> None:
    for s in S:
        assert transition(s, E.MOVED_IN_CALENDAR).target is s
        assert transition(s, E.DELETED_IN_CALENDAR).calendar is CalendarEffect.MARK_DELETED


def test_accepting_removes_what_is_ahead_and_keeps_what_passed() -> None:
    task = Task("in_progress", [Cp("written", NOW - timedelta(hours=1)),
                                Cp("written", NOW + timedelta(days=2)),
                                Cp("user_deleted", NOW + timedelta(days=1))])  # fmt: skip
    apply(task, E.ACCEPT, NOW)
    assert task.state == "accepted" and task.updated_at == NOW
    assert [c.state for c in task.checkpoints] == ["written", "to_remove", "user_deleted"]
    task.checkpoints[1].state = "removed"  # written out of the calendar
    with pytest.raises(RefusedTransition):
        apply(task, E.CANCEL, NOW + timedelta(hours=1))
    assert task.state == "accepted" and task.updated_at == NOW
    assert [c.state for c in task.checkpoints] == ["written", "removed", "user_deleted"]
    other = Task("understood", [Cp("written", NOW), Cp("user_deleted", NOW)])
    apply(other, E.CANCEL, NOW)
    assert other.state == "cancelled"
    assert [c.state for c in other.checkpoints] == ["to_remove"] * 2
    with pytest.raises(RefusedTransition, match="cannot be accepted"):
        apply(other, E.ACCEPT, NOW)
    assert other.state == "cancelled"


def test_checkpoint_states() -> None:
    ahead, passed = NOW + timedelta(hours=1), NOW - timedelta(hours=1)
    assert checkpoint_after(CalendarEffect.RESTORE_DELETED, "user_deleted", None, NOW) == "unplaced"
    assert checkpoint_after(CalendarEffect.RESTORE_DELETED, "user_deleted", ahead, NOW) == "planned"
    assert checkpoint_after(CalendarEffect.PIN, "written", passed, NOW) == "pinned"
    assert checkpoint_after(CalendarEffect.PIN, "removed", passed, NOW) == "removed"
    assert checkpoint_after(CalendarEffect.REMOVE_AHEAD, "written", passed, NOW) == "written"
    assert checkpoint_after(CalendarEffect.REMOVE_ALL, "removed", passed, NOW) == "removed"


def test_a_deadline_in_the_past_is_refused() -> None:
    start = NOW - timedelta(days=2)
    with pytest.raises(PastDeadline, match=r"the deadline 2026-11-23 08:00 \(UTC\) is in the past"):
        check_term(start, NOW.replace(second=0), NOW, past_start_confirmed=True)
    with pytest.raises(PastDeadline):  # the reason to give first, even before the start
        check_term(NOW, NOW - timedelta(hours=1), NOW)
    with pytest.raises(ValueError, match="after the start"):
        check_term(NOW + timedelta(days=2), NOW + timedelta(days=1), NOW)


def test_a_start_before_the_current_minute_needs_confirming() -> None:
    deadline = NOW + timedelta(days=3)
    check_term(NOW.replace(second=0), deadline, NOW)  # this minute is now
    with pytest.raises(PastStart, match="starts in the past"):
        check_term(NOW - timedelta(minutes=1), deadline, NOW)
    check_term(NOW - timedelta(days=1), deadline, NOW, past_start_confirmed=True)
