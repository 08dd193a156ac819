"""What the Google connectors (Calendar, Gmail) share: credentials, the API client, error bodies.

``credentials_for`` reads an account's settings (``connectors.google.settings``) into
credentials and ``build_service`` makes the API client over a counting HTTP: the one
factory of both connectors (and of the Gmail sender); ``SignsIn`` gives both their
``installed_app`` and ``service_account`` constructors. ``google_error`` maps an error reply
onto our error tree; each connector passes what a status means to it (a 404 or 410 means
different things to a calendar and a mailbox).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Self

import google.auth.credentials
import google_auth_httplib2
import httplib2
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from connectors.base import AuthExpired, ConnectorError, RateLimited, Transient, parse_retry_after
from connectors.google.settings import GoogleSettings
from connectors.settings import Resolver, resolve

DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105  # a URL

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


class SignsIn:
    """The two ways a Google connector signs in, as constructors: ``installed_app`` (the
    refresh token the manager's consent gave) and ``service_account`` (a key with
    domain-wide delegation acting as the manager). For a class whose ``__init__`` takes the
    credentials first; ``PRODUCT`` names it in errors, ``SCOPES`` are its default scopes."""

    PRODUCT: ClassVar[str]
    SCOPES: ClassVar[tuple[str, ...]]

    if TYPE_CHECKING:

        def __init__(
            self, credentials: google.auth.credentials.Credentials, *args: Any, **kwargs: Any
        ) -> None: ...

    @classmethod
    def installed_app(
        cls,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        *,
        token_uri: str = DEFAULT_TOKEN_URI,
        scopes: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """OAuth for an installed app: the refresh token the manager's consent gave."""
        creds = installed_app_credentials(
            client_id, client_secret, refresh_token, token_uri, scopes or cls.SCOPES
        )
        return cls(creds, **kwargs)

    @classmethod
    def service_account(
        cls,
        key: Mapping[str, Any],
        subject: str,
        *,
        token_uri: str | None = None,
        scopes: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """A service account key (the JSON file's content) with domain-wide delegation,
        acting as ``subject`` (the manager)."""
        creds = service_account_credentials(
            key, subject, token_uri, scopes or cls.SCOPES, cls.PRODUCT
        )
        return cls(creds, **kwargs)


def credentials_for(
    conf: GoogleSettings, secret: Resolver, scopes: Iterable[str], product: str
) -> google.auth.credentials.Credentials:
    """The credentials an account's settings give (``secret`` resolves references): an
    installed app's refresh token, or a service account key acting as ``subject``."""
    if conf.auth == "service_account":
        try:
            key = json.loads(resolve(secret, conf.service_account_key))
        except ValueError:
            raise AuthExpired(f"{product}: the service account key is not JSON") from None
        return service_account_credentials(key, conf.subject, conf.token_uri, scopes, product)
    return installed_app_credentials(
        conf.client_id,
        resolve(secret, conf.client_secret),
        resolve(secret, conf.refresh_token),
        conf.token_uri or DEFAULT_TOKEN_URI,
        scopes,
    )


def build_service(
    api: str,
    version: str,
    credentials: google.auth.credentials.Credentials,
    *,
    timeout: float,
    hook: RequestHook,
    endpoint: str,
) -> tuple[Any, Any]:
    """(the API client, its authorised HTTP) for ``api`` at ``endpoint``, from the bundled
    discovery document; every response (token requests included) goes to ``hook``; an
    access token is refreshed once per request at most."""
    authed = google_auth_httplib2.AuthorizedHttp(
        credentials, http=CountingHttp(timeout, hook), max_refresh_attempts=1
    )
    service = discovery.build(
        api,
        version,
        http=authed,
        static_discovery=True,
        cache_discovery=False,
        client_options={"api_endpoint": endpoint},
    )
    return service, authed


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


ByStatus = Mapping[int, Callable[[str, str], ConnectorError]]


def google_error(exc: HttpError, where: str, by_status: ByStatus) -> ConnectorError:
    """The error of our tree that a Google API's error reply stands for: rate limits,
    refused access, server errors and the rest alike for every Google API; ``by_status``
    maps what a status means to this API (called with ``where`` and the reply's reason)."""
    status = int(exc.resp.status)
    reason, message = error_detail(exc.content)
    if status == 429 or (status == 403 and reason in RATE_REASONS):
        return RateLimited(
            f"{where}: rate limited ({reason or status})",
            retry_after=parse_retry_after(exc.resp.get("retry-after")),
        )
    if status in (401, 403):
        return AuthExpired(f"{where}: access refused ({status} {reason})".rstrip())
    if status in by_status:
        return by_status[status](where, reason)
    if status >= 500:
        return Transient(f"{where}: server error {status}")
    return ConnectorError(f"{where}: refused ({status} {reason}: {message[:200]})")
