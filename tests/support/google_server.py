"""A protocol-level Google Calendar API v3 server on 127.0.0.1, for the real client library.

It speaks the REST JSON of the discovery document (``calendar/v3/`` under the root URL)
and the OAuth 2.0 token endpoint (``/token``), with the documented semantics the
connector relies on:

* ``events``: list, insert, import, get, update, patch, delete, instances; a series is a
  master with ``recurrence`` lines; an instance id is ``<master id>_<original start>``
  (``YYYYMMDDTHHMMSSZ`` in UTC, ``YYYYMMDD`` for all-day series); writing or deleting an
  instance stores an exception (``recurringEventId``, ``originalStartTime``); deleting
  a master cancels the series and its exceptions.
* ``events.list``: ``maxResults`` (default 250, at most 2500) and ``pageToken`` paging;
  ``nextSyncToken`` on the last page; ``syncToken`` lists everything changed since,
  deleted items as ``status: cancelled`` with little more than their id; a token the
  server no longer knows is ``410 fullSyncRequired``; ``syncToken`` with ``timeMin``,
  ``timeMax``, ``iCalUID``, ``q``... is 400. ``showDeleted``, ``iCalUID``,
  ``privateExtendedProperty``, ``sharedExtendedProperty``, ``timeMin``/``timeMax``, ``q``.
  ``singleEvents=true`` is not implemented (400).
* ``/o/oauth2/v2/auth`` (``authorize_url``): the consent screen of the authorization code
  flow with PKCE, answered at once: a redirect back to ``redirect_uri`` with a one-time
  ``code`` for ``consent_user`` (or ``error=access_denied`` while ``deny_consent`` is set).
  ``/token`` redeems the code (``authorization_code`` grant: client secret, the same
  ``redirect_uri`` and the ``code_verifier`` matching the S256 challenge are checked) for
  an access token, a refresh token (``access_type=offline``) and an ID token (``openid``).
* ``/token``: ``refresh_token`` grant (installed apps) and the JWT bearer grant of
  service accounts (RS256 signature checked against the registered key; ``sub`` only
  for subjects the account is delegated). Access tokens expire; unknown or expired
  ones get 401 on the API.
* Faults: ``fail_next(status, retry_after=..., times=...)`` and ``hang_next(seconds)``
  apply to the next API requests (not to the token endpoint, not to requests made with
  tokens from ``access_token_for(..., exempt=True)``, which the tests use as "another
  client"). Errors are Google's JSON error bodies.

``requests`` records every request as ``Logged(method, path, params, status)``.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

from tests.support.google_oauth import CHALLENGE, OAuthError, OAuthServer, b64decode

CALENDAR_SCOPES = frozenset(
    {
        "https://www.googleapis.com/auth/calendar",
        "https://www.googleapis.com/auth/calendar.events",
    }
)
API = "/calendar/v3/"
_ID_RE = re.compile(r"^[a-v0-9]{5,1024}$")
_SUFFIX_RE = re.compile(r"^(\d{8})(?:T(\d{6})Z)?$")
_READ_ONLY = ("kind", "etag", "htmlLink", "created", "updated", "creator", "organizer",
              "recurringEventId", "originalStartTime", "id")  # fmt: skip
_NO_SYNC_WITH = ("timeMin", "timeMax", "iCalUID", "privateExtendedProperty",
                 "sharedExtendedProperty", "q", "orderBy", "updatedMin")  # fmt: skip
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                 404: "NOT_FOUND", 409: "ALREADY_EXISTS", 410: "NOT_FOUND",
                 412: "FAILED_PRECONDITION", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                 503: "UNAVAILABLE"}  # fmt: skip
_DEFAULT_REASONS = {400: "badRequest", 401: "authError", 403: "rateLimitExceeded",
                    404: "notFound", 409: "duplicate", 410: "fullSyncRequired",
                    412: "conditionNotMet", 429: "rateLimitExceeded"}  # fmt: skip


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        domain: str = "global",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.domain = domain
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"domain": self.domain, "reason": self.reason,
                                  "message": self.message}  # fmt: skip
        if self.status == 401:
            detail |= {"locationType": "header", "location": "Authorization"}
        return {"error": {"errors": [detail], "code": self.status, "message": self.message,
                          "status": _STATUS_NAMES.get(self.status, "UNKNOWN")}}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Logged:
    method: str
    path: str
    params: dict[str, list[str]]
    status: int


@dataclass(slots=True)
class _Fault:
    status: int = 0
    delay: float = 0.0
    retry_after: int | None = None
    reason: str = ""


@dataclass(slots=True)
class Calendar:
    id: str
    time_zone: str
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    seq: int = 0
    epoch: int = 0


class GoogleCalendarServer(OAuthServer):
    """A threaded server; ``url`` is the root URL (``http://127.0.0.1:<port>/``)."""

    api_scopes = CALENDAR_SCOPES
    default_scopes = CALENDAR_SCOPES

    def __init__(self, *, time_zone: str = "UTC", token_lifetime: int = 3600) -> None:
        super().__init__(token_lifetime=token_lifetime)
        self.time_zone = time_zone
        self.requests: list[Logged] = []
        self._calendars: dict[str, Calendar] = {}
        self._faults: list[_Fault] = []
        # the authorization code flow: who consents, whether they refuse, codes given out
        self.consent_user = "manager@example.com"
        self.deny_consent = False
        self._codes: dict[str, dict[str, str]] = {}

    @property
    def authorize_url(self) -> str:
        return self.url + "o/oauth2/v2/auth"

    # ---------------------------------------------------------------- calendars

    def calendar(self, user: str) -> Calendar:
        with self._lock:
            if user not in self._calendars:
                self._calendars[user] = Calendar(user, self.time_zone)
            return self._calendars[user]

    def load(self, user: str, items: list[dict[str, Any]]) -> None:
        """Store events exactly as given (real payloads from elsewhere), unvalidated."""
        with self._lock:
            cal = self.calendar(user)
            for item in items:
                etag = item.get("etag")
                stored = self._store(cal, copy.deepcopy(item))
                if etag:
                    stored["etag"] = etag

    def seed_events(self, user: str, docs: list[dict[str, Any]]) -> list[str]:
        """Insert events in memory as ``events.insert`` would (validated, ids and etags
        assigned, every one a change in the sync log), without HTTP; their ids. For
        benchmarks that need thousands of events."""
        with self._lock:
            cal = self.calendar(user)
            return [str(self._insert(cal, copy.deepcopy(doc))["id"]) for doc in docs]

    def seed_change(self, user: str, event_id: str, patch: dict[str, Any] | None) -> None:
        """In memory, as ``events.patch`` (``patch``) or ``events.delete`` (None) of
        ``event_id`` would; an instance id (``<master id>_<original start>``) changes or
        cancels one occurrence of a series."""
        with self._lock:
            cal = self.calendar(user)
            if patch is None:
                self._delete(cal, event_id)
            else:
                self._write(cal, event_id, copy.deepcopy(patch), replace=False)

    def expire_sync_tokens(self) -> None:
        """Every sync token issued so far is answered with 410 from now on."""
        with self._lock:
            for cal in self._calendars.values():
                cal.epoch += 1

    def fail_next(
        self, status: int, *, retry_after: int | None = None, times: int = 1, reason: str = ""
    ) -> None:
        with self._lock:
            self._faults.extend(_Fault(status, 0.0, retry_after, reason) for _ in range(times))

    def hang_next(self, seconds: float) -> None:
        with self._lock:
            self._faults.append(_Fault(0, seconds))

    def api_requests(self) -> list[Logged]:
        return [r for r in self.requests if r.path.startswith(API)]

    # ------------------------------------------------------------------ dispatch

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(target)
        path = parts.path
        params = parse_qs(parts.query, keep_blank_values=True)
        try:
            if path == "/token" and method == "POST":
                status, payload, extra = 200, self._token(body), {}
            elif path == "/o/oauth2/v2/auth" and method == "GET":
                status, payload, extra = 302, None, self._consent(params)
            elif path.startswith(API):
                status, payload, extra = self._api(method, path, params, headers, body)
            else:
                raise ApiError(404, "notFound", "Not Found")
        except ApiError as exc:
            status, payload, extra = exc.status, exc.body(), exc.headers
        except OAuthError as exc:
            status, extra = exc.status, {}
            payload = {"error": exc.error, "error_description": exc.description}
        with self._lock:
            self.requests.append(Logged(method, path, params, status))
        data = b"" if payload is None else json.dumps(payload).encode()
        head = {"Content-Type": "application/json; charset=UTF-8", **extra}
        return status, head, data

    def _api(
        self,
        method: str,
        path: str,
        params: dict[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> tuple[int, Any, dict[str, str]]:
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        with self._lock:
            token = self._token_of(headers)
            fault = self._faults.pop(0) if self._faults and not (token and token.exempt) else None
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status:
                extra = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
                reason = fault.reason or _DEFAULT_REASONS.get(fault.status, "backendError")
                domain = "usageLimits" if "Limit" in reason else "global"
                raise ApiError(fault.status, reason, _message(fault.status, reason),
                               domain=domain, headers=extra)  # fmt: skip
        if not auth:
            raise ApiError(401, "required", "Login Required", headers=CHALLENGE)
        if token is None or token.expires_at < time.time():
            raise ApiError(401, "authError", "Invalid Credentials", headers=CHALLENGE)
        segments = [unquote(s) for s in path[len(API) :].split("/")]
        if segments[:1] == ["channels"] or segments[-2:] == ["events", "watch"]:  # push section
            if method != "POST":
                raise ApiError(404, "notFound", "Not Found")
            return _push_api(self, token.user, segments, body)
        if len(segments) < 2 or segments[0] != "calendars":
            raise ApiError(404, "notFound", "Not Found")
        cal_id = token.user if segments[1] == "primary" else segments[1]
        if cal_id != token.user:
            raise ApiError(404, "notFound", "Not Found")
        cal = self.calendar(cal_id)
        rest = segments[2:]
        q = {k: v[-1] for k, v in params.items()}
        doc = _json_body(body) if method in ("POST", "PUT", "PATCH") else {}
        with self._lock:
            if not rest and method == "GET":
                return 200, _calendar_resource(cal), {}
            if rest == ["events"] and method == "GET":
                return 200, self._list(cal, params), {}
            if rest == ["events"] and method == "POST":
                return 200, _public(self._insert(cal, doc)), {}
            if rest == ["events", "import"] and method == "POST":
                return 200, _public(self._import(cal, doc)), {}
            if len(rest) == 3 and rest[0] == "events" and rest[2] == "instances":
                return 200, self._instances(cal, rest[1], q), {}
            if len(rest) == 2 and rest[0] == "events":
                event_id = rest[1]
                if method == "GET":
                    return 200, _public(self._resolve(cal, event_id)), {}
                if method == "PUT":
                    return 200, _public(self._write(cal, event_id, doc, replace=True)), {}
                if method == "PATCH":
                    return 200, _public(self._write(cal, event_id, doc, replace=False)), {}
                if method == "DELETE":
                    self._delete(cal, event_id)
                    return 204, None, {}
        raise ApiError(404, "notFound", "Not Found")

    # ------------------------------------------------------------------- events

    def _list(self, cal: Calendar, params: dict[str, list[str]]) -> dict[str, Any]:
        q = {k: v[-1] for k, v in params.items()}
        try:
            limit = min(int(q.get("maxResults", "250")), 2500)
        except ValueError:
            raise ApiError(400, "invalid", "Invalid value for maxResults") from None
        if limit < 1:
            raise ApiError(400, "invalid", "Invalid value for maxResults")
        if q.get("singleEvents") == "true":
            raise ApiError(400, "invalid", "singleEvents=true is not implemented by this server")
        since: int | None = None
        if "syncToken" in q:
            if any(k in q for k in _NO_SYNC_WITH):
                raise ApiError(400, "invalid",
                               "Sync token cannot be used with other request restrictions.")  # fmt: skip
            since = self._check_sync_token(cal, q["syncToken"])
        upto, after = cal.seq, 0
        if q.get("pageToken"):
            page = _decode(q["pageToken"], "Invalid page token value.", 400, "invalid")
            upto, after = int(page["u"]), int(page["a"])
            if since is not None and int(page.get("e", -1)) != cal.epoch:
                raise _gone_token()
        lower = since if since is not None else 0
        show_deleted = q.get("showDeleted") == "true" or since is not None
        selected: list[dict[str, Any]] = []
        for ev in sorted(cal.events.values(), key=lambda e: e["_seq"]):
            if not (max(after, lower) < ev["_seq"] <= upto):
                continue
            if since is None and not self._matches(cal, ev, params, show_deleted):
                continue
            selected.append(ev)
            if len(selected) > limit:
                break
        more = len(selected) > limit
        selected = selected[:limit]
        reply: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": f'"p{cal.seq:020d}"',
            "summary": cal.id,
            "description": "",
            "updated": _now(),
            "timeZone": cal.time_zone,
            "accessRole": "owner",
            "defaultReminders": [],
            "items": [_public(e) for e in selected],
        }
        if more:
            last = selected[-1]["_seq"]
            reply["nextPageToken"] = _encode({"u": upto, "a": last, "e": cal.epoch})
        elif not any(k in q for k in ("iCalUID", "privateExtendedProperty", "q")):
            reply["nextSyncToken"] = _encode({"c": cal.id, "e": cal.epoch, "s": upto})
        return reply

    def _check_sync_token(self, cal: Calendar, raw: str) -> int:
        try:
            token = _decode(raw, "", 410, "fullSyncRequired")
            if token.get("c") != cal.id or int(token["e"]) != cal.epoch:
                raise _gone_token()
            return int(token["s"])
        except (ApiError, KeyError, TypeError, ValueError):
            raise _gone_token() from None

    def _matches(
        self, cal: Calendar, ev: dict[str, Any], params: dict[str, list[str]], show_deleted: bool
    ) -> bool:
        q = {k: v[-1] for k, v in params.items()}
        cancelled = ev.get("status") == "cancelled"
        if cancelled and not show_deleted and not ev.get("recurringEventId"):
            return False
        if "iCalUID" in q and ev.get("iCalUID") != q["iCalUID"]:
            return False
        for kind in ("private", "shared"):
            props = (ev.get("extendedProperties") or {}).get(kind) or {}
            for wanted in params.get(f"{kind}ExtendedProperty", []):
                key, _, value = wanted.partition("=")
                if props.get(key) != value:
                    return False
        if "q" in q:
            text = " ".join(str(ev.get(k, "")) for k in ("summary", "description", "location"))
            if q["q"].lower() not in text.lower():
                return False
        if ("timeMin" in q or "timeMax" in q) and not cancelled:
            start, end = _span(ev, cal.time_zone)
            if ev.get("recurrence"):
                end = datetime.max.replace(tzinfo=UTC)
            if "timeMin" in q and end <= _parse_time(q["timeMin"]):
                return False
            if "timeMax" in q and start >= _parse_time(q["timeMax"]):
                return False
        return True

    def _insert(self, cal: Calendar, doc: dict[str, Any]) -> dict[str, Any]:
        event_id = str(doc.get("id") or secrets.token_hex(13))
        if not _ID_RE.match(event_id):
            raise ApiError(400, "invalid", "Invalid resource id value.")
        if event_id in cal.events or "_" in event_id:
            raise ApiError(409, "duplicate", "The requested identifier already exists.")
        _validate(doc)
        ev = {k: copy.deepcopy(v) for k, v in doc.items() if k not in _READ_ONLY}
        ev |= {
            "kind": "calendar#event",
            "id": event_id,
            "status": doc.get("status") or "confirmed",
            "iCalUID": doc.get("iCalUID") or f"{event_id}@google.com",
            "created": _now(),
            "htmlLink": f"https://www.google.com/calendar/event?eid={event_id}",
            "creator": {"email": cal.id, "self": True},
            "organizer": {"email": cal.id, "self": True},
            "sequence": int(doc.get("sequence", 0)),
        }
        return self._store(cal, ev)

    def _import(self, cal: Calendar, doc: dict[str, Any]) -> dict[str, Any]:
        uid = doc.get("iCalUID")
        if not uid:
            raise ApiError(400, "required", "Missing iCalUID.")
        existing = next(
            (e for e in cal.events.values()
             if e.get("iCalUID") == uid and not e.get("recurringEventId")), None,
        )  # fmt: skip
        if existing is None:
            return self._insert(cal, {k: v for k, v in doc.items() if k != "id"})
        return self._write(cal, existing["id"], doc, replace=True)

    def _resolve(self, cal: Calendar, event_id: str) -> dict[str, Any]:
        """A stored event, or the virtual instance an instance id names (404 otherwise)."""
        if event_id in cal.events:
            return cal.events[event_id]
        master_id, _, suffix = event_id.rpartition("_")
        master = cal.events.get(master_id)
        match = _SUFFIX_RE.match(suffix)
        if master is None or not match or not master.get("recurrence"):
            raise ApiError(404, "notFound", "Not Found")
        if master.get("status") == "cancelled":
            raise ApiError(410, "deleted", "Resource has been deleted")
        for original in _occurrences(master, cal.time_zone, _suffix_time(match)):
            if _instance_suffix(original) == suffix:
                return _instance(master, original, cal.time_zone)
        raise ApiError(404, "notFound", "Not Found")

    def _write(
        self, cal: Calendar, event_id: str, doc: dict[str, Any], *, replace: bool
    ) -> dict[str, Any]:
        current = copy.deepcopy(self._resolve(cal, event_id))
        writable = {k: copy.deepcopy(v) for k, v in doc.items() if k not in _READ_ONLY}
        writable.pop("iCalUID", None)
        if replace:
            kept = {k: v for k, v in current.items() if k in _READ_ONLY or k.startswith("_")}
            kept |= {"iCalUID": current["iCalUID"]}
            if current.get("recurringEventId"):
                writable.pop("recurrence", None)
            ev = kept | writable
            ev.setdefault("status", "confirmed")
        else:
            ev = _merge(current, writable)
            if current.get("status") == "cancelled" and "status" not in doc:
                ev["status"] = "confirmed"
        if "sequence" not in doc:
            ev["sequence"] = int(current.get("sequence", 0)) + (
                1 if ev.get("start") != current.get("start") else 0
            )
        _validate(ev)
        return self._store(cal, ev)

    def _delete(self, cal: Calendar, event_id: str) -> None:
        ev = self._resolve(cal, event_id)
        if ev.get("status") == "cancelled":
            raise ApiError(410, "deleted", "Resource has been deleted")
        self._store(cal, {**copy.deepcopy(ev), "status": "cancelled"})
        if ev.get("recurrence"):
            for other in list(cal.events.values()):
                if other.get("recurringEventId") == ev["id"] and other["status"] != "cancelled":
                    self._store(cal, {**other, "status": "cancelled"})

    def _instances(self, cal: Calendar, event_id: str, q: dict[str, str]) -> dict[str, Any]:
        master = cal.events.get(event_id)
        if master is None or not master.get("recurrence"):
            raise ApiError(404, "notFound", "Not Found")
        lower = _parse_time(q["timeMin"]) if "timeMin" in q else None
        upper = _parse_time(q["timeMax"]) if "timeMax" in q else None
        limit = min(int(q.get("maxResults", "250")), 2500)
        show_deleted = q.get("showDeleted") == "true"
        items: list[dict[str, Any]] = []
        for original in _occurrences(master, cal.time_zone, upper):
            inst_id = f"{master['id']}_{_instance_suffix(original)}"
            ev = cal.events.get(inst_id) or _instance(master, original, cal.time_zone)
            start, end = _span(ev, cal.time_zone)
            if (lower and end <= lower) or (upper and start >= upper):
                continue
            if ev.get("status") == "cancelled" and not show_deleted:
                continue
            items.append(_public(ev))
            if len(items) >= limit:
                break
        return {"kind": "calendar#events", "summary": cal.id, "timeZone": cal.time_zone,
                "accessRole": "owner", "items": items}  # fmt: skip

    def _store(self, cal: Calendar, ev: dict[str, Any]) -> dict[str, Any]:
        cal.seq += 1
        ev["_seq"] = cal.seq
        ev["etag"] = f'"{3_000_000_000_000_000 + cal.seq}"'
        ev["updated"] = _now()
        cal.events[ev["id"]] = ev
        return ev

    # -------------------------------------------------------------------- OAuth

    def _refreshed(
        self, user: str, held: frozenset[str], requested: frozenset[str]
    ) -> dict[str, Any]:
        return self._grant(user, " ".join(sorted(held)))  # whatever the client asks for

    def _other_grant(self, grant: str, form: dict[str, str]) -> dict[str, Any]:
        if grant == "authorization_code":
            return self._redeem(form)
        return super()._other_grant(grant, form)

    def _consent(self, params: dict[str, list[str]]) -> dict[str, str]:
        """The consent screen, answered at once: the Location header back to the app."""
        q = {k: v[-1] for k, v in params.items()}
        with self._lock:
            known = q.get("client_id", "") in self._clients
        redirect = q.get("redirect_uri", "")
        if not known or not redirect.startswith(("http://", "https://")):
            raise OAuthError(400, "invalid_request", "Error 400: invalid_request")
        back: dict[str, str] = {"state": q.get("state", "")}
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256":
            back["error"] = "invalid_request"
        elif self.deny_consent:
            back["error"] = "access_denied"
        else:
            code = "4/0A" + secrets.token_urlsafe(24)
            with self._lock:
                self._codes[code] = {
                    "client_id": q["client_id"], "redirect_uri": redirect,
                    "challenge": q.get("code_challenge", ""), "user": self.consent_user,
                    "scope": q.get("scope", ""), "offline": q.get("access_type", "online"),
                }  # fmt: skip
            back |= {"code": code, "scope": q.get("scope", "")}
        sep = "&" if "?" in redirect else "?"
        return {"Location": f"{redirect}{sep}{urlencode(back)}"}

    def _redeem(self, form: dict[str, str]) -> dict[str, Any]:
        client_id = form.get("client_id", "")
        with self._lock:
            known = self._clients.get(client_id)
            grant = self._codes.pop(form.get("code", ""), None)  # a code works once
        if known is None or known != form.get("client_secret"):
            raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
        if grant is None or grant["client_id"] != client_id:
            raise OAuthError(400, "invalid_grant", "Malformed auth code.")
        if grant["redirect_uri"] != form.get("redirect_uri"):
            raise OAuthError(400, "redirect_uri_mismatch", "Bad Request")
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        if not verifier or challenge.rstrip(b"=").decode() != grant["challenge"]:
            raise OAuthError(400, "invalid_grant", "Invalid code verifier.")
        reply = self._grant(grant["user"], grant["scope"])
        if grant["offline"] == "offline":
            reply["refresh_token"] = self.issue_refresh_token(grant["user"], client_id)
        if "openid" in grant["scope"].split():
            claims = {"iss": "https://accounts.google.com", "aud": client_id,
                      "sub": str(abs(hash(grant["user"]))), "email": grant["user"],
                      "email_verified": True, "iat": int(time.time()),
                      "exp": int(time.time()) + 3600}  # fmt: skip
            reply["id_token"] = ".".join(
                base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
                for part in ({"alg": "RS256", "kid": "test"}, claims)
            ) + ".c2lnbmF0dXJl"
        return reply


# --------------------------------------------------------------------- helpers


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        raise ApiError(400, "parseError", "Parse Error") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "parseError", "Parse Error")
    return doc


def _validate(ev: Mapping[str, Any]) -> None:
    for key in ("start", "end"):
        value = ev.get(key)
        if not isinstance(value, dict) or not ("date" in value or "dateTime" in value):
            raise ApiError(400, "required", f"Missing {key} time.")
        if "dateTime" in value:
            moment = _parse_time(str(value["dateTime"]), value.get("timeZone"))
            if moment.tzinfo is None:
                raise ApiError(400, "required", f"Missing time zone definition for {key} time.")
    if ev.get("recurrence") and "dateTime" in ev["start"] and not ev["start"].get("timeZone"):
        raise ApiError(400, "required", "Missing time zone definition for start time.")
    start, end = _span(ev, "UTC")
    if end < start:
        raise ApiError(400, "timeRangeEmpty", "The specified time range is empty.")


def _public(ev: Mapping[str, Any]) -> dict[str, Any]:
    if ev.get("status") == "cancelled":
        keep = ("kind", "etag", "id", "status", "updated", "recurringEventId", "originalStartTime")
        return {k: copy.deepcopy(ev[k]) for k in keep if k in ev}
    return {k: copy.deepcopy(v) for k, v in ev.items() if not k.startswith("_")}


def _calendar_resource(cal: Calendar) -> dict[str, Any]:
    return {"kind": "calendar#calendar", "etag": f'"c{cal.seq}"', "id": cal.id,
            "summary": cal.id, "timeZone": cal.time_zone}  # fmt: skip


def _merge(base: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """PATCH semantics: objects merged field by field, arrays and scalars replaced."""
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _parse_time(text: str, zone: str | None = None) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, "invalid", f"Invalid value: {text}") from None
    if moment.tzinfo is None and zone:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return moment


def _span(ev: Mapping[str, Any], zone: str) -> tuple[datetime, datetime]:
    def one(value: Mapping[str, Any]) -> datetime:
        if "dateTime" in value:
            moment = _parse_time(str(value["dateTime"]), value.get("timeZone") or zone)
            return moment.astimezone(UTC)
        day = date.fromisoformat(str(value["date"]))
        return datetime.combine(day, dtime(), ZoneInfo(zone)).astimezone(UTC)

    return one(ev["start"]), one(ev["end"])


def _occurrences(
    master: Mapping[str, Any], cal_zone: str, until: datetime | None, limit: int = 5000
) -> Iterator[date | datetime]:
    """Original starts of a series: aware datetimes in its zone, or dates (all-day)."""
    start = master["start"]
    if "date" in start:
        first = datetime.combine(date.fromisoformat(start["date"]), dtime())
    else:
        zone = ZoneInfo(start.get("timeZone") or cal_zone)
        first = _parse_time(start["dateTime"], start.get("timeZone") or cal_zone).astimezone(zone)
    rules = rrulestr("\n".join(master["recurrence"]), dtstart=first, forceset=True)
    for count, moment in enumerate(rules):
        if count >= limit:
            return
        if until is not None:
            aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            if aware > until + timedelta(days=1):
                return
        yield moment.date() if "date" in start else moment


def _instance_suffix(original: date | datetime) -> str:
    if isinstance(original, datetime):
        return original.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return original.strftime("%Y%m%d")


def _suffix_time(match: re.Match[str]) -> datetime:
    text = match.group(1) + (match.group(2) or "000000")
    return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def _instance(
    master: Mapping[str, Any], original: date | datetime, cal_zone: str
) -> dict[str, Any]:
    """The instance of ``master`` starting at ``original``, as Google shows it."""
    start, end = master["start"], master["end"]
    ev = {k: copy.deepcopy(v) for k, v in master.items() if k not in ("recurrence", "_seq")}
    ev["id"] = f"{master['id']}_{_instance_suffix(original)}"
    ev["recurringEventId"] = master["id"]
    if isinstance(original, datetime):
        tz_name = start.get("timeZone") or cal_zone
        first, last = _span(master, cal_zone)
        begin = original.astimezone(ZoneInfo(tz_name))
        finish = (original.astimezone(UTC) + (last - first)).astimezone(ZoneInfo(tz_name))
        ev["originalStartTime"] = {"dateTime": begin.isoformat(), "timeZone": tz_name}
        ev["start"] = dict(ev["originalStartTime"])
        ev["end"] = {"dateTime": finish.isoformat(), "timeZone": tz_name}
    else:
        length = date.fromisoformat(end["date"]) - date.fromisoformat(start["date"])
        ev["originalStartTime"] = {"date": original.isoformat()}
        ev["start"] = {"date": original.isoformat()}
        ev["end"] = {"date": (original + length).isoformat()}
    ev["_seq"] = 0
    return ev


def _gone_token() -> ApiError:
    return ApiError(410, "fullSyncRequired",
                    "Sync token is no longer valid, a full sync is required.")  # fmt: skip


def _message(status: int, reason: str) -> str:
    return {
        "rateLimitExceeded": "Rate Limit Exceeded",
        "userRateLimitExceeded": "User Rate Limit Exceeded",
        "authError": "Invalid Credentials",
        "backendError": "Backend Error",
        "notFound": "Not Found",
    }.get(reason, f"HTTP {status}")


def _encode(data: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _decode(text: str, message: str, status: int, reason: str) -> dict[str, Any]:
    try:
        data = json.loads(b64decode(text))
        if not isinstance(data, dict):
            raise ValueError(text)
        return data
    except ValueError:
        raise ApiError(status, reason, message or "Invalid token") from None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# ------------------------------------------------------- push notifications (watch)
#
# ``events.watch`` (POST calendars/{id}/events/watch: a Channel with id, token, type
# web_hook, address, params.ttl in seconds; answered with kind api#channel, id,
# resourceId, resourceUri, token and expiration in ms; ttl capped at ``max_ttl``) and
# ``channels.stop`` (POST channels/stop with id and resourceId; 204, or 404 for a channel
# it does not know). Right after a watch, a ``sync`` message is POSTed to the address.
# ``push(server).notify(user)`` POSTs an ``exists`` message to every live channel of the
# user's calendar, with X-Goog-Channel-ID, X-Goog-Channel-Token, X-Goog-Channel-Expiration,
# X-Goog-Resource-ID, X-Goog-Resource-URI, X-Goog-Resource-State and X-Goog-Message-Number
# headers, as Google does; every delivery is recorded. Google wants https addresses; this
# server also accepts http://127.0.0.1 ones.


@dataclass
class WatchChannel:
    id: str
    resource_id: str
    resource_uri: str
    token: str
    address: str
    user: str
    expiration: float  # seconds since the epoch
    messages: int = 0


@dataclass(frozen=True)
class PushDelivery:
    address: str
    headers: dict[str, str]
    status: int  # 0: no answer


class Push:
    """Watch channels of one :class:`GoogleCalendarServer` (``push(server)``)."""

    def __init__(self, server: GoogleCalendarServer) -> None:
        self.server = server
        self.lock = threading.RLock()
        self.channels: dict[str, WatchChannel] = {}
        self.stopped: list[str] = []
        self.deliveries: list[PushDelivery] = []
        self.max_ttl = 7 * 24 * 3600
        self.sync_delay = 0.05

    def live(self, user: str | None = None) -> list[WatchChannel]:
        now = time.time()
        with self.lock:
            return [c for c in self.channels.values()
                    if c.expiration > now and (user is None or c.user == user)]  # fmt: skip

    def notify(self, user: str, state: str = "exists", *, token: str | None = None) -> list[int]:
        """Tell every live channel on ``user``'s calendar; the statuses of the deliveries.
        ``token`` forges the channel token."""
        return [self._send(c, state, token) for c in self.live(user)]

    def expire(self, channel_id: str) -> None:
        with self.lock:
            self.channels[channel_id].expiration = time.time() - 1

    def _send(self, channel: WatchChannel, state: str, token: str | None = None) -> int:
        import httpx

        with self.lock:
            channel.messages += 1
            number = channel.messages
        headers = {
            "X-Goog-Channel-ID": channel.id,
            "X-Goog-Channel-Expiration": time.strftime(
                "%a, %d %b %Y %H:%M:%S GMT", time.gmtime(channel.expiration)
            ),
            "X-Goog-Resource-ID": channel.resource_id,
            "X-Goog-Resource-URI": channel.resource_uri,
            "X-Goog-Resource-State": state,
            "X-Goog-Message-Number": str(number),
        }
        sent_token = channel.token if token is None else token
        if sent_token:
            headers["X-Goog-Channel-Token"] = sent_token
        try:
            status = httpx.post(channel.address, headers=headers, content=b"",
                                timeout=10).status_code  # fmt: skip
        except httpx.HTTPError:
            status = 0
        with self.lock:
            self.deliveries.append(PushDelivery(channel.address, headers, status))
        return status


_push_lock = threading.Lock()


def push(server: GoogleCalendarServer) -> Push:
    """The watch channels of ``server`` (made on first use)."""
    with _push_lock:
        state = server.__dict__.get("_push")
        if state is None:
            state = server.__dict__["_push"] = Push(server)
        return state  # type: ignore[no-any-return]


def _push_api(
    server: GoogleCalendarServer, user: str, segments: list[str], body: bytes
) -> tuple[int, Any, dict[str, str]]:
    state = push(server)
    doc = _json_body(body)
    if segments == ["channels", "stop"]:
        with state.lock:
            channel = state.channels.get(str(doc.get("id", "")))
            if (channel is None or channel.resource_id != doc.get("resourceId")
                    or channel.user != user):  # fmt: skip
                raise ApiError(404, "notFound", f"Channel '{doc.get('id')}' not found")
            del state.channels[channel.id]
            state.stopped.append(channel.id)
        return 204, None, {}
    cal_id = user if segments[1] == "primary" else segments[1]
    if cal_id != user:
        raise ApiError(404, "notFound", "Not Found")
    channel_id, address = str(doc.get("id") or ""), str(doc.get("address") or "")
    if not channel_id or not re.fullmatch(r"[A-Za-z0-9\-_+/=]{1,64}", channel_id):
        raise ApiError(400, "invalid", "Invalid channel id")
    if doc.get("type") not in ("web_hook", "webhook"):
        raise ApiError(400, "invalid", "Invalid channel type")
    if not (address.startswith("https://") or address.startswith("http://127.0.0.1")):
        raise ApiError(400, "push.webhookUrlNotHttps", "WebHook callback must be HTTPS: " + address)
    try:
        ttl = int((doc.get("params") or {}).get("ttl", 604800))
    except (TypeError, ValueError):
        raise ApiError(400, "invalid", "Invalid ttl") from None
    expiration = time.time() + min(max(ttl, 1), state.max_ttl)
    with state.lock:
        if channel_id in state.channels:
            raise ApiError(400, "channelIdNotUnique", "Channel id not unique")
        channel = WatchChannel(
            id=channel_id, resource_id=secrets.token_urlsafe(20),
            resource_uri=f"{server.url}calendar/v3/calendars/{cal_id}/events?alt=json",
            token=str(doc.get("token") or ""), address=address, user=user,
            expiration=expiration,
        )  # fmt: skip
        state.channels[channel_id] = channel

    def confirm() -> None:  # Google's first message on a new channel
        time.sleep(state.sync_delay)
        state._send(channel, "sync")

    threading.Thread(target=confirm, daemon=True).start()
    reply = {"kind": "api#channel", "id": channel.id, "resourceId": channel.resource_id,
             "resourceUri": channel.resource_uri, "expiration": str(int(expiration * 1000))}  # fmt: skip
    if channel.token:
        reply["token"] = channel.token
    return 200, reply, {}
