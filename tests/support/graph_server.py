"""A protocol-level Microsoft Graph (and Entra ID token endpoint) on 127.0.0.1, over HTTPS.

Enough of Graph for a calendar client: the OpenID configuration and token endpoint of a
tenant (client credentials and refresh-token grants; tokens expire; unknown ones get
401), one user's default calendar as ``/v1.0/users/{user}/...`` (and ``/v1.0/me``):
events CRUD, ``$filter`` on a single-value extended property or on ``iCalUId``,
``$expand=singleValueExtendedProperties($filter=id eq ...)``, ``instances``, ``cancel``,
and ``calendarView/delta`` with ``Prefer: odata.maxpagesize`` / ``outlook.timezone``,
``$skiptoken`` pages and ``$deltatoken`` links, ``@removed`` entries and 410
``syncStateNotFound`` for tokens the server dropped. Mail: ``inbox`` and ``sentitems``
with ``/mailFolders/{folder}/messages/delta`` (``$select`` kept in its links; headers
refused, as Graph leaves them out of delta), ``@removed`` for deleted messages, 410 for
a folder's dropped tokens, and ``/messages/{id}?$select=internetMessageHeaders``. A
message's ``body`` is kept as it was written (``text`` or ``html``) and served as Graph
serves it: HTML unless the request has ``Prefer: outlook.body-content-type="text"``
(then text, HTML converted; ``Preference-Applied`` says so), text written as text turned
into HTML otherwise; ``bodyPreview`` is its first 255 characters of text. With
``text_bodies`` off the preference is not applied (bodies come as written, as some
mailboxes answer).
Sending: ``POST /users/{user}/sendMail`` (202; recorded in ``sent`` as ``SentGraphMail``;
a copy filed in ``sentitems`` unless ``saveToSentItems`` is false, with the
``internetMessageId`` given or a new one; ``internetMessageHeaders`` must be ``X-``
headers, else 400 ``InvalidInternetMessageHeader``; an address without ``@`` gets 400
``ErrorInvalidRecipients``) and ``GET /users/{user}/mailFolders/{folder}/messages`` with
``$filter=internetMessageId eq '...'`` and ``$top``. Series (daily or weekly) expand into
occurrences with ids, ``seriesMasterId``, ``originalStart`` and Exchange-style global
object ids; moved occurrences become exceptions, deleted ones disappear.

Sign-in (authorization code flow with PKCE): ``/{tenant}/oauth2/v2.0/authorize``
(``authorize_url``) answers at once with a redirect to ``redirect_uri`` carrying a one-time
``code`` for ``user`` (or ``error=access_denied`` while ``deny_consent`` is set); the token
endpoint's ``authorization_code`` grant checks the ``redirect_uri``, the ``code_verifier``
against the S256 challenge and, when given, the client secret, and returns a refresh token
(``offline_access``) and an ID token naming the tenant (``tid``) and the user.

msal insists on an https authority, so the server speaks TLS with a self-signed
certificate made at start (``ca_file`` verifies it). Tests change the calendar directly
through the methods below (the manager's other client) and inject faults on the Graph
API (``/v1.0``): ``fail_next`` (status with Retry-After, Graph JSON error), ``hang_next``
and ``drop_next`` (the request is carried out, the response never sent). Errors have
Graph's JSON format: ``{"error": {"code", "message", "innerError"}}``.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dateutil import rrule
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from tests.support.mail_bodies import as_html, as_text

GOID_CLASS = "040000008200E00074C5B7101A82E008"
_EP_FILTER = re.compile(
    r"^singleValueExtendedProperties/any\(\s*(\w+)\s*:\s*\1/id eq '((?:[^']|'')*)'"
    r" and \1/value eq '((?:[^']|'')*)'\s*\)$",
    re.IGNORECASE,
)
_UID_FILTER = re.compile(r"^iCalUId eq '((?:[^']|'')*)'$", re.IGNORECASE)
_EXPAND = re.compile(r"^singleValueExtendedProperties(?:\(\$filter=(.*)\))?$", re.IGNORECASE)
_EXPAND_ID = re.compile(r"id eq '((?:[^']|'')*)'", re.IGNORECASE)
_PROPERTY_ID = re.compile(r"^String \{[0-9a-fA-F-]{36}\} Name \S.*$")
_DAYS = {d: i for i, d in enumerate(
    ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
)}  # fmt: skip
EDITABLE = (
    "subject", "body", "location", "attendees", "organizer", "showAs", "sensitivity",
    "categories", "isOnlineMeeting", "onlineMeeting", "responseStatus", "isCancelled",
    "importance",
)  # fmt: skip


def zone_of(name: str) -> ZoneInfo:
    """A Graph zone name (Windows or IANA) as a ZoneInfo."""
    if name in ("", "UTC", "tzone://Microsoft/Utc"):
        return ZoneInfo("UTC")
    return ZoneInfo(WINDOWS_TO_OLSON.get(name, name))


def compact(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (also usable as its own CA file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "graph.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "graph-cert.pem", folder / "graph-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers or {}


@dataclass
class Item:
    """A single event or a series master as the mailbox stores it."""

    id: str
    ical_uid: str
    start: datetime  # aware, in the event's zone (all-day: midnight)
    end: datetime
    zone: str  # as the client named it (Windows or IANA)
    fields: dict[str, Any] = field(default_factory=dict)
    all_day: bool = False
    recurrence: dict[str, Any] | None = None
    properties: dict[str, tuple[str, str]] = field(default_factory=dict)  # lower id -> (id, value)
    exceptions: dict[datetime, dict[str, Any]] = field(default_factory=dict)  # original UTC ->
    cancelled: set[datetime] = field(default_factory=set)
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    modified: datetime = field(default_factory=lambda: datetime.now(UTC))
    transaction_id: str = ""

    def originals(self, until: datetime) -> Iterator[datetime]:
        """Original starts (aware, local) of the series up to ``until``."""
        assert self.recurrence is not None
        pattern, span = self.recurrence["pattern"], self.recurrence["range"]
        local = self.start.replace(tzinfo=None)
        kind = str(pattern.get("type", "weekly")).lower()
        options: dict[str, Any] = {"dtstart": local, "interval": int(pattern.get("interval", 1))}
        if kind == "weekly":
            days = pattern.get("daysOfWeek") or [local.strftime("%A").lower()]
            options["byweekday"] = [_DAYS[d.lower()] for d in days]
        if span.get("type") == "numbered":
            options["count"] = int(span["numberOfOccurrences"])
        elif span.get("type") == "endDate":
            options["until"] = datetime.combine(
                date.fromisoformat(span["endDate"]), datetime.max.time()
            )
        tz = self.start.tzinfo
        rule = (
            rrule.rrule(rrule.WEEKLY, **options)
            if kind == "weekly"
            else rrule.rrule(rrule.DAILY, **options)
        )
        for naive in rule:
            value = naive.replace(tzinfo=tz)
            if value > until:
                return
            yield value


@dataclass
class MailMessage:
    """One message in a mail folder (``inbox`` or ``sentitems``)."""

    id: str
    folder: str
    subject: str
    sender: str
    to: list[str]
    sent: datetime
    cc: list[str] = field(default_factory=list)
    internet_message_id: str = ""
    conversation_id: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)  # internetMessageHeaders
    received: datetime | None = None
    is_read: bool = False
    is_draft: bool = False
    version: int = 1
    body: str = ""  # as written, in ``body_type``
    body_type: str = "text"  # text or html

    @property
    def change_key(self) -> str:
        return hashlib.sha256(f"{self.id}:{self.version}".encode()).hexdigest()[:24]

    def rendered_body(self, want_text: bool) -> dict[str, str]:
        """``body`` as Graph returns it: text when asked for text, else HTML."""
        written_html = self.body_type == "html"
        if want_text:
            return {"contentType": "text", "content": as_text(self.body, written_html)}
        return {"contentType": "html", "content": as_html(self.body, written_html)}


@dataclass
class SentGraphMail:
    """One message ``sendMail`` accepted, as its recipients get it."""

    sender: str
    to: list[str]
    subject: str
    content_type: str
    content: str
    internet_message_id: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    saved_id: str = ""  # its copy in sentitems, "" when saveToSentItems was false


MAIL_FOLDERS = ("inbox", "sentitems")
# Message properties the messages delta cannot return (Graph: headers are not in delta).
NOT_IN_DELTA = frozenset({"internetmessageheaders", "uniquebody"})


@dataclass
class Seen:
    method: str
    path: str
    query: str
    status: int


@dataclass
class _Fault:
    status: int = 0
    retry_after: str | None = None
    delay: float = 0.0
    drop: bool = False
    method: str = ""  # only a request with this method takes it ("": any)


class GraphServer:
    """Start with ``with GraphServer(tmp_path) as graph:``; point the connector at
    ``graph.graph_url`` / ``graph.authority_host`` with ``verify=graph.ca_file``."""

    def __init__(
        self,
        folder: Path,
        *,
        tenant: str = "contoso.example",
        client_id: str = "11111111-2222-3333-4444-555555555555",
        client_secret: str = "app-secret",
        user: str = "alex@example.com",
        token_lifetime: int = 3600,
    ) -> None:
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.user = user
        self.token_lifetime = token_lifetime
        self.cert_file, self.key_file = make_certificate(folder)
        self.ca_file = str(self.cert_file)
        self.items: dict[str, Item] = {}
        self.seen: list[Seen] = []
        self.token_requests: list[str] = []  # grant types asked for
        self._access: dict[str, float] = {}
        self._refresh: set[str] = set()
        self._pages: dict[str, tuple[list[dict[str, Any]], str]] = {}
        self._deltas: dict[str, tuple[datetime, datetime, dict[str, str]]] = {}
        self._faults: list[_Fault] = []
        self.messages: dict[str, MailMessage] = {}
        self.sent: list[SentGraphMail] = []  # what sendMail accepted
        self.text_bodies = True  # Prefer: outlook.body-content-type="text" is applied
        self._mail_deltas: dict[str, tuple[str, str, dict[str, str]]] = {}  # folder, $select
        self._mail_pages: dict[str, tuple[str, list[dict[str, Any]], str]] = {}
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.deny_consent = False  # the sign-in page: the user refuses consent
        # A refresh token used once is refused afterwards (the rotated one replaces it), as
        # Microsoft may do: a client that does not keep the rotated token is locked out.
        self.single_use_refresh_tokens = False
        self._codes: dict[str, dict[str, str]] = {}  # authorization codes given out

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        handler = type("Handler", (_Handler,), {"graph": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        httpd.socket = context.wrap_socket(
            httpd.socket, server_side=True, do_handshake_on_connect=False
        )
        self._httpd = httpd
        self.url = f"https://127.0.0.1:{httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def graph_url(self) -> str:
        return f"{self.url}/v1.0"

    @property
    def authority_host(self) -> str:
        return self.url

    @property
    def authorize_url(self) -> str:
        return f"{self.url}/{self.tenant}/oauth2/v2.0/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.url}/{self.tenant}/oauth2/v2.0/token"

    # ------------------------------------------------------------------- tokens

    def issue_refresh_token(self) -> str:
        """A refresh token as an interactive sign-in would have left (delegated access)."""
        token = "rt-" + secrets.token_urlsafe(16)
        with self._lock:
            self._refresh.add(token)
        return token

    def live_refresh_tokens(self) -> frozenset[str]:
        """The refresh tokens the token endpoint would redeem now."""
        with self._lock:
            return frozenset(self._refresh)

    def revoke_refresh_tokens(self) -> None:
        with self._lock:
            self._refresh.clear()

    def expire_access_tokens(self) -> None:
        with self._lock:
            self._access.clear()

    # ------------------------------------------------- the manager's other client

    def create_event(
        self,
        subject: str,
        start: datetime,
        end: datetime,
        *,
        zone: str = "UTC",
        weekly: int | None = None,
        all_day: bool = False,
        **fields: Any,
    ) -> str:
        """Store an event (``weekly=n``: a weekly series of n occurrences); its id."""
        tz = zone_of(zone)
        with self._lock:
            item = self._new_item(start.astimezone(tz), end.astimezone(tz), zone)
            item.all_day = all_day
            if weekly:
                item.recurrence = {
                    "pattern": {"type": "weekly", "interval": 1,
                                "daysOfWeek": [item.start.strftime("%A").lower()]},
                    "range": {"type": "numbered", "numberOfOccurrences": weekly,
                              "startDate": item.start.date().isoformat()},
                }  # fmt: skip
            item.fields.update({"subject": subject, **fields})
            return item.id

    def update_event(self, event_id: str, **fields: Any) -> None:
        with self._lock:
            item = self.items[event_id]
            if "start" in fields:
                item.start = fields.pop("start").astimezone(item.start.tzinfo)
            if "end" in fields:
                item.end = fields.pop("end").astimezone(item.start.tzinfo)
            item.fields.update(fields)
            item.modified = datetime.now(UTC)

    def cancel_event(self, event_id: str) -> None:
        """The organiser cancelled a meeting: it stays, marked cancelled (an attendee's view)."""
        with self._lock:
            item = self.items[event_id]
            item.fields["isCancelled"] = True
            item.fields["subject"] = "Canceled: " + str(item.fields.get("subject", ""))

    def delete_event(self, event_id: str) -> None:
        with self._lock:
            self._delete(event_id)

    def move_occurrence(
        self, master_id: str, original_start: datetime, start: datetime, end: datetime
    ) -> None:
        with self._lock:
            item = self.items[master_id]
            key = original_start.astimezone(UTC)
            item.exceptions.setdefault(key, {}).update({"start": start, "end": end})

    def cancel_occurrence(self, master_id: str, original_start: datetime) -> None:
        with self._lock:
            item = self.items[master_id]
            key = original_start.astimezone(UTC)
            item.exceptions.pop(key, None)
            item.cancelled.add(key)

    def invalidate_delta_tokens(self) -> None:
        """Every delta and skip token handed out so far gets 410 syncStateNotFound."""
        with self._lock:
            self._pages.clear()
            self._deltas.clear()

    # -------------------------------------------------------------------- mail

    def deliver(
        self, folder: str, subject: str, sender: str, to: list[str], sent: datetime, **kw: Any
    ) -> MailMessage:
        """Store a message in ``folder`` (``inbox`` or ``sentitems``)."""
        with self._lock:
            kw.setdefault("internet_message_id", f"<{secrets.token_hex(16)}@mail.example.com>")
            kw.setdefault("conversation_id", "AAQkAGI2" + hashlib.sha256(
                _topic(subject).encode()).hexdigest()[:32])  # fmt: skip
            kw.setdefault("received", sent + timedelta(seconds=2))
            message = MailMessage(
                id="AAMkAGMSG" + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y"),
                folder=folder, subject=subject, sender=sender, to=list(to),
                sent=sent.astimezone(UTC), **kw,
            )  # fmt: skip
            self.messages[message.id] = message
            return message

    def copy_message(self, message: MailMessage, folder: str) -> MailMessage:
        """The same message filed in another folder too (own id, same internetMessageId)."""
        keep = ("cc", "internet_message_id", "conversation_id", "headers", "received", "body",
                "body_type")  # fmt: skip
        return self.deliver(folder, message.subject, message.sender, message.to, message.sent,
                            **{k: getattr(message, k) for k in keep})  # fmt: skip

    def mark_read(self, message_id: str, read: bool = True) -> None:
        with self._lock:
            self.messages[message_id].is_read = read
            self.messages[message_id].version += 1

    def delete_message(self, message_id: str) -> None:
        with self._lock:
            del self.messages[message_id]

    def invalidate_mail_delta(self, folder: str) -> None:
        """Every delta and skip token of ``folder``'s messages gets 410 from now on."""
        with self._lock:
            for key in [k for k, v in self._mail_deltas.items() if v[0] == folder]:
                del self._mail_deltas[key]
            for key in [k for k, v in self._mail_pages.items() if v[0] == folder]:
                del self._mail_pages[key]

    def render_message(
        self, message: MailMessage, select: set[str] | None, want_text: bool = False
    ) -> dict[str, Any]:
        def person(address: str) -> dict[str, Any]:
            return {"emailAddress": {"name": address.split("@")[0].title(), "address": address}}

        data: dict[str, Any] = {
            "@odata.etag": f'W/"{message.change_key}"', "id": message.id,
            "createdDateTime": _stamp(message.received or message.sent),
            "lastModifiedDateTime": _stamp(message.received or message.sent),
            "changeKey": message.change_key, "categories": [],
            "receivedDateTime": _stamp(message.received or message.sent),
            "sentDateTime": _stamp(message.sent), "hasAttachments": False,
            "internetMessageId": message.internet_message_id, "subject": message.subject,
            "bodyPreview": " ".join(message.rendered_body(True)["content"].split())[:255],
            "body": message.rendered_body(want_text and self.text_bodies),
            "importance": "normal",
            "parentFolderId": "AAMkAG" + message.folder.upper(),
            "conversationId": message.conversation_id,
            "conversationIndex": "AQHZ" + message.conversation_id[-12:],
            "isDeliveryReceiptRequested": False, "isReadReceiptRequested": False,
            "isRead": message.is_read, "isDraft": message.is_draft,
            "webLink": f"https://outlook.office365.com/owa/?ItemID={message.id}",
            "inferenceClassification": "focused",
            "sender": person(message.sender), "from": person(message.sender),
            "toRecipients": [person(a) for a in message.to],
            "ccRecipients": [person(a) for a in message.cc], "bccRecipients": [], "replyTo": [],
            "flag": {"flagStatus": "notFlagged"},
        }  # fmt: skip
        if select is None:
            return data
        wanted = {s.lower() for s in select}
        kept = {k: v for k, v in data.items() if k.lower() in wanted or k in ("id", "@odata.etag")}
        if "internetmessageheaders" in wanted and message.headers:
            kept["internetMessageHeaders"] = [{"name": n, "value": v} for n, v in message.headers]
        return kept

    def own_items(self, property_id: str) -> list[Item]:
        with self._lock:
            return [i for i in self.items.values() if property_id.lower() in i.properties]

    # -------------------------------------------------------------------- faults

    def fail_next(self, status: int, *, retry_after: int | None = None, times: int = 1) -> None:
        with self._lock:
            after = None if retry_after is None else str(retry_after)
            self._faults.extend(_Fault(status=status, retry_after=after) for _ in range(times))

    def hang_next(self, seconds: float) -> None:
        with self._lock:
            self._faults.append(_Fault(delay=seconds))

    def drop_next(self, method: str = "") -> None:
        """The next API request (with ``method``) is carried out but its response is lost."""
        with self._lock:
            self._faults.append(_Fault(drop=True, method=method.upper()))

    def _take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if not fault.method or fault.method == method:
                    return self._faults.pop(index)
        return None

    def graph_requests(self, fragment: str = "") -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path.startswith("/v1.0") and fragment in s.path]

    # ------------------------------------------------------------------ internals

    def _new_item(self, start: datetime, end: datetime, zone: str) -> Item:
        raw = secrets.token_hex(16).upper()
        ical_uid = f"{GOID_CLASS}00000000{int(time.time() * 1e7):016X}{'0' * 16}10000000{raw}"
        item = Item(
            id="AAMkAG" + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y") + "AAA=",
            ical_uid=ical_uid, start=start, end=end, zone=zone,
        )  # fmt: skip
        self.items[item.id] = item
        return item

    def _delete(self, event_id: str) -> None:
        if event_id in self.items:
            del self.items[event_id]
            return
        master, original = self._occurrence(event_id)
        master.exceptions.pop(original, None)
        master.cancelled.add(original)

    def _occurrence(self, event_id: str) -> tuple[Item, datetime]:
        master_id, _, stamp = event_id.rpartition("_")
        item = self.items.get(master_id)
        if item is None or item.recurrence is None or not stamp:
            raise GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        original = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if original in item.cancelled:
            raise GraphError(404, "ErrorItemNotFound", "The occurrence was deleted.")
        return item, original

    def instances(self, start: datetime, end: datetime, out_zone: str) -> list[dict[str, Any]]:
        found: list[tuple[datetime, dict[str, Any]]] = []
        for item in self.items.values():
            if item.recurrence is None:
                if item.start < end and item.end > start:
                    found.append((item.start, self.render(item, out_zone)))
                continue
            length = item.end - item.start
            latest = max([end, *item.exceptions.keys()])
            for original in item.originals(latest + timedelta(days=1)):
                key = original.astimezone(UTC)
                if key in item.cancelled:
                    continue
                override = item.exceptions.get(key)
                s = override["start"] if override else original
                e = override["end"] if override else original + length
                if s < end and e > start:
                    found.append((s, self.render(item, out_zone, original=key)))
        return [payload for _, payload in sorted(found, key=lambda p: p[0])]

    def render(
        self,
        item: Item,
        out_zone: str,
        *,
        original: datetime | None = None,
        master: bool = False,
        expand: list[str] | None = None,
    ) -> dict[str, Any]:
        """The Graph JSON of a single event, a series master or one instance of a series."""
        f = item.fields
        start, end, kind, ical_uid = item.start, item.end, "singleInstance", item.ical_uid
        data: dict[str, Any] = {"id": item.id}
        if item.recurrence is not None:
            kind = "seriesMaster"
        if original is not None:
            override = item.exceptions.get(original, {})
            kind = "exception" if override else "occurrence"
            local = original.astimezone(item.start.tzinfo)
            start = override.get("start", local)
            end = override.get("end", local + (item.end - item.start))
            day = original.date()
            ical_uid = ical_uid[:32] + f"{day.year:04X}{day.month:02X}{day.day:02X}" + ical_uid[40:]
            data = {"id": f"{item.id}_{compact(original)}", "seriesMasterId": item.id,
                    "originalStart": original.strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip
            f = {**f, **{k: v for k, v in override.items() if k not in ("start", "end")}}
        data.update({
            "createdDateTime": _stamp(item.created), "lastModifiedDateTime": _stamp(item.modified),
            "categories": f.get("categories", []), "originalStartTimeZone": item.zone,
            "originalEndTimeZone": item.zone, "iCalUId": ical_uid, "reminderMinutesBeforeStart": 15,
            "isReminderOn": True, "hasAttachments": False, "subject": f.get("subject", ""),
            "bodyPreview": str((f.get("body") or {}).get("content", ""))[:255],
            "importance": f.get("importance", "normal"), "sensitivity": f.get("sensitivity", "normal"),
            "isAllDay": item.all_day, "isCancelled": bool(f.get("isCancelled", False)),
            "isOrganizer": "organizer" not in f, "responseRequested": True,
            "showAs": f.get("showAs", "busy"), "type": kind,
            "webLink": f"https://outlook.office365.com/owa/?itemid={item.id}",
            "onlineMeetingUrl": None, "isOnlineMeeting": bool(f.get("isOnlineMeeting", False)),
            "onlineMeetingProvider": "teamsForBusiness" if f.get("isOnlineMeeting") else "unknown",
            "responseStatus": f.get("responseStatus", {"response": "organizer", "time": "0001-01-01T00:00:00Z"}),
            "body": f.get("body", {"contentType": "html", "content": ""}),
            "start": _render_time(start, out_zone, item.all_day),
            "end": _render_time(end, out_zone, item.all_day),
            "location": f.get("location", {"displayName": "", "locationType": "default"}),
            "recurrence": item.recurrence if kind == "seriesMaster" else None,
            "attendees": f.get("attendees", []),
            "organizer": f.get("organizer", {"emailAddress": {"name": "Alex", "address": self.user}}),
            "onlineMeeting": f.get("onlineMeeting"),
        })  # fmt: skip
        if kind in ("occurrence", "exception") and "seriesMasterId" not in data:
            data["seriesMasterId"] = item.id
        if item.transaction_id:
            data["transactionId"] = item.transaction_id
        change = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).digest()
        change_key = change[:12].hex()
        data["changeKey"] = change_key
        data["@odata.etag"] = f'W/"{change_key}"'
        if expand is not None:
            wanted = {e.lower() for e in expand}
            data["singleValueExtendedProperties"] = [
                {"id": pid, "value": value}
                for low, (pid, value) in item.properties.items()
                if not wanted or low in wanted
            ]
        return data


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def _render_time(value: datetime, zone: str, all_day: bool) -> dict[str, str]:
    if all_day:  # all-day events keep their dates whatever zone is asked for
        return {"dateTime": value.date().isoformat() + "T00:00:00.0000000", "timeZone": zone}
    local = value.astimezone(zone_of(zone)).replace(tzinfo=None)
    return {"dateTime": local.isoformat(timespec="seconds") + ".0000000", "timeZone": zone}


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, dict) or "dateTime" not in value:
        raise GraphError(400, "ErrorInvalidRequest", "start and end need dateTime and timeZone")
    text = re.sub(r"(\.\d{6})\d+", r"\1", str(value["dateTime"])).removesuffix("Z")
    try:
        return datetime.fromisoformat(text).replace(
            tzinfo=zone_of(str(value.get("timeZone", "UTC")))
        )
    except (ValueError, KeyError) as exc:
        raise GraphError(400, "ErrorInvalidRequest", f"bad dateTimeTimeZone: {exc}") from None


class _Handler(BaseHTTPRequestHandler):
    graph: GraphServer
    protocol_version = "HTTP/1.1"
    # headers and body leave in two writes: with Nagle's algorithm a reply's last segment
    # can wait for the client's delayed ACK (up to 40 ms a reply), a stall of this
    # server's making that a real service's replies do not have
    disable_nagle_algorithm = True

    def setup(self) -> None:
        self.request.settimeout(10)
        try:
            self.request.do_handshake()
        except (OSError, ssl.SSLError):
            self.close_connection = True
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    # ------------------------------------------------------------------ dispatch

    def _handle(self) -> None:
        g = self.graph
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        fault = None
        if path.startswith("/v1.0/"):
            fault = g._take_fault(self.command)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        status, body, headers = 200, b"", {"Content-Type": "application/json"}
        try:
            if fault is not None and fault.status:
                extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                if fault.status == 401:
                    extra["WWW-Authenticate"] = 'Bearer realm="", error="invalid_token"'
                raise GraphError(fault.status, _CODES.get(fault.status, "UnknownError"),
                                 f"Injected fault {fault.status}", extra)  # fmt: skip
            status, payload, extra = self._route(self.command, path, split.path, query, raw)
            headers.update(extra)
            body = b"" if payload is None else json.dumps(payload).encode()
        except GraphError as exc:
            status = exc.status
            headers.update(exc.headers)
            if path.startswith("/v1.0/"):
                error = {"code": exc.code, "message": str(exc), "innerError": {
                    "date": _stamp(datetime.now(UTC)), "request-id": secrets.token_hex(8)}}  # fmt: skip
                body = json.dumps({"error": error}).encode()
            else:  # the token endpoint answers in OAuth's format
                body = json.dumps({"error": exc.code, "error_description": str(exc),
                                   "error_codes": [70000]}).encode()  # fmt: skip
        with g._lock:
            g.seen.append(Seen(self.command, path, split.query, status))
        if fault is not None and fault.drop:
            self.close_connection = True
            return
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def _route(
        self, method: str, path: str, raw_path: str, query: dict[str, str], raw: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        g = self.graph
        parts = [p for p in path.split("/") if p]
        if parts[:1] == [g.tenant] and path.endswith("/.well-known/openid-configuration"):
            base = f"{g.url}/{g.tenant}"
            return 200, {
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "issuer": f"{base}/v2.0",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            }, {}  # fmt: skip
        if parts[:1] == [g.tenant] and parts[1:] == ["oauth2", "v2.0", "authorize"]:
            return 302, None, self._consent(query)
        if (
            parts[:1] == [g.tenant]
            and parts[1:] == ["oauth2", "v2.0", "token"]
            and method == "POST"
        ):
            return self._token(raw)
        if parts[:1] != ["v1.0"]:
            raise GraphError(404, "BadRequest", "Resource not found for the segment.")
        self._authorize()
        if parts[1:2] == ["subscriptions"]:  # change notifications (push section)
            return _subscriptions_route(self, method, parts[2:], raw)
        if parts[1:2] == ["me"]:
            parts = ["v1.0", "users", g.user, *parts[2:]]
        if len(parts) < 4 or parts[1] != "users" or parts[2].lower() != g.user.lower():
            raise GraphError(404, "ErrorInvalidUser", "The requested user is invalid.")
        rest = parts[3:]
        out_zone = self._out_zone()
        with g._lock:
            if (len(rest) == 4 and rest[0] == "mailFolders" and rest[2:] == ["messages", "delta"]
                    and method == "GET"):  # fmt: skip
                return self._mail_delta(rest[1].lower(), query, raw_path)
            if rest == ["sendMail"] and method == "POST":
                self._send_mail(_json(raw))
                return 202, None, {}
            if (len(rest) == 3 and rest[0] == "mailFolders" and rest[2] == "messages"
                    and method == "GET"):  # fmt: skip
                return 200, self._folder_messages(rest[1].lower(), query), {}
            if len(rest) == 2 and rest[0] == "messages" and method == "GET":
                message = g.messages.get(rest[1])
                if message is None:
                    raise GraphError(404, "ErrorItemNotFound",
                                     "The specified object was not found in the store.")  # fmt: skip
                return 200, g.render_message(message, _select(query), self._wants_text()), {}
            if rest == ["calendarView", "delta"] and method == "GET":
                return self._delta(query, raw_path, out_zone)
            if rest == ["events"] and method == "GET":
                return 200, {"value": self._list(query, out_zone)}, {}
            if rest == ["events"] and method == "POST":
                return 201, self._create(_json(raw), out_zone), {}
            if len(rest) == 2 and rest[0] == "events":
                if method == "GET":
                    return 200, self._get(rest[1], query, out_zone), {}
                if method == "PATCH":
                    return 200, self._patch(rest[1], _json(raw), out_zone), {}
                if method == "DELETE":
                    g._delete(rest[1])
                    return 204, None, {}
            if len(rest) == 3 and rest[0] == "events" and rest[2] == "cancel" and method == "POST":
                g._delete(rest[1])  # the organiser cancels: gone from their calendar
                return 202, None, {}
            if len(rest) == 3 and rest[0] == "events" and rest[2] == "instances":
                item = self._item(rest[1])
                start, end = self._window(query)
                found = [
                    i
                    for i in g.instances(start, end, out_zone)
                    if i.get("seriesMasterId") == item.id
                ]
                return 200, {"value": found}, {}
        raise GraphError(400, "BadRequest", f"Unsupported request {method} {path}")

    def _send_mail(self, body: dict[str, Any]) -> None:
        g = self.graph
        message = body.get("message")
        if not isinstance(message, dict):
            raise GraphError(400, "ErrorInvalidRequest", "The message is missing.")
        to = [str((r.get("emailAddress") or {}).get("address") or "")
              for r in message.get("toRecipients") or []]  # fmt: skip
        if not to or any("@" not in a for a in to):
            raise GraphError(400, "ErrorInvalidRecipients",
                             "At least one recipient isn't valid.")  # fmt: skip
        headers = [(str(h.get("name", "")), str(h.get("value", "")))
                   for h in message.get("internetMessageHeaders") or []]  # fmt: skip
        if any(not name.lower().startswith("x-") for name, _ in headers):
            raise GraphError(400, "InvalidInternetMessageHeader",
                             "The internet message header name should start with 'x-' or "
                             "'X-'.")  # fmt: skip
        content = message.get("body") or {}
        mid = str(message.get("internetMessageId") or f"<{secrets.token_hex(16)}@mail.example.com>")
        subject = str(message.get("subject") or "")
        saved = ""
        if body.get("saveToSentItems", True) not in (False, "false"):
            saved = g.deliver("sentitems", subject, g.user, to, datetime.now(UTC),
                              internet_message_id=mid, headers=headers, is_read=True,
                              body=str(content.get("content") or ""),
                              body_type=str(content.get("contentType") or "text").lower(),
                              ).id  # fmt: skip
        g.sent.append(SentGraphMail(
            sender=g.user, to=to, subject=subject,
            content_type=str(content.get("contentType") or "Text"),
            content=str(content.get("content") or ""), internet_message_id=mid,
            headers=headers, saved_id=saved,
        ))  # fmt: skip

    def _folder_messages(self, folder: str, query: dict[str, str]) -> dict[str, Any]:
        g = self.graph
        if folder not in MAIL_FOLDERS:
            raise GraphError(404, "ErrorInvalidIdMalformed", "Id is malformed.")
        wanted: str | None = None
        text = query.get("$filter", "").strip()
        if text:
            match = re.match(r"^internetMessageId eq '((?:[^']|'')*)'$", text, re.IGNORECASE)
            if match is None:
                raise GraphError(400, "ErrorInvalidUrlQueryFilter", "The filter is not supported.")
            wanted = match.group(1).replace("''", "'")
        found = [msg for msg in g.messages.values() if msg.folder == folder
                 and (wanted is None or msg.internet_message_id == wanted)]  # fmt: skip
        top = int(query.get("$top") or 10)
        want_text = self._wants_text()
        return {"value": [g.render_message(msg, _select(query), want_text)
                          for msg in found[:top]]}  # fmt: skip

    def _consent(self, query: dict[str, str]) -> dict[str, str]:
        """The sign-in and consent pages, answered at once: a redirect back to the app."""
        g = self.graph
        redirect = query.get("redirect_uri", "")
        if query.get("client_id") != g.client_id or not redirect.startswith("http"):
            raise GraphError(400, "invalid_request", "AADSTS900144: invalid request")
        back: dict[str, str] = {"state": query.get("state", "")}
        if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
            back |= {"error": "invalid_request", "error_description": "AADSTS9002325: PKCE"}
        elif g.deny_consent:
            back |= {"error": "access_denied",
                     "error_description": "AADSTS65004: User declined to consent."}  # fmt: skip
        else:
            code = "0.A" + secrets.token_urlsafe(32)
            with g._lock:
                g._codes[code] = {"redirect_uri": redirect, "scope": query.get("scope", ""),
                                  "challenge": query.get("code_challenge", "")}  # fmt: skip
            back["code"] = code
        sep = "&" if "?" in redirect else "?"
        return {"Location": f"{redirect}{sep}{urlencode(back)}"}

    def _redeem(self, form: dict[str, str]) -> dict[str, Any]:
        g = self.graph
        if "client_secret" in form and form["client_secret"] != g.client_secret:
            raise GraphError(401, "invalid_client", "AADSTS7000215: Invalid client secret.")
        grant = g._codes.pop(form.get("code", ""), None)  # a code works once
        if grant is None:
            raise GraphError(400, "invalid_grant", "AADSTS70008: The authorization code is "
                             "invalid or has expired.")  # fmt: skip
        if grant["redirect_uri"] != form.get("redirect_uri"):
            raise GraphError(400, "invalid_grant", "AADSTS50011: redirect URI mismatch.")
        verifier = form.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        if not verifier or digest.rstrip(b"=").decode() != grant["challenge"]:
            raise GraphError(400, "invalid_grant", "AADSTS501481: The Code_Verifier does not "
                             "match the code_challenge supplied in the authorization request.")  # fmt: skip
        reply: dict[str, Any] = {"scope": grant["scope"]}
        if "offline_access" in grant["scope"].split():
            token = "rt-" + secrets.token_urlsafe(16)
            g._refresh.add(token)
            reply["refresh_token"] = token
        if "openid" in grant["scope"].split():
            claims = {"tid": g.tenant, "preferred_username": g.user, "oid": secrets.token_hex(8),
                      "aud": g.client_id, "iat": int(time.time())}  # fmt: skip
            reply["id_token"] = ".".join(
                base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
                for part in ({"typ": "JWT", "alg": "RS256"}, claims)
            ) + ".c2lnbmF0dXJl"
        return reply

    def _authorize(self) -> None:
        g = self.graph
        header = self.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip()
        with g._lock:
            expiry = g._access.get(token)
        if not token or expiry is None or expiry < time.monotonic():
            raise GraphError(401, "InvalidAuthenticationToken",
                             "Access token has expired or is not yet valid.",
                             {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'})  # fmt: skip

    def _token(self, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        g = self.graph
        form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
        grant = form.get("grant_type", "")
        with g._lock:
            g.token_requests.append(grant)
            if form.get("client_id") != g.client_id:
                raise GraphError(400, "unauthorized_client", "AADSTS700016: Application not found.")
            reply: dict[str, Any] = {"token_type": "Bearer", "expires_in": g.token_lifetime,
                                     "ext_expires_in": g.token_lifetime}  # fmt: skip
            if grant == "client_credentials":
                if form.get("client_secret") != g.client_secret:
                    raise GraphError(401, "invalid_client", "AADSTS7000215: Invalid client secret.")
            elif grant == "refresh_token":
                if form.get("refresh_token") not in g._refresh:
                    raise GraphError(
                        400, "invalid_grant", "AADSTS700082: The refresh token has expired."
                    )
                rotated = "rt-" + secrets.token_urlsafe(16)
                g._refresh.add(rotated)
                if g.single_use_refresh_tokens:
                    g._refresh.discard(str(form.get("refresh_token")))
                reply.update({"refresh_token": rotated, "scope": form.get("scope", "")})
            elif grant == "authorization_code":
                reply.update(self._redeem(form))
            else:
                raise GraphError(400, "unsupported_grant_type", f"grant {grant!r} not supported")
            access = "at-" + secrets.token_urlsafe(24)
            g._access[access] = time.monotonic() + g.token_lifetime
            reply["access_token"] = access
        return 200, reply, {"Cache-Control": "no-store"}

    def _out_zone(self) -> str:
        match = re.search(r'outlook\.timezone="([^"]+)"', self.headers.get("Prefer", ""))
        return match.group(1) if match else "UTC"

    def _page_size(self) -> int:
        match = re.search(r"odata\.maxpagesize=(\d+)", self.headers.get("Prefer", ""))
        return max(1, int(match.group(1))) if match else 10

    def _window(self, query: dict[str, str]) -> tuple[datetime, datetime]:
        try:
            start = datetime.fromisoformat(query["startDateTime"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(query["endDateTime"].replace("Z", "+00:00"))
        except (KeyError, ValueError):
            raise GraphError(400, "ErrorInvalidParameter",
                             "startDateTime and endDateTime are required.") from None  # fmt: skip
        return start.astimezone(UTC), end.astimezone(UTC)

    # --------------------------------------------------------------------- delta

    def _delta(
        self, query: dict[str, str], raw_path: str, out_zone: str
    ) -> tuple[int, Any, dict[str, str]]:
        g = self.graph
        for option in ("$expand", "$select", "$filter", "$orderby", "$search"):
            if option in query:
                raise GraphError(400, "ErrorInvalidUrlQuery",
                                 f"The query parameter '{option}' is not supported with delta.")  # fmt: skip
        link = f"{g.url}{raw_path}"
        if "$skiptoken" in query:
            page = g._pages.pop(query["$skiptoken"], None)
            if page is None:
                raise GraphError(410, "syncStateNotFound", "The sync state is not found.")
            items, final = page
        else:
            if "$deltatoken" in query:
                state = g._deltas.get(query["$deltatoken"])
                if state is None:
                    raise GraphError(410, "syncStateNotFound",
                                     "The sync state generation is not found. Resync required.")  # fmt: skip
                start, end, before = state
            else:
                start, end = self._window(query)
                before = {}
            now = {i["id"]: i for i in g.instances(start, end, out_zone)}
            snapshot = {k: v["changeKey"] for k, v in now.items()}
            items = [i for k, i in now.items() if before.get(k) != i["changeKey"]]
            items += [{"@odata.type": "#microsoft.graph.event", "id": k,
                       "@removed": {"reason": "deleted"}} for k in before if k not in now]  # fmt: skip
            final = secrets.token_urlsafe(12)
            g._deltas[final] = (start, end, snapshot)
        size = self._page_size()
        body: dict[str, Any] = {"@odata.context": f"{g.graph_url}/$metadata#Collection(event)",
                                "value": items[:size]}  # fmt: skip
        if len(items) > size:
            skip = secrets.token_urlsafe(12)
            g._pages[skip] = (items[size:], final)
            body["@odata.nextLink"] = f"{link}?$skiptoken={skip}"
        else:
            body["@odata.deltaLink"] = f"{link}?$deltatoken={final}"
        return (
            200,
            body,
            {"Preference-Applied": f'odata.maxpagesize={size}, outlook.timezone="{out_zone}"'},
        )

    def _mail_delta(
        self, folder: str, query: dict[str, str], raw_path: str
    ) -> tuple[int, Any, dict[str, str]]:
        """Messages delta of one folder: ``$select`` is kept in the links it hands out."""
        g = self.graph
        if folder not in MAIL_FOLDERS:
            raise GraphError(404, "ErrorItemNotFound", "The specified folder could not be found.")
        for option in ("$expand", "$search"):
            if option in query:
                raise GraphError(400, "ErrorInvalidUrlQuery",
                                 f"The query parameter '{option}' is not supported with delta.")  # fmt: skip
        link = f"{g.url}{raw_path}"
        if "$skiptoken" in query:
            page = g._mail_pages.pop(query["$skiptoken"], None)
            if page is None:
                raise GraphError(410, "syncStateNotFound", "The sync state is not found.")
            _folder, items, final = page
        else:
            if "$deltatoken" in query:
                state = g._mail_deltas.get(query["$deltatoken"])
                if state is None or state[0] != folder:
                    raise GraphError(410, "syncStateNotFound",
                                     "The sync state generation is not found. Resync required.")  # fmt: skip
                _folder, select_text, before = state
            else:
                select_text, before = query.get("$select", ""), {}
                refused = {s.strip().lower() for s in select_text.split(",")} & NOT_IN_DELTA
                if refused:
                    raise GraphError(400, "ErrorInvalidProperty",
                                     f"The property '{sorted(refused)[0]}' is not supported "
                                     "with delta.")  # fmt: skip
            select = {x.strip() for x in select_text.split(",") if x.strip()} or None
            now = sorted(
                (m for m in g.messages.values() if m.folder == folder),
                key=lambda m: (m.received or m.sent, m.id),
            )
            want_text = self._wants_text()
            items = [g.render_message(m, select, want_text) for m in now
                     if before.get(m.id) != m.change_key]  # fmt: skip
            current = {m.id for m in now}
            items += [{"id": k, "@removed": {"reason": "deleted"}} for k in before
                      if k not in current]  # fmt: skip
            final = secrets.token_urlsafe(12)
            g._mail_deltas[final] = (folder, select_text, {m.id: m.change_key for m in now})
        size = self._page_size()
        body: dict[str, Any] = {
            "@odata.context": f"{g.graph_url}/$metadata#Collection(message)", "value": items[:size]
        }  # fmt: skip
        if len(items) > size:
            skip = secrets.token_urlsafe(12)
            g._mail_pages[skip] = (folder, items[size:], final)
            body["@odata.nextLink"] = f"{link}?$skiptoken={skip}"
        else:
            body["@odata.deltaLink"] = f"{link}?$deltatoken={final}"
        applied = f"odata.maxpagesize={size}"
        if self._wants_text() and g.text_bodies:
            applied += ', outlook.body-content-type="text"'
        return 200, body, {"Preference-Applied": applied}

    def _wants_text(self) -> bool:
        prefer = self.headers.get("Prefer", "")
        return bool(re.search(r'outlook\.body-content-type\s*=\s*"?text"?', prefer, re.I))

    # -------------------------------------------------------------------- events

    def _item(self, event_id: str) -> Item:
        item = self.graph.items.get(event_id)
        if item is None:
            raise GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        return item

    def _expand(self, query: dict[str, str]) -> list[str] | None:
        if "$expand" not in query:
            return None
        match = _EXPAND.match(query["$expand"].strip())
        if not match:
            raise GraphError(400, "BadRequest", f"Unsupported $expand {query['$expand']!r}")
        return [m.replace("''", "'") for m in _EXPAND_ID.findall(match.group(1) or "")]

    def _list(self, query: dict[str, str], out_zone: str) -> list[dict[str, Any]]:
        expand = self._expand(query)
        items = list(self.graph.items.values())
        text = query.get("$filter", "").strip()
        if text:
            ep, uid = _EP_FILTER.match(text), _UID_FILTER.match(text)
            if ep:
                pid, value = ep.group(2).replace("''", "'").lower(), ep.group(3).replace("''", "'")
                items = [i for i in items if i.properties.get(pid, ("", None))[1] == value]
            elif uid:
                items = [i for i in items if i.ical_uid == uid.group(1).replace("''", "'")]
            else:
                raise GraphError(400, "ErrorInvalidUrlQueryFilter", f"Unsupported filter {text!r}")
        return [self.graph.render(i, out_zone, expand=expand) for i in items]

    def _get(self, event_id: str, query: dict[str, str], out_zone: str) -> dict[str, Any]:
        expand = self._expand(query)
        if event_id in self.graph.items:
            data = self.graph.render(self.graph.items[event_id], out_zone, expand=expand)
        else:
            item, original = self.graph._occurrence(event_id)
            data = self.graph.render(item, out_zone, original=original, expand=expand)
        if "$select" in query:
            keep = {s.strip() for s in query["$select"].split(",")} | {"id", "@odata.etag"}
            keep |= {"singleValueExtendedProperties"}
            data = {k: v for k, v in data.items() if k in keep}
        return data

    def _create(self, body: dict[str, Any], out_zone: str) -> dict[str, Any]:
        g = self.graph
        start, end = _parse_time(body.get("start")), _parse_time(body.get("end"))
        zone = str(body["start"].get("timeZone", "UTC"))
        item = g._new_item(start, end, zone)
        item.all_day = bool(body.get("isAllDay"))
        item.recurrence = body.get("recurrence")
        item.transaction_id = str(body.get("transactionId") or "")
        item.fields.update({k: body[k] for k in EDITABLE if k in body})
        try:
            self._set_properties(item, body)
        except GraphError:
            del g.items[item.id]
            raise
        return g.render(item, out_zone)

    def _patch(self, event_id: str, body: dict[str, Any], out_zone: str) -> dict[str, Any]:
        g = self.graph
        if event_id not in g.items:
            item, original = g._occurrence(event_id)
            override = item.exceptions.setdefault(original, {})
            for key in ("start", "end"):
                if key in body:
                    override[key] = _parse_time(body[key])
            override.update({k: body[k] for k in EDITABLE if k in body})
            return g.render(item, out_zone, original=original)
        item = g.items[event_id]
        if "start" in body:
            item.start = _parse_time(body["start"])
            item.zone = str(body["start"].get("timeZone", item.zone))
        if "end" in body:
            item.end = _parse_time(body["end"])
        item.fields.update({k: body[k] for k in EDITABLE if k in body})
        self._set_properties(item, body)
        item.modified = datetime.now(UTC)
        return g.render(item, out_zone)

    def _set_properties(self, item: Item, body: dict[str, Any]) -> None:
        for prop in body.get("singleValueExtendedProperties") or []:
            pid = str(prop.get("id", ""))
            if not _PROPERTY_ID.match(pid):
                raise GraphError(
                    400, "ErrorInvalidProperty", f"Invalid extended property id {pid!r}"
                )
            item.properties[pid.lower()] = (pid, str(prop.get("value", "")))


_CODES = {
    400: "BadRequest", 401: "InvalidAuthenticationToken", 403: "ErrorAccessDenied",
    404: "ErrorItemNotFound", 409: "ErrorIrresolvableConflict", 410: "syncStateNotFound",
    412: "ErrorIrresolvableConflict", 429: "ApplicationThrottled", 500: "InternalServerError",
    502: "BadGateway", 503: "ServiceNotAvailable", 504: "GatewayTimeout",
}  # fmt: skip


def _select(query: dict[str, str]) -> set[str] | None:
    chosen = {s.strip() for s in query.get("$select", "").split(",") if s.strip()}
    return chosen or None


def _topic(subject: str) -> str:
    """A conversation topic: the subject without its RE:/FW: prefixes."""
    topic = subject
    while True:
        head, sep, rest = topic.partition(":")
        if not (sep and head.strip().lower() in ("re", "fw", "fwd", "aw", "wg")):
            return topic.lower()
        topic = rest.strip()


def _json(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise GraphError(400, "BadRequest", "Empty Payload. JSON content expected.") from None
    if not isinstance(data, dict):
        raise GraphError(400, "BadRequest", "A JSON object is expected.")
    return data


# ------------------------------------------- change notification subscriptions (push)
#
# ``POST /v1.0/subscriptions`` (resource ``/users/{user}/events`` or ``/me/events``;
# changeType of created, updated, deleted; expirationDateTime at most 10,080 minutes
# ahead; clientState up to 128 characters), ``GET``/``PATCH``/``DELETE
# /v1.0/subscriptions/{id}`` and ``POST .../reauthorize``. Creating one performs Graph's
# validation handshake first: a POST of ``?validationToken=<token>`` (text/plain) to the
# notificationUrl and to the lifecycleNotificationUrl, answered with 200 and the token as
# text/plain within 10 seconds, else 400 ``ValidationError``. Expired subscriptions are
# gone (404). Graph wants https URLs; this server also accepts http://127.0.0.1 ones.
# ``subscriptions(graph)`` sends notifications: ``notify`` (a change of an event, with
# the subscription's clientState or a forged one) and ``lifecycle`` (reauthorizationRequired,
# subscriptionRemoved, missed), and records every delivery.

MAX_SUBSCRIPTION_MINUTES = 10080
_CHANGE_TYPES = frozenset({"created", "updated", "deleted"})


@dataclass
class Subscription:
    id: str
    resource: str
    change_type: str
    notification_url: str
    lifecycle_url: str
    client_state: str
    expiration: datetime
    reauthorized: int = 0

    def render(self, graph: GraphServer) -> dict[str, Any]:
        return {
            "@odata.context": f"{graph.graph_url}/$metadata#subscriptions/$entity",
            "id": self.id, "resource": self.resource, "applicationId": graph.client_id,
            "changeType": self.change_type, "clientState": self.client_state or None,
            "notificationUrl": self.notification_url,
            "lifecycleNotificationUrl": self.lifecycle_url or None,
            "expirationDateTime": self.expiration.strftime("%Y-%m-%dT%H:%M:%S.%f0Z"),
            "creatorId": graph.client_id, "latestSupportedTlsVersion": "v1_2",
            "includeResourceData": False, "notificationUrlAppId": None,
        }  # fmt: skip


@dataclass
class Delivery:
    url: str
    payload: Any
    status: int  # 0: no answer


class Subscriptions:
    """Graph's side of change notifications for one :class:`GraphServer`."""

    def __init__(self, graph: GraphServer) -> None:
        self.graph = graph
        self.items: dict[str, Subscription] = {}
        self.validations: list[Delivery] = []
        self.deliveries: list[Delivery] = []
        self.validation_timeout = 10.0
        self.lock = threading.RLock()

    def live(self) -> list[Subscription]:
        now = datetime.now(UTC)
        with self.lock:
            return [s for s in self.items.values() if s.expiration > now]

    def notify(
        self, event_id: str, change_type: str = "updated", *, client_state: str | None = None
    ) -> list[int]:
        """Tell every live subscription with ``change_type`` that ``event_id`` changed;
        the HTTP statuses of the deliveries. ``client_state`` forges the secret."""
        user = self.graph.user
        statuses = []
        for sub in self.live():
            if change_type not in sub.change_type.split(","):
                continue
            resource = f"Users/{user}/Events/{event_id}"
            note = {
                "subscriptionId": sub.id,
                "subscriptionExpirationDateTime": _stamp(sub.expiration),
                "changeType": change_type, "resource": resource,
                "resourceData": {"@odata.type": "#Microsoft.Graph.Event",
                                 "@odata.id": resource, "id": event_id},
                "clientState": sub.client_state if client_state is None else client_state,
                "tenantId": self.graph.tenant,
            }  # fmt: skip
            statuses.append(self._deliver(sub.notification_url, {"value": [note]}))
        return statuses

    def lifecycle(self, sub_id: str, event: str, *, client_state: str | None = None) -> int:
        """Send a lifecycle notification; ``subscriptionRemoved`` also removes it."""
        with self.lock:
            sub = self.items[sub_id]
            if event == "subscriptionRemoved":
                del self.items[sub_id]
        note = {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": _stamp(sub.expiration),
            "tenantId": self.graph.tenant,
            "clientState": sub.client_state if client_state is None else client_state,
            "lifecycleEvent": event,
        }
        return self._deliver(sub.lifecycle_url or sub.notification_url, {"value": [note]})

    def expire(self, sub_id: str) -> None:
        with self.lock:
            self.items[sub_id].expiration = datetime.now(UTC) - timedelta(seconds=1)

    def _deliver(self, url: str, payload: Any) -> int:
        import httpx

        try:
            reply = httpx.post(url, json=payload, timeout=10)
            status = reply.status_code
        except httpx.HTTPError:
            status = 0
        with self.lock:
            self.deliveries.append(Delivery(url, payload, status))
        return status

    def _validate(self, url: str) -> bool:
        import httpx

        token = (
            "Validation: Testing client application reachability for subscription Request-Id: "
            + secrets.token_hex(8)
        )
        try:
            reply = httpx.post(url, params={"validationToken": token}, content=b"",
                               headers={"Content-Type": "text/plain; charset=utf-8"},
                               timeout=self.validation_timeout)  # fmt: skip
        except httpx.HTTPError:
            with self.lock:
                self.validations.append(Delivery(url, token, 0))
            return False
        with self.lock:
            self.validations.append(Delivery(url, token, reply.status_code))
        return (
            reply.status_code == 200
            and reply.headers.get("content-type", "").startswith("text/plain")
            and reply.text == token
        )


_subscriptions_lock = threading.Lock()


def subscriptions(graph: GraphServer) -> Subscriptions:
    """The subscription state of ``graph`` (made on first use)."""
    with _subscriptions_lock:
        state = graph.__dict__.get("_subscriptions")
        if state is None:
            state = graph.__dict__["_subscriptions"] = Subscriptions(graph)
        return state  # type: ignore[no-any-return]


def _subscriptions_route(
    handler: _Handler, method: str, rest: list[str], raw: bytes
) -> tuple[int, Any, dict[str, str]]:
    g = handler.graph
    state = subscriptions(g)
    if not rest and method == "POST":
        return 201, _create_subscription(g, state, _json(raw)), {}
    if not rest and method == "GET":
        return 200, {"value": [s.render(g) for s in state.live()]}, {}
    with state.lock:
        sub = state.items.get(rest[0]) if rest else None
        if sub is not None and sub.expiration <= datetime.now(UTC):
            del state.items[sub.id]  # Graph deletes expired subscriptions
            sub = None
    if sub is None:
        raise GraphError(404, "ResourceNotFound", "The object was not found.")
    if len(rest) == 2 and rest[1] == "reauthorize" and method == "POST":
        sub.reauthorized += 1
        return 200, None, {}
    if len(rest) != 1:
        raise GraphError(400, "BadRequest", "Unsupported subscription request")
    if method == "GET":
        return 200, sub.render(g), {}
    if method == "DELETE":
        with state.lock:
            state.items.pop(sub.id, None)
        return 204, None, {}
    if method == "PATCH":
        body = _json(raw)
        if "expirationDateTime" in body:
            sub.expiration = _subscription_expiry(body["expirationDateTime"])
            sub.reauthorized += 1  # a PATCH reauthorizes too
        return 200, sub.render(g), {}
    raise GraphError(405, "BadRequest", f"{method} is not allowed here")


def _subscription_expiry(raw: Any) -> datetime:
    try:
        text = str(raw).replace("Z", "+00:00")
        head, dot, tail = text.partition(".")
        if dot:  # 7 fractional digits: keep 6
            digits = "".join(c for c in tail if c.isdigit())
            text = f"{head}.{digits[:6]}{tail[len(digits):]}"
        value = datetime.fromisoformat(text)
    except ValueError:
        raise GraphError(400, "InvalidRequest", f"Invalid expirationDateTime {raw!r}") from None
    value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    now = datetime.now(UTC)
    if value <= now:
        raise GraphError(400, "InvalidRequest", "Subscription expiration must be in the future.")
    if value > now + timedelta(minutes=MAX_SUBSCRIPTION_MINUTES):
        raise GraphError(400, "InvalidRequest",
                         f"Subscription expiration can only be {MAX_SUBSCRIPTION_MINUTES} "
                         "minutes in the future.")  # fmt: skip
    return value


def _create_subscription(g: GraphServer, state: Subscriptions, body: dict[str, Any]) -> Any:
    resource = str(body.get("resource") or "")
    parts = [p for p in resource.split("/") if p]
    if parts[:1] == ["me"]:
        parts = ["users", g.user, *parts[1:]]
    if len(parts) != 3 or parts[0] != "users" or parts[1].lower() != g.user.lower() \
            or parts[2].lower() != "events":  # fmt: skip
        raise GraphError(400, "InvalidRequest", f"Unsupported resource {resource!r}")
    kinds = {k.strip() for k in str(body.get("changeType") or "").split(",") if k.strip()}
    if not kinds or not kinds <= _CHANGE_TYPES:
        raise GraphError(400, "InvalidRequest", "changeType must be created, updated, deleted")
    client_state = str(body.get("clientState") or "")
    if len(client_state) > 128:
        raise GraphError(400, "InvalidRequest", "clientState is longer than 128 characters")
    urls = [str(body.get("notificationUrl") or ""), str(body.get("lifecycleNotificationUrl") or "")]
    for url in urls:
        if url and not (url.startswith("https://") or url.startswith("http://127.0.0.1")):
            raise GraphError(400, "InvalidRequest", "The notification URL must use https.")
    if not urls[0]:
        raise GraphError(400, "InvalidRequest", "notificationUrl is required")
    expiration = _subscription_expiry(body.get("expirationDateTime"))
    for url in dict.fromkeys(u for u in urls if u):
        if not state._validate(url):
            raise GraphError(400, "ValidationError",
                             "Subscription validation request failed. Notification endpoint "
                             "must respond with 200 OK to validation request.")  # fmt: skip
    import uuid

    sub = Subscription(
        id=str(uuid.uuid4()), resource=resource, change_type=",".join(sorted(kinds)),
        notification_url=urls[0], lifecycle_url=urls[1], client_state=client_state,
        expiration=expiration,
    )  # fmt: skip
    with state.lock:
        state.items[sub.id] = sub
    return sub.render(g)


def trust_for_stored_accounts(server: GraphServer, monkeypatch: Any) -> None:
    """Make accounts stored without a CA file reach ``server``: its client secret in
    ``TEST_MS_CLIENT_SECRET`` and its self-signed CA trusted by httpx (SSL_CERT_FILE) and
    by requests under msal (REQUESTS_CA_BUNDLE)."""
    monkeypatch.setenv("TEST_MS_CLIENT_SECRET", server.client_secret)
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_file))
