"""Signing in to Exchange (EWS): settings, credentials, the account, errors.

``EwsSettings`` (endpoint or autodiscover, basic/NTLM/OAuth2, delegate or impersonation
access to the manager's mailbox) opens an exchangelib ``Account`` whose retry policy fails
fast, so that the service decides when to try again; ``translate_error`` maps exchangelib's
errors onto ours (ErrorServerBusy and HTTP 429/503 → ``RateLimited`` with the server's
back-off, 401 → ``AuthExpired``, other 5xx and network errors → ``Transient``), and
``translated`` is the context in which every EWS call runs. Also the two
named properties our checkpoint events carry. Shared by the EWS calendar, mailbox, push and
mail sender.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import requests
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    OAUTH2,
    Account,
    CalendarItem,
    Configuration,
    Credentials,
    EWSTimeZone,
    ExtendedProperty,
    OAuth2AuthorizationCodeCredentials,
    OAuth2Credentials,
    Version,
)
from exchangelib import errors as ews_errors
from exchangelib.fields import InvalidField
from exchangelib.protocol import FailFast
from exchangelib.util import is_xml

from assistant.domain.model import OWN_EVENT_PROPERTY
from connectors.base import (
    AuthExpired,
    ConnectorError,
    NotFound,
    PreconditionFailed,
    RateLimited,
    TokenExpired,
    Transient,
    parse_retry_after,
)
from connectors.ews.settings import EwsAccountSettings, EwsCalendarSettings, EwsMailSettings
from connectors.netguard import (
    LocationRefused,
    NetPolicy,
    operator_policy,
    requests_adapter_class,
)
from connectors.settings import Resolver, parse, resolve

OWN_UID_PROPERTY = "X-EXEC-ASSISTANT-UID"
AUTH_TYPES = {"basic": BASIC, "ntlm": NTLM, "oauth2": OAUTH2}
MARKER = "exec_assistant_marker"
OWN_UID = "exec_assistant_uid"
EWS_UTC = EWSTimeZone("UTC")


# ------------------------------------------------------------ extended properties


class OwnMarker(ExtendedProperty):  # type: ignore[misc]
    """Our checkpoint marker, a named property in the PublicStrings property set."""

    distinguished_property_set_id = "PublicStrings"
    property_name = OWN_EVENT_PROPERTY
    property_type = "String"


class OwnUid(ExtendedProperty):  # type: ignore[misc]
    """The uid of one of our checkpoint events (EWS cannot search calendar:UID)."""

    distinguished_property_set_id = "PublicStrings"
    property_name = OWN_UID_PROPERTY
    property_type = "String"


_registered = threading.Lock()


def register_properties() -> None:
    """Teach exchangelib's CalendarItem our two properties (once per process)."""
    with _registered:
        for name, cls in ((MARKER, OwnMarker), (OWN_UID, OwnUid)):
            try:
                CalendarItem.get_field_by_fieldname(name)
            except InvalidField:
                CalendarItem.register(name, cls)


# -------------------------------------------------------------------- retry policy


class HttpRefused(ews_errors.EWSError):  # type: ignore[misc]
    """An HTTP status that no SOAP body explains (our policy raises it, exchangelib won't)."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class FailFastWithStatus(FailFast):  # type: ignore[misc]
    """exchangelib's fail-fast policy, keeping the status and Retry-After of a refusal.

    FailFast turns a 429 or a bare 500 into an opaque MalformedResponseError and a 503
    into a transient error retried after a fixed wait; we need the status to choose
    between RateLimited and Transient, and the server's Retry-After.
    """

    def raise_response_errors(self, response: Any) -> None:
        status = int(response.status_code)
        if status in (429, 503):
            raise HttpRefused(status, parse_retry_after(response.headers.get("Retry-After")))
        if status >= 500 and not (response.content and is_xml(response.content)):
            raise HttpRefused(status, None)
        super().raise_response_errors(response)


# ------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class EwsSettings:
    """How to reach the manager's calendar.

    ``service_endpoint`` (``https://mail.example.com/EWS/Exchange.asmx``) or
    ``autodiscover=True``; ``auth`` is ``basic``, ``ntlm`` (username ``DOMAIN\\user``) or
    ``oauth2`` (``client_id``/``client_secret``/``tenant_id`` for the client-credentials
    grant, or an ``access_token`` obtained elsewhere). ``access`` is ``delegate`` (the
    assistant's own credentials, with delegate rights on the manager's calendar) or
    ``impersonation`` (a service account). ``version`` (e.g. ``Exchange2016``) skips
    exchangelib's version probe.
    """

    mailbox: str
    service_endpoint: str = ""
    autodiscover: bool = False
    auth: str = "basic"
    username: str = ""
    password: str = field(default="", repr=False)
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    tenant_id: str = ""
    access_token: str = field(default="", repr=False)
    access: str = "delegate"
    version: str = ""
    policy: NetPolicy = field(default_factory=operator_policy, repr=False)


def _credentials(s: EwsSettings) -> Any:
    if s.auth == "oauth2":
        token = {"access_token": s.access_token, "token_type": "Bearer"} if s.access_token else None
        if s.client_secret and s.tenant_id:
            return OAuth2Credentials(
                client_id=s.client_id, client_secret=s.client_secret, tenant_id=s.tenant_id,
                access_token=token,
            )  # fmt: skip
        return OAuth2AuthorizationCodeCredentials(
            client_id=s.client_id or None, client_secret=s.client_secret or None,
            access_token=token,
        )  # fmt: skip
    if s.auth not in AUTH_TYPES:
        raise ConnectorError(f"EWS: unknown authentication {s.auth!r} (basic, ntlm or oauth2)")
    return Credentials(s.username, s.password)


def _version(name: str) -> Any:
    if not name:
        return None
    for version in Version.all_versions():
        if version.api_version == name:
            return version
    raise ConnectorError(f"EWS: unknown server version {name!r} (e.g. Exchange2016)")


def open_account(s: EwsSettings) -> Any:
    """An exchangelib Account for ``s.mailbox`` that fails fast (no retries of its own).

    Shared by the EWS connectors (calendar, mailbox).
    """
    credentials = _credentials(s)
    if not s.autodiscover and not s.service_endpoint:
        raise ConnectorError("EWS: give a service_endpoint or turn autodiscover on")
    policy = s.policy
    if not policy.operator:
        if s.autodiscover:
            raise LocationRefused("EWS: autodiscover is only for accounts added with the CLI")
        try:
            policy.check_url(s.service_endpoint)
        except LocationRefused as exc:
            raise LocationRefused(f"EWS: refused: {exc}") from None
    config = Configuration(
        credentials=credentials,
        service_endpoint=None if s.autodiscover else s.service_endpoint,
        auth_type=AUTH_TYPES.get(s.auth),
        version=_version(s.version),
        retry_policy=FailFastWithStatus(),
        max_connections=1,
    )
    account = Account(
        primary_smtp_address=s.mailbox,
        config=config,
        autodiscover=s.autodiscover,
        credentials=credentials if s.autodiscover else None,
        access_type=IMPERSONATION if s.access == "impersonation" else DELEGATE,
        default_timezone=EWS_UTC,
    )
    guard_protocol(account.protocol, policy)  # where it connects, how much it reads
    return account


def guard_protocol(protocol: Any, policy: NetPolicy) -> None:
    """Make ``protocol`` connect only where ``policy`` allows, and read replies within its
    limits, from its next session on.

    exchangelib makes its HTTP adapters from a class attribute of the protocol's class
    (``HTTP_ADAPTER_CLS``, read by a classmethod), and shares a protocol between accounts
    with the same endpoint and credentials; so the protocol becomes an instance of a
    subclass whose adapter is ``netguard``'s, and the sessions it had are closed.
    """
    base = type(protocol)
    if getattr(base, "netguard_policy", None) == policy:
        return
    base = getattr(base, "netguard_base", base)
    guarded = type(
        "GuardedProtocol",
        (base,),
        {
            "HTTP_ADAPTER_CLS": _whole_replies(requests_adapter_class(policy)),
            "netguard_policy": policy,
            "netguard_base": base,
        },
    )
    protocol.close()  # sessions made with another adapter
    protocol.__class__ = guarded


READ_CHUNK = 1 << 16  # bytes of a reply already in memory handed to the XML parser at once


class _ReadReply(requests.Response):
    """A reply read whole (not streamed). exchangelib parses every SOAP reply through
    ``iter_content()``, whose default is one byte a chunk: for a reply already in memory
    that is one Python iteration per byte (17 million for a full sync of 10,000 events,
    most of its time). Here such a reply comes in ``READ_CHUNK`` slices; a streamed one
    (push notifications, split into documents byte by byte) is left as it is."""

    def iter_content(self, chunk_size: int | None = 1, decode_unicode: bool = False) -> Any:
        if chunk_size == 1 and self._content_consumed and isinstance(self._content, bytes):
            chunk_size = READ_CHUNK
        return requests.Response.iter_content(self, chunk_size, decode_unicode)  # type: ignore[call-overload]


def _whole_replies(adapter: type[Any]) -> type[Any]:
    """``adapter`` whose replies read whole are ``_ReadReply``s."""

    class WholeReplies(adapter):  # type: ignore[misc]
        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            response = super().send(request, *args, **kwargs)
            if not kwargs.get("stream") and type(response) is requests.Response:
                response.__class__ = _ReadReply
            return response

    return WholeReplies


def translate_error(exc: BaseException, what: str) -> ConnectorError | None:
    """Our error for a provider error; None for anything else (a bug of ours)."""
    e = ews_errors
    if isinstance(exc, HttpRefused):
        if exc.status in (429, 503):
            return RateLimited(f"{what}: throttled (HTTP {exc.status})", exc.retry_after)
        return Transient(f"{what}: server error (HTTP {exc.status})")
    if isinstance(exc, e.ErrorServerBusy):
        return RateLimited(f"{what}: the server is busy", exc.back_off)
    if isinstance(exc, e.RateLimitError):
        return RateLimited(f"{what}: throttled", float(exc.wait) if exc.wait else None)
    if isinstance(exc, e.ErrorInvalidSyncStateData):
        return TokenExpired(f"{what}: the sync state is no longer valid")
    if isinstance(
        exc, e.UnauthorizedError | e.ErrorAccessDenied | e.ErrorDelegateNoUser
        | e.ErrorImpersonateUserDenied,
    ):  # fmt: skip
        return AuthExpired(f"{what}: access refused")
    if isinstance(exc, e.CASError):
        return AuthExpired(f"{what}: refused by the client access server")
    if isinstance(exc, e.ErrorItemNotFound | e.ErrorFolderNotFound | e.ErrorNonExistentMailbox):
        return NotFound(f"{what}: not found ({type(exc).__name__})")
    if isinstance(exc, e.ErrorIrresolvableConflict | e.ErrorChangeKeyRequiredForWriteOperations):
        return PreconditionFailed(f"{what}: the item changed meanwhile")
    if isinstance(
        exc,
        e.ErrorTimeoutExpired | e.ErrorInternalServerTransientError | e.ErrorInternalServerError
        | e.ErrorMailboxStoreUnavailable | e.ErrorConnectionFailed | e.ErrorMailboxMoveInProgress
        | e.ErrorTooManyObjectsOpened | e.ErrorExceededConnectionCount,
    ):  # fmt: skip
        return Transient(f"{what}: {type(exc).__name__}")
    if isinstance(exc, requests.exceptions.RequestException | OSError):
        return Transient(f"{what}: {type(exc).__name__}")
    if isinstance(exc, e.ResponseMessageError):
        return ConnectorError(f"{what}: {type(exc).__name__}")
    if isinstance(exc, e.TransportError):  # malformed replies, SOAP faults, redirects
        return Transient(f"{what}: {type(exc).__name__}")
    if isinstance(exc, e.EWSError):
        return ConnectorError(f"{what}: {type(exc).__name__}")
    return None


class translated:  # used as ``with translated(...)``
    """``with translated("EWS GetItem"):`` exchangelib's and the transport's errors leave
    as ours (``translate_error``); our own errors, and anything else (a bug of ours), pass
    unchanged. ``first`` may map an error before (the push stream's lost subscription).
    The one translator of the EWS calendar, mailbox, push and mail sender."""

    def __init__(
        self, what: str, first: Callable[[BaseException, str], ConnectorError | None] | None = None
    ) -> None:
        self.what = what
        self.first = first

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> Literal[False]:
        if exc is None or isinstance(exc, ConnectorError) or not isinstance(exc, Exception):
            return False
        mapped = self.first(exc, self.what) if self.first is not None else None
        mapped = mapped or translate_error(exc, self.what)
        if mapped is None:
            return False
        raise mapped from None


def ews_settings(
    settings: Mapping[str, Any] | EwsAccountSettings, secret: Resolver,
    policy: NetPolicy | None = None, provider: str = "ews",
) -> EwsSettings:  # fmt: skip
    """EwsSettings from an account's settings (a ``provider`` account's, read through its
    model unless given as one); ``secret`` resolves secret references; ``policy``: where
    it may connect (none: the operator's code, anywhere)."""
    from connectors.settings import location

    if not isinstance(settings, EwsAccountSettings):
        model = EwsMailSettings if provider == "ews-mail" else EwsCalendarSettings
        settings = parse(model, provider, settings, None)
    s = settings
    endpoint = location(s.service_endpoint, s.url_secret) if s.service_endpoint else ""
    return EwsSettings(
        mailbox=s.mailbox,
        service_endpoint=endpoint,
        autodiscover=s.autodiscover,
        auth=s.auth,
        username=s.username,
        password=resolve(secret, s.password),
        client_id=s.client_id,
        client_secret=resolve(secret, s.client_secret),
        tenant_id=s.tenant_id,
        access_token=resolve(secret, s.access_token),
        access=s.access,
        version=s.version,
        policy=policy or operator_policy(),
    )
