"""Hostile calendars and mails, built in memory: shared by the resource-exhaustion tests,
the fuzzing tests and ``bench/hostile.py``.

Times are fixed (``NOW``): the builders place events in the sync window around it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connectors.base import Window

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
WINDOW = Window(NOW - timedelta(days=7), NOW + timedelta(days=120), "Europe/Berlin")

_HEAD = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//hostile//EN\r\n"
_TAIL = "END:VCALENDAR\r\n"


def _stamp(when: datetime) -> str:
    return when.strftime("%Y%m%dT%H%M%SZ")


def calendar(*events: str) -> bytes:
    return (_HEAD + "".join(events) + _TAIL).encode("utf-8")


def vevent(uid: str, start: datetime, *lines: str, minutes: int = 30) -> str:
    body = "".join(line + "\r\n" for line in lines)
    return (
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:{_stamp(NOW)}\r\nDTSTART:{_stamp(start)}\r\n"
        f"DTEND:{_stamp(start + timedelta(minutes=minutes))}\r\nSUMMARY:Event {uid}\r\n"
        f"{body}END:VEVENT\r\n"
    )


def endless_secondly() -> bytes:
    """A series repeating every second, without end."""
    return calendar(
        vevent("sec@hostile", NOW - timedelta(days=1), "RRULE:FREQ=SECONDLY", minutes=0),
        vevent("fine@hostile", NOW + timedelta(days=1)),
    )


def minutely_count(count: int = 1_000_000) -> bytes:
    """A series every minute, a million times."""
    return calendar(
        vevent("min@hostile", NOW - timedelta(days=1), f"RRULE:FREQ=MINUTELY;COUNT={count}"),
        vevent("fine@hostile", NOW + timedelta(days=1)),
    )


def hourly_long() -> bytes:
    """A series every hour through the window: more occurrences than the cap allows."""
    return calendar(vevent("hourly@hostile", NOW - timedelta(days=30), "RRULE:FREQ=HOURLY"))


def huge_property(megabytes: int = 20, *, folded: bool = True) -> bytes:
    """One event whose DESCRIPTION is ``megabytes`` MB of text."""
    text = ("x" * 1023 + " ") * (megabytes * 1024)
    line = "DESCRIPTION:" + text
    if folded:
        line = "\r\n ".join(line[i : i + 74] for i in range(0, len(line), 74))
    return calendar(vevent("big@hostile", NOW + timedelta(days=2), line))


def many_events(count: int) -> bytes:
    """``count`` plain single events, spread over the sync window."""
    step = (WINDOW.end - WINDOW.start) / (count + 1)
    return calendar(*(vevent(f"e{i}@hostile", WINDOW.start + step * (i + 1)) for i in range(count)))


def many_zones_and_events(count: int) -> bytes:
    """``count`` events each with its own (custom) VTIMEZONE: quadratic if zones are walked
    once per event."""
    zones = "".join(
        f"BEGIN:VTIMEZONE\r\nTZID:Zone {i}\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\n"
        "TZOFFSETFROM:+0100\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"
        for i in range(count)
    )
    start = (NOW + timedelta(days=3)).strftime("%Y%m%dT%H%M%S")
    events = "".join(
        f"BEGIN:VEVENT\r\nUID:z{i}@hostile\r\nDTSTART;TZID=Zone {i}:{start}\r\n"
        f"DURATION:PT1H\r\nSUMMARY:zoned\r\nEND:VEVENT\r\n"
        for i in range(count)
    )
    return (_HEAD + zones + events + _TAIL).encode()


def nested_components(depth: int = 10_000) -> bytes:
    return (_HEAD + "BEGIN:X-A\r\n" * depth + "END:X-A\r\n" * depth + _TAIL).encode()


# ---------------------------------------------------------------------------- mail

_MAIL_HEAD = (
    b"From: Alex <alex@example.com>\r\nTo: pat@example.com\r\nSubject: hello\r\n"
    b"Message-ID: <hostile@example.com>\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
)


def nested_mime(depth: int = 10_000) -> bytes:
    """A message of ``depth`` multiparts, each inside the one before."""
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        for i in range(depth)
    )
    closing = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(depth)))
    return _MAIL_HEAD + opening + b"Content-Type: text/plain\r\n\r\nhello" + closing


def many_headers(count: int = 100_000) -> bytes:
    lines = b"".join(b"X-Filler-%d: value\r\n" % i for i in range(count))
    return _MAIL_HEAD + lines + b"Content-Type: text/plain\r\n\r\nhello\r\n"


def plain_mail(text: str = "hello") -> bytes:
    return _MAIL_HEAD + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + text.encode()
