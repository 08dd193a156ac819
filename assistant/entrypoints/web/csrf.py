"""CSRF protection: a token, and requests from this site only.

Logged-in forms carry the session's own token (``csrf_token`` field; the API takes it in
the ``X-CSRF-Token`` header). Forms shown before login (log in, ask for a link) use a
double-submit cookie: a random value in an HttpOnly, SameSite=Lax cookie and the same in
the form. Comparison is constant-time.

On top of the token, every state-changing request (POST, PUT, PATCH, DELETE; forms and
API; logged in or not, logging in included) must come from the site itself
(:func:`cross_site_reason`): a browser's ``Origin`` header, when sent, must be the app's
own origin (``web.public_url`` when set, else the scheme and host the request came to),
and ``Sec-Fetch-Site: cross-site`` is refused. A request without either header is not
from a browser page on another site (browsers send ``Origin`` with every cross-origin
POST), so it stands on its token alone. The routes in :data:`CROSS_SITE_ALLOWED` are
called from elsewhere by design and are not checked.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

FIELD = "csrf_token"
HEADER = "x-csrf-token"
PRELOGIN_COOKIE = "ea_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Unsafe requests that come from other sites on purpose, and what vouches for them instead.
CROSS_SITE_ALLOWED: dict[str, str] = {
    "/push/graph": "Microsoft Graph posts notifications; each carries its clientState",
    "/push/google": "Google posts channel messages; each carries its channel token",
    "/feedback/": "the manager's signed link is the authority (no session to ride on); "
    "the page may be posted from a mail client's viewer",
}


def new_token() -> str:
    return secrets.token_urlsafe(32)


def matches(expected: str | None, given: object) -> bool:
    if not expected or not isinstance(given, str) or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def _origin(url: str) -> str:
    """``scheme://host[:port]`` in lower case, without the scheme's default port."""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        return ""
    if not scheme or not host:
        return ""
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")


def own_origin(public_url: str, scheme: str, host_header: str) -> str:
    """The app's origin: ``web.public_url``'s when set, else the request's own."""
    if public_url:
        return _origin(public_url)
    return _origin(f"{scheme}://{host_header}") if host_header else ""


def cross_site_exempt(path: str) -> bool:
    """Whether ``path`` is one of CROSS_SITE_ALLOWED (a key ending in "/" stands for one
    path segment under it: ``/feedback/<token>``)."""
    for route in CROSS_SITE_ALLOWED:
        if path == route and not route.endswith("/"):
            return True
        rest = path[len(route) :] if route.endswith("/") and path.startswith(route) else ""
        if rest and "/" not in rest:
            return True
    return False


def cross_site_reason(
    method: str, path: str, headers: Mapping[str, str], own: str
) -> str | None:
    """Why an unsafe request must be refused as coming from another site, or None.

    ``headers`` are the request's (lower-case names); ``own`` is :func:`own_origin`.
    """
    if method.upper() in SAFE_METHODS or cross_site_exempt(path):
        return None
    if headers.get("sec-fetch-site", "").strip().lower() == "cross-site":
        return "the request comes from another site (Sec-Fetch-Site)"
    origin = headers.get("origin")
    if origin is not None and (not own or _origin(origin) != own):
        return "the request comes from another site (Origin)"
    return None
