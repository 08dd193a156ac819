"""Where an account may connect, checked at every connection, and what it may read.

An account added from the web app (or any API) is a location typed by a user of the
service, not by its operator: it may reach public ``https://`` addresses only
(``http://`` and IMAP without TLS where the operator allows it). Loopback, private
(RFC 1918, fc00::/7), link-local, multicast, unspecified, reserved and shared (CGNAT
100.64/10) addresses, and their IPv4-mapped, -compatible, NAT64 and 6to4 forms, are
refused *after* DNS resolution, when connecting: the name is resolved, every address is
checked, and the connection goes to a checked address (the name still serves TLS SNI
and ``Host``), so a name that resolves differently the second time (DNS rebinding) gains
nothing. Every redirect is a new connection and is checked the same way. Local files
are never read for such an account.

Accounts the operator added (the CLI, the configuration) carry ``OPERATOR_KEY`` in their
settings; no form or API can set it (``assistant.services.pairs.add_account`` strips it
from what users send). They may read local files and reach private hosts. The operator
may also list private hosts and networks for web accounts (``network.allowed_hosts``).

How each library is guarded at connect time:

* httpx (ICS feeds): ``http_client`` mounts a transport whose network backend resolves,
  checks and connects to the checked address; the transport checks each request's URL
  (redirects included) first.
* niquests (the caldav library): ``guard_session`` gives the session a resolver that
  refuses names resolving to a refused address (urllib3-future connects to the addresses
  the resolver returned), and a ``pre_request`` hook that checks every URL, redirects
  included.
* requests (exchangelib, EWS): ``GuardedAdapter`` (installed as exchangelib's adapter
  class) gives its pool managers the same resolver, and checks every URL it sends.
* imaplib (imapclient): ``connect`` resolves, checks and opens the socket itself.

What is read is bounded while it is read, for every account: ``read_bounded`` stops at
``max_response_bytes`` (``network.max_response_bytes``) or after ``max_read_seconds``
and says so; ``bound_reply`` does the same for requests/niquests replies (CalDAV, EWS)
that are not streamed (EWS streaming notifications are read by exchangelib as they
come).

Credentials written into URLs (``https://user:pw@host/``, ``?token=...``) are split out
by ``split_url_credentials`` to be sealed like passwords, joined again only at connect
time (``with_url_secret``), and ``redact_url``/``redact_text`` hide them wherever a URL
could be shown; ``install_log_redaction`` does so for httpx's and urllib3's log lines.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from connectors.base import ConnectorError, InvalidData, NotFound, Transient

OPERATOR_KEY = "added_by_operator"
URL_SECRET_KEY = "url_secret"  # noqa: S105  # a location's secret query parameters, sealed
DEFAULT_MAX_RESPONSE_BYTES = 50_000_000
DEFAULT_MAX_READ_SECONDS = 120.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddrInfo = tuple[Any, Any, int, str, tuple[Any, ...]]


class LocationRefused(ConnectorError):
    """A location this account may not reach (the message names the host and why)."""


class TooLarge(InvalidData):
    """What was read exceeded ``network.max_response_bytes``."""


# ------------------------------------------------------------------------ addresses

_REFUSED_V4 = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    )
)  # fmt: skip
_REFUSED_V6 = tuple(
    ipaddress.ip_network(n)
    for n in (
        "::/128", "::1/128", "100::/64", "2001::/23", "2001:db8::/32", "fc00::/7",
        "fe80::/10", "fec0::/10", "ff00::/8",
    )
)  # fmt: skip
_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, NAT64, 6to4)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _COMPATIBLE or any(ip in n for n in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def is_public(ip: IPAddress) -> bool:
    """A globally routable unicast address (what a web account may reach)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_v4(ip)
        if inner is not None:
            return is_public(inner)
        if ip.teredo is not None or any(ip in n for n in _REFUSED_V6):
            return False
    elif any(ip in n for n in _REFUSED_V4):
        return False
    if (
        ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast
        or ip.is_unspecified or ip.is_reserved
    ):  # fmt: skip
        return False
    return ip.is_global


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


# --------------------------------------------------------------------------- policy


@dataclass(frozen=True, slots=True)
class NetPolicy:
    """What one account may reach. ``operator``: added by the operator (anything goes)."""

    allow_http: bool = False
    allowed_hosts: tuple[str, ...] = ()
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_read_seconds: float = DEFAULT_MAX_READ_SECONDS
    operator: bool = False

    @classmethod
    def from_settings(cls, network: Any) -> NetPolicy:
        """From ``Settings.network`` (``config.settings.NetworkSettings``)."""
        return cls(
            allow_http=bool(network.allow_http),
            allowed_hosts=tuple(str(h) for h in network.allowed_hosts),
            max_response_bytes=int(network.max_response_bytes),
            max_read_seconds=float(network.max_read_seconds),
        )

    def for_account(self, settings: Mapping[str, Any]) -> NetPolicy:
        """This policy for one account: the operator's accounts are not restricted."""
        return replace(self, operator=settings.get(OPERATOR_KEY) is True)

    def as_operator(self) -> NetPolicy:
        return replace(self, operator=True)

    # ------------------------------------------------------------------ checks

    def _listed(self) -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
        names: set[str] = set()
        nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in self.allowed_hosts:
            entry = entry.strip().lower().rstrip(".")
            try:
                nets.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                if entry:
                    names.add(entry)
        return names, nets

    def listed_name(self, host: str) -> bool:
        return host.lower().rstrip(".") in self._listed()[0]

    def allows_ip(self, ip: IPAddress) -> bool:
        if self.operator or is_public(ip):
            return True
        nets = self._listed()[1]
        inner = embedded_v4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
        return any(ip in n or (inner is not None and inner in n) for n in nets)

    def check_host(self, host: str) -> None:
        """Refuse a literal address that is not allowed (names are checked on resolving)."""
        ip = _ip(host)
        if ip is not None and not self.listed_name(host) and not self.allows_ip(ip):
            raise LocationRefused(f"{host} is not a public address")

    def check_plaintext(self, host: str, what: str = "http://") -> None:
        if not (self.operator or self.allow_http):
            raise LocationRefused(
                f"{host}: {what} is not allowed for this account (network.allow_http)"
            )

    def check_url(self, url: str) -> None:
        """A URL this account may request: its scheme, and its host if it is an address."""
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname or ""
        if scheme not in ("http", "https") or not host:
            raise LocationRefused(
                f"{redact_url(url)[:120]}: only https:// addresses can be used"
                if not self.operator
                else f"{redact_url(url)[:120]}: not an http(s) address"
            )
        if scheme == "http":
            self.check_plaintext(host)
        self.check_host(host)

    def resolve(self, host: str, port: int) -> list[AddrInfo]:
        """``getaddrinfo`` for a connection, refusing a name with any refused address."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise Transient(f"{host}: the name cannot be resolved") from None
        if self.operator or self.listed_name(host):
            return infos
        for info in infos:
            ip = _ip(str(info[4][0]))
            if ip is None or not self.allows_ip(ip):
                raise LocationRefused(f"{host} is not a public address")
        return infos

    def check_location(self, location: str) -> None:
        """What a user (not the operator) may give as a feed or server address.

        Refuses local paths and non-http(s) schemes, plain http unless allowed, and names
        that resolve (now) to a refused address; the connection is checked again later.
        """
        if self.operator:
            return
        if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", location):
            raise LocationRefused("local files are read only for accounts added with the CLI")
        self.check_url(location)
        parts = urlsplit(location)
        host = parts.hostname or ""
        self.resolve(host, parts.port or (443 if parts.scheme.lower() == "https" else 80))

    def check_server(self, host: str, port: int, *, tls: bool) -> None:
        """An IMAP-like server a user gives as host and port."""
        if self.operator:
            return
        if not host or "/" in host or host.startswith("."):
            raise LocationRefused("give the server's host name")
        if not tls:
            self.check_plaintext(host, "a connection without TLS")
        self.check_host(host)
        self.resolve(host, port)

    # ------------------------------------------------------------------ connect

    def connect(self, host: str, port: int, timeout: float | None) -> socket.socket:
        """A TCP connection to a checked address of ``host``."""
        self.check_host(host)
        error: OSError | None = None
        for family, socktype, proto, _, sockaddr in self.resolve(host, port):
            sock = socket.socket(family, socktype, proto)
            try:
                sock.settimeout(timeout)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                error = exc
                sock.close()
        raise error or OSError(f"cannot connect to {host}")


def operator_policy() -> NetPolicy:
    """For connectors made by the operator's code (tests, tools): no address limits."""
    return NetPolicy(operator=True)


# --------------------------------------------------------------------------- reading


def read_bounded(
    chunks: Iterable[bytes], limit: int, what: str, seconds: float | None = None
) -> bytes:
    """Join ``chunks``, stopping with ``TooLarge`` as soon as more than ``limit`` came,
    and with ``Transient`` when reading takes longer than ``seconds`` (a slow drip)."""
    deadline = None if seconds is None else time.monotonic() + seconds
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        if len(buf) > limit:
            raise TooLarge(f"{what}: larger than {limit} bytes (network.max_response_bytes)")
        if deadline is not None and time.monotonic() > deadline:
            raise Transient(f"{what}: reading took longer than {seconds:g} s")
    return bytes(buf)


def bound_reply(response: Any, policy: NetPolicy, what: str) -> None:
    """Read a requests/niquests response's body now, within ``policy``'s limits (it is
    then the response's ``content``). Streamed responses are the caller's to bound."""
    if response.raw is None or response._content is not False or response._content_consumed:
        return
    limit = policy.max_response_bytes
    declared = str(response.headers.get("Content-Length", ""))
    if declared.isdigit() and int(declared) > limit:
        response.close()
        raise TooLarge(f"{what}: larger than {limit} bytes (network.max_response_bytes)")
    raw = response.raw
    chunks = iter(lambda: raw.read(1 << 16, decode_content=True) or b"", b"")
    try:
        response._content = read_bounded(chunks, limit, what, policy.max_read_seconds)
    except ConnectorError:
        response.close()
        raise
    response._content_consumed = True


def read_file_bounded(path: Path, limit: int, what: str) -> bytes:
    try:
        with path.open("rb") as f:
            return read_bounded(iter(lambda: f.read(1 << 16), b""), limit, what)
    except FileNotFoundError:
        raise NotFound(f"{what}: not found") from None
    except IsADirectoryError:
        raise InvalidData(f"{what}: a directory, not a file") from None
    except OSError as exc:
        raise Transient(f"{what}: cannot be read ({exc.strerror})") from None


# ----------------------------------------------------------------------------- httpx


def http_client(policy: NetPolicy, timeout: float) -> Any:
    """An ``httpx.Client`` that connects only where ``policy`` allows (see module doc)."""
    import httpx

    if policy.operator:
        return httpx.Client(timeout=timeout)
    return httpx.Client(timeout=timeout, transport=_httpx_transport(policy), trust_env=False)


def _httpx_transport(policy: NetPolicy) -> Any:
    import httpcore
    import httpx

    class Backend(httpcore.NetworkBackend):
        def __init__(self) -> None:
            self._inner = httpcore.SyncBackend()

        def connect_tcp(
            self, host: str, port: int, timeout: float | None = None,
            local_address: str | None = None, socket_options: Iterable[Any] | None = None,
        ) -> httpcore.NetworkStream:  # fmt: skip
            policy.check_host(host)
            error: Exception | None = None
            for *_, sockaddr in policy.resolve(host, port):
                try:
                    return self._inner.connect_tcp(
                        str(sockaddr[0]), port, timeout, local_address, socket_options
                    )
                except httpcore.ConnectError as exc:
                    error = exc
            raise error or httpcore.ConnectError(f"cannot connect to {host}")

        def connect_unix_socket(
            self, path: str, timeout: float | None = None,
            socket_options: Iterable[Any] | None = None,
        ) -> httpcore.NetworkStream:  # fmt: skip
            raise LocationRefused("local sockets are only for accounts added with the CLI")

        def sleep(self, seconds: float) -> None:
            self._inner.sleep(seconds)

    class Transport(httpx.HTTPTransport):
        def __init__(self) -> None:
            super().__init__(trust_env=False)
            self._pool = httpcore.ConnectionPool(
                ssl_context=httpx.create_ssl_context(),  # SSL_CERT_FILE still counts
                network_backend=Backend(),
            )

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            policy.check_url(str(request.url))  # every request: redirects too
            return super().handle_request(request)

    return Transport()


# ------------------------------------------------------------- niquests and requests


def _guarded_resolver(policy: NetPolicy) -> Any:
    """A urllib3(-future) resolver answering only with addresses ``policy`` allows."""
    from urllib3.contrib.resolver.system import SystemResolver

    class GuardedResolver(SystemResolver):
        def support(self, hostname: str | bytes | None) -> bool | None:
            return True

        def recycle(self) -> Any:
            return self

        def getaddrinfo(
            self, host: bytes | str | None, port: str | int | None, family: Any, type: Any,
            proto: int = 0, flags: int = 0, *, quic_upgrade_via_dns_rr: bool = False,
        ) -> list[Any]:  # fmt: skip
            name = host.decode("ascii") if isinstance(host, bytes) else str(host or "")
            policy.check_host(name)
            infos = policy.resolve(name, int(port or 0))
            wanted = [i for i in infos if family in (socket.AF_UNSPEC, 0, i[0])]
            return wanted or infos

    return GuardedResolver()


def guarded_session(policy: NetPolicy, **kwargs: Any) -> Any:
    """A niquests session (the caldav library's) connecting only where ``policy`` allows."""
    import niquests

    if policy.operator:
        session = niquests.Session(**kwargs)
    else:
        # no HTTP/3: a QUIC upgrade (Alt-Svc) would be a connection of its own
        kwargs.setdefault("disable_http3", True)
        session = niquests.Session(resolver=_guarded_resolver(policy), **kwargs)
        session.trust_env = False  # no proxies from the environment: we connect ourselves
        session.hooks["pre_request"].append(_url_hook(policy))  # every request: redirects too
    session.hooks["response"].append(_bounding_hook(policy))
    return session


def _bounding_hook(policy: NetPolicy) -> Any:
    def bound(response: Any, **kwargs: Any) -> Any:
        if not kwargs.get("stream"):
            host = urlsplit(str(response.url)).hostname or "the server"
            bound_reply(response, policy, f"reply of {host}")
        return response

    return bound


def _url_hook(policy: NetPolicy) -> Any:
    def check(request: Any, **_: Any) -> Any:
        policy.check_url(str(request.url))
        return request

    return check


def requests_adapter_class(policy: NetPolicy) -> type[Any]:
    """A requests ``HTTPAdapter`` class connecting only where ``policy`` allows.

    Its pool managers resolve through the guarded resolver (requests runs on
    urllib3-future here, which takes a ``resolver``), every URL sent is checked, and
    proxies from the environment are not used. Replies that are not streamed are read
    within the policy's limits (``bound_reply``), also for the operator's accounts.
    """
    import requests

    class GuardedAdapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            if not policy.operator:
                kwargs["resolver"] = _guarded_resolver(policy)
            super().init_poolmanager(*args, **kwargs)

        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            policy.check_url(str(request.url))
            if not policy.operator:
                kwargs["proxies"] = {}
            response = super().send(request, *args, **kwargs)
            if not kwargs.get("stream"):
                host = urlsplit(str(request.url)).hostname or "the server"
                bound_reply(response, policy, f"reply of {host}")
            return response

    return GuardedAdapter


# ------------------------------------------------------------- credentials in URLs

_SECRET_PARAM = re.compile(
    r"(?i)^(.*[_-])?(token|key|apikey|secret|password|passwd|pass|pw|auth|authorization|"
    r"signature|sig|code|credential|credentials|session|sid|hash)$"
)
_URL = re.compile(r"""(?i)\b[a-z][a-z0-9+.-]*://[^\s"'<>]+""")


def is_secret_param(name: str) -> bool:
    return bool(_SECRET_PARAM.match(name.strip()))


@dataclass(frozen=True, slots=True)
class SplitUrl:
    url: str  # without user info and secret query parameters
    username: str = ""
    password: str = ""
    secret_query: str = ""  # the secret parameters, urlencoded


def split_url_credentials(url: str) -> SplitUrl:
    """Take the user info and the secret-looking query parameters out of ``url``."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return SplitUrl(url)
    from urllib.parse import unquote

    username = unquote(parts.username or "")
    password = unquote(parts.password or "")
    netloc = parts.netloc.rpartition("@")[2]
    kept: list[tuple[str, str]] = []
    secret: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        (secret if is_secret_param(name) else kept).append((name, value))
    query = urlencode(kept, quote_via=quote) if secret else parts.query
    clean = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return SplitUrl(clean, username, password, urlencode(secret, quote_via=quote))


def with_url_secret(url: str, secret_query: str) -> str:
    """``url`` with its sealed query parameters put back (at connect time only)."""
    if not secret_query:
        return url
    parts = urlsplit(url)
    query = f"{parts.query}&{secret_query}" if parts.query else secret_query
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def redact_url(url: str) -> str:
    """``url`` fit to show: user info and secret query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<an address>"
    if not parts.netloc:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = "&".join(
        f"{quote(n)}=***" if is_secret_param(n) else f"{quote(n)}={quote(v)}"
        for n, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Every URL in ``text`` redacted (``redact_url``)."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


class RedactUrls(logging.Filter):
    """A log filter rewriting a record's message with its URLs redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record: leave it to logging's own handling
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_FILTER = RedactUrls()
LOGGERS = (
    "httpx", "httpcore", "httpcore.connection", "httpcore.http11", "urllib3",
    "urllib3.connectionpool", "urllib3.connection", "urllib3.poolmanager", "niquests",
    "niquests.sessions", "requests", "exchangelib", "exchangelib.protocol",
    "exchangelib.util", "caldav",
)  # fmt: skip


def install_log_redaction() -> None:
    """Redact URLs in the log lines of the HTTP libraries (httpx logs each request at INFO)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def iter_urls(text: str) -> Iterator[str]:
    return (m.group(0) for m in _URL.finditer(text))


install_log_redaction()
