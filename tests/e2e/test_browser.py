"""The web app in a real browser: headless Chromium driven by Playwright.

Playwright or Selenium? Both drive Debian's build here (checked with chromium
156.0.8078.79: Playwright 1.65 through ``executable_path``; Selenium 4.51 through the
``chromium-driver`` package of the very same version). Selenium's strength is that
Debian ships browser and driver in lockstep; Playwright is built against one Chromium
revision (1.65: 159) but also supports the branded stable Chrome (``channel="chrome"``),
which lags that revision, and Debian's chromium tracks Chrome stable through security
updates, so the pair stays in the supported range. Playwright is chosen because it is the
sturdier tool for these scenarios on that build: one Debian package instead of two (no
driver binary to keep in step), a cheap isolated context per test on one browser (Selenium
needs a new session or cookie clearing per test), a phone viewport with touch set per
context (``is_mobile``, ``has_touch``, ``tap``; Selenium's mobile emulation is fixed per
session), and assertions that wait for the page instead of sleeps. Playwright's own browser
download is never used; if a future Playwright cannot drive Debian's chromium, the
``browser`` fixture reports the launch error (a failure when ``CI=true``).

Each test gets the real ``create_app`` over a migrated SQLite database seeded like
``tests/support/web.py`` (pairs alpha and bravo, their users, a clock at Tuesday
2026-11-24 10:00 Berlin), served by uvicorn on 127.0.0.1. The change scenario adds a
real Radicale calendar and runs the sync use case of ``assistant sync`` between
browser steps; the latency scenario imports a Maildir through ``import_mail``.
Screenshots go to ``tests/screenshots/`` (ignored).
"""

from __future__ import annotations

import mailbox
import re
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from assistant.entrypoints.embedded import EmbeddedRadicale
from assistant.services.feedback import feedback_link
from assistant.services.pairs import add_account
from assistant.services.runner import sync_now
from assistant.store.tables import DelegatedTask
from tests.support.browser import (  # noqa: F401 (fixtures)
    LiveApp,
    desktop_fixture,
    live_fixture,
    phone_fixture,
    shoot,
)
from tests.support.deps import deps_for
from tests.support.web import NOW

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext
try:
    from playwright.sync_api import expect
except ImportError:  # collected all the same: the browser fixture skips, or fails in CI
    expect = None

ZONE = "Europe/Berlin"


def event_ics(uid: str, start: str, end: str, summary: str, location: str) -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//manager's phone//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20261120T080000Z\r\nDTSTART;TZID={ZONE}:{start}\r\n"
        f"DTEND;TZID={ZONE}:{end}\r\nSUMMARY:{summary}\r\nLOCATION:{location}\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


# ------------------------------------------------------------------------------ login


def test_log_in_is_asked_for_refuses_a_wrong_password_and_logs_out(
    live: LiveApp, desktop: BrowserContext
) -> None:
    a = live.world.alpha
    page = desktop.new_page()
    page.goto(live.url(f"/pairs/{a.id}/agenda"))
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.fill("#login-form input[name=email]", "sam@alpha.example")
    page.fill("#login-form input[name=password]", "not the password")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#message")).to_be_visible()
    assert page.locator("#message").inner_text().strip()

    live.login(page, "sam@alpha.example", path=f"/pairs/{a.id}/agenda")
    expect(page).to_have_url(live.url(f"/pairs/{a.id}/agenda"))  # back where it was asked
    expect(page.locator("header")).to_contain_text("sam@alpha.example")
    expect(page.locator("tr[data-uid=alpha-board]")).to_contain_text(a.secrets[0])
    shoot(page, "desktop-agenda")

    with page.expect_navigation():
        page.click("#logout")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto(live.url(f"/pairs/{a.id}/agenda"))
    expect(page).to_have_url(re.compile(r"/login\?next="))


# ------------------------------------------------------------------ a change after a sync


def test_a_moved_meeting_appears_on_the_agenda_and_the_changes_page_after_a_sync(
    live: LiveApp, desktop: BrowserContext, radicale: EmbeddedRadicale
) -> None:
    a = live.world.alpha
    calendar = radicale.new_calendar("work", user="alex")
    account = add_account(
        deps_for(live.svc.uow, NOW), pair=a.id, name="work", provider="caldav", settings={"url": calendar},
    )  # fmt: skip
    with httpx.Client(timeout=10) as dav:

        def put(body: str) -> None:
            dav.put(
                f"{calendar}strategy.ics", content=body, headers={"Content-Type": "text/calendar"}
            ).raise_for_status()

        put(event_ics("strategy", "20261124T143000", "20261124T153000", "Strategy review",
                      "Room 4"))  # fmt: skip
        sync_now(live.svc, account_id=account.id, send=False)  # the baseline: no change

        page = desktop.new_page()
        live.login(page, "sam@alpha.example", path=f"/pairs/{a.id}/agenda")
        row = page.locator("tr[data-uid=strategy]")
        expect(row).to_contain_text("Strategy review")
        expect(row).to_contain_text("14:30–15:30")
        expect(row).not_to_have_class(re.compile(r"\bchanged\b"))

        # The manager moves it from another client; the next sync finds it.
        put(event_ics("strategy", "20261124T170000", "20261124T180000", "Strategy review",
                      "Video call"))  # fmt: skip
        live.world.clock.advance(minutes=5)
        sync_now(live.svc, account_id=account.id, send=False)

    page.reload()
    expect(row).to_have_class(re.compile(r"\bchanged\b"))
    expect(row).to_contain_text("17:00–18:00")
    change = row.locator(".change")
    expect(change).to_contain_text("Moved")
    expect(change).to_contain_text("Tue 24 Nov 14:30 Room 4")
    expect(change).to_contain_text("Tue 24 Nov 17:00 Video call")
    shoot(page, "desktop-agenda-after-sync")

    page.click("header >> text=Changes")
    expect(page).to_have_url(live.url(f"/pairs/{a.id}/changes"))
    newest = page.locator("#changes tr.change").first
    expect(newest).to_contain_text("Strategy review")
    expect(newest).to_contain_text("Tue 24 Nov 14:30 Room 4 → Tue 24 Nov 17:00 Video call")
    expect(newest).to_contain_text("smtp")  # where the notification went
    shoot(page, "desktop-changes")


# ------------------------------------------------------------------------- priorities


def test_the_manager_adds_a_priority_rule_and_the_assistant_sees_it_read_only(
    live: LiveApp, desktop: BrowserContext
) -> None:
    a = live.world.alpha
    page = desktop.new_page()
    live.login(page, "alex@alpha.example", path=f"/pairs/{a.id}/priorities")
    rules = page.locator("#rules")
    expect(rules).to_contain_text(f"ceo@{a.name}.example")
    form = page.locator("#add-priority")
    form.locator("select[name=kind]").select_option("keyword")
    form.locator("input[name=pattern]").fill("Strategy")
    form.locator("select[name=level]").select_option("high")
    form.locator("input[name=note]").fill("Board season")
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    expect(page).to_have_url(live.url(f"/pairs/{a.id}/priorities"))
    added = rules.locator("tr", has_text="Strategy")
    expect(added).to_contain_text("keyword")
    expect(added).to_contain_text("Board season")
    expect(added.locator(".badge")).to_have_text("high")
    shoot(page, "desktop-priorities")

    with page.expect_navigation():
        page.click("#logout")
    live.login(page, "sam@alpha.example", path=f"/pairs/{a.id}/priorities")
    expect(page.locator("#rules tr", has_text="Strategy")).to_contain_text("Board season")
    expect(page.locator("#read-only")).to_be_visible()
    expect(page.locator("#add-priority")).to_have_count(0)


# ------------------------------------------------------------------------------ tasks


def test_a_delegated_task_gets_its_red_line_and_dead_line(
    live: LiveApp, desktop: BrowserContext
) -> None:
    a = live.world.alpha
    page = desktop.new_page()
    live.login(page, "alex@alpha.example", path=f"/pairs/{a.id}/tasks")
    form = page.locator("#create-task")
    form.locator("input[name=title]").fill("Q4 board pack")
    form.locator("input[name=delegate]").fill("sam@alpha.example")
    form.locator("input[name=term_start]").fill("2026-11-24T10:00")
    form.locator("input[name=deadline]").fill("2026-12-04T17:00")
    form.locator("textarea[name=result]").fill("Deck approved by the CFO")
    form.locator("textarea[name=measure]").fill("Signed off in writing")
    form.locator("textarea[name=why]").fill("The board meets on 7 December")
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    expect(page).to_have_url(re.compile(rf"/pairs/{a.id}/tasks/\d+$"))
    expect(page.locator("#task-title")).to_have_text("Q4 board pack")
    expect(page.locator("main")).to_contain_text("Deck approved by the CFO")
    red = page.locator("#checkpoints li.red_line")
    dead = page.locator("#checkpoints li.dead_line")
    expect(red).to_have_count(1)
    expect(dead).to_have_count(1)
    expect(red).to_contain_text("Red Line")
    expect(dead).to_contain_text("Dead Line")
    when = re.compile(r"[A-Z][a-z]{2} \d{1,2} [A-Z][a-z]{2} \d\d:\d\d")  # Mon 30 Nov 13:30
    red_at = when.search(red.inner_text())
    dead_at = when.search(dead.inner_text())
    assert red_at and dead_at, page.locator("#checkpoints").inner_text()

    def moment(shown: str) -> datetime:
        return datetime.strptime(f"2026 {shown.split(' ', 1)[1]}", "%Y %d %b %H:%M")

    # The Red Line near the middle of the term, the Dead Line by the deadline.
    assert datetime(2026, 11, 26) <= moment(red_at.group()) <= datetime(2026, 12, 2, 23, 59)
    assert moment(red_at.group()) < moment(dead_at.group()) <= datetime(2026, 12, 4, 17)
    shoot(page, "desktop-task")

    page.click("header >> text=Tasks")
    row = page.locator("#tasks tr", has_text="Q4 board pack")
    expect(row.locator("td.red_line")).to_have_text(red_at.group())
    expect(row.locator("td.dead_line")).to_have_text(dead_at.group())
    expect(page.locator("main svg").first).to_be_visible()  # the timeline chart
    shoot(page, "desktop-tasks")


# ------------------------------------------------------------- feedback on a phone


def test_a_feedback_link_is_answered_on_a_phone_and_shows_on_the_task(
    live: LiveApp, phone: BrowserContext
) -> None:
    a = live.world.alpha
    with live.svc.uow.read() as s:
        task = s.get(DelegatedTask, a.task_id)
        assert task is not None
        deadline = task.deadline
    signed = feedback_link(live.svc.settings, a.task_id, deadline, "dead_line",
                           "alex@alpha.example")  # fmt: skip
    page = phone.new_page()
    page.goto(live.url(urlsplit(signed).path))
    expect(page.locator("form")).to_contain_text("How much is done?")
    expect(page.locator("body")).to_contain_text(a.secrets[5])
    fits = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.evaluate("window.innerWidth") == 390 and fits, "no sideways scrolling"
    shoot(page, "phone-feedback")

    page.tap("input[name=percent_done]")
    page.fill("input[name=percent_done]", "90")
    page.tap("input[name=on_time][value=yes]")
    page.fill("textarea[name=quality]", "Solid, on the agreed parameters")
    page.fill("textarea[name=comment]", "Thanks, great work")
    with page.expect_navigation():
        page.tap("button[type=submit]")
    expect(page.locator(".done")).to_contain_text("the answer is saved")
    shoot(page, "phone-feedback-saved")

    live.login(page, "alex@alpha.example", path=f"/pairs/{a.id}/tasks/{a.task_id}")
    expect(page.locator("#task-title")).to_have_text(a.secrets[5])
    expect(page.locator("main")).to_contain_text("accepted")
    expect(page.locator("#answers")).to_contain_text("90% done")
    expect(page.locator("#answers")).to_contain_text("on time")
    expect(page.locator("#answers")).to_contain_text("Thanks, great work")
    shoot(page, "phone-task")
    page.goto(live.url(f"/pairs/{a.id}/tasks"))
    expect(page.locator("#score")).to_have_text("100%")  # accepted on time at 90%
    shoot(page, "phone-tasks")
    page.goto(live.url(f"/pairs/{a.id}/agenda"))
    expect(page.locator("tr[data-uid=alpha-board]")).to_be_visible()
    shoot(page, "phone-agenda")


# ---------------------------------------------------------------------------- latency


def write_maildir(path: Path) -> None:
    box = mailbox.Maildir(path, create=True)
    asked = NOW - timedelta(days=6)  # Wednesday 2026-11-18, 10:00 in Berlin
    mails = [
        ("sam@alpha.example", "alex@alpha.example", "Alpha venue choice", asked, None),
        ("alex@alpha.example", "sam@alpha.example", "Re: Alpha venue choice",
         asked + timedelta(minutes=45), "<venue-0@alpha.example>"),
    ]  # fmt: skip
    for n, (sender, to, subject, sent, reply_to) in enumerate(mails):
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = sender, to, subject
        msg["Date"] = sent.strftime("%a, %d %b %Y %H:%M:%S +0000")
        msg["Message-ID"] = f"<venue-{n}@alpha.example>"
        if reply_to:
            msg["In-Reply-To"] = reply_to
        msg.set_content("Which venue?" if n == 0 else "The second one.")
        box.add(msg)
    box.close()


def test_latency_figures_follow_imported_mail(live: LiveApp, desktop: BrowserContext) -> None:
    a = live.world.alpha
    page = desktop.new_page()
    live.login(page, "sam@alpha.example", path=f"/pairs/{a.id}/latency")
    summary = page.locator("#summary")
    expect(summary).to_contain_text("1 answered, 1 open")
    expect(summary.locator("tr", has_text="Median")).to_contain_text("20.0")
    expect(page.locator("#open")).to_contain_text("Alpha open question")

    folder = live.world.tmp / "Maildir"
    write_maildir(folder)
    account = add_account(deps_for(live.svc.uow, NOW), pair=a.id, name="mail", provider="maildir",
                          settings={"path": str(folder)})  # fmt: skip
    sync_now(live.svc, account_id=account.id, send=False)

    page.reload()
    expect(summary).to_contain_text("2 answered, 1 open")
    expect(summary.locator("tr", has_text="Median")).to_contain_text("32.5")  # of 20 and 45
    expect(summary.locator("tr", has_text="p90")).to_contain_text("42.5")
    waiting = page.locator("#open tr", has_text="Alpha open question")
    expect(waiting).to_contain_text("60.0 / 30")  # an hour against a 30-minute SLA
    expect(waiting.locator(".badge.overdue")).to_be_visible()
    expect(page.locator("main svg").first).to_be_visible()  # the weekly trend
    shoot(page, "desktop-latency")
    with page.expect_download() as download:
        page.click("#csv")
    text = Path(download.value.path()).read_text(encoding="utf-8")
    assert "Alpha venue choice" in text and "Alpha budget question" in text


# ----------------------------------------------------------------------------- access


def test_another_pairs_assistant_cannot_reach_the_first_pairs_pages(
    live: LiveApp, desktop: BrowserContext
) -> None:
    a, b = live.world.alpha, live.world.bravo
    page = desktop.new_page()
    live.login(page, "bob@bravo.example")
    expect(page.locator("#pairs")).to_contain_text("bravo")
    expect(page.locator("#pairs")).not_to_contain_text("alpha")
    page.goto(live.url(f"/pairs/{b.id}/agenda"))
    expect(page.locator("main")).to_contain_text(b.secrets[0])
    own = page.content()
    assert not any(secret in own for secret in a.secrets)

    base = f"/pairs/{a.id}"
    for path in [
        base, f"{base}/agenda", f"{base}/agenda?view=week", f"{base}/changes",
        f"{base}/priorities", f"{base}/latency", f"{base}/latency.csv", f"{base}/tasks",
        f"{base}/tasks/{a.task_id}", f"{base}/accounts", f"{base}/settings",
        f"/api{base}/agenda", f"/api{base}/tasks", f"/api{base}/latency",
    ]:  # fmt: skip
        response = page.goto(live.url(path))
        assert response is not None
        assert response.status in (403, 404), (path, response.status)
        shown = page.content()
        assert not any(secret in shown for secret in a.secrets), path
    page.goto(live.url(f"{base}/tasks"))
    expect(page.locator("#error")).to_be_visible()
    shoot(page, "desktop-not-found")

    # A form posted with bob's own valid CSRF token to the other pair: refused too.
    page.goto(live.url(f"/pairs/{b.id}/priorities"))
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    refused = page.request.post(
        live.url(f"{base}/priorities"),
        form={"csrf_token": token or "", "kind": "keyword", "pattern": "x", "level": "high"},
        max_redirects=0,
    )
    assert refused.status in (403, 404)
