"""Conflicts, priority rules and coalescing (netting) of changes: pure, table-driven."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from assistant.domain.changes import Change, ChangeKind, DetectionRules, net_changes
from assistant.domain.conflicts import find_conflicts, physical_place
from assistant.domain.model import Attendee, EventData, EventStatus, Response
from assistant.domain.priorities import Level, make_rule, parse_block, rank

BOSS = "alex@example.com"
T = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # Tue 10:00 in Berlin


def ev(uid: str, start_h: float, end_h: float, *, where: str = "", busy: bool = True,
       rid: str = "", **kw: object) -> EventData:  # fmt: skip
    return EventData(
        uid=uid, recurrence_id=rid, start=T + timedelta(hours=start_h),
        end=T + timedelta(hours=end_h), summary=uid.title(), location=where, busy=busy, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


# ------------------------------------------------------------------------- conflicts


@pytest.mark.parametrize(
    ("changed", "other", "expected"),
    [
        (ev("a", 0, 1), ev("b", 0.5, 1.5), "overlap"),
        (ev("a", 0, 1), ev("b", 1, 2), None),  # back to back, same (no) place
        (ev("a", 0, 1, where="Boardroom"), ev("b", 1.25, 2, where="Café Central"), "travel"),
        (ev("a", 0, 1, where="Boardroom"), ev("b", 1.5, 2, where="Café Central"), None),  # 30 min ok
        (ev("a", 0, 1, where="Boardroom"), ev("b", 1.25, 2, where="boardroom"), None),  # same place
        (ev("a", 0, 1, where="Boardroom"), ev("b", 1.25, 2, where="Microsoft Teams"), None),
        (ev("a", 0, 1, where="Boardroom"), ev("b", 1.1, 2, where="https://zoom.us/j/1"), None),
        (ev("a", 0, 1), ev("b", 0.5, 1.5, busy=False), None),  # free time blocks nothing
        (ev("a", 0, 1), ev("b", 0.5, 1.5, status=EventStatus.CANCELLED), None),
        (ev("a", 0, 1), ev("b", 0.5, 1.5, own_marker="7:red_line"), None),  # ours: re-planned
        (ev("a", 0, 1), ev("b", 0.5, 1.5, attendees=(Attendee(BOSS, response=Response.DECLINED),)),
         None),
        (ev("a", 0, 1), ev("b", -10, 14, all_day=True), None),  # all-day markers
        (ev("a", 2, 3, where="Office A"), ev("b", 0, 1.9, where="Office B"), "travel"),  # before
    ],
)
def test_conflict_table(changed: EventData, other: EventData, expected: str | None) -> None:
    found = find_conflicts([changed], [changed, other], travel_buffer=timedelta(minutes=30),
                           manager_emails=frozenset({BOSS}))  # fmt: skip
    assert [c.kind for c in found] == ([expected] if expected else [])
    if expected:
        assert found[0].other.uid == "b"


def test_each_pair_of_events_is_reported_once_and_gap_is_measured() -> None:
    a = ev("a", 0, 1, where="Boardroom")
    b = ev("b", 1.25, 2, where="Café")
    found = find_conflicts([a, b], [a, b], travel_buffer=timedelta(minutes=30))
    assert len(found) == 1
    assert found[0].gap_minutes == pytest.approx(15)


def test_physical_place() -> None:
    assert physical_place(ev("a", 0, 1, where="  Boardroom,  12th floor ")) == "boardroom, 12th floor"
    assert physical_place(ev("a", 0, 1, where="Видеосвязь")) == ""
    assert physical_place(ev("a", 0, 1, where="Video call (Teams)")) == ""


# ------------------------------------------------------------------------ priorities


def change(before: EventData | None, after: EventData | None, kind: ChangeKind = ChangeKind.MOVED) -> Change:
    return Change(frozenset({kind}), before, after)


CEO = ev("board", 0, 1, organizer="ceo@bigcorp.com", attendees=(Attendee(BOSS),),
         categories=("Board",))  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "pattern", "matches"),
    [
        ("person", "CEO@bigcorp.com", True),
        ("person", "cfo@bigcorp.com", False),
        ("domain", "bigcorp.com", True),
        ("domain", "@bigcorp.com", True),
        ("domain", "corp.com", False),
        ("keyword", "BOARD", True),
        ("keyword", "lunch", False),
        ("category", "board", True),
        ("calendar", "Work", True),
        ("calendar", "Family", False),
        ("protected", "tue 09:30-10:30", True),  # T is Tue 10:00 Berlin
        ("protected", "mon,wed-fri", False),
        ("protected", "mon-fri 07:00-09:00", False),
    ],
)
def test_rule_table(kind: str, pattern: str, matches: bool) -> None:
    rule = make_rule(kind, pattern, "high")
    ranked = rank(change(None, CEO, ChangeKind.CREATED), [rule], "Europe/Berlin", calendar="work")
    assert (ranked.level is Level.HIGH) is matches
    assert bool(ranked.reasons) is matches


def test_highest_level_wins_and_default_is_normal() -> None:
    rules = [make_rule("keyword", "board", "low"), make_rule("domain", "bigcorp.com", "high")]
    assert rank(change(None, CEO), rules, "UTC").level is Level.HIGH
    assert rank(change(None, ev("x", 0, 1)), rules, "UTC") .level is Level.NORMAL
    low = rank(change(None, CEO), rules[:1], "UTC")
    assert low.level is Level.LOW
    assert low.reasons == ("low: mentions board",)


def test_the_before_side_counts_too() -> None:
    """Moving a meeting out of protected time still touches it."""
    rule = make_rule("protected", "tue 09:00-11:00", "high")
    before, after = ev("a", 0, 1), ev("a", 30, 31)
    assert rank(change(before, after), [rule], "Europe/Berlin").level is Level.HIGH


@pytest.mark.parametrize(
    ("kind", "pattern", "message"),
    [
        ("person", "not-an-address", "not an email address"),
        ("domain", "nodot", "not a domain"),
        ("protected", "someday 9-5", "not protected time"),
        ("protected", "mon 10:00-09:00", "end after it starts"),
        ("protected", "mon-fri 25:00-26:00", "not a time of day"),
        ("weather", "rain", "unknown rule kind"),
    ],
)
def test_bad_rules_are_refused_with_a_reason(kind: str, pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_rule(kind, pattern, "high")
    with pytest.raises(ValueError, match="unknown priority"):
        make_rule("keyword", "x", "urgent")


def test_blocks() -> None:
    assert parse_block("sat,sun").weekdays == {5, 6}
    assert parse_block("fri-mon").weekdays == {4, 5, 6, 0}
    assert parse_block("mon-fri 07:00-24:00").end.hour == 0


# ------------------------------------------------------------------------ coalescing


RULES = DetectionRules(manager_emails=frozenset({BOSS}))
A = ev("a", 0, 1, where="Room 1")


def test_moved_twice_is_one_move_from_first_to_last() -> None:
    mid, last = replace(A, start=A.start + timedelta(hours=1), end=A.end + timedelta(hours=1)), \
        replace(A, start=A.start + timedelta(hours=3), end=A.end + timedelta(hours=3))  # fmt: skip
    net = net_changes([change(A, mid), change(mid, last)], RULES)
    assert len(net) == 1
    assert net[0].before == A
    assert net[0].after == last
    assert net[0].kinds == {ChangeKind.MOVED}


def test_undone_within_the_window_is_nothing() -> None:
    moved = replace(A, start=A.start + timedelta(hours=1), end=A.end + timedelta(hours=1))
    assert net_changes([change(A, moved), change(moved, A)], RULES) == []
    assert net_changes([change(None, A, ChangeKind.CREATED), change(A, None, ChangeKind.DELETED)], RULES) == []


def test_created_then_changed_is_created_and_aspects_combine() -> None:
    moved = replace(A, start=A.start + timedelta(hours=1), end=A.end + timedelta(hours=1))
    net = net_changes([change(None, A, ChangeKind.CREATED), change(A, moved)], RULES)
    assert [c.kind for c in net] == [ChangeKind.CREATED]
    assert net[0].after == moved
    relocated = replace(moved, location="Room 2")
    both = net_changes([change(A, moved), change(moved, relocated, ChangeKind.RELOCATED)], RULES)
    assert both[0].kinds == {ChangeKind.MOVED, ChangeKind.RELOCATED}


def test_deleted_then_recreated_identically_is_nothing_and_cancel_wins() -> None:
    assert net_changes([change(A, None, ChangeKind.DELETED), change(None, A, ChangeKind.CREATED)], RULES) == []
    cancelled = replace(A, status=EventStatus.CANCELLED)
    moved = replace(A, start=A.start + timedelta(hours=1), end=A.end + timedelta(hours=1))
    net = net_changes([change(A, moved), change(moved, cancelled, ChangeKind.CANCELLED)], RULES)
    assert [c.kind for c in net] == [ChangeKind.CANCELLED]


def test_a_moved_series_occurrence_is_followed_by_its_new_key() -> None:
    old = ev("s", 0, 1, rid="20261201T090000Z")
    new = replace(old, recurrence_id="20261201T100000Z", start=old.start + timedelta(hours=1),
                  end=old.end + timedelta(hours=1))  # fmt: skip
    newer = replace(new, location="Room 9")
    net = net_changes([change(old, new), change(new, newer, ChangeKind.RELOCATED)], RULES)
    assert len(net) == 1
    assert net[0].before == old
    assert net[0].after == newer


def test_unrelated_changes_stay_apart_in_time_order() -> None:
    b = ev("b", -1, 0)
    net = net_changes([change(A, None, ChangeKind.DELETED), change(None, b, ChangeKind.CREATED)], RULES)
    assert [c.event.uid for c in net] == ["b", "a"]
