"""Bounding a calendar's text before it is parsed: one linear pass over the bytes.

``bound_calendar`` unfolds the content lines (as icalendar does) and enforces the limits
of ``connectors.base.ParseLimits`` that are about size, while reading and before any
component is built: a text property (DESCRIPTION, SUMMARY, LOCATION …) longer than
``property_bytes`` is cut and ends with ``TRUNCATED``; any other property that long is
left out; VEVENTs beyond ``events_per_calendar``, or with more than
``properties_per_event`` lines, are left out; components nested deeper than
``component_depth`` refuse the calendar. What was cut or left out is described in the
notes it returns (counts and limits, never the content).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from icalendar.parser import unescape_backslash
from icalendar.prop import vText

from connectors.base import TRUNCATED, InvalidData, ParseLimits

_FOLD = re.compile(rb"(?:\r?\n)+[ \t]")
_BOUNDARY = re.compile(rb"^(BEGIN|END):([A-Za-z0-9-]+)[ \t]*\r?$", re.MULTILINE | re.IGNORECASE)
_NAME = re.compile(rb"[A-Za-z0-9-]+")
_BEGIN_LINE = re.compile(rb"^BEGIN:", re.MULTILINE | re.IGNORECASE)
TEXT_PROPERTIES = frozenset(
    {b"SUMMARY", b"DESCRIPTION", b"LOCATION", b"COMMENT", b"CONTACT", b"X-ALT-DESC"}
)
_MARK = TRUNCATED.encode("utf-8")


@lru_cache(maxsize=8)
def _long_line(limit: int) -> re.Pattern[bytes]:
    return re.compile(rb"^[^\r\n]{%d,}" % (limit + 1), re.MULTILINE)


def bound_calendar(text: str | bytes, limits: ParseLimits, source: str) -> tuple[bytes, list[str]]:
    """The calendar's unfolded bytes within ``limits``, and notes on what was cut."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    if b"\n " in raw or b"\n\t" in raw:  # every fold ends so
        raw = _FOLD.sub(b"", raw)
    if _within(raw, limits):
        return raw, []
    drops: list[tuple[int, int]] = []  # byte ranges left out, in order
    stack: list[tuple[bytes, int]] = []
    events = beyond = crowded = 0
    for m in _BOUNDARY.finditer(raw):
        kind, name = m.group(1).upper(), m.group(2).upper()
        if kind == b"BEGIN":
            if len(stack) >= limits.component_depth:
                line = raw.count(b"\n", 0, m.start()) + 1
                raise InvalidData(
                    f"{source}: components nested deeper than {limits.component_depth} "
                    f"(line {line})"
                )
            stack.append((name, m.start()))
            continue
        if not stack:
            continue  # unbalanced: icalendar judges
        opened, begin = stack.pop()  # whatever END says, as icalendar does
        if opened != b"VEVENT":
            continue
        events += 1
        end = _line_end(raw, m.end())
        if events > limits.events_per_calendar:
            beyond += 1
        elif raw.count(b"\n", begin, end) > limits.properties_per_event + 1:
            crowded += 1
        else:
            continue
        while drops and drops[-1][0] >= begin:  # a component inside this one
            drops.pop()
        drops.append((begin, end))
    cuts: list[tuple[int, int, bytes]] = []  # (start, end, replacement) of long lines
    cut = left_out = 0
    if len(raw) > limits.property_bytes:
        d = 0
        for m in _long_line(limits.property_bytes).finditer(raw):
            while d < len(drops) and drops[d][1] <= m.start():
                d += 1
            if d < len(drops) and drops[d][0] <= m.start():
                continue  # inside a component left out anyway
            short = _shortened(m.group(0), limits.property_bytes)
            if short is None:
                left_out += 1
                cuts.append((m.start(), _line_end(raw, m.end()), b""))
            else:
                cut += 1
                cuts.append((m.start(), m.end(), short))
    notes: list[str] = []
    if beyond:
        notes.append(
            f"{source}: {beyond} event(s) beyond the limit of "
            f"{limits.events_per_calendar} per calendar were left out"
        )
    if crowded:
        notes.append(
            f"{source}: {crowded} event(s) with more than {limits.properties_per_event} "
            "lines were left out"
        )
    if cut:
        notes.append(
            f"{source}: {cut} text(s) longer than {limits.property_bytes} bytes were cut "
            "(marked [truncated])"
        )
    if left_out:
        notes.append(
            f"{source}: {left_out} propert(y/ies) longer than {limits.property_bytes} bytes "
            "were left out"
        )
    if not drops and not cuts:
        return raw, notes
    return _rebuilt(raw, drops, cuts), notes


def _within(raw: bytes, limits: ParseLimits) -> bool:
    """Whether no limit can apply to ``raw`` (most calendar objects: a few short lines),
    told without walking its components: no line is longer than the whole text, no
    VEVENT has more lines, and neither components nor their nesting outnumber the
    BEGIN lines (a superset of the boundaries the walk would count)."""
    if len(raw) > limits.property_bytes or raw.count(b"\n") > limits.properties_per_event:
        return False
    begins = len(_BEGIN_LINE.findall(raw))
    return begins <= limits.component_depth and begins <= limits.events_per_calendar


def _line_end(raw: bytes, pos: int) -> int:
    """Just past the line break at ``pos`` (if any)."""
    if raw.startswith(b"\r\n", pos):
        return pos + 2
    if raw.startswith(b"\n", pos):
        return pos + 1
    return pos


def _shortened(line: bytes, limit: int) -> bytes | None:
    """A text property's line cut to ``limit`` bytes and marked; None for other lines."""
    name = _NAME.match(line)
    if name is None or name.group(0).upper() not in TEXT_PROPERTIES:
        return None
    keep = limit - len(_MARK)
    colon = _value_start(line, keep)
    if colon < 0:
        return None
    cut = line[:keep].rstrip(b"\r")
    while cut and (cut[-1] & 0xC0) == 0x80:  # never half a UTF-8 character
        cut = cut[:-1]
    if cut and cut[-1] >= 0xC0:
        cut = cut[:-1]
    slashes = len(cut) - len(cut.rstrip(b"\\"))
    if slashes % 2:  # never half an escape
        cut = cut[:-1]
    return cut + _MARK


def _value_start(line: bytes, within: int) -> int:
    """Where the value starts (the first colon outside quotes), or -1 past ``within``."""
    colon = line.find(b":", 0, within)
    if colon < 0 or b'"' not in line[:colon]:
        return colon
    quoted = False
    for i in range(min(len(line), within, 4096)):
        ch = line[i]
        if ch == 0x22:
            quoted = not quoted
        elif ch == 0x3A and not quoted:
            return i
    return -1


def _rebuilt(raw: bytes, drops: list[tuple[int, int]], cuts: list[tuple[int, int, bytes]]) -> bytes:
    edits = sorted([(s, e, b"") for s, e in drops] + cuts)
    out: list[bytes] = []
    pos = 0
    for start, end, repl in edits:
        if start < pos:
            continue
        out.append(raw[pos:start])
        out.append(repl)
        pos = end
    out.append(raw[pos:])
    return b"".join(out)


# ------------------------------------------------------------------------ splitting

_UID = re.compile(rb"^UID(?:;[^:\r\n]*)?:([^\r\n]*)", re.MULTILINE | re.IGNORECASE)
_RECURRENCE_ID = re.compile(rb"^RECURRENCE-ID[;:]", re.MULTILINE | re.IGNORECASE)
_SEQUENCE = re.compile(rb"^SEQUENCE(?:;[^:\r\n]*)?:([^\r\n]*)", re.MULTILINE | re.IGNORECASE)
_TZID_LINE = re.compile(rb"^TZID(?:;[^:\r\n]*)?:([^\r\n]*?)\r?$", re.MULTILINE | re.IGNORECASE)
_TZID_PARAM = re.compile(rb';TZID=(?:"([^"\r\n]*)"|([^;:\r\n]*))', re.IGNORECASE)
# What each series' own calendar takes from the whole one (PRODID and VERSION change
# nothing in the events, and the skeleton has been checked with them).
_HEADER = re.compile(rb"^(X-WR-TIMEZONE)[;:][^\r\n]*", re.MULTILINE | re.IGNORECASE)
_NESTED = re.compile(rb"^(BEGIN|END):", re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class CalendarParts:
    """A calendar's text cut into what each series needs, in one pass.

    ``skeleton`` is the calendar without its VEVENTs (checked once, as a whole);
    ``header`` the X-WR-TIMEZONE line (if any); ``zones`` the VTIMEZONE
    blocks by TZID; ``events`` the VEVENT blocks in order.
    """

    skeleton: bytes
    header: bytes
    zones: dict[str, bytes]
    events: list[bytes]


def split_calendar(raw: bytes) -> CalendarParts:
    """Cut unfolded calendar bytes (from ``bound_calendar``) into ``CalendarParts``."""
    stack: list[tuple[bytes, int]] = []
    calendars = 0
    tops: list[tuple[bytes, int, int]] = []  # components directly in a VCALENDAR (or bare)
    for m in _BOUNDARY.finditer(raw):
        kind, name = m.group(1).upper(), m.group(2).upper()
        if kind == b"BEGIN":
            calendars += name == b"VCALENDAR" and not stack
            stack.append((name, m.start()))
            continue
        if not stack:
            continue
        opened, begin = stack.pop()
        parent = stack[-1][0] if stack else b"VCALENDAR"
        if parent == b"VCALENDAR" and opened != b"VCALENDAR":
            tops.append((opened, begin, _line_end(raw, m.end())))
    events: list[bytes] = []
    zones: dict[str, bytes] = {}
    skeleton: list[bytes] = []
    outside: list[bytes] = []
    pos = lone = 0
    for name, begin, end in tops:
        block = raw[begin:end]
        skeleton.append(raw[pos:begin])
        outside.append(raw[lone:begin])
        pos = lone = end
        if name == b"VEVENT":
            events.append(_ended(block))
            continue
        skeleton.append(block)
        if name == b"VTIMEZONE":
            found = _TZID_LINE.search(block)
            if found:
                zones.setdefault(_text(found.group(1)), _ended(block))
    skeleton.append(raw[pos:])
    outside.append(raw[lone:])
    header: list[bytes] = []
    if calendars == 1:
        seen: set[bytes] = set()
        for m in _HEADER.finditer(b"".join(outside)):
            key = m.group(1).upper()
            if key not in seen:
                seen.add(key)
                header.append(m.group(0).rstrip(b"\r") + b"\r\n")
    return CalendarParts(b"".join(skeleton), b"".join(header), zones, events)


def event_uid(block: bytes) -> str:
    """The UID of a VEVENT block (its own, not a VALARM's), unescaped; "" when none."""
    m = own_line(block, _UID)
    return str(unescape_backslash(_text(m.group(1)))).strip() if m else ""


def own_line(block: bytes, pattern: re.Pattern[bytes]) -> re.Match[bytes] | None:
    """The first line of ``block`` matching ``pattern`` that is the VEVENT's own (depth 1)."""
    marks = [(n.start(), n.group(1).upper() == b"BEGIN") for n in _NESTED.finditer(block)]
    seen = depth = 0
    for m in pattern.finditer(block):
        while seen < len(marks) and marks[seen][0] < m.start():
            depth += 1 if marks[seen][1] else -1
            seen += 1
        if depth == 1:
            return m
    return None


def is_override(block: bytes) -> bool:
    """Whether a VEVENT block has its own RECURRENCE-ID (it changes one occurrence)."""
    return own_line(block, _RECURRENCE_ID) is not None


def sequence(block: bytes) -> int:
    """A VEVENT block's SEQUENCE (0 when absent or not a number, as the parser reads it)."""
    m = own_line(block, _SEQUENCE)
    text = m.group(1).strip() if m else b""
    return int(text) if text.isdigit() and len(text) < 10 else 0


def renamed(block: bytes, uid: str) -> bytes:
    """A VEVENT block with its own UID line replaced by ``uid`` (or one added)."""
    line = b"UID:" + vText(uid).to_ical()
    m = own_line(block, _UID)
    if m is None:
        first = block.find(b"\n") + 1
        return block[:first] + line + b"\r\n" + block[first:]
    return block[: m.start()] + line + block[m.end() :]


def zones_named(blocks: list[bytes]) -> set[str]:
    """The TZIDs the blocks' properties name."""
    found: set[str] = set()
    for block in blocks:
        for m in _TZID_PARAM.finditer(block):
            found.add(_text(m.group(1) if m.group(1) is not None else m.group(2)))
    return found


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace").rstrip("\r")


def _ended(block: bytes) -> bytes:
    return block if block.endswith(b"\n") else block + b"\r\n"
