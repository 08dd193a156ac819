"""The SMTP channel: one outbox entry, one mail (text, plus HTML when given).

The Message-ID is derived from the entry's idempotency key, so a mail sent again after
a crash between the send and the commit is the same message to every mail client. An
entry whose payload names ``in_reply_to`` (a Message-ID) is sent as a reply to it.
SMTP 4xx replies and network errors are temporary; 5xx replies are permanent, except
authentication failures (fixable by configuration, so retried).
"""

from __future__ import annotations

import smtplib
import ssl as ssl_lib
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from pydantic import SecretStr

from assistant.domain.message_ids import message_id_for
from assistant.domain.text import one_line, shown
from assistant.services.outbox import DeliveryError, OutboxMessage


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SmtpChannel:
    """Sends outbox entries through an SMTP server (plain, STARTTLS or implicit TLS)."""

    def __init__(
        self,
        host: str,
        port: int,
        from_address: str,
        username: str = "",
        password: SecretStr | None = None,
        starttls: bool = False,
        ssl: bool = False,
        timeout: float = 30,
        clock: Callable[[], datetime] = _utc_now,
        ssl_context: ssl_lib.SSLContext | None = None,
    ) -> None:
        if ssl and starttls:
            raise ValueError("choose ssl or starttls, not both")
        self.host = host
        self.port = port
        self.from_address = from_address
        self.username = username
        self._password = password
        self.starttls = starttls
        self.ssl = ssl
        self.timeout = timeout
        self.clock = clock
        self._ssl_context = ssl_context

    def __repr__(self) -> str:
        return f"SmtpChannel({self.host}:{self.port}, from={self.from_address})"

    def build(self, message: OutboxMessage) -> EmailMessage:
        """The mail for ``message``: multipart/alternative when there is HTML. Header values
        are one line (``assistant.domain.text.one_line``): a title never makes a header of its own,
        nor a mail the library refuses to build."""
        mail = EmailMessage()
        mail["From"] = one_line(self.from_address)
        mail["To"] = one_line(message.recipient)
        mail["Subject"] = one_line(message.subject)
        mail["Date"] = format_datetime(self.clock().astimezone(UTC))
        mail["Message-ID"] = message_id_for(message.key)
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
        answered = message.payload.get("in_reply_to")
        if isinstance(answered, str) and answered.strip("<> "):  # a reply: keep the thread
            mail["In-Reply-To"] = f"<{answered.strip('<> ')}>"
            mail["References"] = f"<{answered.strip('<> ')}>"
        mail.set_content(shown(message.body_text or ""))
        if message.body_html:
            mail.add_alternative(shown(message.body_html), subtype="html")
        return mail

    def send(self, message: OutboxMessage) -> None:
        mail = self.build(message)
        try:
            smtp = self._connect()
            try:
                if self.username:
                    secret = self._password.get_secret_value() if self._password else ""
                    smtp.login(self.username, secret)
                smtp.send_message(mail, from_addr=self.from_address, to_addrs=[message.recipient])
            finally:
                _quit(smtp)  # the mail is accepted once DATA got its 250; QUIT cannot undo that
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(
                f"recipient refused: SMTP {codes[0] if codes else '?'}",
                permanent=bool(codes) and all(c >= 500 for c in codes),
            ) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"SMTP authentication failed ({exc.smtp_code})") from None
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"SMTP {exc.smtp_code}: {_text(exc.smtp_error)}", permanent=exc.smtp_code >= 500
            ) from None
        except smtplib.SMTPException as exc:
            raise DeliveryError(f"SMTP error: {type(exc).__name__}: {exc}"[:200]) from None
        except OSError as exc:  # refused, reset, timeout, TLS failure
            raise DeliveryError(
                f"cannot reach SMTP server {self.host}:{self.port}: {type(exc).__name__}"
            ) from None

    def _connect(self) -> smtplib.SMTP:
        if self.ssl:
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self._context()
            )
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.starttls:
            try:
                smtp.starttls(context=self._context())
            except BaseException:
                smtp.close()
                raise
        return smtp

    def _context(self) -> ssl_lib.SSLContext:
        return self._ssl_context or ssl_lib.create_default_context()


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())[:200]


def _quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()
