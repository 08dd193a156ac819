"""CSRF protection.

Logged-in forms carry the session's own token (``csrf_token`` field; the API takes it in
the ``X-CSRF-Token`` header). Forms shown before login (log in, ask for a link) use a
double-submit cookie: a random value in an HttpOnly, SameSite=Lax cookie and the same in
the form. Comparison is constant-time.
"""

from __future__ import annotations

import hmac
import secrets

FIELD = "csrf_token"
HEADER = "x-csrf-token"
PRELOGIN_COOKIE = "ea_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def new_token() -> str:
    return secrets.token_urlsafe(32)


def matches(expected: str | None, given: object) -> bool:
    if not expected or not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
