"""Talking to Microsoft Graph: tokens from msal, one request loop, errors mapped.

``Tokens`` gets access tokens (app-only with a client secret, or delegated with a
refresh token, whose rotated successor goes to ``on_refresh_token``). ``graph_send`` is
every connector's request: a refused token is renewed once, 5xx and dropped connections
are retried with back-off when the request is idempotent, every reply is counted.
``fail`` maps an unsuccessful reply onto our error tree. ``GraphConnection`` holds one
account's tokens and HTTP client for the loop; the Graph calendar, mailbox and mail sender
are connections, and ``open_graph`` opens any of them from the account's settings
(``connectors.graph.settings.GraphSettings``). The push subscriptions use the calendar's.
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, Required, TypedDict, TypeVar
from urllib.parse import quote

import httpx
import msal
import requests

from connectors.base import (
    AuthExpired,
    ConnectorError,
    InvalidData,
    NotFound,
    PreconditionFailed,
    RateLimited,
    TokenExpired,
    Transient,
    parse_retry_after,
)
from connectors.graph.settings import AUTHORITY_HOST, GRAPH_URL
from connectors.settings import Resolver, resolve

if TYPE_CHECKING:
    from connectors.graph.settings import GraphSettings

APP_SCOPES = ("https://graph.microsoft.com/.default",)
DELEGATED_SCOPES = ("https://graph.microsoft.com/Calendars.ReadWrite",)
RETRY_STATUSES = frozenset({500, 502, 503, 504})
SYNC_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})
MAX_DELTA_PAGES = 10_000  # pages of one delta (calendarView or messages) before giving up
FRACTION = re.compile(r"(\.\d{6})\d+")
RequestHook = Callable[[str, str, int], None]


class MsalSession(requests.Session):
    """msal's HTTP client: ``verify`` and ``timeout`` passed with every request.

    requests lets REQUESTS_CA_BUNDLE override a session's ``verify``; passing it per
    request keeps an explicit CA file (or False) in force.
    """

    def __init__(self, verify: bool | str, timeout: float) -> None:
        super().__init__()
        self._verify = verify
        self._timeout = timeout

    def request(  # type: ignore[override]
        self, method: str, url: str, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs["verify"] = self._verify
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, *args, **kwargs)


class Tokens:
    """Access tokens from msal: app-only (client secret) or delegated (refresh token).

    The msal application is built on first use (it asks the authority for its OpenID
    configuration). A rotated refresh token is handed to ``on_refresh_token``.
    """

    def __init__(
        self,
        tenant: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        authority_host: str,
        verify: bool | str,
        timeout: float,
        on_refresh_token: Callable[[str], None] | None,
    ) -> None:
        self._authority = f"{authority_host.rstrip('/')}/{tenant}"
        self._client_id = client_id
        self._client_secret = client_secret
        self.refresh_token = refresh_token
        self._verify = verify
        self._timeout = timeout
        self._on_refresh_token = on_refresh_token
        self._app: Any = None
        self._token = ""
        self._expires = 0.0

    def get(self) -> str:
        if not self._token or time.monotonic() > self._expires:
            self._acquire()
        return self._token

    def refresh(self) -> str:
        """A new access token, not the cached one (the API refused it)."""
        self._token = ""
        if self._app is not None and not self.refresh_token:
            self._app.remove_tokens_for_client()
        self._acquire()
        return self._token

    def _application(self) -> Any:
        if self._app is None:
            session = MsalSession(self._verify, self._timeout)
            options: dict[str, Any] = {
                "authority": self._authority,
                "validate_authority": False,
                "instance_discovery": False,
                "http_client": session,
            }
            if self._client_secret:
                self._app = msal.ConfidentialClientApplication(
                    self._client_id, client_credential=self._client_secret, **options
                )
            else:
                self._app = msal.PublicClientApplication(self._client_id, **options)
        return self._app

    def _acquire(self) -> None:
        try:
            app = self._application()
            if self.refresh_token:
                result = app.acquire_token_by_refresh_token(
                    self.refresh_token, scopes=list(DELEGATED_SCOPES)
                )
            elif self._client_secret:
                result = app.acquire_token_for_client(scopes=list(APP_SCOPES))
            else:
                raise AuthExpired("Graph: neither a client secret nor a refresh token is set")
        except requests.exceptions.Timeout:
            raise Transient("Graph sign-in: timed out") from None
        except (requests.exceptions.RequestException, OSError) as exc:
            raise Transient(f"Graph sign-in: {type(exc).__name__}") from None
        except ValueError as exc:  # msal: authority unreachable or a reply that is not JSON
            raise Transient(f"Graph sign-in: {str(exc)[:200]}") from None
        token = result.get("access_token") if isinstance(result, dict) else None
        if not token:
            error = str(result.get("error", "no token")) if isinstance(result, dict) else "?"
            if error in ("temporarily_unavailable", "server_error"):
                raise Transient(f"Graph sign-in: {error}")
            raise AuthExpired(f"Graph sign-in refused ({error}): reconnect the account")
        self._token = str(token)
        lifetime = float(result.get("expires_in") or 3600)
        self._expires = time.monotonic() + max(0.0, lifetime - 60)
        rotated = result.get("refresh_token")
        if self.refresh_token and rotated and rotated != self.refresh_token:
            self.refresh_token = str(rotated)
            if self._on_refresh_token is not None:
                self._on_refresh_token(self.refresh_token)


Page = Callable[[str, dict[str, str] | None], Mapping[str, Any]]


class DeltaPages:
    """Every page of a delta query, fetched by ``page(url, params)`` as it is iterated:
    (id, item or None when removed) for each item of each page, one page in memory at a
    time; once iterated to the end, ``link`` is the next delta link. At most
    ``MAX_DELTA_PAGES`` pages; a page with neither link is InvalidData."""

    def __init__(self, page: Page, url: str, params: dict[str, str] | None, what: str) -> None:
        self.page = page
        self.url = url
        self.params = params
        self.what = what
        self.link = ""

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any] | None]]:
        url, params = self.url, self.params
        for _ in range(MAX_DELTA_PAGES):
            data = self.page(url, params)
            for item in data.get("value") or []:
                if not isinstance(item, dict) or not item.get("id"):
                    continue
                yield str(item["id"]), None if "@removed" in item else item
            next_link = data.get("@odata.nextLink")
            if next_link:
                url, params = str(next_link), None
                continue
            delta_link = data.get("@odata.deltaLink")
            if not delta_link:
                raise InvalidData("Graph: a delta page with neither nextLink nor deltaLink")
            self.link = str(delta_link)
            return
        raise InvalidData(f"Graph: {self.what} did not end")


def read_delta(
    page: Page, url: str, params: dict[str, str] | None, what: str
) -> tuple[dict[str, dict[str, Any] | None], str]:
    """Every page of a delta query (``DeltaPages``) at once: each item by id (None when
    removed; a later page overrides an earlier one) and the next delta link."""
    pages = DeltaPages(page, url, params, what)
    items: dict[str, dict[str, Any] | None] = {}
    for key, item in pages:
        items.pop(key, None)
        items[key] = item
    return items, pages.link


def odata_literal(value: str) -> str:
    """An OData string literal."""
    return "'" + value.replace("'", "''") + "'"


def fail(reply: httpx.Response, what: str, *, delta: bool = False) -> NoReturn:
    """Raise the error of our tree that an unsuccessful Graph reply stands for."""
    status = reply.status_code
    code = ""
    try:
        error = reply.json().get("error") or {}
        code = str(error.get("code") or "")
    except (ValueError, AttributeError):
        pass
    detail = f"{status} {code}".strip()
    if delta and (status == 410 or code.lower() in SYNC_CODES):
        raise TokenExpired(f"Graph {what}: the delta token is no longer valid ({detail})")
    if status in (401, 403):
        raise AuthExpired(f"Graph {what}: access refused ({detail})")
    if status == 429 or (status == 503 and "Retry-After" in reply.headers):
        raise RateLimited(
            f"Graph {what}: throttled ({detail})",
            retry_after=parse_retry_after(reply.headers.get("Retry-After")),
        )
    if status in (404, 410):
        raise NotFound(f"Graph {what}: not found ({detail})")
    if status == 412:
        raise PreconditionFailed(f"Graph {what}: precondition failed")
    if status >= 500:
        raise Transient(f"Graph {what}: server error ({detail})")
    raise ConnectorError(f"Graph {what}: unexpected reply ({detail})")


def parse_time(text: str) -> datetime:
    text = FRACTION.sub(r"\1", text.strip())
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text)


class GraphOptions(TypedDict, total=False):
    """How a Graph connection signs in and behaves (``GraphConnection``'s keywords)."""

    tenant: Required[str]
    client_id: Required[str]
    client_secret: str
    refresh_token: str
    graph_url: str
    authority_host: str
    timeout: float
    verify: bool | str
    retries: int
    backoff: float
    sleep: Callable[[float], None]
    on_refresh_token: Callable[[str], None] | None
    on_request: RequestHook | None


class GraphConnection:
    """One account's way into Graph: ``user`` (an id or user principal name), its tokens
    and HTTP client, and what ``graph_send`` counts and waits with.

    App-only access: ``client_secret``. Delegated access: ``refresh_token`` (with
    ``client_secret`` for a confidential app); a rotated refresh token is passed to
    ``on_refresh_token`` to be stored. ``verify`` is True, False or a CA bundle path.
    ``on_request(method, url, status)`` sees every Graph response; ``requests`` counts
    them.
    """

    def __init__(
        self,
        user: str,
        *,
        tenant: str,
        client_id: str,
        client_secret: str = "",
        refresh_token: str = "",
        graph_url: str = GRAPH_URL,
        authority_host: str = AUTHORITY_HOST,
        timeout: float = 30,
        verify: bool | str = True,
        retries: int = 3,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        on_refresh_token: Callable[[str], None] | None = None,
        on_request: RequestHook | None = None,
    ) -> None:
        self.user = user
        self.graph_url = graph_url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.requests = 0
        self._sleep = sleep
        self._on_request = on_request
        self._user_url = f"{self.graph_url}/users/{quote(user, safe='@')}"
        self._tokens = Tokens(
            tenant, client_id, client_secret, refresh_token, authority_host, verify, timeout,
            on_refresh_token,
        )  # fmt: skip
        tls = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        self._http = httpx.Client(timeout=timeout, verify=tls)

    def close(self) -> None:
        self._http.close()

    @property
    def refresh_token(self) -> str:
        return self._tokens.refresh_token


C = TypeVar("C", bound=GraphConnection)


def open_graph(
    cls: type[C],
    conf: GraphSettings,
    secret: Resolver,
    *,
    timeout: float = 30,
    keep_token: Callable[[str], None] | None = None,
    **options: Any,
) -> C:
    """A Graph connector (``cls``: the calendar, mailbox or mail sender) for an account's
    settings; ``secret`` resolves its secret references, ``keep_token`` stores a refresh
    token Microsoft rotated; ``options`` are the connector's own."""
    return cls(
        conf.user,
        tenant=conf.tenant,
        client_id=conf.client_id,
        client_secret=resolve(secret, conf.client_secret),
        refresh_token=resolve(secret, conf.refresh_token),
        graph_url=conf.graph_url,
        authority_host=conf.authority_host,
        verify=conf.tls,
        timeout=timeout,
        on_refresh_token=keep_token,
        **options,
    )


def graph_send(
    client: GraphConnection,
    method: str,
    url: str,
    *,
    prefer: str,
    params: Mapping[str, str] | None = None,
    json_body: Mapping[str, Any] | None = None,
    idempotent: bool = True,
) -> httpx.Response:
    """One Graph request: a refused token is renewed once; 5xx and dropped connections are
    retried with back-off when the request is idempotent; every reply is counted."""
    refreshed = False
    attempt = 0
    token = client._tokens.get()
    while True:
        headers = {
            "Authorization": f"Bearer {token}",
            "Prefer": prefer,
        }
        try:
            reply = client._http.request(
                method, url, params=params, json=json_body, headers=headers
            )
        except httpx.TimeoutException:
            raise Transient(f"Graph {method}: timed out") from None
        except httpx.TransportError as exc:
            if idempotent and attempt < client.retries:
                attempt += 1
                client._sleep(client.backoff * 2 ** (attempt - 1))
                continue
            raise Transient(f"Graph {method}: {type(exc).__name__}") from None
        client.requests += 1
        if client._on_request is not None:
            client._on_request(method, url, reply.status_code)
        if reply.status_code == 401 and not refreshed:
            refreshed = True
            token = client._tokens.refresh()
            continue
        throttled = reply.status_code == 503 and "Retry-After" in reply.headers
        if (
            reply.status_code in RETRY_STATUSES
            and not throttled
            and idempotent
            and attempt < client.retries
        ):
            attempt += 1
            client._sleep(client.backoff * 2 ** (attempt - 1))
            continue
        return reply
