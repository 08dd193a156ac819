"""The connection to the mail server: opening it (TLS, STARTTLS or plain, login,
CONDSTORE), the guarded socket under it, and the mapping of imapclient, imaplib and
socket errors to the connector errors.

The socket goes only where the network policy allows (``netguard.connect``), and a
literal larger than ``network.max_response_bytes`` is refused before it is read.
"""

from __future__ import annotations

import contextlib
import imaplib
import ssl
from collections.abc import Callable, Iterator
from typing import Any, Literal

from imapclient import IMAPClient
from imapclient import exceptions as imap_errors
from imapclient import imap4 as imap_plain
from imapclient import tls as imap_tls

from connectors.base import AuthExpired, ConnectorError, InvalidData, NotFound, Transient
from connectors.netguard import NetPolicy, TooLarge

Security = Literal["ssl", "starttls", "none"]


def open_client(
    host: str,
    port: int,
    security: Security,
    username: str,
    password: str,
    *,
    timeout: float,
    ssl_context: ssl.SSLContext | None,
    policy: NetPolicy,
) -> Any:
    """A logged-in client, with CONDSTORE enabled where the server has it."""

    def context() -> ssl.SSLContext:
        return ssl_context or ssl.create_default_context()

    if security == "none":
        policy.check_plaintext(host, "a connection without TLS")
    client = GuardedIMAPClient(
        policy,
        host,
        port=port,
        use_uid=True,
        ssl=security == "ssl",
        ssl_context=context() if security == "ssl" else None,
        timeout=timeout,
    )
    try:
        client.normalise_times = False  # INTERNALDATE with its zone
        if security == "starttls":
            client.starttls(context())
        try:
            client.login(username, password)
        except imap_errors.LoginError as exc:
            if "UNAVAILABLE" in error_text(exc).upper():
                raise Transient("the mail server cannot log in now; try again") from None
            raise AuthExpired(f"the mail server refused the login of {username}") from None
        if client.has_capability("CONDSTORE") and client.has_capability("ENABLE"):
            client.enable("CONDSTORE")  # HIGHESTMODSEQ in STATUS and SELECT
    except BaseException:
        with contextlib.suppress(Exception):
            client.shutdown()
        raise
    return client


@contextlib.contextmanager
def translated(where: str, timeout: float, drop: Callable[[], None]) -> Iterator[None]:
    """Map imapclient, imaplib and socket errors to ours; ``drop`` the connection."""
    try:
        yield
    except ConnectorError:
        drop()
        raise
    except imap_errors.CapabilityError as exc:
        drop()
        raise ConnectorError(f"the mail server at {where} lacks {error_text(exc)}") from None
    except imaplib.IMAP4.abort as exc:  # EOF, reset: before IMAP4.error (its base)
        drop()
        raise Transient(f"connection to {where} lost: {error_text(exc)}") from None
    except imap_errors.ProtocolError as exc:
        drop()
        raise InvalidData(f"unreadable reply from {where}: {error_text(exc)}") from None
    except imaplib.IMAP4.error as exc:  # a NO or BAD reply
        drop()
        text = error_text(exc)
        if missing(exc):
            raise NotFound(f"{where}: {text}") from None
        if any(code in text.upper() for code in ("[UNAVAILABLE]", "[SERVERBUG]", "[INUSE]")):
            raise Transient(f"{where}: {text}") from None
        raise ConnectorError(f"{where}: {text}") from None
    except ssl.SSLCertVerificationError as exc:
        drop()
        raise ConnectorError(f"the certificate of {where} is not trusted: {exc}") from None
    except TimeoutError:
        drop()
        raise Transient(f"{where} did not answer within {timeout:g} s") from None
    except OSError as exc:  # refused, reset, unreachable, name not resolved, TLS
        drop()
        raise Transient(f"cannot reach {where}: {exc}") from None


def error_text(exc: BaseException) -> str:
    parts = [a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a) for a in exc.args]
    return " ".join(parts)[:300]


def missing(exc: BaseException) -> bool:
    """Whether the server's error says the folder does not exist."""
    text = error_text(exc).upper()
    return "[NONEXISTENT]" in text or "DOESN'T EXIST" in text or "NOT EXIST" in text


def leave(client: Any) -> None:
    """Unselect the folder: a session that keeps a folder open may be answered from that
    open view (STATUS on a folder deleted and recreated elsewhere shows the old one)."""
    if client.has_capability("UNSELECT"):
        client.unselect_folder()
    else:
        client.close_folder()  # selected read-only: CLOSE expunges nothing


class GuardedIMAPClient(IMAPClient):  # type: ignore[misc]
    """An IMAPClient whose socket goes only where ``policy`` allows (``netguard.connect``:
    resolved, every address checked, connected to a checked address; TLS still names the
    host), and that refuses a literal larger than ``policy.max_response_bytes`` before
    reading it (imaplib already bounds a line to 1 MB)."""

    def __init__(self, policy: NetPolicy, *args: Any, **kwargs: Any) -> None:
        self._policy = policy
        super().__init__(*args, **kwargs)

    def _create_IMAP4(self) -> Any:  # imapclient's name
        policy = self._policy
        timeout = getattr(self._timeout, "connect", None)
        if self.ssl:

            class Tls(imap_tls.IMAP4_TLS):  # type: ignore[misc]
                def _create_socket(self, timeout: float | None = None) -> Any:
                    sock = policy.connect(self.host, self.port, timeout or self._timeout)
                    return imap_tls.wrap_socket(sock, self.ssl_context, self.host)

                def read(self, size: int) -> bytes:
                    _bounded_literal(policy, self.host, size)
                    return super().read(size)  # type: ignore[no-any-return]

            return Tls(self.host, self.port, self.ssl_context, timeout)

        class Plain(imap_plain.IMAP4WithTimeout):  # type: ignore[misc]
            def _create_socket(self, timeout: float | None = None) -> Any:
                return policy.connect(self.host, self.port, timeout or self._timeout)

            def read(self, size: int) -> bytes:
                _bounded_literal(policy, self.host, size)
                return super().read(size)  # type: ignore[no-any-return]

        return Plain(self.host, self.port, timeout)


def _bounded_literal(policy: NetPolicy, host: str, size: int) -> None:
    if size > policy.max_response_bytes:
        raise TooLarge(
            f"the mail server at {host} sent a reply larger than {policy.max_response_bytes} "
            "bytes (network.max_response_bytes)"
        )
