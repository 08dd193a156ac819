"""What reading the start of each body costs an IMAP sync (issue 14, points 2 and 3).

``ImapMailbox.changes`` fetches ``BODY.PEEK[HEADER]`` and ``BODY.PEEK[TEXT]<0.65536>`` of
every new message in one ``UID FETCH`` per 250 messages, and computes the text keys. This
times a first sync (``changes(None)``) of ``--messages`` messages on a real Dovecot on
127.0.0.1 (``tests/support/dovecot.py``), best of ``--reps``, and beside it the same sync
with the fetch items set back to the header alone (what the connector read before), on
the same mailbox. A share ``--html`` of the messages are multipart/alternative (text and
HTML, as most mail programs send), a share ``--attachments`` carry a 300 KB PDF after
their text (the text is read, the PDF at most up to the 64 KiB bound).

Beside the syncs, ``offline_text_ms`` is what reading the text of one of these messages
costs without a server: ``messages._text`` (the connector's own path: header and the start
of the body as ``changes`` reads them, then ``plain_text`` or ``body_text``) and
``text_keys``, per message, best of ``--reps``.

    .venv/bin/python bench/imap_text_keys.py --messages 2000

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

import common  # noqa: F401  # puts the repository on sys.path

from assistant.domain.latency.quotes import text_keys
from connectors.base import DEFAULT_LIMITS
from connectors.imap import mailbox
from connectors.imap.mailbox import ImapMailbox
from connectors.imap.messages import INTERNALDATE, TEXT_BYTES, _text, _whole_lines
from tests.support.dovecot import Dovecot, start_dovecot

WORDS = [
    "lease", "contract", "board", "dinner", "airport", "flight", "budget", "meeting",
    "review", "office", "caterer", "deadline", "signature", "legal", "landlord", "quarter",
]  # fmt: skip


def message(n: int, attachment: bool, html: bool) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"] = "sam@example.com", "alex@example.com"
    msg["Subject"] = f"Question {n}"
    msg["Date"] = format_datetime(datetime(2026, 11, 2, 9, tzinfo=UTC) + timedelta(minutes=n))
    msg["Message-ID"] = f"<bench-{n}@example.com>"
    lines = [" ".join(WORDS[(n * 7 + i * 3 + j) % len(WORDS)] for j in range(12))
             for i in range(40)]  # fmt: skip
    msg.set_content("\n".join(lines) + "\n")  # about 3 KB of text
    if html:
        msg.add_alternative("<html><body>" + "".join(f"<p>{line}</p>" for line in lines)
                            + "</body></html>", subtype="html")  # fmt: skip
    if attachment:
        msg.add_attachment(bytes(range(256)) * 1200, maintype="application", subtype="pdf",
                           filename="deck.pdf")  # fmt: skip
    return msg.as_bytes()


def timed_sync(server: Dovecot, reps: int) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(reps):
        box = ImapMailbox(server.host, server.username, server.password, port=server.port,
                          security="none", folders=("INBOX",))  # fmt: skip
        start = time.perf_counter()
        delta = box.changes(None)
        best = min(best, time.perf_counter() - start)
        count = len(delta.messages)
        box.close()
    return best, count


def offline_text_ms(raws: list[bytes], reps: int) -> float:
    """Per message: the text keys of header + start of body, as ``add_message`` reads them."""
    items = []
    for raw in raws:
        end = raw.find(b"\n\n") + 2
        items.append((raw[:end], raw[end : end + TEXT_BYTES]))
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        for header, body in items:
            text_keys(_text(header + _whole_lines(body), DEFAULT_LIMITS))
        best = min(best, time.perf_counter() - start)
    return 1000 * best / max(len(items), 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--attachments", type=float, default=0.1)
    parser.add_argument("--html", type=float, default=0.5, help="share with an HTML part")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    server = start_dovecot()
    try:
        client = server.client()
        every = max(1, round(1 / args.attachments)) if args.attachments > 0 else 0
        html = max(1, round(1 / args.html)) if args.html > 0 else 0
        raws = [message(n, bool(every) and n % every == 0, bool(html) and n % html == 1 % html)
                for n in range(args.messages)]  # fmt: skip
        for raw in raws:
            client.append("INBOX", raw)
        client.logout()
        offline = offline_text_ms(raws, args.reps)
        with_text, count = timed_sync(server, args.reps)
        items = mailbox.FETCH_HEADER_AND_TEXT
        mailbox.FETCH_HEADER_AND_TEXT = (b"BODY.PEEK[HEADER]", INTERNALDATE)  # before: headers
        try:
            header_only, _ = timed_sync(server, args.reps)
        finally:
            mailbox.FETCH_HEADER_AND_TEXT = items
    finally:
        server.stop()
        server.cleanup()
    figures = {
        "messages": count,
        "with_attachment_share": args.attachments,
        "with_html_share": args.html,
        "sync_with_text_s": round(with_text, 3),
        "sync_header_only_s": round(header_only, 3),
        "per_message_with_text_ms": round(1000 * with_text / max(count, 1), 3),
        "per_message_header_only_ms": round(1000 * header_only / max(count, 1), 3),
        "ratio": round(with_text / header_only, 2) if header_only else None,
        "offline_text_ms": round(offline, 3),
    }
    print(f"first sync of {count} messages: {with_text:.2f} s with the text keys, "
          f"{header_only:.2f} s with headers only")  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
