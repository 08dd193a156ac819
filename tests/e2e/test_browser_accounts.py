"""The Accounts page in a real browser (issue 15, point 5): choosing a provider shows its
fields at once (a few lines of script; without them the choice's button does the same),
the greyed Connect buttons say what is missing, and an account is removed after a
confirm step. Headless Chromium through Playwright, as ``test_browser.py``."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from config.settings import NetworkSettings
from tests.support.browser import (  # noqa: F401 (fixtures)
    LiveApp,
    desktop_fixture,
    live_fixture,
)

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext
try:
    from playwright.sync_api import expect
except ImportError:  # collected all the same: the browser fixture skips, or fails in CI
    expect = None


def test_the_accounts_page_shows_the_chosen_providers_fields_and_removes_after_asking(
    live: LiveApp, desktop: BrowserContext
) -> None:
    a = live.world.alpha
    network = NetworkSettings(allow_http=True, allowed_hosts=["127.0.0.1"])  # no DNS here
    live.svc.settings = live.svc.settings.model_copy(update={"network": network})
    page = desktop.new_page()
    live.login(page, "alex@alpha.example", path=f"/pairs/{a.id}/accounts")
    expect(page.locator("#connect-google button")).to_be_disabled()
    expect(page.locator("#why-google")).to_contain_text("Google sign-in is not set up")
    expect(page.locator("#show-fields")).to_be_hidden()  # the script submits the choice
    expect(page.locator("#add-account")).to_have_count(0)

    with page.expect_navigation():
        page.select_option("#choose-provider select", "caldav")
    form = page.locator("#add-account")
    expect(form.locator("input[name=url]")).to_be_visible()
    expect(form.locator("input[name=host]")).to_have_count(0)
    form.locator("input[name=name]").fill("Work calendar")
    form.locator("input[name=url]").fill("http://127.0.0.1:8/cal/")
    form.locator("input[name=username]").fill("alex")
    form.locator("input[name=password]").fill("pw")
    with page.expect_navigation():
        form.locator("button").click()
    expect(page.locator("#note")).to_contain_text("The account is added")

    row = page.locator("tr", has_text="Work calendar")
    with page.expect_navigation():
        row.locator("a.remove").click()
    expect(page.locator("h1")).to_contain_text("Remove account: Work calendar")
    with page.expect_navigation():
        page.locator("#remove-account button").click()
    expect(page).to_have_url(re.compile(r"/accounts\?note=n_removed$"))
    expect(page.locator("tr", has_text="Work calendar")).to_have_count(0)
