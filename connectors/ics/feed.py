"""A read-only calendar from an ICS feed: a local file or an http(s) URL.

Fetched with conditional requests (If-None-Match / If-Modified-Since): a feed that did
not change costs one request answered 304 and no parsing. The change token is a small
JSON document with the validators and a hash of the content, so a server without
validators still costs no parsing when the bytes are the same.

Where the feed may be read from is ``policy``'s decision (``connectors.netguard``): an
account a user added from the web reaches public https:// addresses only, checked at
every connection and redirect, and never a local file. What is read is bounded while it
is read (``max_response_bytes``). Errors name the host and the HTTP status, or why the
content is not iCalendar and on which line, never what was read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from connectors.base import (
    DEFAULT_LIMITS,
    AuthExpired,
    CalendarDelta,
    InvalidData,
    NotFound,
    ParseLimits,
    RateLimited,
    Transient,
    Window,
    parse_retry_after,
)
from connectors.ics.ical import parse_feed
from connectors.netguard import (
    LocationRefused,
    NetPolicy,
    TooLarge,
    http_client,
    operator_policy,
    read_bounded,
    read_file_bounded,
)

USER_AGENT = "exec-assistant/0.1 (+ics feed reader)"


@dataclass(frozen=True, slots=True)
class _Token:
    etag: str = ""
    last_modified: str = ""
    digest: str = ""

    def dump(self) -> str:
        return json.dumps({"etag": self.etag, "lm": self.last_modified, "sha": self.digest})

    @classmethod
    def load(cls, raw: str | None) -> _Token | None:
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return cls(str(data.get("etag", "")), str(data.get("lm", "")), str(data.get("sha", "")))
        except (ValueError, AttributeError):
            return None


class IcsFeed:
    """``IcsFeed(location)``: ``location`` is a path or an http(s) URL.

    ``username``/``password`` give HTTP basic auth for private feeds. ``client`` lets
    tests or the service share an httpx client (connection reuse; the caller guards it).
    ``policy`` says where the feed may be read from; without one the caller is the
    operator's code (a file or any address).
    """

    def __init__(
        self,
        location: str,
        *,
        username: str = "",
        password: str = "",
        timeout: float = 30.0,
        client: httpx.Client | None = None,
        policy: NetPolicy | None = None,
        limits: ParseLimits = DEFAULT_LIMITS,
    ) -> None:
        self.location = location
        self.policy = policy or operator_policy()
        self.is_url = location.startswith(("http://", "https://", "webcal://"))
        if location.startswith("webcal://"):
            self.location = "https://" + location.removeprefix("webcal://")
        self._auth = (username, password) if username else None
        self._timeout = timeout
        self._client = client
        self._limits = limits
        self.requests = 0  # HTTP requests made, for tests and benchmarks

    # CalendarSource
    def changes(self, token: str | None, window: Window) -> CalendarDelta:
        previous = _Token.load(token)
        fetched = self._fetch_url(previous) if self.is_url else self._read_file()
        if fetched is None:  # 304 Not Modified
            assert previous is not None
            return CalendarDelta(full=False, unchanged=True, token=previous.dump())
        body, etag, last_modified = fetched
        digest = hashlib.sha256(body).hexdigest()
        new_token = _Token(etag, last_modified, digest).dump()
        if previous is not None and previous.digest == digest:
            return CalendarDelta(full=False, unchanged=True, token=new_token)
        resources, problems = parse_feed(body, window, source=self._label(), limits=self._limits)
        return CalendarDelta(
            full=True, resources=tuple(resources), token=new_token, skipped=tuple(problems)
        )

    def label(self) -> str:
        """The host and path (no credentials, no query), or the file's name."""
        return self._label()

    def _label(self) -> str:
        """The host and path (no credentials, no query), or the file's name."""
        if self.is_url:
            try:
                url = httpx.URL(self.location)
            except httpx.InvalidURL:
                return "(an invalid address)"
            return f"{url.host}{url.path}"
        return Path(self.location).name

    def _read_file(self) -> tuple[bytes, str, str]:
        if not self.policy.operator:
            raise LocationRefused(
                "ICS feed: local files are read only for accounts added with the CLI"
            )
        path = Path(self.location).expanduser()
        limit = self.policy.max_response_bytes
        return read_file_bounded(path, limit, f"ICS file {path.name}"), "", ""

    def _fetch_url(self, previous: _Token | None) -> tuple[bytes, str, str] | None:
        headers = {"User-Agent": USER_AGENT, "Accept": "text/calendar, */*;q=0.5"}
        if previous is not None:
            if previous.etag:
                headers["If-None-Match"] = previous.etag
            if previous.last_modified:
                headers["If-Modified-Since"] = previous.last_modified
        try:
            self.policy.check_url(self.location)
            with self._stream(headers) as response:
                return self._answer(response, previous)
        except LocationRefused as exc:
            raise LocationRefused(f"ICS feed {self._label()}: refused: {exc}") from None
        except httpx.TimeoutException:
            raise Transient(f"ICS feed {self._label()}: timed out") from None
        except httpx.HTTPError as exc:
            raise Transient(f"ICS feed {self._label()}: {type(exc).__name__}") from None

    def _answer(
        self, response: httpx.Response, previous: _Token | None
    ) -> tuple[bytes, str, str] | None:
        status = response.status_code
        if status == 304 and previous is not None:
            return None
        if status in (401, 403):
            raise AuthExpired(f"ICS feed {self._label()}: access refused ({status})")
        if status in (404, 410):
            raise NotFound(f"ICS feed {self._label()}: not found ({status})")
        if status == 429 or (status == 503 and "retry-after" in response.headers):
            raise RateLimited(
                f"ICS feed {self._label()}: rate limited ({status})",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status >= 500:
            raise Transient(f"ICS feed {self._label()}: server error {status}")
        if status != 200:
            raise InvalidData(f"ICS feed {self._label()}: unexpected HTTP status {status}")
        limit = self.policy.max_response_bytes
        what = f"ICS feed {self._label()}"
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"{what}: larger than {limit} bytes (network.max_response_bytes)")
        return (
            read_bounded(response.iter_bytes(), limit, what, self.policy.max_read_seconds),
            response.headers.get("etag", ""),
            response.headers.get("last-modified", ""),
        )

    @contextmanager
    def _stream(self, headers: dict[str, str]) -> Iterator[httpx.Response]:
        self.requests += 1
        kwargs: dict[str, Any] = {"headers": headers, "follow_redirects": True}
        if self._auth:
            kwargs["auth"] = self._auth
        if self._client is not None:
            with self._client.stream("GET", self.location, **kwargs) as response:
                yield response
            return
        with (
            http_client(self.policy, self._timeout) as client,
            client.stream("GET", self.location, **kwargs) as response,
        ):
            yield response
