"""Fixtures for the browser tests: headless Chromium driven by Playwright, and the real app.

``browser`` (one per test session): Debian's Chromium (``/usr/bin/chromium``, or
``$CHROMIUM``) launched headless through Playwright's ``executable_path``; Playwright's
own browser download is never used. No Playwright or no Chromium: the tests skip with
the reason, or fail when ``CI=true`` (``.ci/run`` installs both).

``desktop`` and ``phone`` (one per test): a fresh browser context (own cookies, own
storage) at 1280×800, or at 390×844 with touch and a mobile viewport.

``live`` (one per test): the seeded world of ``tests/support/web.py`` (two pairs, their
users, an injected clock) on a migrated SQLite file, served by the real ``create_app``
under uvicorn on 127.0.0.1 at a free port, in a thread of this process; stopped after
the test. ``shoot(page, name)`` saves a full-page screenshot to ``tests/screenshots/``
(ignored by git).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from assistant.bootstrap import Service
from assistant.entrypoints.web.app import create_app
from assistant.entrypoints.web.i18n import EN, RU
from assistant.services.users import add_membership, add_organisation, add_user, assign_pair
from assistant.store.db import UnitOfWork
from config.settings import Settings, WebSettings
from tests.support.services import unavailable
from tests.support.web import NOW, PASSWORD, PASSWORD_HASH, Clock, World, _seed_pair

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 10_000  # a page of this app answers in milliseconds; fail fast, not in 30 s
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """``$CHROMIUM`` if set, else the first Chromium on PATH (Debian: /usr/bin/chromium)."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(name="browser", scope="session")
def browser_fixture() -> Iterator[Browser]:
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        unavailable("Playwright is not installed: pip install -e '.[test]'")
    path = find_chromium()
    if path is None:
        unavailable(
            "no Chromium found (set $CHROMIUM or, as root: apt-get install -y chromium; "
            ".ci/run does this)"
        )
    with sync_playwright() as pw:
        try:
            chromium = pw.chromium.launch(executable_path=path, headless=True)
        except Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            unavailable(f"Chromium at {path} did not start under Playwright: {first}")
        try:
            yield chromium
        finally:
            chromium.close()


def _context(browser: Browser, **options: Any) -> Iterator[BrowserContext]:
    context = browser.new_context(locale="en-GB", timezone_id="Europe/Berlin", **options)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture(name="desktop")
def desktop_fixture(browser: Browser) -> Iterator[BrowserContext]:
    yield from _context(browser, viewport=DESKTOP)


@pytest.fixture(name="phone")
def phone_fixture(browser: Browser) -> Iterator[BrowserContext]:
    yield from _context(
        browser, viewport=PHONE, device_scale_factor=3, is_mobile=True, has_touch=True
    )


def shoot(page: Page, name: str) -> Path:
    """A full-page screenshot in tests/screenshots/<name>.png, for a person to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# ------------------------------------------------------------------------ the served app


class LiveServer:
    """uvicorn serving an ASGI app on 127.0.0.1 at a free port, in a daemon thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        # The socket is bound here and handed to uvicorn: no window in which another
        # process could take the port between picking it and listening on it.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start serving the app")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


@dataclass
class LiveApp:
    world: World
    server: LiveServer

    @property
    def svc(self) -> Service:
        return self.world.svc

    def url(self, path: str = "/") -> str:
        return self.server.url + path

    def login(self, page: Page, email: str, password: str = PASSWORD, path: str = "/") -> None:
        """Log in through the login form, starting from ``path`` (which redirects to it)."""
        page.goto(self.url(path))
        page.fill("#login-form input[name=email]", email)
        page.fill("#login-form input[name=password]", password)
        with page.expect_navigation():
            page.click("#login-form button[type=submit]")


def seed_world(uow: UnitOfWork, tmp_path: Path) -> World:
    """The world of ``tests/support/web.py``'s ``world`` fixture, on the given database."""
    clock = Clock(NOW)
    settings = Settings(data_dir=tmp_path, web=WebSettings())
    svc = Service(settings=settings, engine=uow.engine, uow=uow, clock=clock, channels={})
    alpha = _seed_pair(svc, "alpha", "alex@alpha.example", "sam@alpha.example")
    bravo = _seed_pair(svc, "bravo", "bea@bravo.example", "bob@bravo.example")
    add_organisation(svc, "Agency")
    assign_pair(svc, bravo.id, "Agency")
    for email, role, pair, pair_role in [
        ("sam@alpha.example", "assistant", alpha.id, "assistant"),
        ("alex@alpha.example", "manager", alpha.id, "manager"),
        ("bob@bravo.example", "assistant", bravo.id, "assistant"),
    ]:
        add_user(svc, email=email, role=role, password_hash=PASSWORD_HASH)
        add_membership(svc, user=email, pair=pair, role=pair_role)
    return World(svc=svc, clock=clock, alpha=alpha, bravo=bravo, tmp=tmp_path)


@pytest.fixture(name="live")
def live_fixture(sqlite_uow: UnitOfWork, tmp_path: Path) -> Iterator[LiveApp]:
    world = seed_world(sqlite_uow, tmp_path)
    server = LiveServer(create_app(world.svc)).start()
    try:
        yield LiveApp(world=world, server=server)
    finally:
        server.stop()


# ---------------------------------------------------------- what every page must hold

# English a Russian page must not show: every UI string that differs in Russian, and the
# English weekday and month names. Event titles and names (class "data") are not UI.
ENGLISH = [v for k, v in EN.items() if RU.get(k) not in (None, v) and len(v) >= 4]
ENGLISH_DATES = re.compile(r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun|Nov|Dec)\b")
UI_TEXT = """() => {
  const copy = document.body.cloneNode(true);
  copy.querySelectorAll('.data').forEach(n => n.remove());
  return copy.innerText;
}"""


class Watch:
    """Console errors and uncaught exceptions of a page."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on(
            "response",
            lambda r: self.errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )


def check(page: Page, watch: Watch, locale: str, shots: Path, name: str) -> None:
    """The page fits its width, logged no error and (in Russian) has no English."""
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    wide = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert wide[0] <= wide[1], f"{name}: scrolls sideways ({wide[0]} > {wide[1]} px)"
    assert not watch.errors, f"{name}: {watch.errors}"
    if locale == "ru":
        text = page.evaluate(UI_TEXT)
        left = [
            text[max(m.start() - 30, 0) : m.end() + 30]
            for v in ENGLISH
            for m in [re.search(rf"(?<!\w){re.escape(v)}(?!\w)", text)]
            if m
        ]
        assert not left, f"{name}: untranslated {left}"
        assert not ENGLISH_DATES.search(text), f"{name}: English date in {text!r}"
