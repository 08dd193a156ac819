"""The fault proxy itself, and how the CalDAV connector reads a server's refusals (sync
token, UID conflict), on real Radicale and Xandikos servers behind the proxy."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import httpx
import pytest

from connectors.base import (
    AuthExpired,
    ConnectorError,
    OwnEvent,
    TokenExpired,
    Transient,
    Window,
)
from connectors.caldav.calendar import CalDavCalendar
from tests.integration.contract.backends.caldav_radicale import _forget_sync_tokens
from tests.support.fault_proxy import FaultProxy, Request, Seen
from tests.support.radicale import start_radicale
from tests.support.xandikos import start_xandikos

WINDOW = Window(datetime(2030, 3, 1, tzinfo=UTC), datetime(2030, 5, 1, tzinfo=UTC), "UTC")
_names = count()


def ics(uid: str, day: int) -> str:
    start = datetime(2030, 3, day, 9, tzinfo=UTC)
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20300101T000000Z\r\nDTSTART:{start:%Y%m%dT%H%M%SZ}\r\n"
        f"DTEND:{start + timedelta(hours=1):%Y%m%dT%H%M%SZ}\r\nSUMMARY:{uid}\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


@dataclass
class Server:
    name: str
    url: str
    new_calendar: Callable[[str], str]
    forget_tokens: Callable[[str], None]
    refusal: int  # the status the server refuses a forgotten sync token with


@pytest.fixture(scope="module", params=["radicale", "xandikos"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    folder: Path = tmp_path_factory.mktemp(request.param)
    if request.param == "radicale":
        radicale = start_radicale(folder)
        try:
            yield Server(
                "radicale", radicale.url, radicale.new_calendar,
                lambda url: _forget_sync_tokens(radicale.storage_folder, url), 403,
            )  # fmt: skip
        finally:
            radicale.stop()
    else:
        xandikos = start_xandikos(folder)
        try:
            yield Server(
                "xandikos", xandikos.url, xandikos.new_calendar,
                xandikos.forget_sync_history, 412,
            )  # fmt: skip
        finally:
            xandikos.stop()


@pytest.fixture
def proxy(server: Server) -> Iterator[FaultProxy]:
    with FaultProxy(server.url) as p:
        yield p


@pytest.fixture
def calendar(server: Server) -> str:
    url = server.new_calendar(f"cal{next(_names)}")
    for i in range(3):
        response = httpx.put(f"{url}e{i}.ics", content=ics(f"e{i}", 4 + i))
        assert response.status_code == 201
    return url


@pytest.fixture
def cal(proxy: FaultProxy, calendar: str) -> Iterator[CalDavCalendar]:
    connector = CalDavCalendar(proxy.proxied(calendar), timeout=5)
    yield connector
    connector.close()


# ----------------------------------------------------------------------- the proxy


def test_every_method_is_forwarded_verbatim(server: Server, proxy: FaultProxy) -> None:
    url = proxy.proxied(
        f"{server.url}{'manager/' if server.name == 'radicale' else 'user/calendars/'}viaproxy/"
    )
    with httpx.Client(timeout=5) as client:
        made = client.request("MKCALENDAR", url, auth=("manager", ""))
        assert made.status_code == 201
        put = client.put(f"{url}a.ics", content=ics("a", 4), headers={"If-None-Match": "*"})
        assert put.status_code == 201
        again = client.put(f"{url}a.ics", content=ics("a", 4), headers={"If-None-Match": "*"})
        assert again.status_code == 412, "conditional headers reach the server"
        listing = client.request("PROPFIND", url, headers={"Depth": "1"})
        assert listing.status_code == 207 and "/a.ics" in listing.text
        got = client.get(f"{url}a.ics")
        direct = httpx.get(f"{server.url}{url.split('/', 3)[3]}a.ics")
        assert got.content == direct.content and got.headers["ETag"] == direct.headers["ETag"]
        head = client.head(f"{url}a.ics")
        direct_head = httpx.head(f"{server.url}{url.split('/', 3)[3]}a.ics")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["Content-Length"] == direct_head.headers["Content-Length"]
        assert client.delete(f"{url}a.ics").status_code in (200, 204)
    assert [s.method for s in proxy.seen] == [
        "MKCALENDAR", "PUT", "PUT", "PROPFIND", "GET", "HEAD", "DELETE",
    ]  # fmt: skip


def test_faults_are_consumed_in_order_by_the_requests_they_match(
    proxy: FaultProxy, calendar: str
) -> None:
    url = proxy.proxied(calendar)
    proxy.fail_next(503, retry_after=30, times=2)
    proxy.reply_next(418, b"teapot", {"X-Why": "test"}, when=lambda r: r.method == "PROPFIND")
    with httpx.Client(timeout=5) as client:
        first, second, third = (client.get(f"{url}e0.ics") for _ in range(3))
        assert [first.status_code, second.status_code, third.status_code] == [503, 503, 200]
        assert first.headers["Retry-After"] == "30"
        assert proxy.pending == 1, "the PROPFIND reply waits for a PROPFIND"
        scripted = client.request("PROPFIND", url, headers={"Depth": "0"})
        assert (scripted.status_code, scripted.content, scripted.headers["X-Why"]) == (
            418, b"teapot", "test",
        )  # fmt: skip
    assert proxy.pending == 0
    assert proxy.seen[-1] == Seen("PROPFIND", scripted.request.url.raw_path.decode(), 418)


def test_a_held_request_is_sent_on_late_or_given_up_by_the_client(
    proxy: FaultProxy, calendar: str
) -> None:
    url = proxy.proxied(calendar) + "e1.ics"
    proxy.hang_next(0.3)
    began = time.monotonic()
    assert httpx.get(url, timeout=5).status_code == 200
    assert time.monotonic() - began >= 0.3
    proxy.hang_next(5)
    began = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(url, timeout=0.2)
    assert time.monotonic() - began < 2


# --------------------------------------------------------- sync-token refusals


def _carries_token(request: Request) -> bool:
    return request.method == "REPORT" and re.search(rb"sync-token>[^<]+<", request.body) is not None


VALID_SYNC_TOKEN = (
    b'<?xml version="1.0" encoding="utf-8"?><D:error xmlns:D="DAV:"><D:valid-sync-token/></D:error>'
)
NEED_PRIVILEGES = (
    b'<?xml version="1.0" encoding="utf-8"?><D:error xmlns:D="DAV:"><D:need-privileges>'
    b"<D:resource><D:href>/x/</D:href><D:privilege><D:read/></D:privilege></D:resource>"
    b"</D:need-privileges></D:error>"
)
XML = {"Content-Type": 'application/xml; charset="utf-8"'}


@pytest.mark.parametrize("status", [403, 409, 412])
def test_a_refused_sync_token_means_a_full_resync(
    cal: CalDavCalendar, proxy: FaultProxy, status: int
) -> None:
    token = cal.changes(None, WINDOW).token
    proxy.reply_next(status, VALID_SYNC_TOKEN, XML, when=_carries_token)
    with pytest.raises(TokenExpired):
        cal.changes(token, WINDOW)
    assert cal.changes(token, WINDOW).unchanged, "only that one answer was a refusal"


def test_a_403_about_something_else_is_not_a_lost_token(
    cal: CalDavCalendar, proxy: FaultProxy
) -> None:
    token = cal.changes(None, WINDOW).token
    proxy.reply_next(403, NEED_PRIVILEGES, XML, when=_carries_token)
    with pytest.raises(ConnectorError) as caught:
        cal.changes(token, WINDOW)
    assert not isinstance(caught.value, TokenExpired)
    proxy.reply_next(403, b"Forbidden", {"Content-Type": "text/plain"}, when=_carries_token)
    with pytest.raises(AuthExpired):
        cal.changes(token, WINDOW)


def test_the_server_itself_refuses_a_token_it_forgot(
    server: Server, cal: CalDavCalendar, proxy: FaultProxy, calendar: str
) -> None:
    token = cal.changes(None, WINDOW).token
    server.forget_tokens(calendar)
    assert httpx.put(f"{calendar}new.ics", content=ics("new", 9)).status_code == 201
    proxy.seen.clear()
    with pytest.raises(TokenExpired):
        cal.changes(token, WINDOW)
    assert [(s.method, s.status) for s in proxy.seen] == [("REPORT", server.refusal)]
    full = cal.changes(None, WINDOW)
    assert sorted(r.href.rsplit("/", 1)[1] for r in full.resources) == [
        "e0.ics", "e1.ics", "e2.ics", "new.ics",
    ]  # fmt: skip
    assert cal.changes(full.token, WINDOW).unchanged


# ------------------------------------------------------------------ UID conflicts


def test_our_event_moved_by_the_user_to_another_href_is_replaced_there(
    cal: CalDavCalendar, calendar: str
) -> None:
    """The server refuses a second resource with the same UID: Radicale with 409, Xandikos
    with 412, both with ``<C:no-uid-conflict/>``; the connector then writes where it is."""
    start = datetime(2030, 3, 13, 9, tzinfo=UTC)
    event = OwnEvent(
        uid="cp-9@exec-assistant", summary="Dead Line: board pack", description="Accept?",
        start=start, end=start + timedelta(minutes=30), timezone="UTC", marker="9:dead_line",
    )  # fmt: skip
    written = cal.put_event(event)
    name = written.href.rsplit("/", 1)[1]
    text = httpx.get(calendar + name).text
    assert httpx.delete(calendar + name).status_code in (200, 204)
    headers = {"Content-Type": "text/calendar; charset=utf-8"}
    assert httpx.put(f"{calendar}moved.ics", content=text, headers=headers).status_code == 201

    later = start + timedelta(hours=2)
    again = cal.put_event(replace(event, start=later, end=later + timedelta(minutes=30)))

    assert again.href.endswith("/moved.ics")
    held = cal.get_event(event.uid)
    assert held is not None and held.start == later
    listing = cal.changes(None, WINDOW)
    assert [r.href for r in listing.resources if r.events[0].uid == event.uid] == [again.href]
    assert cal.delete_event(event.uid) is True
    assert cal.get_event(event.uid) is None


# ------------------------------------------------------------ a reply breaking off


def _is_query(request: Request) -> bool:
    return request.method == "REPORT" and b"calendar-query" in request.body


@pytest.mark.parametrize("share", [0.5, 0.95])
def test_a_full_sync_reply_cut_in_the_middle_is_an_error_not_a_partial_calendar(
    cal: CalDavCalendar, proxy: FaultProxy, share: float
) -> None:
    """The calendar-query of a full sync is read while it streams in: a reply that breaks
    off is a transient error, never the resources read before the break taken as all."""
    proxy.cut_next(share, when=_is_query)
    with pytest.raises(Transient):
        cal.changes(None, WINDOW)
    assert proxy.pending == 0
    full = cal.changes(None, WINDOW)
    assert sorted(r.href.rsplit("/", 1)[1] for r in full.resources) == [
        "e0.ics",
        "e1.ics",
        "e2.ics",
    ]
