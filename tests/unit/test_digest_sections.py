"""An assistant's digest in parts: one per manager, then parts about the service as a whole.

Rendering only (pure domain): two managers in Russian name both, with each part's times in
its manager's zone; an ``ExtraSection`` (e.g. accounts needing attention) comes after the
managers' parts, its empty text when it has no lines; one manager reads as before.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from assistant.domain.digest import (
    DigestContent,
    DigestSection,
    ExtraSection,
    render_assistant_digest,
    render_digest,
    structured_digest,
)
from assistant.domain.model import EventData
from assistant.domain.notify import Audience

TODAY = date(2026, 11, 24)


def section(pair_id: int, name: str, zone: str, title: str, hour: int) -> DigestSection:
    event = EventData(
        uid=title, start=datetime(2026, 11, 24, hour, tzinfo=UTC),
        end=datetime(2026, 11, 24, hour + 1, tzinfo=UTC), summary=title,
    )  # fmt: skip
    audience = Audience(
        locale="en", manager_zone=zone, assistant_zone="Europe/Berlin", manager_name=name,
        manager_emails=frozenset({f"{name.lower()}@example.com"}),
    )  # fmt: skip
    return DigestSection(DigestContent(today=TODAY, events=[event]), audience, pair_id)


ALEX = section(1, "Alex", "Europe/Berlin", "Board meeting", 9)
KIM = section(2, "Kim", "America/New_York", "Budget call", 15)


def test_two_managers_in_russian_name_both_with_their_own_times() -> None:
    msg = render_assistant_digest([ALEX, KIM], "ru")
    assert msg.subject == (
        "Сводка на вт 24 ноября: Alex: встреч сегодня — 1; Kim: встреч сегодня — 1"
    )
    alex, kim = msg.text.split("######## Расписание (Kim)")
    assert "по расписаниям: Alex, Kim" in alex
    assert "10:00–11:00" in alex and "Board meeting" in alex  # Berlin time
    assert "10:00–11:00" in kim and "Budget call" in kim  # New York time
    assert "Today" not in msg.text and "Сегодня" in kim
    data = structured_digest([ALEX, KIM])
    assert [(s["pair_id"], s["manager"]) for s in data["sections"]] == [(1, "Alex"), (2, "Kim")]


def test_extra_sections_follow_the_managers_parts() -> None:
    extras = [
        ExtraSection("Accounts that need attention", ("Kim's calendar: password refused",)),
        ExtraSection("Quiet", (), "Nothing to say."),
    ]
    msg = render_assistant_digest([ALEX, KIM], "en", extras)
    kim_part, after = msg.text.split("== Accounts that need attention ==")
    assert "Budget call" in kim_part
    assert "* Kim's calendar: password refused" in after
    assert "== Quiet ==\nNothing to say.\n" in after
    assert after.rstrip().endswith("watches the manager's calendar for you.")
    assert "<li>Kim&#39;s calendar: password refused</li>" in msg.html


def test_one_manager_reads_as_that_pairs_digest() -> None:
    msg = render_assistant_digest([ALEX], "en")
    assert msg == render_digest(ALEX.content, ALEX.audience)
    assert msg.text.startswith("Daily digest for Alex's schedule, Tue 24 Nov. Times are in Berlin")
    assert msg.subject == "Daily digest for Alex, Tue 24 Nov: 1 meeting today"
    assert "########" not in msg.text
