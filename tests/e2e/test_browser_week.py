"""The week calendar in a real browser (headless Chromium, see tests/support/browser.py).

The seeded world (tests/support/web.py): on Tuesday 2026-11-24 (Berlin, "now" 10:00) each
pair has a board meeting at 10:00, an overlapping call at 10:30, a private doctor's visit
at 13:00, a Red Line checkpoint at 16:00 and a merger talk moved from 14:00 to 17:00.
Every page is shot in English and Russian at 1280 and 390 px (under pytest's tmp dir) and
fails on sideways scrolling, a console error, or English left on the Russian page.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from assistant.entrypoints.web.i18n import EN, RU
from assistant.services.users import add_membership
from assistant.store.tables import Account, EventSnapshot
from tests.support.browser import (  # noqa: F401 (fixtures)
    LiveApp,
    Watch,
    check,
    desktop_fixture,
    live_fixture,
    phone_fixture,
)
from tests.support.web import NOW

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page
try:
    from playwright.sync_api import expect
except ImportError:  # collected all the same: the browser fixture skips, or fails in CI
    expect = None

DAY = "2026-11-24"
def box(page: Page, selector: str) -> dict[str, float]:
    found = page.locator(selector).bounding_box()
    assert found is not None, selector
    return found


def add_offsite(live: LiveApp, pair_id: int) -> None:
    """A day-long event on Tuesday and Wednesday, as a calendar sync stores it, and an
    event on Monday whose title and place are one unbroken 300-letter word."""
    with live.svc.uow.begin() as s:
        account = s.scalars(select(Account).where(Account.pair_id == pair_id)).one()
        offsite = EventSnapshot(
            account_id=account.id, uid="offsite", summary="Strategy offsite",
            start_utc=datetime(2026, 11, 24, tzinfo=NOW.tzinfo),
            end_utc=datetime(2026, 11, 26, tzinfo=NOW.tzinfo), all_day=True,
            start_date=date(2026, 11, 24), end_date=date(2026, 11, 26),
            content_hash="offsite", seen_at=NOW,
        )  # fmt: skip
        long = EventSnapshot(
            account_id=account.id, uid="long", summary="Q" * 300,
            start_utc=datetime(2026, 11, 23, 7, tzinfo=NOW.tzinfo),
            end_utc=datetime(2026, 11, 23, 8, tzinfo=NOW.tzinfo), location="L" * 300,
            content_hash="long", seen_at=NOW,
        )  # fmt: skip
        s.add_all([offsite, long])


def switch_to_russian(page: Page) -> None:
    with page.expect_navigation():
        page.click("header button[name=locale]")
    expect(page.locator("html")).to_have_attribute("lang", "ru")


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_the_week_and_day_calendar_in_english_and_russian(
    live: LiveApp, request: pytest.FixtureRequest, tmp_path: Path, width: str
) -> None:
    context: BrowserContext = request.getfixturevalue(width)
    a = live.world.alpha
    page = context.new_page()
    watch = Watch(page)
    add_offsite(live, a.id)
    week_url = f"/pairs/{a.id}/week?date={DAY}"
    live.login(page, "sam@alpha.example", path=week_url)
    for locale in ("en", "ru"):
        if locale == "ru":
            switch_to_russian(page)
        page.goto(live.url(week_url))
        here = page.locator("header a.here")
        expect(here).to_have_text(EN["week"] if locale == "en" else RU["week"])
        expect(page.locator("#view-week")).to_have_attribute("aria-current", "page")
        tuesday = page.locator(f".col[data-date='{DAY}']")
        expect(tuesday.locator(".head")).to_have_text(
            "Tue 24 Nov" if locale == "en" else "вт 24 ноября"
        )
        expect(tuesday).to_have_class(re.compile(r"\btoday\b"))
        expect(page.locator(".col .head").first).to_have_text(
            "Mon 23 Nov" if locale == "en" else "пн 23 ноября"
        )
        expect(page.locator(".col")).to_have_count(7)
        board, clash = (
            tuesday.locator("[data-uid=alpha-board]"),
            tuesday.locator("[data-uid=alpha-clash]"),
        )
        expect(board).to_contain_text("10:00–11:00")
        expect(board).to_contain_text(a.secrets[0])
        expect(clash).to_have_class(re.compile(r"\bconflict\b"))
        doctor = tuesday.locator("[data-uid=alpha-doctor]")
        expect(doctor).to_have_class(re.compile(r"\bbusy\b"))
        expect(doctor).to_contain_text(RU["private_busy"] if locale == "ru" else EN["private_busy"])
        expect(tuesday.locator("[data-uid=alpha-rl]")).to_have_class(re.compile(r"\bcheckpoint\b"))
        merger = tuesday.locator("[data-uid=alpha-merger]")
        expect(merger).to_contain_text("17:00–18:00")
        expect(merger.locator(".moved")).to_contain_text("14:00–15:00")
        expect(tuesday.locator("[data-uid='alpha-merger~was']")).to_contain_text("14:00–15:00")
        expect(tuesday.locator(".now")).to_have_count(1)
        expect(page.locator(".grid .now")).to_have_count(1)
        for day in (DAY, "2026-11-25"):
            offsite = page.locator(f".col[data-date='{day}'] .allday [data-uid=offsite]")
            expect(offsite).to_contain_text("Strategy offsite")
        expect(page.locator(".allday [data-uid=offsite]")).to_have_count(2)
        content = page.content()
        assert a.secrets[1] not in content and a.secrets[2] not in content  # private details
        b, c = (
            box(page, f".col[data-date='{DAY}'] [data-uid=alpha-board]"),
            box(page, f".col[data-date='{DAY}'] [data-uid=alpha-clash]"),
        )
        if width == "desktop":  # the overlapping two side by side, the board first
            assert b["x"] + b["width"] <= c["x"] + 1 and c["y"] > b["y"]
            hour = box(page, f".col[data-date='{DAY}'] [data-uid=alpha-merger]")["height"]
            assert abs(hour - b["height"]) < 2  # an hour is as tall as an hour
        check(page, watch, locale, tmp_path, f"week-{width}-{locale}")

        page.click(f".col[data-date='{DAY}'] .head a")
        expect(page).to_have_url(re.compile(rf"view=day&date={DAY}$"))
        expect(page.locator(".col")).to_have_count(1)
        expect(page.locator("#view-day")).to_have_attribute("aria-current", "page")
        expect(page.locator("[data-uid=alpha-board]")).to_be_visible()
        check(page, watch, locale, tmp_path, f"day-{width}-{locale}")
        page.click("#cal-next")
        expect(page.locator(".col .head")).to_have_text(
            "Wed 25 Nov" if locale == "en" else "ср 25 ноября"
        )
        expect(page.locator(".grid .now")).to_have_count(0)
        check(page, watch, locale, tmp_path, f"day-next-{width}-{locale}")


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_an_assistant_of_two_managers_sees_their_days_side_by_side(
    live: LiveApp, request: pytest.FixtureRequest, tmp_path: Path, width: str
) -> None:
    context: BrowserContext = request.getfixturevalue(width)
    b = live.world.bravo
    add_membership(live.svc, user="sam@alpha.example", pair=b.id, role="assistant")
    page = context.new_page()
    watch = Watch(page)
    live.login(page, "sam@alpha.example")
    page.click("#all-weeks")
    expect(page).to_have_url(live.url("/week"))
    expect(page.locator("#managers li")).to_have_count(2)
    page.goto(live.url(f"/week?view=day&date={DAY}"))
    columns = page.locator(".col.owned")
    expect(columns).to_have_count(2)
    expect(columns.nth(0).locator(".head")).to_have_text("Alpha Manager")
    expect(columns.nth(1).locator(".head")).to_have_text("Bravo Manager")
    expect(columns.nth(0).locator("[data-uid=alpha-board]")).to_be_visible()
    expect(columns.nth(1).locator("[data-uid=bravo-board]")).to_be_visible()
    left, right = box(page, "[data-uid=alpha-board]"), box(page, "[data-uid=bravo-board]")
    assert left["x"] + left["width"] <= right["x"] and abs(left["y"] - right["y"]) < 1
    check(page, watch, "en", tmp_path, f"day-two-managers-{width}")

    page.click("#view-week")
    tuesday = page.locator(f".col[data-date='{DAY}']")
    colour = "el => getComputedStyle(el).borderLeftColor"
    mine: Any = tuesday.locator("[data-uid=alpha-board]").evaluate(colour)
    theirs: Any = tuesday.locator("[data-uid=bravo-board]").evaluate(colour)
    assert mine != theirs  # one colour per manager in a shared day column
    check(page, watch, "en", tmp_path, f"week-two-managers-{width}")
    switch_to_russian(page)
    check(page, watch, "ru", tmp_path, f"week-two-managers-{width}-ru")


def test_the_calendar_is_driven_from_the_keyboard(live: LiveApp, desktop: BrowserContext) -> None:
    a = live.world.alpha
    page = desktop.new_page()
    live.login(page, "sam@alpha.example", path=f"/pairs/{a.id}/week?date={DAY}")
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "cal-next":
            break
    else:
        pytest.fail("the next-week link cannot be reached with Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # the focus is visible
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"date=2026-11-30$"))
    page.goto(live.url(f"/pairs/{a.id}/week?date={DAY}"))
    board = page.locator(f".col[data-date='{DAY}'] [data-uid=alpha-board]")
    board.focus()
    expect(board).to_be_focused()
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
