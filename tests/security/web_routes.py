"""The web app's routes, enumerated from the app itself, and bodies each would accept.

The access and CSRF tests (test_access.py, test_csrf.py, test_web_inputs.py) walk these,
so a route added later is tried without a new test. A route that needs no login is
listed once in PUBLIC with the reason; one that takes requests from other sites on
purpose, once in CROSS_SITE with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from starlette.routing import Route
from starlette.testclient import TestClient

from tests.support.web import PASSWORD

# Routes anyone may call, and what stands in for a login there.
PUBLIC: dict[str, str] = {
    "/health": "says ok / not ok to anonymous callers, counts only to signed-in users",
    "/api/openapi.json": "the API's description: no data",
    "/static/accounts.js": "the accounts page's few lines of script: no data",
    "/login": "the login form and its post (double-submit CSRF cookie, Origin checked)",
    "/login/link": "asks for a mailed login link (double-submit CSRF cookie, Origin checked)",
    "/login/link/{token}": "the mailed one-time link is the authority",
    "/api/login": "logging in (JSON only, Origin checked)",
    "/feedback/{token}": "the signed feedback link is the authority",
    "/ics/{token}.ics": "the signed feed URL is the authority",
    "/push/graph": "Graph notifications carry their subscription's clientState",
    "/push/google": "Google channel messages carry the channel's token",
}

# Unsafe routes that take requests from other sites by design (csrf.CROSS_SITE_ALLOWED).
CROSS_SITE: dict[str, str] = {
    "/push/graph": "the provider posts from its own servers",
    "/push/google": "the provider posts from its own servers",
    "/feedback/{token}": "the signed link is the authority, no session rides on it",
}

ENDS_SESSION = {"/logout", "/api/logout"}
NEW_PASSWORD = "a brand new passphrase"

# A body each unsafe route would accept, so that only the check under test can refuse it.
BODIES: dict[str, dict[str, Any]] = {
    "priorities": {"kind": "keyword", "pattern": "intruder", "level": "high"},
    "tasks": {"title": "intruder task", "deadline": "2026-12-10T17:00"},
    "settings": {"sla_minutes": 5, "timezone": "UTC"},
    "accounts": {"provider": "ics", "name": "intruder feed", "location": "https://x.example/f.ics"},
    "reconnect": {"password": "intruder password"},
    "connect": {"part": "calendar"},
    "password": {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    "locale": {"locale": "ru", "next": "/"},
}
SETTINGS_FORM = {
    "timezone": "UTC",
    "sla_minutes": "5",
    "channels": "smtp",
    "locale": "en",
    "hours_mon": "09:00-17:00",
}


def routes(app: Any) -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves (HEAD aside)."""
    out = []
    for route in app.routes:
        assert isinstance(route, Route), route
        for method in sorted(route.methods or {"GET"}):
            if method != "HEAD":
                out.append((method, route.path))
    return out


def unsafe_routes(app: Any) -> list[tuple[str, str]]:
    return [(m, p) for m, p in routes(app) if m not in ("GET", "HEAD", "OPTIONS")]


def fill(path: str, ids: Mapping[str, int | str]) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: str(ids[m.group(1)]), path)


def int_params(path: str) -> list[str]:
    return re.findall(r"\{(\w+):int\}", path)


def body_for(path: str) -> dict[str, Any]:
    kind = next((k for k in BODIES if path.rstrip("/").endswith(k)), "")
    return dict(BODIES.get(kind, {}))


def call(
    client: TestClient,
    method: str,
    path: str,
    token: str,
    headers: dict[str, str] | None = None,
) -> Any:
    """The request a page or the API would send, with the session's CSRF token."""
    body = body_for(path)
    extra = headers or {}
    if path.startswith("/api/"):
        return client.request(
            method, path, json=body, headers={"X-CSRF-Token": token, **extra}
        )
    if method == "GET":
        return client.get(path, headers=extra)
    data: dict[str, Any] = {"csrf_token": token, **body}
    if path.endswith("/settings"):
        data = {"csrf_token": token, **SETTINGS_FORM}
    return client.request(method, path, data=data, headers=extra)
