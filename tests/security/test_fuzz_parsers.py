"""Property-based fuzzing of the calendar and mail parsers (issue 12).

Generated calendars (events with random times, rules, overrides, zones, parameters and
junk lines) and generated mails (random headers, nested MIME trees, broken encodings)
go through ``parse_feed``, ``parse_resource`` (full and fast path), ``fast_single`` and
the mail readers. Each example must end within a time budget (the hypothesis deadline)
and a memory budget (tracemalloc peak), with a result or ``InvalidData`` and nothing
else, and within the limits (occurrences per series, text length).

Quick by default; ``FUZZ_EXAMPLES=2000`` runs more examples.
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.archive.mailbox import body_text, parse_inbound, parse_message
from connectors.base import InvalidData, ParseLimits, Window
from connectors.ics.ical import parse_feed, parse_resource
from connectors.ics.ical_fast import fast_single
from connectors.mime import read_message

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=5),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MEMORY_MB = 64
# A rule that never matches costs up to its step budget (in dateutil calls) per series:
# small here, so that a calendar of eight such series stays well within the deadline.
LIMITS = ParseLimits(property_bytes=2_000, occurrences_per_series=60, series_scan_steps=5_000)
NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
WINDOW = Window(NOW - timedelta(days=7), NOW + timedelta(days=60), "Europe/Berlin")


@contextmanager
def memory_budget(megabytes: float = MEMORY_MB) -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= megabytes * 1024 * 1024, f"peak {peak / 2**20:.0f} MB"


def outcome(call: Callable[[], Any]) -> Any:
    """The call's result, or None when it refused the input with InvalidData."""
    try:
        return call()
    except InvalidData as exc:
        refused = str(exc)
    assert "Traceback" not in refused
    return None


# ------------------------------------------------------------------------ calendars

FREQS = ["SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY", "BOGUS"]
ZONES = ["Europe/Berlin", "America/New_York", "W. Europe Standard Time", "Nowhere/Land", ""]
JUNK = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
    max_size=60,
)


@st.composite
def stamps(draw: st.DrawFn) -> str:
    when = NOW + timedelta(minutes=draw(st.integers(-60 * 24 * 400, 60 * 24 * 400)))
    kind = draw(st.sampled_from(["utc", "floating", "date", "zoned"]))
    if kind == "date":
        return f";VALUE=DATE:{when:%Y%m%d}"
    if kind == "zoned":
        zone = draw(st.sampled_from(ZONES))
        return f";TZID={zone}:{when:%Y%m%dT%H%M%S}"
    return f":{when:%Y%m%dT%H%M%S}" + ("Z" if kind == "utc" else "")


@st.composite
def rules(draw: st.DrawFn) -> str:
    parts = [f"FREQ={draw(st.sampled_from(FREQS))}"]
    if draw(st.booleans()):
        parts.append(f"COUNT={draw(st.integers(-5, 2_000_000))}")
    elif draw(st.booleans()):
        parts.append(f"UNTIL={NOW + timedelta(days=draw(st.integers(-500, 500))):%Y%m%dT%H%M%SZ}")
    if draw(st.booleans()):
        parts.append(f"INTERVAL={draw(st.integers(0, 1000))}")
    if draw(st.booleans()):
        months = draw(st.lists(st.integers(1, 12), min_size=1, max_size=3))
        parts.append("BYMONTH=" + ",".join(map(str, months)))
    if draw(st.booleans()):
        days = draw(st.lists(st.integers(-31, 31).filter(bool), min_size=1, max_size=3))
        parts.append("BYMONTHDAY=" + ",".join(map(str, days)))
    if draw(st.booleans()):
        days = draw(st.lists(st.sampled_from(["MO", "TU", "2WE", "-1FR", "SU"]), min_size=1))
        parts.append("BYDAY=" + ",".join(days))
    if draw(st.booleans()):
        parts.append(f"BYHOUR={draw(st.integers(0, 23))}")
    if draw(st.booleans()):
        parts.append(f"BYSETPOS={draw(st.integers(-3, 3).filter(bool))}")
    return "RRULE:" + ";".join(parts)


@st.composite
def vevents(draw: st.DrawFn, uid: str) -> str:
    lines = ["BEGIN:VEVENT", f"UID:{uid}", "DTSTART" + draw(stamps())]
    if draw(st.booleans()):
        lines.append("DTEND" + draw(stamps()))
    elif draw(st.booleans()):
        lines.append(f"DURATION:PT{draw(st.integers(0, 5000))}M")
    if draw(st.booleans()):
        lines.append(draw(rules()))
    if draw(st.booleans()):
        lines.append("EXDATE" + draw(stamps()))
    if draw(st.booleans()):
        lines.append("RDATE" + draw(stamps()))
    if draw(st.booleans()):
        lines.append("RECURRENCE-ID" + draw(stamps()))
    for _ in range(draw(st.integers(0, 4))):
        name = draw(
            st.sampled_from(
                ["SUMMARY", "DESCRIPTION", "LOCATION", "STATUS", "CLASS", "TRANSP", "ORGANIZER",
                 "ATTENDEE;CN=\"x:y\";PARTSTAT=ACCEPTED", "CATEGORIES", "X-JUNK", "URL"]
            )
        )  # fmt: skip
        lines.append(f"{name}:{draw(JUNK)}")
    if draw(st.integers(0, 9)) == 0:
        lines.append("DESCRIPTION:" + "long text " * draw(st.integers(100, 2_000)))
    if draw(st.booleans()):
        lines += ["BEGIN:VALARM", "ACTION:DISPLAY", f"TRIGGER:-PT{draw(st.integers(-5, 90))}M",
                  "END:VALARM"]  # fmt: skip
    if draw(st.integers(0, 9)) == 0:
        lines.insert(draw(st.integers(1, len(lines))), draw(JUNK))  # a junk line anywhere
    lines.append("END:VEVENT")
    return "\r\n".join(lines) + "\r\n"


ZONE_BLOCK = (
    "BEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time\r\nBEGIN:STANDARD\r\n"
    "DTSTART:16010101T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\n"
    "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"
)


@st.composite
def calendars(draw: st.DrawFn) -> bytes:
    head = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//fuzz//EN\r\n"
    if draw(st.booleans()):
        head += f"X-WR-TIMEZONE:{draw(st.sampled_from(ZONES))}\r\n"
    if draw(st.booleans()):
        head += ZONE_BLOCK
    uids = draw(st.lists(st.sampled_from(["a", "b", "c", "d", "e\\,f", ""]), max_size=8))
    body = "".join(draw(vevents(uid)) for uid in uids)
    nesting = draw(st.integers(0, 12))
    junk = "BEGIN:X-N\r\n" * nesting + "END:X-N\r\n" * nesting
    return (head + body + junk + "END:VCALENDAR\r\n").encode("utf-8", "surrogatepass")


def check_resources(resources: Any) -> None:
    for res in resources:
        assert len(res.events) <= LIMITS.occurrences_per_series + 10
        for e in res.events:
            assert e.start.tzinfo is not None and e.end >= e.start
            for text in (e.summary, e.description, e.location):
                assert len(text.encode()) <= LIMITS.property_bytes


@FUZZ
@given(calendars())
def test_parse_feed_is_bounded(data: bytes) -> None:
    with memory_budget():
        found = outcome(lambda: parse_feed(data, WINDOW, "fuzz", limits=LIMITS))
    if found is not None:
        check_resources(found[0])


@FUZZ
@given(calendars(), st.booleans())
def test_parse_resource_is_bounded(data: bytes, fast: bool) -> None:
    with memory_budget():
        found = outcome(
            lambda: parse_resource("r.ics", "e", data, WINDOW, fast=fast, limits=LIMITS)
        )
    if found is not None:
        check_resources([found])


@FUZZ
@given(st.one_of(calendars(), st.binary(max_size=2_000)))
def test_the_fast_path_never_raises(data: bytes) -> None:
    with memory_budget():
        found = fast_single(data, WINDOW, "r.ics")
    assert found is None or isinstance(found, tuple)


@FUZZ
@given(st.binary(max_size=4_000))
def test_noise_is_refused_not_raised(data: bytes) -> None:
    with memory_budget():
        outcome(lambda: parse_feed(data, WINDOW, "noise", limits=LIMITS))


# ----------------------------------------------------------------------------- mail

HEADER_NAMES = ["From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
                "Content-Type", "Content-Transfer-Encoding", "Authentication-Results",
                "Auto-Submitted", "X-Junk"]  # fmt: skip
CONTENT_TYPES = ["text/plain", "text/html", "text/plain; charset=bogus", "application/pdf",
                 "message/rfc822", "multipart/mixed", "multipart/alternative"]  # fmt: skip


def parts(depth: int) -> st.SearchStrategy[bytes]:
    leaf = st.tuples(
        st.sampled_from(CONTENT_TYPES[:5]),
        st.sampled_from(["7bit", "base64", "quoted-printable", "x-bogus"]),
        st.binary(max_size=200),
    ).map(lambda t: b"Content-Type: %s\r\nContent-Transfer-Encoding: %s\r\n\r\n%s" % (
        t[0].encode(), t[1].encode(), t[2]))  # fmt: skip
    if depth <= 0:
        return leaf

    def multipart(children: list[bytes]) -> bytes:
        b = b"b%d" % depth
        inner = b"".join(b"--" + b + b"\r\n" + c + b"\r\n" for c in children)
        return (
            b'Content-Type: multipart/mixed; boundary="'
            + b
            + b'"\r\n\r\n'
            + inner
            + b"--"
            + b
            + b"--"
        )

    return st.one_of(leaf, st.lists(parts(depth - 1), min_size=1, max_size=3).map(multipart))


@st.composite
def mails(draw: st.DrawFn) -> bytes:
    headers = draw(st.lists(st.tuples(st.sampled_from(HEADER_NAMES), JUNK), max_size=30))
    head = b"".join(f"{n}: {v}\r\n".encode("utf-8", "surrogatepass") for n, v in headers)
    if draw(st.booleans()):
        head += b"X-Many: x\r\n" * draw(st.integers(0, 1_500))
    body = draw(parts(draw(st.integers(0, 25))))
    return head + body


@FUZZ
@given(st.one_of(mails(), st.binary(max_size=4_000)))
def test_mail_readers_are_bounded(raw: bytes) -> None:
    with memory_budget():
        outcome(lambda: parse_message(raw, source_id="f", folder="", mtime=NOW, limits=LIMITS))
        outcome(lambda: parse_inbound(raw, source_id="f", mtime=NOW, limits=LIMITS))
        outcome(lambda: read_message(raw, LIMITS))
        assert isinstance(body_text(raw, LIMITS), str)
