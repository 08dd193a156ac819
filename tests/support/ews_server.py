"""A protocol-level Exchange Web Services server on 127.0.0.1, for driving exchangelib.

It answers the SOAP operations our EWS connector (through exchangelib) sends, with the
envelopes Exchange 2016/2019 return (``m:``/``t:`` namespaces, ``ResponseClass`` and
``ResponseCode`` per message, a ``ServerVersionInfo`` header), modelled on the samples in
``../shared/evaldata/ews``:

* ConvertId (exchangelib's version probe), ResolveNames, GetFolder (root, calendar);
* SyncFolderItems with SyncState and MaxChangesReturned paging (IncludesLastItemInRange);
  a forgotten state is answered with ErrorInvalidSyncStateData;
* FindItem with CalendarView (series expanded, exceptions applied, deleted occurrences
  left out) or with an IndexedPageItemView and an IsEqualTo restriction;
* GetItem (masters with Recurrence, FirstOccurrence, LastOccurrence, ModifiedOccurrences
  and DeletedOccurrences; singles; occurrences by ItemId or OccurrenceItemId),
  CreateItem (a Recurrence makes a series), UpdateItem, DeleteItem;
* every EWS recurrence pattern of calendar items (``Recurrence``: DailyRecurrence,
  WeeklyRecurrence with several DaysOfWeek, an Interval and FirstDayOfWeek,
  AbsoluteMonthlyRecurrence, RelativeMonthlyRecurrence with DaysOfWeek incl. Day, Weekday
  and WeekendDay and DayOfWeekIndex First..Fourth or Last, AbsoluteYearlyRecurrence,
  RelativeYearlyRecurrence) with every range (NoEndRecurrence, EndDateRecurrence,
  NumberedRecurrence), serialised as Exchange does and expanded here, by plain calendar
  arithmetic in the series' start zone (wall-clock time kept across DST), independently
  of the connector's own expansion: this server is the reference it is checked against
  (all-day occurrences run midnight to midnight in the zone; a series without end has
  no LastOccurrence here, and an invalid pattern is refused with
  ErrorCalendarInvalidRecurrence, one without occurrences ErrorRecurrenceHasNoOccurrence);
* two mail folders (Inbox, Sent Items) with their own change logs: GetFolder,
  SyncFolderItems (Create, Update, ReadFlagChange, Delete; a state of one folder is
  invalid in the other) and GetItem of Message items (InternetMessageId, InReplyTo,
  References, ConversationId, From/Sender, To/Cc, ItemClass, InternetMessageHeaders,
  Body as it was written, ``BodyType`` Text or HTML, and TextBody, the text version
  Exchange 2013 and later make of it: ``tests.support.mail_bodies``);
* outgoing mail: CreateItem of Message items with MessageDisposition SendOnly,
  SendAndSaveCopy (a copy filed in Sent Items, or the SavedItemFolderId given) or
  SaveOnly; sent mail is recorded in ``EwsServer.sent`` (``SentMail``), addresses without
  an ``@`` are refused with ErrorInvalidRecipients; FindItem in a mail folder with an
  IsEqualTo restriction on InternetMessageId (how a client finds its sent copy);
* faults on demand: any HTTP status (with Retry-After), ErrorServerBusy with
  BackOffMilliseconds (a SOAP fault in an HTTP 500, as Exchange sends it), a delay.

The mailbox is a small in-memory calendar of single items and series (any pattern, with
modified and deleted occurrences; ``weekly_count=N`` is short for a weekly series of N
on the start's weekday) plus the two mail folders; tests change it directly, as the manager's other
client would, through :class:`Mailbox`.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

from exchangelib.winzone import IANA_TO_MS_TIMEZONE_MAP, MS_TIMEZONE_TO_IANA_MAP
from lxml import etree

from tests.support.mail_bodies import as_text

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
E = "http://schemas.microsoft.com/exchange/services/2006/errors"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"

# Exchange Server 2019 CU12 (15.2.1118.7) reports the 2017 schema version string.
SERVER_VERSION = {
    "MajorVersion": "15",
    "MinorVersion": "2",
    "MajorBuildNumber": "1118",
    "MinorBuildNumber": "7",
    "Version": "V2017_07_11",
}
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = tuple(calendar.month_name)[1:]  # January .. December (MonthNamesType)
_INDEXES = ("First", "Second", "Third", "Fourth", "Last")  # DayOfWeekIndexType
# DayOfWeekType: a day, or a set of days (relative patterns only)
_DAY_SETS = {"Day": _DAYS, "Weekday": _DAYS[:5], "WeekendDay": _DAYS[5:]}
_PATTERNS = (
    "DailyRecurrence", "WeeklyRecurrence", "AbsoluteMonthlyRecurrence",
    "RelativeMonthlyRecurrence", "AbsoluteYearlyRecurrence", "RelativeYearlyRecurrence",
)  # fmt: skip
_OPEN_END = timedelta(days=5 * 366)  # how far an open-ended series is listed by default
_ZONE_NAMES = {
    "W. Europe Standard Time": "(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna",
    "Eastern Standard Time": "(UTC-05:00) Eastern Time (US & Canada)",
    "Pacific Standard Time": "(UTC-08:00) Pacific Time (US & Canada)",
    "GMT Standard Time": "(UTC+00:00) Dublin, Edinburgh, Lisbon, London",
    "UTC": "(UTC) Coordinated Universal Time",
    "Russian Standard Time": "(UTC+03:00) Moscow, St. Petersburg",
}
# Properties FindItem cannot return (Exchange answers ErrorInvalidPropertyRequest).
_NOT_IN_FIND_ITEM = frozenset(
    {"item:Body", "calendar:RequiredAttendees", "calendar:OptionalAttendees",
     "calendar:Resources", "calendar:ModifiedOccurrences", "calendar:DeletedOccurrences"}
)  # fmt: skip


def t(tag: str) -> str:
    return f"{{{T}}}{tag}"


def m(tag: str) -> str:
    return f"{{{M}}}{tag}"


def windows_zone(iana: str) -> str:
    """The Windows zone name Exchange stores for an IANA zone."""
    if iana == "UTC":
        return "UTC"
    return str(IANA_TO_MS_TIMEZONE_MAP[iana][0])


def iana_zone(windows: str) -> str:
    return "UTC" if windows == "UTC" else str(MS_TIMEZONE_TO_IANA_MAP[windows])


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# ---------------------------------------------------------------------------- model


@dataclass
class Attendee:
    email: str
    name: str = ""
    response: str = "Unknown"  # Unknown, Organizer, Tentative, Accept, Decline, NoResponseReceived
    required: bool = True


@dataclass
class Change:
    """An edited occurrence of a series (an exception)."""

    start: datetime
    end: datetime
    subject: str | None = None
    location: str | None = None


@dataclass(frozen=True)
class Recurrence:
    """A series' pattern and range, as the Recurrence element of a master holds them.

    ``pattern`` is the element's name (``DailyRecurrence`` ... ``RelativeYearlyRecurrence``);
    the range is ``NumberedRecurrence`` when ``count`` is set, ``EndDateRecurrence`` when
    ``end_date`` is, else ``NoEndRecurrence``. ``start_date`` is the range's StartDate (by
    default the master's start date in its zone). Build one with :func:`daily`,
    :func:`weekly`, :func:`absolute_monthly`, :func:`relative_monthly`,
    :func:`absolute_yearly` or :func:`relative_yearly`.
    """

    pattern: str
    interval: int = 1  # Daily, Weekly, monthly patterns (yearly ones have none in EWS)
    days_of_week: tuple[str, ...] = ()  # Weekly: one or more days; relative: one DayOfWeekType
    day_of_week_index: str = ""  # relative patterns: First .. Fourth, Last
    day_of_month: int = 0  # absolute patterns: 1-31 (past a month's end: its last day)
    month: str = ""  # yearly patterns: January .. December
    first_day_of_week: str = "Monday"  # Weekly
    start_date: date | None = None
    end_date: date | None = None
    count: int | None = None

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise ValueError(f"invalid {self.pattern}: {problem}")

    def _problem(self) -> str:
        relative = self.pattern.startswith("Relative")
        if self.pattern not in _PATTERNS:
            return "unknown pattern"
        if not 1 <= self.interval <= (999 if self.pattern == "DailyRecurrence" else 99):
            return f"Interval {self.interval}"
        if self.pattern == "WeeklyRecurrence" and (
            not self.days_of_week or not set(self.days_of_week) <= set(_DAYS)
            or self.first_day_of_week not in _DAYS
        ):  # fmt: skip
            return f"DaysOfWeek {self.days_of_week} / FirstDayOfWeek {self.first_day_of_week}"
        if relative and (
            len(self.days_of_week) != 1
            or self.days_of_week[0] not in (*_DAYS, *_DAY_SETS)
            or self.day_of_week_index not in _INDEXES
        ):  # fmt: skip
            return f"DaysOfWeek {self.days_of_week} / DayOfWeekIndex {self.day_of_week_index}"
        if self.pattern.startswith("Absolute") and not 1 <= self.day_of_month <= 31:
            return f"DayOfMonth {self.day_of_month}"
        if "Yearly" in self.pattern and self.month not in _MONTHS:
            return f"Month {self.month!r}"
        if self.count is not None and (self.count < 1 or self.end_date is not None):
            return "NumberOfOccurrences with an EndDate, or below 1"
        return ""

    @property
    def range(self) -> str:
        if self.count is not None:
            return "NumberedRecurrence"
        return "EndDateRecurrence" if self.end_date is not None else "NoEndRecurrence"

    def dates(self, first: date) -> Iterator[date]:
        """The pattern's dates from ``first`` (the range's StartDate) on, range ignored.

        Plain calendar arithmetic, as Exchange defines the patterns: a weekly pattern's
        weeks count from the week (starting on FirstDayOfWeek) that holds the start date;
        monthly ones from its month; a day of month past the end of a shorter month is
        that month's last day; "Last" is the last matching day of the month; dates before
        the start date are not occurrences.
        """
        if self.pattern == "DailyRecurrence":
            for n in itertools.count():
                yield first + timedelta(days=n * self.interval)
        if self.pattern == "WeeklyRecurrence":
            first_day = _DAYS.index(self.first_day_of_week)
            week = first - timedelta(days=(first.weekday() - first_day) % 7)
            offsets = sorted({(_DAYS.index(d) - first_day) % 7 for d in self.days_of_week})
            while True:
                for offset in offsets:
                    day = week + timedelta(days=offset)
                    if day >= first:
                        yield day
                week += timedelta(weeks=self.interval)
        yearly = "Yearly" in self.pattern
        step = 12 if yearly else self.interval
        months = first.year * 12 + (_MONTHS.index(self.month) if yearly else first.month - 1)
        while True:
            year, month = divmod(months, 12)
            day = self._day_in(year, month + 1)
            if day >= first:
                yield day
            months += step

    def _day_in(self, year: int, month: int) -> date:
        length = calendar.monthrange(year, month)[1]
        if self.pattern.startswith("Absolute"):
            return date(year, month, min(self.day_of_month, length))
        names = _DAY_SETS.get(self.days_of_week[0], self.days_of_week)
        wanted = {_DAYS.index(name) for name in names}
        matching = [d for d in range(1, length + 1) if date(year, month, d).weekday() in wanted]
        position = _INDEXES.index(self.day_of_week_index)
        return date(year, month, matching[-1 if position == 4 else position])


def _bounds(count: int | None, until: date | None, start: date | None) -> dict[str, Any]:
    return {"count": count, "end_date": until, "start_date": start}


def daily(interval: int = 1, *, count: int | None = None, until: date | None = None,
          start: date | None = None) -> Recurrence:  # fmt: skip
    """Every ``interval`` days; ``count`` occurrences, or until the date ``until``, or no end."""
    return Recurrence("DailyRecurrence", interval, **_bounds(count, until, start))


def weekly(*days: str, interval: int = 1, first_day: str = "Monday", count: int | None = None,
           until: date | None = None, start: date | None = None) -> Recurrence:  # fmt: skip
    """On ``days`` (Monday .. Sunday) of every ``interval``-th week."""
    return Recurrence("WeeklyRecurrence", interval, tuple(days), first_day_of_week=first_day,
                      **_bounds(count, until, start))  # fmt: skip


def absolute_monthly(day: int, interval: int = 1, *, count: int | None = None,
                     until: date | None = None, start: date | None = None) -> Recurrence:  # fmt: skip
    """On day ``day`` (or the month's last) of every ``interval``-th month."""
    return Recurrence("AbsoluteMonthlyRecurrence", interval, day_of_month=day,
                      **_bounds(count, until, start))  # fmt: skip


def relative_monthly(day: str, index: str, interval: int = 1, *, count: int | None = None,
                     until: date | None = None, start: date | None = None) -> Recurrence:  # fmt: skip
    """On the ``index`` (First .. Fourth, Last) ``day`` (a weekday, Day, Weekday or
    WeekendDay) of every ``interval``-th month."""
    return Recurrence("RelativeMonthlyRecurrence", interval, (day,), index,
                      **_bounds(count, until, start))  # fmt: skip


def absolute_yearly(day: int, month: str, *, count: int | None = None,
                    until: date | None = None, start: date | None = None) -> Recurrence:  # fmt: skip
    """Every year on day ``day`` (or the month's last) of ``month``."""
    return Recurrence("AbsoluteYearlyRecurrence", day_of_month=day, month=month,
                      **_bounds(count, until, start))  # fmt: skip


def relative_yearly(day: str, index: str, month: str, *, count: int | None = None,
                    until: date | None = None, start: date | None = None) -> Recurrence:  # fmt: skip
    """Every year on the ``index`` ``day`` of ``month`` (e.g. the second Tuesday of March)."""
    return Recurrence("RelativeYearlyRecurrence", days_of_week=(day,), day_of_week_index=index,
                      month=month, **_bounds(count, until, start))  # fmt: skip


@dataclass
class Appointment:
    """One calendar item: a single appointment or the master of a series."""

    item_id: str
    uid: str
    subject: str
    start: datetime  # UTC
    end: datetime
    zone: str = "W. Europe Standard Time"  # Windows name, as Exchange stores it
    location: str = ""
    body: str = ""
    body_type: str = "HTML"
    all_day: bool = False
    cancelled: bool = False
    free_busy: str = "Busy"
    sensitivity: str = "Normal"
    categories: list[str] = field(default_factory=list)
    organizer: str = "alex@example.com"
    attendees: list[Attendee] = field(default_factory=list)
    weekly_count: int | None = None  # a weekly series of that many occurrences
    recurrence: Recurrence | None = None  # a series of any pattern (wins over weekly_count)
    modified: dict[datetime, Change] = field(default_factory=dict)  # original start → change
    deleted: set[datetime] = field(default_factory=set)  # original starts
    extended: dict[tuple[str, str, str], str] = field(default_factory=dict)
    last_modified_name: str = "Alex Manager"
    version: int = 1
    created_seq: int = 0
    changed_seq: int = 0

    @property
    def change_key(self) -> str:
        return _b64(b"\x0f\x00\x00\x00\x16\x00\x00\x00" + f"{self.item_id}:{self.version}".encode())

    @property
    def series(self) -> Recurrence | None:
        """The recurrence of a master (``weekly_count``: weekly on the start's weekday)."""
        if self.recurrence is not None:
            return self.recurrence
        if self.weekly_count:
            local = self.start.astimezone(ZoneInfo(iana_zone(self.zone)))
            return weekly(_DAYS[local.weekday()], count=self.weekly_count)
        return None

    @property
    def kind(self) -> str:
        return "RecurringMaster" if self.series is not None else "Single"

    @property
    def bounded(self) -> bool:
        """A single, or a series with a NumberedRecurrence or EndDateRecurrence range."""
        series = self.series
        return series is None or series.range != "NoEndRecurrence"

    def range_start(self) -> date:
        """The StartDate of the series' range (the master's start date by default)."""
        series = self.series
        local = self.start.astimezone(ZoneInfo(iana_zone(self.zone)))
        return series.start_date if series and series.start_date else local.date()

    def iter_original_starts(self) -> Iterator[datetime]:
        """Every occurrence's original start (UTC), deleted ones included, in order: the
        pattern's dates within the range, each at the master's wall-clock start time in
        its StartTimeZone (so 9:00 stays 9:00 across DST). Endless for NoEndRecurrence."""
        series = self.series
        if series is None:
            yield self.start
            return
        zone = ZoneInfo(iana_zone(self.zone))
        wall = self.start.astimezone(zone).time().replace(tzinfo=None)
        for number, day in enumerate(series.dates(self.range_start())):
            if series.count is not None and number >= series.count:
                return
            if series.end_date is not None and day > series.end_date:
                return
            yield datetime.combine(day, wall, zone).astimezone(UTC)

    def original_starts(self, until: datetime | None = None) -> list[datetime]:
        """Every occurrence's original start (UTC), the deleted ones included, up to
        ``until`` (for a series without end: by default five years from its start), and in
        any case up to its last modified or deleted occurrence."""
        if until is None and not self.bounded:
            until = self.start + _OPEN_END
        if until is not None:
            until = max([until, *self.modified, *self.deleted])
        out = []
        for original in self.iter_original_starts():
            if until is not None and original > until:
                break
            out.append(original)
        return out

    def occurrence_end(self, original: datetime) -> datetime:
        """The end of the occurrence starting at ``original``: the master's duration later,
        or for an all-day series its number of days later, midnight in its zone (a day
        with a DST change is 23 or 25 hours long)."""
        if not self.all_day:
            return original + (self.end - self.start)
        zone = ZoneInfo(iana_zone(self.zone))
        days = self.end.astimezone(zone).date() - self.start.astimezone(zone).date()
        last = original.astimezone(zone).date() + days
        return datetime.combine(last, datetime.min.time(), zone).astimezone(UTC)

    def align(self) -> None:
        """Start and End of a new or re-patterned master become its first occurrence's, as
        Exchange moves them (the range's StartDate is kept)."""
        series = self.series
        if series is None or self.recurrence is None:
            return
        first = next(self.iter_original_starts(), None)
        if first is None:
            raise ValueError("the recurrence has no occurrence")
        self.recurrence = replace(series, start_date=self.range_start())
        self.start, self.end = first, self.occurrence_end(first)


@dataclass(frozen=True)
class Instance:
    """An item as a client sees it: a single, a master, an occurrence or an exception."""

    item_id: str
    appointment: Appointment
    kind: str  # Single, RecurringMaster, Occurrence, Exception
    start: datetime
    end: datetime
    original_start: datetime | None = None
    index: int = 0
    change: Change | None = None


class SyncStateInvalid(Exception):
    pass


@dataclass
class MailItem:
    """One message in a mail folder, with the properties Exchange keeps for it."""

    item_id: str
    message_id: str  # InternetMessageId, with its angle brackets
    subject: str
    sender: str
    sent: datetime  # UTC
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    sender_name: str = ""
    conversation_id: str = ""
    in_reply_to: str = ""
    references: str = ""
    item_class: str = "IPM.Note"
    headers: list[tuple[str, str]] = field(default_factory=list)  # InternetMessageHeaders
    received: datetime | None = None
    is_read: bool = False
    body: str = ""  # as written, in ``body_type``
    body_type: str = "Text"  # Text or HTML
    version: int = 1
    created_seq: int = 0
    changed_seq: int = 0
    read_seq: int = 0

    @property
    def change_key(self) -> str:
        return _b64(b"\x09\x00\x00\x00\x16\x00\x00\x00" + f"{self.item_id}:{self.version}".encode())


@dataclass
class SentMail:
    """A message CreateItem sent (SendOnly or SendAndSaveCopy), as the recipients get it."""

    disposition: str
    sender: str
    to: list[str]
    subject: str
    body: str
    body_type: str
    message_id: str
    in_reply_to: str = ""
    references: str = ""
    saved_item_id: str = ""  # the copy in Sent Items (SendAndSaveCopy), else ""


def conversation_id(subject: str) -> str:
    """An Exchange-looking ConversationId for a conversation topic (the subject without
    its RE:/FW: prefixes), as Exchange derives one thread's id from its topic."""
    topic = subject
    while True:
        head, sep, rest = topic.partition(":")
        if sep and head.strip().lower() in ("re", "fw", "fwd", "aw", "wg"):
            topic = rest.strip()
            continue
        break
    digest = hashlib.sha256(topic.lower().encode()).digest()[:16]
    return "AAQkAGI2" + _b64(b"\x00\x10\x00" + digest)


class MailFolder:
    """A mail folder (Inbox, Sent Items) with its own change log for SyncFolderItems."""

    def __init__(self, name: str, folder_id: str, display: str) -> None:
        self.name, self.folder_id, self.display = name, folder_id, display
        self.items: dict[str, MailItem] = {}
        self.tombstones: dict[str, tuple[int, int]] = {}
        self.seq = 0
        self.epoch = 1

    def state(self, seq: int) -> str:
        return _b64(json.dumps({"f": self.name, "e": self.epoch, "s": seq}).encode())

    def since(self, state: str | None) -> int:
        if not state:
            return 0
        try:
            data = json.loads(base64.b64decode(state, validate=True))
            name, epoch, seq = str(data["f"]), int(data["e"]), int(data["s"])
        except (ValueError, KeyError, TypeError):
            raise SyncStateInvalid(state) from None
        if name != self.name or epoch != self.epoch or seq > self.seq:
            raise SyncStateInvalid(state)
        return seq

    def changes_since(self, since: int, limit: int) -> tuple[list[tuple[str, Any]], int, bool]:
        entries: list[tuple[int, str, Any]] = []
        for item in self.items.values():
            if item.changed_seq > since:
                kind = "Create" if item.created_seq > since else "Update"
                entries.append((item.changed_seq, kind, item))
            elif item.read_seq > since:
                entries.append((item.read_seq, "ReadFlagChange", item))
        for item_id, (created, deleted) in self.tombstones.items():
            if deleted > since and created <= since:
                entries.append((deleted, "Delete", item_id))
        entries.sort(key=lambda e: e[0])
        page = entries[:limit]
        last = len(entries) <= limit
        new_seq = self.seq if last else page[-1][0]
        return [(kind, what) for _, kind, what in page], new_seq, last


class Mailbox:
    """The manager's calendar folder. Every change is numbered, for SyncFolderItems."""

    def __init__(self, address: str = "alex@example.com") -> None:
        self.address = address
        self.lock = threading.RLock()
        self.items: dict[str, Appointment] = {}
        self.tombstones: dict[str, tuple[int, int]] = {}  # item id → (created, deleted) seq
        self.seq = 0
        self.epoch = 1
        self._ids = itertools.count(1)
        self.mail = {
            "inbox": MailFolder("inbox", _INBOX_ID, "Inbox"),
            "sentitems": MailFolder("sentitems", _SENT_ID, "Sent Items"),
        }

    # -- the manager's other client
    def new_id(self) -> str:
        raw = b"\x00\x00\x00\x00" + uuid.UUID(int=next(self._ids)).bytes + b"\x07\x00"
        return "AAMkAG" + _b64(raw)

    def add(self, uid: str, subject: str, start: datetime, end: datetime, **kw: Any) -> Appointment:
        with self.lock:
            self.seq += 1
            item = Appointment(
                item_id=self.new_id(), uid=uid, subject=subject,
                start=start.astimezone(UTC), end=end.astimezone(UTC),
                created_seq=self.seq, changed_seq=self.seq, **kw,
            )  # fmt: skip
            item.align()
            self.items[item.item_id] = item
            return item

    def by_uid(self, uid: str) -> Appointment:
        with self.lock:
            for item in self.items.values():
                if item.uid == uid:
                    return item
        raise KeyError(uid)

    @contextmanager
    def edit(self, uid_or_item: str | Appointment) -> Iterator[Appointment]:
        """Change an item in place; its change key and the change log move on."""
        with self.lock:
            item = uid_or_item if isinstance(uid_or_item, Appointment) else self.by_uid(uid_or_item)
            yield item
            self.seq += 1
            item.version += 1
            item.changed_seq = self.seq

    def remove(self, item_id: str) -> None:
        with self.lock:
            item = self.items.pop(item_id)
            self.seq += 1
            self.tombstones[item_id] = (item.created_seq, self.seq)

    def expire_states(self) -> None:
        """Every sync state issued so far becomes invalid (ErrorInvalidSyncStateData)."""
        with self.lock:
            self.epoch += 1

    # -- mail: the manager's other client, and mail delivery
    def deliver(
        self, folder: str, subject: str, sender: str, to: list[str], sent: datetime,
        **kw: Any,
    ) -> MailItem:  # fmt: skip
        """Store a message in ``folder`` (``inbox`` or ``sentitems``)."""
        with self.lock:
            box = self.mail[folder]
            box.seq += 1
            raw = b"\x00\x00\x00\x00" + uuid.UUID(int=next(self._ids)).bytes + b"\x0c\x00"
            kw.setdefault("message_id", f"<{uuid.uuid4().hex}@mail.example.com>")
            kw.setdefault("conversation_id", conversation_id(subject))
            kw.setdefault("received", sent + timedelta(seconds=2))
            item = MailItem(
                item_id="AAMkAGMSG" + _b64(raw), subject=subject, sender=sender, to=list(to),
                sent=sent.astimezone(UTC), created_seq=box.seq, changed_seq=box.seq, **kw,
            )  # fmt: skip
            box.items[item.item_id] = item
            return item

    def copy_message(self, item: MailItem, folder: str) -> MailItem:
        """The same message filed in another folder too (its own item id, same Message-ID)."""
        fields = {
            k: getattr(item, k)
            for k in ("message_id", "cc", "sender_name", "conversation_id", "in_reply_to",
                      "references", "item_class", "headers", "received", "body", "body_type")
        }  # fmt: skip
        return self.deliver(folder, item.subject, item.sender, item.to, item.sent, **fields)

    @contextmanager
    def edit_message(self, folder: str, item_id: str) -> Iterator[MailItem]:
        with self.lock:
            box = self.mail[folder]
            item = box.items[item_id]
            yield item
            box.seq += 1
            item.version += 1
            item.changed_seq = box.seq

    def mark_read(self, folder: str, item_id: str, read: bool = True) -> None:
        with self.lock:
            box = self.mail[folder]
            box.seq += 1
            box.items[item_id].is_read = read
            box.items[item_id].read_seq = box.seq

    def remove_message(self, folder: str, item_id: str) -> None:
        with self.lock:
            box = self.mail[folder]
            item = box.items.pop(item_id)
            box.seq += 1
            box.tombstones[item_id] = (item.created_seq, box.seq)

    def expire_mail_states(self, folder: str) -> None:
        """Every sync state of ``folder`` issued so far becomes invalid."""
        with self.lock:
            self.mail[folder].epoch += 1

    def find_message(self, item_id: str) -> tuple[MailFolder, MailItem] | None:
        with self.lock:
            for box in self.mail.values():
                if item_id in box.items:
                    return box, box.items[item_id]
        return None

    # -- views
    def instances(self, item: Appointment, until: datetime | None = None) -> list[Instance]:
        """A single, or a series' occurrences and exceptions (deleted ones left out) whose
        original start is at most ``until`` (see ``Appointment.original_starts``)."""
        if item.series is None:
            return [Instance(item.item_id, item, "Single", item.start, item.end)]
        found = (
            self._occurrence(item, index, original)
            for index, original in enumerate(item.original_starts(until), start=1)
        )
        return [inst for inst in found if inst is not None]

    def instance_at(self, item: Appointment, index: int) -> Instance | None:
        """The occurrence with InstanceIndex ``index`` (1 is the first), unless deleted."""
        if item.series is None or index < 1:
            return None
        original = next(itertools.islice(item.iter_original_starts(), index - 1, None), None)
        return None if original is None else self._occurrence(item, index, original)

    def _occurrence(self, item: Appointment, index: int, original: datetime) -> Instance | None:
        if original in item.deleted:
            return None
        change = item.modified.get(original)
        occ_id = self.occurrence_id(item, index)
        if change is None:
            return Instance(occ_id, item, "Occurrence", original, item.occurrence_end(original),
                            original, index)  # fmt: skip
        return Instance(occ_id, item, "Exception", change.start, change.end,
                        original, index, change)  # fmt: skip

    @staticmethod
    def occurrence_id(item: Appointment, index: int) -> str:
        return "AAMkAG" + _b64(b"\x01OCC" + f"{item.item_id}|{index}".encode())

    def lookup(self, item_id: str) -> Instance | None:
        with self.lock:
            item = self.items.get(item_id)
            if item is not None:
                start, end = item.start, item.end
                return Instance(item.item_id, item, item.kind, start, end)
            try:
                raw = base64.b64decode(item_id.removeprefix("AAMkAG"), validate=True)
            except ValueError:
                return None
            if not raw.startswith(b"\x01OCC"):
                return None
            master_id, _, index = raw[4:].decode().rpartition("|")
            master = self.items.get(master_id)
            if master is None:
                return None
            return self.instance_at(master, int(index))

    # -- sync states
    def state(self, seq: int) -> str:
        return _b64(json.dumps({"e": self.epoch, "s": seq}).encode())

    def since(self, state: str | None) -> int:
        if not state:
            return 0
        try:
            data = json.loads(base64.b64decode(state, validate=True))
            epoch, seq = int(data["e"]), int(data["s"])
        except (ValueError, KeyError, TypeError):
            raise SyncStateInvalid(state) from None
        if epoch != self.epoch or seq > self.seq:
            raise SyncStateInvalid(state)
        return seq

    def changes_since(self, since: int, limit: int) -> tuple[list[tuple[str, Any]], int, bool]:
        """(changes, new seq, includes last) for a client that has seen ``since``."""
        entries: list[tuple[int, str, Any]] = []
        for item in self.items.values():
            if item.changed_seq > since:
                kind = "Create" if item.created_seq > since else "Update"
                entries.append((item.changed_seq, kind, item))
        for item_id, (created, deleted) in self.tombstones.items():
            if deleted > since and created <= since:
                entries.append((deleted, "Delete", item_id))
        entries.sort(key=lambda e: e[0])
        page = entries[:limit]
        last = len(entries) <= limit
        new_seq = self.seq if last else page[-1][0]
        return [(kind, what) for _, kind, what in page], new_seq, last


# ------------------------------------------------------------------------ the server


class FaultPlan:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: list[tuple[int, int | None]] = []
        self.busy: list[int] = []
        self.delay = 0.0
        self.errors: list[tuple[str, str]] = []  # (operation, EWS response code)
        self.replies: list[tuple[int, bytes]] = []

    def error_for(self, operation: str) -> str | None:
        with self.lock:
            for i, (op, code) in enumerate(self.errors):
                if op == operation:
                    del self.errors[i]
                    return code
        return None

    def take(self) -> tuple[tuple[int, int | None] | None, int | None, float]:
        with self.lock:
            status = self.statuses.pop(0) if self.statuses else None
            busy = self.busy.pop(0) if status is None and self.busy else None
            delay, self.delay = self.delay, 0.0
            return status, busy, delay

    def reply(self) -> tuple[int, bytes] | None:
        with self.lock:
            return self.replies.pop(0) if self.replies else None


class EwsServer:
    """``with EwsServer() as server: server.url`` → ``http://127.0.0.1:PORT/EWS/Exchange.asmx``."""

    def __init__(self, username: str = "assistant", password: str = "secret",
                 mailbox: Mailbox | None = None) -> None:  # fmt: skip
        self.username = username
        self.password = password
        self.mailbox = mailbox or Mailbox()
        self.faults = FaultPlan()
        self.requests: list[tuple[str, int]] = []  # (operation, HTTP status)
        self.bodies: list[bytes] = []
        self.replies: list[tuple[str, bytes]] = []  # (operation, SOAP reply) of answered requests
        self.errors: list[str] = []  # exceptions raised while answering (bugs of the server)
        self.max_find_entries: int | None = None
        self.sent: list[SentMail] = []  # mail sent by CreateItem (SendOnly, SendAndSaveCopy)
        handler = type("Handler", (_Handler,), {"ews": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/EWS/Exchange.asmx"

    def __enter__(self) -> EwsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- faults
    def fail_next(self, status: int, *, retry_after: int | None = None, times: int = 1) -> None:
        with self.faults.lock:
            self.faults.statuses.extend([(status, retry_after)] * times)

    def server_busy(self, back_off_ms: int, *, times: int = 1) -> None:
        with self.faults.lock:
            self.faults.busy.extend([back_off_ms] * times)

    def hang_next(self, seconds: float) -> None:
        with self.faults.lock:
            self.faults.delay = seconds

    def error_next(self, operation: str, code: str) -> None:
        """The next ``operation`` request gets a ResponseMessage error with ``code``."""
        with self.faults.lock:
            self.faults.errors.append((operation, code))

    def reply_next(self, body: bytes, status: int = 200) -> None:
        """The next request gets ``body`` verbatim (a recorded Exchange response)."""
        with self.faults.lock:
            self.faults.replies.append((status, body))

    def operations(self) -> list[str]:
        return [op for op, _ in self.requests]


class _Handler(BaseHTTPRequestHandler):
    ews: EwsServer
    protocol_version = "HTTP/1.1"
    # headers and body leave in two writes: with Nagle's algorithm a reply's last segment
    # can wait for the client's delayed ACK (up to 40 ms a reply), a stall of this
    # server's making that a real service's replies do not have
    disable_nagle_algorithm = True
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # exchangelib may probe the endpoint
        self._send(405, b"", "text/html")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        operation = _operation(body)
        status, busy, delay = self.ews.faults.take()
        if delay:
            time.sleep(delay)
        if not self._authorized():
            self._record(operation, 401)
            self._send(401, b"", "text/html", {"WWW-Authenticate": 'Basic realm="127.0.0.1"'})
            return
        if status is not None:
            code, retry_after = status
            self._record(operation, code)
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            if code == 401:
                headers["WWW-Authenticate"] = 'Basic realm="127.0.0.1"'
            self._send(code, f"<html><body>HTTP {code}</body></html>".encode(), "text/html",
                       headers)  # fmt: skip
            return
        if busy is not None:
            self._record(operation, 500)
            self._send(500, _busy_fault(busy), "text/xml; charset=utf-8")
            return
        self.ews.bodies.append(body)
        if operation == "GetStreamingEvents":  # a long-lived chunked response (push section)
            _stream_events(self, body)
            return
        recorded = self.ews.faults.reply()
        if recorded is not None:
            self._record(operation, recorded[0])
            self._send(recorded[0], recorded[1], "text/xml; charset=utf-8")
            return
        try:
            reply = _dispatch(self.ews, operation, etree.fromstring(body))
        except etree.XMLSyntaxError:
            self._record(operation, 400)
            self._send(400, b"", "text/html")
            return
        except Exception as exc:  # a bug here: answer as Exchange does, with a fault
            self.ews.errors.append(repr(exc))
            self._record(operation, 500)
            self._send(
                500, _fault("ErrorInternalServerError", repr(exc)), "text/xml; charset=utf-8"
            )
            return
        self._record(operation, 200)
        self.ews.replies.append((operation, reply))
        self._send(200, reply, "text/xml; charset=utf-8")

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return (user, password) == (self.ews.username, self.ews.password)

    def _record(self, operation: str, status: int) -> None:
        self.ews.requests.append((operation, status))

    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:  # fmt: skip
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-BackEndHttpStatus", str(status))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out meanwhile
            self.close_connection = True


def _operation(body: bytes) -> str:
    try:
        root = etree.fromstring(body)
    except etree.XMLSyntaxError:
        return "?"
    soap_body = root.find(f"{{{SOAP}}}Body")
    if soap_body is None or not len(soap_body):
        return "?"
    return str(etree.QName(soap_body[0]).localname)


# ---------------------------------------------------------------------------- SOAP


def _envelope() -> tuple[Any, Any]:
    env = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"s": SOAP})
    header = etree.SubElement(env, f"{{{SOAP}}}Header")
    info = etree.SubElement(header, t("ServerVersionInfo"), nsmap={"h": T, "xsd": XSD, "xsi": XSI})
    for key, value in SERVER_VERSION.items():
        info.set(key, value)
    body = etree.SubElement(env, f"{{{SOAP}}}Body", nsmap={"xsi": XSI, "xsd": XSD})
    return env, body


def _xml(env: Any) -> bytes:
    return bytes(etree.tostring(env, xml_declaration=True, encoding="utf-8"))


def _sub(parent: Any, tag: str, text: str | None = None, **attrs: str) -> Any:
    child = etree.SubElement(parent, tag, {k: v for k, v in attrs.items()})
    if text is not None:
        child.text = text
    return child


def _messages(body: Any, operation: str) -> Any:
    response = etree.SubElement(body, m(f"{operation}Response"), nsmap={"m": M, "t": T})
    return etree.SubElement(response, m("ResponseMessages"))


def _ok(messages: Any, operation: str) -> Any:
    msg = _sub(messages, m(f"{operation}ResponseMessage"), ResponseClass="Success")
    _sub(msg, m("ResponseCode"), "NoError")
    return msg


def _error(messages: Any, operation: str, code: str, text: str) -> Any:
    msg = _sub(messages, m(f"{operation}ResponseMessage"), ResponseClass="Error")
    _sub(msg, m("MessageText"), text)
    _sub(msg, m("ResponseCode"), code)
    _sub(msg, m("DescriptiveLinkKey"), "0")
    return msg


def _busy_fault(back_off_ms: int) -> bytes:
    return _fault(
        "ErrorServerBusy",
        "The server cannot service this request right now. Try again later.",
        back_off_ms,
    )


def _fault(code: str, text: str, back_off_ms: int | None = None) -> bytes:
    """A SOAP fault as Exchange sends it in an HTTP 500 (cf. evaldata's ErrorServerBusy)."""
    env = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"s": SOAP})
    body = etree.SubElement(env, f"{{{SOAP}}}Body")
    fault = etree.SubElement(body, f"{{{SOAP}}}Fault")
    faultcode = etree.SubElement(fault, "faultcode", nsmap={"a": T})
    faultcode.text = f"a:{code}"
    _sub(fault, "faultstring", text).set("{http://www.w3.org/XML/1998/namespace}lang", "en-US")
    detail = _sub(fault, "detail")
    etree.SubElement(detail, f"{{{E}}}ResponseCode", nsmap={"e": E}).text = code
    etree.SubElement(detail, f"{{{E}}}Message", nsmap={"e": E}).text = text
    if back_off_ms is not None:
        xml = etree.SubElement(detail, t("MessageXml"), nsmap={"t": T})
        _sub(xml, t("Value"), str(back_off_ms), Name="BackOffMilliseconds")
    return _xml(env)


# ----------------------------------------------------------------------- operations


@dataclass
class _Shape:
    base: str
    fields: set[str]
    extended: list[tuple[str, str, str]]

    def wants(self, uri: str) -> bool:
        return self.base == "AllProperties" or uri in self.fields


def _shape(request: Any, tag: str = "ItemShape") -> _Shape:
    shape = request.find(m(tag))
    if shape is None:
        return _Shape("IdOnly", set(), [])
    base = shape.findtext(t("BaseShape")) or "IdOnly"
    fields = {f.get("FieldURI") for f in shape.iter(t("FieldURI"))}
    extended = [_ext_key(e) for e in shape.iter(t("ExtendedFieldURI"))]
    return _Shape(base, {f for f in fields if f}, extended)


def _ext_key(elem: Any) -> tuple[str, str, str]:
    return (
        elem.get("DistinguishedPropertySetId") or elem.get("PropertySetId") or "",
        elem.get("PropertyName") or elem.get("PropertyId") or elem.get("PropertyTag") or "",
        elem.get("PropertyType") or "String",
    )


def _dispatch(ews: EwsServer, operation: str, root: Any) -> bytes:
    request = root.find(f"{{{SOAP}}}Body")[0]
    env, body = _envelope()
    handler = _HANDLERS.get(operation)
    code = ews.faults.error_for(operation)
    with ews.mailbox.lock:
        if code is not None:
            _error(_messages(body, operation), operation, code, f"{code} (injected)")
        elif handler is None:
            messages = _messages(body, operation)
            _error(
                messages, operation, "ErrorInvalidRequest", f"{operation} is not supported here."
            )
        else:
            handler(ews, request, body)
    return _xml(env)


def _convert_id(ews: EwsServer, request: Any, body: Any) -> None:
    messages = _messages(body, "ConvertId")
    for _ in request.iter(t("AlternateId")):
        _error(messages, "ConvertId", "ErrorInvalidIdMalformed", "Id is malformed.")


def _resolve_names(ews: EwsServer, request: Any, body: Any) -> None:
    messages = _messages(body, "ResolveNames")
    entry = (request.findtext(m("UnresolvedEntry")) or "").strip().lower()
    if entry not in (ews.mailbox.address, ews.mailbox.address.split("@")[0]):
        _error(messages, "ResolveNames", "ErrorNameResolutionNoResults", "No results were found.")
        return
    msg = _ok(messages, "ResolveNames")
    found = _sub(msg, m("ResolutionSet"), TotalItemsInView="1", IncludesLastItemInRange="true")
    mailbox = _sub(_sub(found, t("Resolution")), t("Mailbox"))
    _sub(mailbox, t("Name"), "Alex Manager")
    _sub(mailbox, t("EmailAddress"), ews.mailbox.address)
    _sub(mailbox, t("RoutingType"), "SMTP")
    _sub(mailbox, t("MailboxType"), "Mailbox")


_ROOT_ID = "AAMkAGROOT" + _b64(b"root-folder")
_CALENDAR_ID = "AAMkAGCAL" + _b64(b"calendar-folder")
_INBOX_ID = "AAMkAGINBOX" + _b64(b"inbox-folder")
_SENT_ID = "AAMkAGSENT" + _b64(b"sentitems-folder")


def _get_folder(ews: EwsServer, request: Any, body: Any) -> None:
    messages = _messages(body, "GetFolder")
    ids = request.find(m("FolderIds"))
    for ref in ids if ids is not None else []:
        mailbox = ref.findtext(f"{t('Mailbox')}/{t('EmailAddress')}")
        if mailbox and mailbox.lower() != ews.mailbox.address:
            _error(messages, "GetFolder", "ErrorNonExistentMailbox",
                   "The SMTP address has no mailbox associated with it.")  # fmt: skip
            continue
        name = ref.get("Id")
        box = _mail_folder(ews.mailbox, name)
        if box is not None:
            folder_id, tag, cls, display, parent = (
                box.folder_id,
                "Folder",
                "IPF.Note",
                box.display,
                _ROOT_ID,
            )
        elif name in ("root", _ROOT_ID):
            folder_id, tag, cls, display, parent = _ROOT_ID, "Folder", None, "", None
        elif name in ("calendar", _CALENDAR_ID):
            folder_id, tag, cls, display, parent = (
                _CALENDAR_ID,
                "CalendarFolder",
                "IPF.Appointment",
                "Calendar",
                _ROOT_ID,
            )
        else:
            _error(
                messages,
                "GetFolder",
                "ErrorFolderNotFound",
                "The specified folder could not be found in the store.",
            )
            continue
        msg = _ok(messages, "GetFolder")
        folder = _sub(_sub(msg, m("Folders")), t(tag))
        _sub(folder, t("FolderId"), Id=folder_id, ChangeKey="AgAAABYAAAA=")
        if parent:
            _sub(folder, t("ParentFolderId"), Id=parent, ChangeKey="AQAAAA==")
        if cls:
            _sub(folder, t("FolderClass"), cls)
        _sub(folder, t("DisplayName"), display)
        if tag == "CalendarFolder":
            _sub(folder, t("TotalCount"), str(len(ews.mailbox.items)))
        elif box is not None:
            _sub(folder, t("TotalCount"), str(len(box.items)))
        _sub(folder, t("ChildFolderCount"), "0")
        rights = _sub(folder, t("EffectiveRights"))
        for right in ("CreateAssociated", "CreateContents", "CreateHierarchy", "Delete",
                      "Modify", "Read"):  # fmt: skip
            _sub(rights, t(right), "true")


def _mail_folder(mailbox: Mailbox, name: str | None) -> MailFolder | None:
    for box in mailbox.mail.values():
        if name in (box.name, box.folder_id):
            return box
    return None


def _sync_folder_items(ews: EwsServer, request: Any, body: Any) -> None:
    messages = _messages(body, "SyncFolderItems")
    mailbox = ews.mailbox
    target = request.find(m("SyncFolderId"))
    ref = target[0] if target is not None and len(target) else None
    box = _mail_folder(mailbox, ref.get("Id") if ref is not None else None)
    if box is not None:
        _sync_mail(box, request, messages)
        return
    shape = _shape(request)
    limit = int(request.findtext(m("MaxChangesReturned")) or "100")
    if not 1 <= limit <= 512:
        _error(messages, "SyncFolderItems", "ErrorInvalidArgument",
               "MaxChangesReturned must be between 1 and 512.")  # fmt: skip
        return
    try:
        since = mailbox.since(request.findtext(m("SyncState")))
    except SyncStateInvalid:
        msg = _error(messages, "SyncFolderItems", "ErrorInvalidSyncStateData",
                     "Synchronization state data is corrupt or otherwise invalid.")  # fmt: skip
        _sub(msg, m("SyncState"))
        _sub(msg, m("IncludesLastItemInRange"), "true")
        return
    changes, new_seq, last = mailbox.changes_since(since, limit)
    msg = _ok(messages, "SyncFolderItems")
    _sub(msg, m("SyncState"), mailbox.state(new_seq))
    _sub(msg, m("IncludesLastItemInRange"), "true" if last else "false")
    container = _sub(msg, m("Changes"))
    for kind, what in changes:
        change = _sub(container, t(kind))
        if kind == "Delete":
            _sub(change, t("ItemId"), Id=what, ChangeKey="AQAAAA==")
        else:
            _render(change, Instance(what.item_id, what, what.kind, what.start, what.end), shape)


def _sync_mail(box: MailFolder, request: Any, messages: Any) -> None:
    shape = _shape(request)
    limit = int(request.findtext(m("MaxChangesReturned")) or "100")
    if not 1 <= limit <= 512:
        _error(messages, "SyncFolderItems", "ErrorInvalidArgument",
               "MaxChangesReturned must be between 1 and 512.")  # fmt: skip
        return
    try:
        since = box.since(request.findtext(m("SyncState")))
    except SyncStateInvalid:
        msg = _error(messages, "SyncFolderItems", "ErrorInvalidSyncStateData",
                     "Synchronization state data is corrupt or otherwise invalid.")  # fmt: skip
        _sub(msg, m("SyncState"))
        _sub(msg, m("IncludesLastItemInRange"), "true")
        return
    changes, new_seq, last = box.changes_since(since, limit)
    msg = _ok(messages, "SyncFolderItems")
    _sub(msg, m("SyncState"), box.state(new_seq))
    _sub(msg, m("IncludesLastItemInRange"), "true" if last else "false")
    container = _sub(msg, m("Changes"))
    for kind, what in changes:
        change = _sub(container, t(kind))
        if kind == "Delete":
            _sub(change, t("ItemId"), Id=what, ChangeKey="AQAAAA==")
        elif kind == "ReadFlagChange":
            _sub(change, t("ItemId"), Id=what.item_id, ChangeKey=what.change_key)
            _sub(change, t("IsRead"), str(what.is_read).lower())
        else:
            _render_message(change, box, what, shape)


def _find_item(ews: EwsServer, request: Any, body: Any) -> None:
    messages = _messages(body, "FindItem")
    shape = _shape(request)
    refused = sorted(shape.fields & _NOT_IN_FIND_ITEM)
    if refused:
        _error(messages, "FindItem", "ErrorInvalidPropertyRequest",
               f"The property {refused[0]} is not valid for this request.")  # fmt: skip
        return
    view = request.find(m("CalendarView"))
    mailbox = ews.mailbox
    parents = request.find(m("ParentFolderIds"))
    mail_box = (
        _mail_folder(mailbox, parents[0].get("Id"))
        if parents is not None and len(parents)
        else None
    )
    if mail_box is not None and view is None:
        _find_messages(mail_box, request, msg_parent=messages, shape=shape)
        return
    if view is not None:
        start, end = _parse_time(view.get("StartDate")), _parse_time(view.get("EndDate"))
        found = [
            inst
            for item in mailbox.items.values()
            for inst in mailbox.instances(item, until=end)
            if inst.start < end and (inst.end > start or inst.start == inst.end == start)
        ]
        found.sort(key=lambda i: (i.start, i.item_id))
        limit = view.get("MaxEntriesReturned")
        cap = int(limit) if limit else len(found)
        if ews.max_find_entries is not None:
            cap = min(cap, ews.max_find_entries)
        page, last, offset = found[:cap], len(found) <= cap, 0
    else:
        matches = [
            Instance(i.item_id, i, i.kind, i.start, i.end)
            for i in mailbox.items.values()
            if _matches(i, request.find(m("Restriction")))
        ]
        matches.sort(key=lambda i: i.item_id)
        paging = request.find(m("IndexedPageItemView"))
        offset = int(paging.get("Offset", "0")) if paging is not None else 0
        size = (
            int(paging.get("MaxEntriesReturned") or len(matches))
            if paging is not None
            else len(matches)
        )
        found, page = matches, matches[offset : offset + size]
        last = offset + size >= len(matches)
    msg = _ok(messages, "FindItem")
    folder = _sub(msg, m("RootFolder"), IndexedPagingOffset=str(offset + len(page)),
                  TotalItemsInView=str(len(found)), IncludesLastItemInRange=str(last).lower())  # fmt: skip
    items = _sub(folder, t("Items"))
    for inst in page:
        _render(items, inst, shape)


def _find_messages(box: MailFolder, request: Any, msg_parent: Any, shape: _Shape) -> None:
    """FindItem in a mail folder: an IsEqualTo restriction on InternetMessageId (or none)."""
    restriction = request.find(m("Restriction"))
    wanted: str | None = None
    if restriction is not None and len(restriction):
        cond = restriction[0]
        field_uri = cond.find(t("FieldURI"))
        constant = cond.find(f"{t('FieldURIOrConstant')}/{t('Constant')}")
        if (etree.QName(cond).localname != "IsEqualTo" or field_uri is None
                or field_uri.get("FieldURI") != "message:InternetMessageId" or constant is None):  # fmt: skip
            _error(msg_parent, "FindItem", "ErrorUnsupportedQueryFilter",
                   "This restriction is not supported here.")  # fmt: skip
            return
        wanted = constant.get("Value")
    found = sorted(
        (i for i in box.items.values() if wanted is None or i.message_id == wanted),
        key=lambda i: i.item_id,
    )
    paging = request.find(m("IndexedPageItemView"))
    offset = int(paging.get("Offset", "0")) if paging is not None else 0
    size = int(paging.get("MaxEntriesReturned") or len(found)) if paging is not None else len(found)
    page = found[offset : offset + size]
    msg = _ok(msg_parent, "FindItem")
    folder = _sub(msg, m("RootFolder"), IndexedPagingOffset=str(offset + len(page)),
                  TotalItemsInView=str(len(found)),
                  IncludesLastItemInRange=str(offset + size >= len(found)).lower())  # fmt: skip
    items = _sub(folder, t("Items"))
    for item in page:
        _render_message(items, box, item, shape)


def _matches(item: Appointment, restriction: Any) -> bool:
    if restriction is None or not len(restriction):
        return True
    return _test(item, restriction[0])


def _test(item: Appointment, cond: Any) -> bool:
    name = etree.QName(cond).localname
    if name == "And":
        return all(_test(item, c) for c in cond)
    if name == "Or":
        return any(_test(item, c) for c in cond)
    if name == "Not":
        return not _test(item, cond[0])
    constant = cond.find(f"{t('FieldURIOrConstant')}/{t('Constant')}")
    wanted = constant.get("Value") if constant is not None else None
    ext = cond.find(t("ExtendedFieldURI"))
    if ext is not None:
        value = item.extended.get(_ext_key(ext))
    else:
        uri = cond.find(t("FieldURI")).get("FieldURI")
        value = {"item:Subject": item.subject, "calendar:Location": item.location}.get(uri)
    if name == "IsEqualTo":
        return value is not None and value == wanted
    if name == "Exists":
        return value is not None
    raise ValueError(f"unsupported restriction {name}")


def _get_item(ews: EwsServer, request: Any, body: Any) -> None:
    messages = _messages(body, "GetItem")
    shape = _shape(request)
    for ref in request.find(m("ItemIds")):
        mail = ews.mailbox.find_message(ref.get("Id") or "")
        if mail is not None:
            _render_message(_sub(_ok(messages, "GetItem"), m("Items")), *mail, shape)
            continue
        inst = _resolve(ews.mailbox, ref)
        if inst is None:
            _error(messages, "GetItem", "ErrorItemNotFound",
                   "The specified object was not found in the store.")  # fmt: skip
            continue
        msg = _ok(messages, "GetItem")
        _render(_sub(msg, m("Items")), inst, shape)


def _resolve(mailbox: Mailbox, ref: Any) -> Instance | None:
    name = etree.QName(ref).localname
    if name == "ItemId":
        return mailbox.lookup(ref.get("Id"))
    if name == "OccurrenceItemId":
        master = mailbox.items.get(ref.get("RecurringMasterId"))
        if master is None:
            return None
        return mailbox.instance_at(master, int(ref.get("InstanceIndex")))
    if name == "RecurringMasterItemId":
        inst = mailbox.lookup(ref.get("OccurrenceId"))
        if inst is None:
            return None
        item = inst.appointment
        return Instance(item.item_id, item, item.kind, item.start, item.end)
    return None


def _create_item(ews: EwsServer, request: Any, body: Any) -> None:
    messages = _messages(body, "CreateItem")
    mailbox = ews.mailbox
    for elem in request.find(m("Items")):
        if etree.QName(elem).localname == "Message":
            _create_message(ews, request, elem, messages)
            continue
        if etree.QName(elem).localname != "CalendarItem":
            _error(messages, "CreateItem", "ErrorInvalidItemForOperationCreateItem",
                   "Only calendar items can be created here.")  # fmt: skip
            continue
        try:
            values = _item_values(elem)
        except ValueError as exc:
            _error(messages, "CreateItem", "ErrorCalendarInvalidRecurrence", str(exc))
            continue
        start, end = values.pop("start", None), values.pop("end", None)
        if start is None or end is None:
            _error(
                messages,
                "CreateItem",
                "ErrorCalendarInvalidPropertyState",
                "Start and End are required.",
            )
            continue
        if end < start:
            _error(messages, "CreateItem", "ErrorCalendarEndDateIsEarlierThanStartDate",
                   "EndDate is earlier than StartDate")  # fmt: skip
            continue
        uid = values.pop("uid", None) or uuid.uuid4().hex.upper()
        subject = values.pop("subject", "")
        try:
            item = mailbox.add(uid, subject, start, end, **values)
        except ValueError as exc:  # a recurrence without any occurrence
            _error(messages, "CreateItem", "ErrorRecurrenceHasNoOccurrence", str(exc))
            continue
        msg = _ok(messages, "CreateItem")
        rendered = _sub(_sub(msg, m("Items")), t("CalendarItem"))
        _sub(rendered, t("ItemId"), Id=item.item_id, ChangeKey=item.change_key)


def _create_message(ews: EwsServer, request: Any, elem: Any, messages: Any) -> None:
    """CreateItem of one Message: send it (SendOnly), send and file a copy
    (SendAndSaveCopy: in SavedItemFolderId, by default Sent Items), or save it (SaveOnly)."""
    disposition = request.get("MessageDisposition") or ""
    if disposition not in ("SendOnly", "SendAndSaveCopy", "SaveOnly"):
        _error(messages, "CreateItem", "ErrorInvalidRequest",
               "MessageDisposition is required for Message items.")  # fmt: skip
        return
    to = [
        a.findtext(t("EmailAddress")) or ""
        for a in elem.iterfind(f"{t('ToRecipients')}/{t('Mailbox')}")
    ]
    if disposition != "SaveOnly" and (not to or any("@" not in a for a in to)):
        _error(messages, "CreateItem", "ErrorInvalidRecipients",
               "At least one recipient isn't valid.")  # fmt: skip
        return
    body = elem.find(t("Body"))
    mailbox = ews.mailbox
    message_id = elem.findtext(t("InternetMessageId")) or f"<{uuid.uuid4().hex}@mail.example.com>"
    subject = elem.findtext(t("Subject")) or ""
    in_reply_to = elem.findtext(t("InReplyTo")) or ""
    references = elem.findtext(t("References")) or ""
    saved = ""
    if disposition != "SendOnly":
        target = request.find(f"{m('SavedItemFolderId')}/*")
        folder = "sentitems" if disposition == "SendAndSaveCopy" else "drafts"
        if target is not None:
            box = _mail_folder(mailbox, target.get("Id"))
            folder = box.name if box is not None else folder
        if folder in mailbox.mail:
            item = mailbox.deliver(
                folder, subject, mailbox.address, to, datetime.now(UTC), message_id=message_id,
                in_reply_to=in_reply_to, references=references, received=None, is_read=True,
                body=body.text or "" if body is not None else "",
                body_type=body.get("BodyType", "Text") if body is not None else "Text",
            )  # fmt: skip
            saved = item.item_id
    if disposition != "SaveOnly":
        ews.sent.append(SentMail(
            disposition=disposition, sender=mailbox.address, to=to, subject=subject,
            body=body.text or "" if body is not None else "",
            body_type=body.get("BodyType", "Text") if body is not None else "Text",
            message_id=message_id, in_reply_to=in_reply_to, references=references,
            saved_item_id=saved,
        ))  # fmt: skip
    msg = _ok(messages, "CreateItem")
    _sub(msg, m("Items"))  # Exchange names no item for a message it sent


_TEXT_FIELDS = {
    "Subject": "subject", "Location": "location", "UID": "uid", "Sensitivity": "sensitivity",
    "LegacyFreeBusyStatus": "free_busy",
}  # fmt: skip


def _item_values(elem: Any) -> dict[str, Any]:
    """The properties set in a CalendarItem element of CreateItem or a SetItemField."""
    values: dict[str, Any] = {}
    for child in elem:
        name = etree.QName(child).localname
        if name in _TEXT_FIELDS:
            values[_TEXT_FIELDS[name]] = child.text or ""
        elif name == "Body":
            values["body"] = child.text or ""
            values["body_type"] = child.get("BodyType", "Text")
        elif name in ("Start", "End"):
            values[name.lower()] = _parse_time(child.text)
        elif name == "IsAllDayEvent":
            values["all_day"] = child.text == "true"
        elif name == "StartTimeZone":
            values["zone"] = child.get("Id")
        elif name == "Recurrence":
            values["recurrence"] = _parse_recurrence(child)
        elif name == "Categories":
            values["categories"] = [s.text or "" for s in child]
        elif name in ("RequiredAttendees", "OptionalAttendees"):
            values.setdefault("attendees", [])
            for att in child:
                values["attendees"].append(Attendee(
                    email=att.findtext(f"{t('Mailbox')}/{t('EmailAddress')}") or "",
                    name=att.findtext(f"{t('Mailbox')}/{t('Name')}") or "",
                    required=name == "RequiredAttendees",
                ))  # fmt: skip
        elif name == "ExtendedProperty":
            values.setdefault("extended", {})[_ext_key(child.find(t("ExtendedFieldURI")))] = (
                child.findtext(t("Value")) or ""
            )
    return values


def _update_item(ews: EwsServer, request: Any, body: Any) -> None:
    messages = _messages(body, "UpdateItem")
    mailbox = ews.mailbox
    for change in request.find(m("ItemChanges")):
        ref = change.find(t("ItemId"))
        item = mailbox.items.get(ref.get("Id")) if ref is not None else None
        if item is None:
            _error(messages, "UpdateItem", "ErrorItemNotFound",
                   "The specified object was not found in the store.")  # fmt: skip
            continue
        if (request.get("ConflictResolution") == "NeverOverwrite"
                and ref.get("ChangeKey") not in (None, item.change_key)):  # fmt: skip
            _error(messages, "UpdateItem", "ErrorIrresolvableConflict",
                   "The send or update operation could not be performed because the change key "
                   "passed in the request does not match the current change key for the item.")  # fmt: skip
            continue
        with mailbox.edit(item):
            for update in change.find(t("Updates")):
                op = etree.QName(update).localname
                if op == "SetItemField":
                    values = _item_values(update.find(t("CalendarItem")))
                    extended = values.pop("extended", {})
                    item.extended.update(extended)
                    for key, value in values.items():
                        setattr(item, key, value)
                    if "recurrence" in values:  # a new pattern drops the old exceptions
                        item.modified.clear()
                        item.deleted.clear()
                        item.align()
                elif op == "DeleteItemField":
                    ext = update.find(t("ExtendedFieldURI"))
                    if ext is not None:
                        item.extended.pop(_ext_key(ext), None)
                    else:
                        uri = update.find(t("FieldURI")).get("FieldURI").split(":")[1]
                        if uri == "Body":
                            item.body = ""
                        elif uri in _TEXT_FIELDS:
                            setattr(item, _TEXT_FIELDS[uri], "")
                        elif uri in ("RequiredAttendees", "OptionalAttendees"):
                            required = uri == "RequiredAttendees"
                            item.attendees = [a for a in item.attendees if a.required != required]
                        elif uri == "Categories":
                            item.categories = []
                        elif uri == "Recurrence":  # the series becomes a single
                            item.recurrence, item.weekly_count = None, None
                            item.modified.clear()
                            item.deleted.clear()
        msg = _ok(messages, "UpdateItem")
        rendered = _sub(_sub(msg, m("Items")), t("CalendarItem"))
        _sub(rendered, t("ItemId"), Id=item.item_id, ChangeKey=item.change_key)
        _sub(_sub(msg, m("ConflictResults")), t("Count"), "0")


def _delete_item(ews: EwsServer, request: Any, body: Any) -> None:
    messages = _messages(body, "DeleteItem")
    mailbox = ews.mailbox
    for ref in request.find(m("ItemIds")):
        inst = _resolve(mailbox, ref)
        if inst is None:
            _error(messages, "DeleteItem", "ErrorItemNotFound",
                   "The specified object was not found in the store.")  # fmt: skip
            continue
        if inst.kind in ("Occurrence", "Exception"):
            with mailbox.edit(inst.appointment) as master:
                assert inst.original_start is not None
                master.deleted.add(inst.original_start)
                master.modified.pop(inst.original_start, None)
        else:
            mailbox.remove(inst.item_id)
        _ok(messages, "DeleteItem")


# ------------------------------------------------------------------------ rendering


def _render(parent: Any, inst: Instance, shape: _Shape) -> None:
    """One CalendarItem element with the properties the shape asks for, in schema order."""
    item = inst.appointment
    change = inst.change
    elem = _sub(parent, t("CalendarItem"))
    occurrence = inst.kind in ("Occurrence", "Exception")
    change_key = (
        item.change_key if not occurrence else _b64(f"{inst.item_id}:{item.version}".encode())
    )
    _sub(elem, t("ItemId"), Id=inst.item_id, ChangeKey=change_key)
    want = shape.wants
    if want("item:ParentFolderId"):
        _sub(elem, t("ParentFolderId"), Id=_CALENDAR_ID, ChangeKey="AQAAAA==")
    if want("item:ItemClass"):
        _sub(elem, t("ItemClass"), "IPM.Appointment")
    if want("item:Subject"):
        _sub(
            elem,
            t("Subject"),
            change.subject if change and change.subject is not None else item.subject,
        )
    if want("item:Sensitivity"):
        _sub(elem, t("Sensitivity"), item.sensitivity)
    if want("item:Body") and item.body:
        _sub(elem, t("Body"), item.body, BodyType=item.body_type)
    if want("item:Categories") and item.categories:
        cats = _sub(elem, t("Categories"))
        for cat in item.categories:
            _sub(cats, t("String"), cat)
    if want("item:DateTimeCreated"):
        _sub(elem, t("DateTimeCreated"), "2026-11-01T09:00:00Z")
    for key in shape.extended:
        if key in item.extended:
            prop = _sub(elem, t("ExtendedProperty"))
            set_id, name, kind = key
            attrs = {"PropertyType": kind, "PropertyName": name}
            if set_id.count("-") == 4:
                attrs["PropertySetId"] = set_id
            else:
                attrs["DistinguishedPropertySetId"] = set_id
            _sub(prop, t("ExtendedFieldURI"), **attrs)
            _sub(prop, t("Value"), item.extended[key])
    if want("item:LastModifiedName"):
        _sub(elem, t("LastModifiedName"), item.last_modified_name)
    if want("item:LastModifiedTime"):
        _sub(elem, t("LastModifiedTime"), "2026-11-20T09:00:00Z")
    if want("calendar:UID"):
        _sub(elem, t("UID"), item.uid)
    if want("calendar:RecurrenceId") and inst.original_start is not None:
        _sub(elem, t("RecurrenceId"), _utc(inst.original_start))
    if want("calendar:Start"):
        _sub(elem, t("Start"), _utc(inst.start))
    if want("calendar:End"):
        _sub(elem, t("End"), _utc(inst.end))
    if want("calendar:OriginalStart") and inst.original_start is not None:
        _sub(elem, t("OriginalStart"), _utc(inst.original_start))
    if want("calendar:IsAllDayEvent"):
        _sub(elem, t("IsAllDayEvent"), str(item.all_day).lower())
    if want("calendar:LegacyFreeBusyStatus"):
        _sub(elem, t("LegacyFreeBusyStatus"), item.free_busy)
    if want("calendar:Location"):
        location = change.location if change and change.location is not None else item.location
        _sub(elem, t("Location"), location)
    if want("calendar:IsMeeting"):
        _sub(elem, t("IsMeeting"), str(bool(item.attendees)).lower())
    if want("calendar:IsCancelled"):
        _sub(elem, t("IsCancelled"), str(item.cancelled).lower())
    if want("calendar:IsRecurring"):
        _sub(elem, t("IsRecurring"), str(inst.kind != "Single").lower())
    if want("calendar:CalendarItemType"):
        _sub(elem, t("CalendarItemType"), inst.kind)
    if want("calendar:MyResponseType"):
        _sub(elem, t("MyResponseType"), "Organizer")
    if want("calendar:Organizer"):
        mailbox = _sub(_sub(elem, t("Organizer")), t("Mailbox"))
        _sub(mailbox, t("Name"), item.organizer.split("@")[0].title())
        _sub(mailbox, t("EmailAddress"), item.organizer)
        _sub(mailbox, t("RoutingType"), "SMTP")
    for required, uri in ((True, "RequiredAttendees"), (False, "OptionalAttendees")):
        people = [a for a in item.attendees if a.required == required]
        if want(f"calendar:{uri}") and people:
            group = _sub(elem, t(uri))
            for person in people:
                attendee = _sub(group, t("Attendee"))
                mailbox = _sub(attendee, t("Mailbox"))
                _sub(mailbox, t("Name"), person.name or person.email)
                _sub(mailbox, t("EmailAddress"), person.email)
                _sub(mailbox, t("RoutingType"), "SMTP")
                _sub(mailbox, t("MailboxType"), "Mailbox")
                _sub(attendee, t("ResponseType"), person.response)
    if want("calendar:Recurrence") and inst.kind == "RecurringMaster":
        _recurrence(elem, item)
    if inst.kind == "RecurringMaster":
        _first_last(elem, item, want)
    if want("calendar:ModifiedOccurrences") and inst.kind == "RecurringMaster" and item.modified:
        group = _sub(elem, t("ModifiedOccurrences"))
        for index, original in enumerate(item.original_starts(), start=1):
            moved = item.modified.get(original)
            if moved is None:
                continue
            occ = _sub(group, t("Occurrence"))
            _sub(occ, t("ItemId"), Id=Mailbox.occurrence_id(item, index), ChangeKey="DwAAAA==")
            _sub(occ, t("Start"), _utc(moved.start))
            _sub(occ, t("End"), _utc(moved.end))
            _sub(occ, t("OriginalStart"), _utc(original))
    if want("calendar:DeletedOccurrences") and inst.kind == "RecurringMaster" and item.deleted:
        group = _sub(elem, t("DeletedOccurrences"))
        for original in sorted(item.deleted):
            _sub(_sub(group, t("DeletedOccurrence")), t("Start"), _utc(original))
    for uri in ("StartTimeZone", "EndTimeZone"):
        if want(f"calendar:{uri}"):
            _sub(elem, t(uri), Id=item.zone, Name=_ZONE_NAMES.get(item.zone, item.zone))


def _first_last(elem: Any, item: Appointment, want: Any) -> None:
    """FirstOccurrence and LastOccurrence of a master: its first and last occurrence not
    deleted (ItemId, Start, End, OriginalStart), as Exchange reports them; a series
    without end has no LastOccurrence here."""
    kept = (
        (index, original)
        for index, original in enumerate(item.iter_original_starts(), start=1)
        if original not in item.deleted
    )
    first = list(itertools.islice(kept, 1))
    last = first
    if item.bounded:
        for last_kept in kept:
            last = [last_kept]
    else:
        last = []
    for uri, chosen in (("FirstOccurrence", first), ("LastOccurrence", last)):
        if not want(f"calendar:{uri}") or not chosen:
            continue
        index, original = chosen[0]
        moved = item.modified.get(original)
        occ = _sub(elem, t(uri))
        _sub(occ, t("ItemId"), Id=Mailbox.occurrence_id(item, index), ChangeKey="DwAAAA==")
        _sub(occ, t("Start"), _utc(moved.start if moved else original))
        _sub(occ, t("End"), _utc(moved.end if moved else item.occurrence_end(original)))
        _sub(occ, t("OriginalStart"), _utc(original))


def _mailbox_elem(parent: Any, address: str, name: str = "") -> None:
    mailbox = _sub(parent, t("Mailbox"))
    _sub(mailbox, t("Name"), name or address)
    _sub(mailbox, t("EmailAddress"), address)
    _sub(mailbox, t("RoutingType"), "SMTP")
    _sub(mailbox, t("MailboxType"), "Mailbox")


def _render_message(parent: Any, box: MailFolder, item: MailItem, shape: _Shape) -> None:
    """One Message element with the properties the shape asks for, in schema order.

    Like Exchange, ``AllProperties`` leaves out InternetMessageHeaders (and the body):
    a client that wants them names them.
    """
    elem = _sub(parent, t("Message"))
    _sub(elem, t("ItemId"), Id=item.item_id, ChangeKey=item.change_key)
    want = shape.wants
    named = shape.fields.__contains__
    if want("item:ParentFolderId"):
        _sub(elem, t("ParentFolderId"), Id=box.folder_id, ChangeKey="AQAAAA==")
    if want("item:ItemClass"):
        _sub(elem, t("ItemClass"), item.item_class)
    if want("item:Subject"):
        _sub(elem, t("Subject"), item.subject)
    if named("item:Body"):  # no BodyType asked for: Best, the body as it was written
        _sub(elem, t("Body"), item.body, BodyType=item.body_type, IsTruncated="false")
    if want("item:DateTimeReceived") and item.received is not None:
        _sub(elem, t("DateTimeReceived"), _utc(item.received))
    if want("item:InReplyTo") and item.in_reply_to:
        _sub(elem, t("InReplyTo"), item.in_reply_to)
    if named("item:InternetMessageHeaders") and item.headers:
        headers = _sub(elem, t("InternetMessageHeaders"))
        for name, value in item.headers:
            _sub(headers, t("InternetMessageHeader"), value, HeaderName=name)
    if want("item:DateTimeSent"):
        _sub(elem, t("DateTimeSent"), _utc(item.sent))
    if want("item:ConversationId") and item.conversation_id:
        _sub(elem, t("ConversationId"), Id=item.conversation_id)
    if named("item:TextBody"):
        text = as_text(item.body, item.body_type == "HTML")
        _sub(elem, t("TextBody"), text, BodyType="Text", IsTruncated="false")
    if want("message:Sender"):
        _mailbox_elem(_sub(elem, t("Sender")), item.sender, item.sender_name)
    for uri, people in (("ToRecipients", item.to), ("CcRecipients", item.cc)):
        if want(f"message:{uri}") and people:
            group = _sub(elem, t(uri))
            for person in people:
                _mailbox_elem(group, person)
    if want("message:From"):
        _mailbox_elem(_sub(elem, t("From")), item.sender, item.sender_name)
    if want("message:InternetMessageId"):
        _sub(elem, t("InternetMessageId"), item.message_id)
    if want("message:IsRead"):
        _sub(elem, t("IsRead"), str(item.is_read).lower())
    if want("message:References") and item.references:
        _sub(elem, t("References"), item.references)


def _recurrence(elem: Any, item: Appointment) -> None:
    """The Recurrence element of a master: the pattern, then the range, children in schema
    order; StartDate and EndDate are dates with the zone's UTC offset, as Exchange writes
    them (``2014-03-08-08:00``)."""
    series = item.series
    assert series is not None
    zone = ZoneInfo(iana_zone(item.zone))
    wall = item.start.astimezone(zone).time().replace(tzinfo=None)

    def dated(day: date) -> str:
        offset = datetime.combine(day, wall, zone).strftime("%z")
        return f"{day:%Y-%m-%d}{offset[:3]}:{offset[3:]}"

    rec = _sub(elem, t("Recurrence"))
    pattern = _sub(rec, t(series.pattern))
    if "Yearly" not in series.pattern:
        _sub(pattern, t("Interval"), str(series.interval))
    if series.pattern == "WeeklyRecurrence":
        _sub(pattern, t("DaysOfWeek"), " ".join(series.days_of_week))
        _sub(pattern, t("FirstDayOfWeek"), series.first_day_of_week)
    elif series.pattern.startswith("Relative"):
        _sub(pattern, t("DaysOfWeek"), series.days_of_week[0])
        _sub(pattern, t("DayOfWeekIndex"), series.day_of_week_index)
    elif series.pattern.startswith("Absolute"):
        _sub(pattern, t("DayOfMonth"), str(series.day_of_month))
    if "Yearly" in series.pattern:
        _sub(pattern, t("Month"), series.month)
    bounds = _sub(rec, t(series.range))
    _sub(bounds, t("StartDate"), dated(item.range_start()))
    if series.end_date is not None:
        _sub(bounds, t("EndDate"), dated(series.end_date))
    if series.count is not None:
        _sub(bounds, t("NumberOfOccurrences"), str(series.count))


def _parse_recurrence(elem: Any) -> Recurrence:
    """A Recurrence element of CreateItem or UpdateItem (ValueError when Exchange would
    refuse it)."""
    pattern, bounds = elem[0], elem[1]

    def text(parent: Any, tag: str) -> str:
        return (parent.findtext(t(tag)) or "").strip()

    def number(parent: Any, tag: str, default: int) -> int:
        value = text(parent, tag)
        return int(value) if value else default

    def day(parent: Any, tag: str) -> date | None:
        value = text(parent, tag)
        return date.fromisoformat(value[:10]) if value else None

    days = tuple(text(pattern, "DaysOfWeek").split())
    return Recurrence(
        etree.QName(pattern).localname, number(pattern, "Interval", 1), days,
        text(pattern, "DayOfWeekIndex"), number(pattern, "DayOfMonth", 0),
        text(pattern, "Month"), text(pattern, "FirstDayOfWeek") or "Monday",
        start_date=day(bounds, "StartDate"), end_date=day(bounds, "EndDate"),
        count=number(bounds, "NumberOfOccurrences", 0) or None,
    )  # fmt: skip


_HANDLERS = {
    "ConvertId": _convert_id,
    "ResolveNames": _resolve_names,
    "GetFolder": _get_folder,
    "SyncFolderItems": _sync_folder_items,
    "FindItem": _find_item,
    "GetItem": _get_item,
    "CreateItem": _create_item,
    "UpdateItem": _update_item,
    "DeleteItem": _delete_item,
}


# ------------------------------------------------- streaming notifications (push)
#
# Subscribe with a StreamingSubscriptionRequest, GetStreamingEvents (a chunked HTTP
# response: one SOAP document a notification, ``ConnectionStatus`` OK keep-alives, and a
# last ``Closed`` document when ConnectionTimeout is up) and Unsubscribe. The state lives
# in ``streaming(server)``; tests use it to cap the connection time, cut or end streams,
# and make subscriptions invalid. Events are the calendar's change log (Mailbox.seq):
# Create → CreatedEvent, Update → ModifiedEvent, Delete → DeletedEvent; a subscription
# keeps the events of the time no stream was open and delivers them with the next one.


@dataclass
class StreamingSubscription:
    sub_id: str
    seq: int  # the calendar change its subscriber has been told of
    event_types: tuple[str, ...]
    valid: bool = True


class Streaming:
    """The streaming subscriptions of one :class:`EwsServer` (``streaming(server)``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.subscriptions: dict[str, StreamingSubscription] = {}
        self.connection_timeout: float | None = None  # seconds: caps ConnectionTimeout
        self.heartbeat = 45.0  # seconds between ConnectionStatus OK keep-alives
        self.lost_code = "ErrorInvalidSubscription"
        self.poll = 0.02
        self.opened = 0  # GetStreamingEvents streams opened so far
        self.active = 0
        self.unsubscribed: list[str] = []
        self._cut = 0  # bumped by drop_streams()
        self._ended = 0  # bumped by end_streams()

    def drop_streams(self) -> None:
        """Cut every open stream without its Closed document (a network failure)."""
        with self.lock:
            self._cut += 1

    def end_streams(self) -> None:
        """End every open stream as ConnectionTimeout would (a Closed document)."""
        with self.lock:
            self._ended += 1

    def invalidate(self, code: str = "ErrorInvalidSubscription") -> None:
        """Every subscription is forgotten (a restart, a mailbox move); streams are cut."""
        with self.lock:
            self.lost_code = code
            for sub in self.subscriptions.values():
                sub.valid = False
            self._cut += 1

    def wait_opened(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until ``count`` streams have been opened in all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.opened >= count:
                    return True
            time.sleep(0.01)
        return False

    def valid_ids(self) -> list[str]:
        with self.lock:
            return [s.sub_id for s in self.subscriptions.values() if s.valid]


_streaming_lock = threading.Lock()
_EVENT_OF = {"Create": "CreatedEvent", "Update": "ModifiedEvent", "Delete": "DeletedEvent"}


def streaming(ews: EwsServer) -> Streaming:
    """The streaming state of ``ews`` (made on first use)."""
    with _streaming_lock:
        state = ews.__dict__.get("_streaming")
        if state is None:
            state = ews.__dict__["_streaming"] = Streaming()
        return state  # type: ignore[no-any-return]


def _subscribe(ews: EwsServer, request: Any, body: Any) -> None:
    messages = _messages(body, "Subscribe")
    spec = request.find(m("StreamingSubscriptionRequest"))
    if spec is None:
        _error(messages, "Subscribe", "ErrorInvalidSubscriptionRequest",
               "Only streaming subscriptions are supported here.")  # fmt: skip
        return
    folders = spec.find(t("FolderIds"))
    for ref in folders if folders is not None else []:
        if ref.get("Id") not in ("calendar", _CALENDAR_ID):
            _error(messages, "Subscribe", "ErrorFolderNotFound",
                   "The specified folder could not be found in the store.")  # fmt: skip
            return
    kinds = tuple(e.text or "" for e in spec.iter(t("EventType")))
    state = streaming(ews)
    sub = StreamingSubscription("JgBkYjVi" + _b64(uuid.uuid4().bytes), ews.mailbox.seq, kinds)
    with state.lock:
        state.subscriptions[sub.sub_id] = sub
    msg = _ok(messages, "Subscribe")
    _sub(msg, m("SubscriptionId"), sub.sub_id)


def _unsubscribe(ews: EwsServer, request: Any, body: Any) -> None:
    messages = _messages(body, "Unsubscribe")
    sub_id = request.findtext(m("SubscriptionId")) or ""
    state = streaming(ews)
    with state.lock:
        sub = state.subscriptions.pop(sub_id, None)
        state.unsubscribed.append(sub_id)
    if sub is None or not sub.valid:
        _error(messages, "Unsubscribe", "ErrorSubscriptionNotFound",
               "The specified subscription was not found.")  # fmt: skip
        return
    _ok(messages, "Unsubscribe")


def _streaming_doc(
    notifications: list[tuple[str, list[tuple[str, str]]]], status: str | None
) -> bytes:
    env, body = _envelope()
    msg = _ok(_messages(body, "GetStreamingEvents"), "GetStreamingEvents")
    if notifications:
        group = _sub(msg, m("Notifications"))
        for sub_id, events in notifications:
            note = _sub(group, m("Notification"))
            _sub(note, t("SubscriptionId"), sub_id)
            for kind, item_id in events:
                event = _sub(note, t(kind))
                _sub(event, t("TimeStamp"), _utc(datetime.now(UTC)))
                _sub(event, t("ItemId"), Id=item_id, ChangeKey="DwAAAA==")
                _sub(event, t("ParentFolderId"), Id=_CALENDAR_ID, ChangeKey="AQAAAA==")
    if status is not None:
        _sub(msg, m("ConnectionStatus"), status)
    return _xml(env)


def _pending(ews: EwsServer, subs: list[StreamingSubscription]) -> list[tuple[str, Any]]:
    """(subscription, (events, new seq)) for every subscription with undelivered events."""
    out: list[tuple[str, Any]] = []
    mailbox = ews.mailbox
    with mailbox.lock:
        for sub in subs:
            if mailbox.seq <= sub.seq:
                continue
            changes, new_seq, _ = mailbox.changes_since(sub.seq, 1_000_000)
            events = [
                (_EVENT_OF[kind], what if kind == "Delete" else what.item_id)
                for kind, what in changes
                if _EVENT_OF[kind] in sub.event_types
            ]
            out.append((sub.sub_id, (events, new_seq)))
    return out


def _stream_events(handler: _Handler, raw: bytes) -> None:
    """GetStreamingEvents: a chunked response that lasts until ConnectionTimeout."""
    ews = handler.ews
    state = streaming(ews)
    request = etree.fromstring(raw).find(f"{{{SOAP}}}Body")[0]
    ids = [e.text or "" for e in request.iter(t("SubscriptionId"))]
    minutes = int(request.findtext(m("ConnectionTimeout")) or "0")
    with state.lock:
        subs = [state.subscriptions.get(i) for i in ids]
        code = state.lost_code
    bad = [i for i, s in zip(ids, subs, strict=True) if s is None or not s.valid]
    if bad or not 1 <= minutes <= 30:
        env, body = _envelope()
        messages = _messages(body, "GetStreamingEvents")
        if bad:
            msg = _error(messages, "GetStreamingEvents", code,
                         "The subscription is no longer valid.")  # fmt: skip
            errors = _sub(msg, m("ErrorSubscriptionIds"))
            for sub_id in bad:
                _sub(errors, m("SubscriptionId"), sub_id)
        else:
            _error(messages, "GetStreamingEvents", "ErrorInvalidArgument",
                   "ConnectionTimeout must be between 1 and 30.")  # fmt: skip
        handler._record("GetStreamingEvents", 200)
        handler._send(200, _xml(env), "text/xml; charset=utf-8")
        return
    live = [s for s in subs if s is not None]
    handler._record("GetStreamingEvents", 200)
    handler.send_response(200)
    handler.send_header("Content-Type", "text/xml; charset=utf-8")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.send_header("X-BackEndHttpStatus", "200")
    handler.end_headers()
    with state.lock:
        state.opened += 1
        state.active += 1
        cut, ended = state._cut, state._ended
        limit = float(minutes * 60)
        if state.connection_timeout is not None:
            limit = min(limit, state.connection_timeout)
    now = time.monotonic()
    deadline, beat = now + limit, now + state.heartbeat

    def chunk(data: bytes) -> bool:
        try:
            handler.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
            handler.wfile.flush()
        except OSError:
            return False
        return True

    try:
        while True:
            with state.lock:
                dropped = state._cut != cut or any(not s.valid for s in live)
                finished = state._ended != ended
            listening = ews._httpd.socket.fileno() >= 0
            if dropped or not listening:
                handler.close_connection = True
                return
            if finished or time.monotonic() >= deadline:
                if chunk(_streaming_doc([], "Closed")):
                    chunk(b"")
                return
            pending = _pending(ews, live)
            found = [(sub_id, events) for sub_id, (events, _) in pending if events]
            if found:
                if not chunk(_streaming_doc(found, None)):
                    handler.close_connection = True
                    return
                beat = time.monotonic() + state.heartbeat
            by_id = {s.sub_id: s for s in live}
            for sub_id, (_, new_seq) in pending:
                by_id[sub_id].seq = new_seq  # told (or nothing of interest to tell)
            if time.monotonic() >= beat:
                if not chunk(_streaming_doc([], "OK")):
                    handler.close_connection = True
                    return
                beat = time.monotonic() + state.heartbeat
            time.sleep(state.poll)
    finally:
        with state.lock:
            state.active -= 1


_HANDLERS.update({"Subscribe": _subscribe, "Unsubscribe": _unsubscribe})
