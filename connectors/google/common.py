"""What the Google connectors (Calendar, Gmail) share: credentials, a counting HTTP, error bodies.

Each connector keeps its own mapping of statuses onto our error tree (a 404 or 410 means
different things to a calendar and a mailbox); the pieces here are the same for both.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import google.auth.credentials
import httplib2
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account

from connectors.base import AuthExpired

RATE_REASONS = frozenset(
    {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded", "dailyLimitExceeded"}
)

RequestHook = Callable[[str, str, int], None]


class CountingHttp(httplib2.Http):  # type: ignore[misc]  # httplib2 has no type hints
    """An httplib2.Http that reports every response (token requests included)."""

    def __init__(self, timeout: float, hook: RequestHook) -> None:
        super().__init__(timeout=timeout)
        self._hook = hook

    def request(self, uri: str, method: str = "GET", *args: Any, **kwargs: Any) -> Any:
        response, content = super().request(uri, method, *args, **kwargs)
        self._hook(method, uri, int(response.status))
        return response, content


def installed_app_credentials(
    client_id: str, client_secret: str, refresh_token: str, token_uri: str, scopes: Iterable[str]
) -> google.auth.credentials.Credentials:
    """OAuth for an installed app: the refresh token the manager's consent gave."""
    return user_credentials.Credentials(  # type: ignore[no-untyped-call]
        token=None,
        refresh_token=refresh_token,
        token_uri=token_uri,
        client_id=client_id,
        client_secret=client_secret,
        scopes=list(scopes),
    )


def service_account_credentials(
    key: Mapping[str, Any],
    subject: str,
    token_uri: str | None,
    scopes: Iterable[str],
    product: str,
) -> google.auth.credentials.Credentials:
    """A service account key (the JSON file's content) with domain-wide delegation, acting
    as ``subject``; an unusable key is AuthExpired naming ``product``."""
    info = dict(key)
    if token_uri:
        info["token_uri"] = token_uri
    try:
        return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call,no-any-return]
            info, scopes=list(scopes), subject=subject
        )
    except (ValueError, KeyError) as exc:
        raise AuthExpired(f"{product}: unusable service account key ({exc})") from None


def error_detail(content: bytes | str | None) -> tuple[str, str]:
    """(reason, message) of a Google JSON error body."""
    try:
        data = json.loads(content or b"{}")
        error = data.get("error") or {}
        if isinstance(error, str):  # OAuth-style {"error": "invalid_grant"}
            return error, str(data.get("error_description", ""))
        errors = error.get("errors") or [{}]
        return str(errors[0].get("reason", "")), str(error.get("message", ""))
    except (ValueError, AttributeError, TypeError, IndexError):
        return "", ""
