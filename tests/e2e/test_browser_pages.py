"""Every page of the web app in a real browser, in English and Russian, at desktop and
phone width (headless Chromium, see tests/support/browser.py).

Each page is shot (under pytest's tmp dir) and fails on sideways scrolling, a console
error or a failed request, or English left on the Russian page (``check``). The manager
and the assistant of the seeded world (tests/support/web.py) each walk their pages; the
signed-out login page is walked too.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.browser import (  # noqa: F401 (fixtures)
    LiveApp,
    Watch,
    check,
    desktop_fixture,
    live_fixture,
    phone_fixture,
)

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext


def pages(live: LiveApp) -> dict[str, str]:
    a = live.world.alpha
    p = f"/pairs/{a.id}"
    return {
        "home": "/",
        "pair": p,
        "week": f"{p}/week?date=2026-11-24",
        "agenda": f"{p}/agenda",
        "changes": f"{p}/changes",
        "priorities": f"{p}/priorities",
        "latency": f"{p}/latency",
        "tasks": f"{p}/tasks",
        "task": f"{p}/tasks/{a.task_id}",
        "accounts": f"{p}/accounts",
        "settings": f"{p}/settings",
        "password": "/me/password",
    }


@pytest.mark.parametrize("width", ["desktop", "phone"])
@pytest.mark.parametrize("who", ["alex@alpha.example", "sam@alpha.example"])
def test_every_page_fits_reads_and_logs_no_error_in_both_languages(
    live: LiveApp, request: pytest.FixtureRequest, tmp_path: Path, width: str, who: str
) -> None:
    context: BrowserContext = request.getfixturevalue(width)
    page = context.new_page()
    watch = Watch(page)
    page.goto(live.url("/login"))
    check(page, watch, "en", tmp_path, f"login-{width}-en")
    page.goto(live.url("/login?lang=ru"))
    check(page, watch, "ru", tmp_path, f"login-{width}-ru")
    live.login(page, who)
    role = who.split("@")[0]
    for locale in ("en", "ru"):
        if locale == "ru":
            with page.expect_navigation():
                page.click("header button[name=locale]")
        for name, path in pages(live).items():
            page.goto(live.url(path))
            assert page.locator("html").get_attribute("lang") == locale, (name, locale)
            check(page, watch, locale, tmp_path, f"{name}-{role}-{width}-{locale}")
