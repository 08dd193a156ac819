"""WebDAV under the calendar: one request through the caldav library's ``DAVClient``
with its errors mapped to ours, the REPORT bodies (sync-collection, calendar-multiget,
calendar-query), the reading of multistatus replies (whole, or response by response
while a large one streams in), and the error an unsuccessful reply stands for."""

from __future__ import annotations

import re
import time
from collections.abc import Generator, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import quote, unquote, urljoin, urlsplit

from caldav.davclient import DAVClient
from caldav.lib import error as dav_error
from caldav.lib.http_sync import requests as http_lib
from caldav.lib.python_utilities import to_wire
from caldav.response import DAVResponse
from lxml import etree

from connectors.base import (
    AuthExpired,
    ConnectorError,
    InvalidData,
    NotFound,
    PreconditionFailed,
    RateLimited,
    Transient,
)
from connectors.netguard import NetPolicy, TooLarge, bound_reply

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
_MULTISTATUS = f"{{{DAV}}}multistatus"
_RESPONSE = f"{{{DAV}}}response"
STREAM_CHUNK = 1 << 16

PROPFIND_SYNC_STATE = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<d:propfind xmlns:d="DAV:"><d:prop><d:sync-token/></d:prop></d:propfind>'
)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    tree: Any  # lxml element or None
    preconditions: tuple[str, ...] = ()


@dataclass(slots=True)
class Entry:
    href: str
    status: int
    etag: str = ""
    data: str | None = None


def send(
    client: DAVClient,
    base_url: str,
    path: str,
    method: str,
    href: str,
    body: str = "",
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """One request to ``href`` under ``base_url`` (``path`` names it in errors); only
    errors that no status check could want are raised here."""
    url = urljoin(base_url, quote(href, safe="/:@!$&'()*+,;=~"))
    try:
        with _mapped(method, path):
            response = client.request(url, method, body, dict(headers or {}))
    except _Forbidden as refused:
        return refused.reply
    return _reply(response.status, response.headers, response.tree)


class _Forbidden(Exception):
    """A 403 the library raised: a reply whose preconditions a status check reads."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply


@contextmanager
def _mapped(method: str, path: str) -> Iterator[None]:
    """The errors of the caldav library, niquests and lxml as ours (a 403 as ``_Forbidden``)."""
    try:
        yield
    except dav_error.RateLimitError as exc:
        raise RateLimited(
            f"CalDAV {method}: rate limited ({exc.status})",
            retry_after=exc.retry_after_seconds,
        ) from None
    except dav_error.AuthorizationError as exc:
        if exc.status == 403:
            raise _Forbidden(Reply(403, {}, None, tuple(exc.preconditions))) from None
        raise AuthExpired(f"CalDAV {method} {path}: credentials refused") from None
    except NotImplementedError:  # no auth scheme we can speak
        raise AuthExpired(f"CalDAV {method}: unsupported authentication") from None
    except http_lib.exceptions.Timeout:
        raise Transient(f"CalDAV {method} {path}: timed out") from None
    except (http_lib.exceptions.RequestException, OSError) as exc:
        raise Transient(f"CalDAV {method} {path}: {type(exc).__name__}") from None
    except etree.XMLSyntaxError:
        raise InvalidData(f"CalDAV {method} {path}: malformed XML reply") from None
    except dav_error.DAVError as exc:
        raise ConnectorError(f"CalDAV {method} {path}: {exc.reason}") from None


def _reply(status: int, headers: Mapping[str, str], tree: Any) -> Reply:
    preconditions: tuple[str, ...] = ()
    if tree is not None and tree.tag == f"{{{DAV}}}error":
        preconditions = tuple(str(child.tag) for child in tree if isinstance(child.tag, str))
    return Reply(status, headers, tree, preconditions)


class Streamed:
    """A request whose 207 reply is read while it arrives (``entries``); any other
    reply is read whole, as ``send`` reads it, into ``reply``."""

    def __init__(
        self, reply: Reply, response: Any = None, *, what: str = "", parser: Any = None,
        policy: NetPolicy | None = None,
    ) -> None:  # fmt: skip
        self.reply = reply
        self._response = response
        self._what = what
        self._parser = parser
        self._policy = policy

    def entries(self, collection: str) -> Iterator[Entry]:
        """The entries of the streamed multistatus (the collection left out), each as soon
        as its ``DAV:response`` is complete; the parsed XML is dropped as it is read.

        Raises when the reply breaks off, is not a whole multistatus, or goes beyond the
        policy's size or time limits: a partial listing is never taken for the whole.
        """
        response, parser, policy, what = self._response, self._parser, self._policy, self._what
        if response is None or parser is None or policy is None:
            raise InvalidData(f"{what}: no multistatus to read")
        limit, deadline = policy.max_response_bytes, time.monotonic() + policy.max_read_seconds
        read = 0
        try:
            for chunk in response.iter_content(STREAM_CHUNK):
                read += len(chunk)
                if read > limit:
                    raise TooLarge(
                        f"{what}: larger than {limit} bytes (network.max_response_bytes)"
                    )
                if time.monotonic() > deadline:
                    raise Transient(
                        f"{what}: reading took longer than {policy.max_read_seconds:g} s"
                    )
                parser.feed(chunk)
                yield from _completed(parser, collection)
            root = parser.close()
            yield from _completed(parser, collection)
        except etree.XMLSyntaxError:
            raise InvalidData(f"{what}: malformed XML reply") from None
        except http_lib.exceptions.RequestException as exc:
            cause = exc.args[0] if exc.args else exc
            if "Timeout" in type(cause).__name__ or isinstance(exc, http_lib.exceptions.Timeout):
                raise Transient(f"{what}: timed out") from None
            raise Transient(f"{what}: the reply broke off ({type(exc).__name__})") from None
        except OSError as exc:
            raise Transient(f"{what}: {type(exc).__name__}") from None
        if root.tag != _MULTISTATUS:
            raise InvalidData("CalDAV: the server did not answer with a multistatus")


def _completed(parser: Any, collection: str) -> Iterator[Entry]:
    """The entries of the ``DAV:response`` elements the parser completed, which it forgets."""
    for _, element in parser.read_events():
        parent = element.getparent()
        if parent is None or parent.tag != _MULTISTATUS or parent.getparent() is not None:
            continue  # not a response of the multistatus itself
        found = _entries(element, collection)
        element.clear()
        while element.getprevious() is not None:
            del parent[0]
        yield from found or ()


@contextmanager
def streamed(
    client: DAVClient,
    base_url: str,
    path: str,
    method: str,
    href: str,
    body: str,
    headers: Mapping[str, str],
    policy: NetPolicy,
) -> Iterator[Streamed]:
    """``send``, with a 207 reply left to be read as it streams in (``Streamed.entries``).

    Any other reply is read whole within ``policy``'s limits and checked as the caldav
    library checks it (rate limits, authorization; a 401 it would negotiate is sent
    again by ``send``), with the same errors as ``send``. The reply is closed on exit.
    """
    url = urljoin(base_url, quote(href, safe="/:@!$&'()*+,;=~"))
    what = f"CalDAV {method} {path}"
    response: Any = None
    tree: Any = None
    try:
        try:
            with _mapped(method, path):
                url_obj, combined = client._prepare_request(url, method, body, headers)
                proxy = client.proxy
                response = client.session.request(
                    method,
                    str(url_obj),
                    data=to_wire(body),  # type: ignore[no-untyped-call]
                    headers=combined,
                    proxies={url_obj.scheme: proxy} if proxy is not None else None,
                    auth=client.auth,
                    timeout=client.timeout,
                    verify=client.ssl_verify_cert,
                    cert=client.ssl_cert,
                    stream=True,
                )
                status = int(response.status_code)
                if status != 207:
                    host = urlsplit(url).hostname or "the server"
                    bound_reply(response, policy, f"reply of {host}")
                if status not in (207, 401):
                    dav_error.raise_if_rate_limited(
                        status, url, response.headers.get("Retry-After")
                    )
                    if status == 403:
                        client._raise_authorization_error(str(url_obj), response)
                    tree = DAVResponse(response, client).tree
        except _Forbidden as refused:
            yield Streamed(refused.reply)
            return
        if status == 207:
            parser = etree.XMLPullParser(
                events=("end",), tag=_RESPONSE, resolve_entities=False, no_network=True,
                huge_tree=bool(client.huge_tree),
            )  # fmt: skip
            reply = Reply(207, response.headers, None)
            yield Streamed(reply, response, what=what, parser=parser, policy=policy)
        elif status == 401:  # the library negotiates (or refuses) authentication
            response.close()
            yield Streamed(send(client, base_url, path, method, href, body, headers))
        else:
            yield Streamed(_reply(status, response.headers, tree))
    finally:
        if response is not None:
            response.close()


def ahead(batches: Generator[list[Entry], None, None]) -> Iterator[list[Entry]]:
    """The items of ``batches`` with the next one already requested while the caller
    works on the previous one.

    One worker thread makes the requests, one at a time (the HTTP session is never
    used by two threads at once); its errors are raised here, in order.
    """
    done = object()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="caldav-multiget") as pool:
        pending = pool.submit(next, batches, done)
        try:
            while True:
                batch = pending.result()
                if batch is done:
                    return
                pending = pool.submit(next, batches, done)
                yield batch  # type: ignore[misc]
        finally:
            pending.cancel()
            # an abandoned generator: wait for the request under way, then close it
            with suppress(Exception):
                pending.result()
            pool.submit(batches.close).result()


# ------------------------------------------------------------------------ XML


def _el(parent: Any, ns: str, tag: str, text: str | None = None) -> Any:
    child = etree.SubElement(parent, f"{{{ns}}}{tag}")
    if text is not None:
        child.text = text
    return child


def _root(ns: str, tag: str) -> Any:
    return etree.Element(f"{{{ns}}}{tag}", nsmap={"d": DAV, "c": CALDAV})


def _props(parent: Any, with_data: bool) -> None:
    prop = _el(parent, DAV, "prop")
    _el(prop, DAV, "getetag")
    if with_data:
        _el(prop, CALDAV, "calendar-data")


def _xml(root: Any) -> str:
    return str(etree.tostring(root, xml_declaration=True, encoding="utf-8").decode("utf-8"))


def sync_body(token: str, with_data: bool) -> str:
    root = _root(DAV, "sync-collection")
    _el(root, DAV, "sync-token", token or None)
    _el(root, DAV, "sync-level", "1")
    _props(root, with_data)
    return _xml(root)


def multiget_body(hrefs: Iterable[str]) -> str:
    root = _root(CALDAV, "calendar-multiget")
    _props(root, True)
    for href in hrefs:
        _el(root, DAV, "href", quote(href, safe="/:@!$&'()*+,;=~"))
    return _xml(root)


def query_body(with_data: bool, uid: str) -> str:
    root = _root(CALDAV, "calendar-query")
    _props(root, with_data)
    calendar = _el(_el(root, CALDAV, "filter"), CALDAV, "comp-filter")
    calendar.set("name", "VCALENDAR")
    event = _el(calendar, CALDAV, "comp-filter")
    event.set("name", "VEVENT")
    if uid:
        prop = _el(event, CALDAV, "prop-filter")
        prop.set("name", "UID")
        _el(prop, CALDAV, "text-match", uid).set("collation", "i;octet")
    return _xml(root)


def multistatus(tree: Any, collection: str) -> tuple[list[Entry], str | None, bool]:
    """(entries, sync token, truncated) of a multistatus reply; the collection is left out."""
    if tree is None or tree.tag != _MULTISTATUS:
        raise InvalidData("CalDAV: the server did not answer with a multistatus")
    entries: list[Entry] = []
    truncated = False
    for response in tree.iterfind(_RESPONSE):
        found = _entries(response, collection)
        if found is None:
            truncated = True
        else:
            entries.extend(found)
    token = tree.findtext(f"{{{DAV}}}sync-token")
    return entries, (token.strip() if token is not None else None), truncated


_HREF, _PROPSTAT, _STATUS = f"{{{DAV}}}href", f"{{{DAV}}}propstat", f"{{{DAV}}}status"
_PROP, _GETETAG = f"{{{DAV}}}prop", f"{{{DAV}}}getetag"
_CALENDAR_DATA = f"{{{CALDAV}}}calendar-data"


def _entries(response: Any, collection: str) -> list[Entry] | None:
    """The entries of one ``DAV:response`` (the collection left out); None for an RFC 6578
    §3.6 507 (the listing is truncated: more to come with the new token)."""
    hrefs: list[str] = []
    propstats: list[Any] = []
    status: str | None = None
    for child in response:  # one pass over the children (``find`` walks them each time)
        tag = child.tag
        if tag == _HREF:
            if child.text:
                hrefs.append(dav_path(child.text))
        elif tag == _PROPSTAT:
            propstats.append(child)
        elif tag == _STATUS and status is None:
            status = child.text or ""
    if not propstats:
        code = status_code(status)
        if code == 507:
            return None
        return [Entry(h, code) for h in hrefs if not same_path(h, collection)]
    entry = Entry(hrefs[0] if hrefs else "", 200)
    for propstat in propstats:
        if status_code(propstat.findtext(_STATUS)) != 200:
            continue
        prop = propstat.find(_PROP)
        if prop is None:
            continue
        etag: str | None = None
        data: Any = None
        for child in prop:
            if child.tag == _GETETAG and etag is None:
                etag = child.text or ""
            elif child.tag == _CALENDAR_DATA and data is None:
                data = child
        entry.etag = etag or entry.etag
        if data is not None and data.text:
            entry.data = data.text
    return [entry] if entry.href and not same_path(entry.href, collection) else []


def same_path(path: str, other: str) -> bool:
    return path.rstrip("/") == other.rstrip("/")


def status_code(status: str | None) -> int:
    parts = (status or "").split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 200


_NOT_PLAIN = re.compile(r"[%?#\t\r\n]")


def dav_path(href: str) -> str:
    href = href.strip()
    if href.startswith("/") and not href.startswith("//") and not _NOT_PLAIN.search(href):
        return href  # a plain path already (urlsplit and unquote give it back unchanged)
    return unquote(urlsplit(href).path)


def fail(reply: Reply, what: str) -> NoReturn:
    """Raise the error of our tree that an unsuccessful reply stands for."""
    status = reply.status
    refused = ", ".join(reply.preconditions)
    if status in (403, 409) and refused:  # a DAV:error names what the server objects to
        raise ConnectorError(f"{what}: refused by the server ({status}: {refused})")
    if status in (401, 403):
        raise AuthExpired(f"{what}: access refused ({status})")
    if status in (404, 410):
        raise NotFound(f"{what}: not found ({status})")
    if status == 409:  # RFC 4918 §9.7.1: the collection to write into does not exist
        raise NotFound(f"{what}: no such calendar (409)")
    if status == 412:
        raise PreconditionFailed(f"{what}: precondition failed")
    if status >= 500:
        raise Transient(f"{what}: server error {status}")
    raise ConnectorError(f"{what}: unexpected HTTP status {status}")
