"""A hostile calendar or mail cannot exhaust the worker (issue 12, point 2).

Each hostile input goes through the production path (the ICS feed connector, the sync
service, the mail sources and the inbox parser) within a CPU-time budget, and where it
matters a memory budget (tracemalloc peak): a series repeating every second or every
minute is kept as ONE item flagged "too frequent to expand"; a 20 MB description is cut
with a marker; a 10,000-event feed is read in linear time; events beyond the cap, deep
nesting, 100,000 headers and 10,000 nested multiparts are refused or left out with a
reason on the account; never a hang, a crash or a traceback in the log.
"""

from __future__ import annotations

import logging
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from assistant.services.pairs import add_account, add_pair
from assistant.services.sync import SyncPolicy, sync_calendar
from assistant.store.db import UnitOfWork
from assistant.store.tables import Account, EventSnapshot
from config.settings import Settings
from connectors.archive.mailbox import MaildirSource, body_text, parse_inbound, parse_message
from connectors.base import TOO_FREQUENT, TRUNCATED, CalendarDelta, InvalidData, ParseLimits
from connectors.ics.feed import IcsFeed
from connectors.ics.ical import parse_feed
from connectors.netguard import OPERATOR_KEY
from connectors.registry import open_calendar, open_mailbox
from tests.security import hostile_inputs as hostile
from tests.security.hostile_inputs import NOW, WINDOW
from tests.support.deps import deps_for

MB = 1024 * 1024


@contextmanager
def budget(seconds: float, megabytes: float | None = None) -> Iterator[None]:
    """The block takes at most ``seconds`` of this thread's CPU (and ``megabytes`` of Python
    memory). The thread's own CPU: servers other tests started in this process run in other
    threads, and their time is not the parser's."""
    if megabytes is not None:
        tracemalloc.start()
    began = time.thread_time()
    try:
        yield
    finally:
        took = time.thread_time() - began
        peak = tracemalloc.get_traced_memory()[1] if megabytes is not None else 0
        if megabytes is not None:
            tracemalloc.stop()
    assert took <= seconds, f"took {took:.1f} s of CPU, budget {seconds} s"
    if megabytes is not None:
        assert peak <= megabytes * MB, f"peak {peak / MB:.0f} MB, budget {megabytes} MB"


@pytest.fixture(autouse=True)
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        assert record.exc_info is None, f"a traceback was logged: {record.getMessage()}"
        assert "Traceback" not in record.getMessage()


def feed(tmp_path: Path, data: bytes, limits: ParseLimits | None = None) -> CalendarDelta:
    path = tmp_path / "hostile.ics"
    path.write_bytes(data)
    source = IcsFeed(str(path)) if limits is None else IcsFeed(str(path), limits=limits)
    return source.changes(None, WINDOW)


def notes(delta: CalendarDelta) -> list[str]:
    return [*delta.skipped, *(n for r in delta.resources for n in getattr(r, "notes", ()))]


def by_uid(delta: CalendarDelta) -> dict[str, list[object]]:
    out: dict[str, list[object]] = {}
    for r in delta.resources:
        for e in r.events:
            out.setdefault(e.uid, []).append(e)
    return out


# ------------------------------------------------------------------------ calendars


def test_an_endless_secondly_series_is_one_flagged_item(tmp_path: Path) -> None:
    with budget(seconds=10, megabytes=50):
        delta = feed(tmp_path, hostile.endless_secondly())
    events = by_uid(delta)
    (series,) = events["sec@hostile"]
    assert TOO_FREQUENT in series.categories  # type: ignore[attr-defined]
    assert series.start == NOW - timedelta(days=1)  # type: ignore[attr-defined]
    assert len(events["fine@hostile"]) == 1  # the rest of the feed is read
    said = [n for n in notes(delta) if "sec@hostile" in n]
    assert said and "too frequent to expand" in said[0] and "SECONDLY" in said[0]


def test_a_million_minutely_occurrences_are_one_flagged_item(tmp_path: Path) -> None:
    with budget(seconds=10, megabytes=50):
        delta = feed(tmp_path, hostile.minutely_count(1_000_000))
    events = by_uid(delta)
    assert len(events["min@hostile"]) == 1
    assert TOO_FREQUENT in events["min@hostile"][0].categories  # type: ignore[attr-defined]
    assert any("min@hostile" in n and "MINUTELY" in n for n in notes(delta))


def test_a_series_with_more_occurrences_than_the_cap_is_one_flagged_item(tmp_path: Path) -> None:
    hourly = hostile.vevent("hourly@hostile", NOW, "RRULE:FREQ=HOURLY")
    daily = hostile.vevent("daily@hostile", NOW, "RRULE:FREQ=DAILY")
    with budget(seconds=10, megabytes=50):
        delta = feed(tmp_path, hostile.calendar(hourly, daily))
    events = by_uid(delta)
    assert len(events["hourly@hostile"]) == 1  # 24 a day for 120 days: over 1000
    assert TOO_FREQUENT in events["hourly@hostile"][0].categories  # type: ignore[attr-defined]
    assert len(events["daily@hostile"]) == 120  # under the cap: expanded as ever
    assert not any(TOO_FREQUENT in e.categories for e in events["daily@hostile"])  # type: ignore[attr-defined]
    assert any("hourly@hostile" in n and "more than 1000" in n for n in notes(delta))
    capped = feed(tmp_path, hostile.calendar(daily), ParseLimits(occurrences_per_series=50))
    assert len(by_uid(capped)["daily@hostile"]) == 1  # the cap is a setting


def test_a_20_mb_description_is_cut_with_a_marker(tmp_path: Path) -> None:
    data = hostile.huge_property(20)
    with budget(seconds=10):  # time without tracemalloc, which slows every allocation
        feed(tmp_path, data)
    with budget(seconds=60, megabytes=150):
        delta = feed(tmp_path, data)
    (event,) = by_uid(delta)["big@hostile"]
    description: str = event.description  # type: ignore[attr-defined]
    assert description.endswith(TRUNCATED.strip()) or description.endswith(TRUNCATED)
    assert len(description.encode()) <= ParseLimits().property_bytes
    assert any("cut" in n and "[truncated]" in n for n in notes(delta))
    unfolded = feed(tmp_path, hostile.huge_property(20, folded=False))
    (same,) = by_uid(unfolded)["big@hostile"]
    assert same.description.endswith(TRUNCATED)  # type: ignore[attr-defined]


def test_ten_thousand_events_are_read_in_linear_time(tmp_path: Path) -> None:
    with budget(seconds=45):
        delta = feed(tmp_path, hostile.many_events(10_000))
    assert len(delta.resources) == 10_000 and not delta.skipped

    def cpu(n: int) -> float:
        data = hostile.many_zones_and_events(n)
        began = time.thread_time()
        resources, _ = parse_feed(data, WINDOW)
        assert len(resources) == n
        return time.thread_time() - began

    small, large = cpu(300), cpu(1200)
    assert large < 8 * small + 0.5  # linear: about 4 times; quadratic: 16 times


def test_events_beyond_the_cap_are_left_out_and_said(tmp_path: Path) -> None:
    limits = ParseLimits(events_per_calendar=500)
    with budget(seconds=20):
        delta = feed(tmp_path, hostile.many_events(2_000), limits)
    assert len(delta.resources) == 500
    assert any("1500 event(s) beyond the limit of 500" in n for n in delta.skipped)


def test_two_hundred_thousand_events_stay_within_budget(tmp_path: Path) -> None:
    data = hostile.many_events(200_000)
    with budget(seconds=60):
        delta = feed(tmp_path, data)
    cap = ParseLimits().events_per_calendar
    assert len(delta.resources) == cap
    assert any(f"beyond the limit of {cap}" in n for n in delta.skipped)


def test_deeply_nested_components_refuse_the_calendar_with_a_reason(tmp_path: Path) -> None:
    with budget(seconds=5), pytest.raises(InvalidData, match=r"nested deeper than 8 \(line"):
        feed(tmp_path, hostile.nested_components(10_000))


def test_an_event_with_too_many_lines_is_left_out(tmp_path: Path) -> None:
    crowded = hostile.vevent(
        "crowded@hostile", NOW, *(f"ATTENDEE:mailto:p{i}@example.com" for i in range(5_000))
    )
    fine = hostile.vevent("fine@hostile", NOW)
    delta = feed(tmp_path, hostile.calendar(crowded, fine))
    assert set(by_uid(delta)) == {"fine@hostile"}
    assert any("more than 2000 lines" in n for n in delta.skipped)


def test_errors_name_the_reason_not_the_content(tmp_path: Path) -> None:
    with pytest.raises(InvalidData) as info:
        feed(tmp_path, b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/:/sbin/nologin\n")
    assert "root:x" not in str(info.value) and "/bin/bash" not in str(info.value)


def test_limits_are_settings_passed_through_the_registry(tmp_path: Path) -> None:
    settings = Settings(limits={"events_per_calendar": 3, "occurrences_per_series": 5})
    path = tmp_path / "feed.ics"
    path.write_bytes(hostile.many_events(10))
    limits = ParseLimits.of(settings.limits)
    conf = {"location": str(path), OPERATOR_KEY: True}  # a file: the operator's account
    delta = open_calendar("ics", conf, limits=limits).changes(None, WINDOW)
    assert len(delta.resources) == 3
    maildir = tmp_path / "mail"
    (maildir / "cur").mkdir(parents=True)
    (maildir / "new").mkdir()
    (maildir / "cur" / "1.eml").write_bytes(hostile.many_headers(80))
    few = ParseLimits.of(Settings(limits={"mime_headers": 50}).limits)
    got = open_mailbox("maildir", {"path": str(maildir)}, limits=few).changes(None)
    assert got.messages == () and "more than 50 header lines" in got.skipped[0]


# ----------------------------------------------------------------- the sync service


def test_the_account_status_says_what_went_beyond_a_limit(uow: UnitOfWork, tmp_path: Path) -> None:
    for name in ("alex", "blake"):
        add_pair(
            deps_for(uow, NOW), name=name, manager_email=f"{name}@example.com",
            assistant_email=f"sam-{name}@example.com", timezone="Europe/Berlin",
        )  # fmt: skip
    bad, good = tmp_path / "bad.ics", tmp_path / "good.ics"
    bad.write_bytes(hostile.minutely_count(1_000_000))
    good.write_bytes(hostile.many_events(20))
    bad_id = add_account(
        deps_for(uow, NOW), pair="alex", name="bad", provider="ics", settings={"location": str(bad)}
    ).id
    good_id = add_account(
        deps_for(uow, NOW), pair="blake", name="good", provider="ics", settings={"location": str(good)}
    ).id
    with budget(seconds=20):
        report = sync_calendar(uow, bad_id, IcsFeed(str(bad)), NOW, SyncPolicy())
    assert any("min@hostile" in s and "too frequent to expand" in s for s in report.skipped)
    other = sync_calendar(uow, good_id, IcsFeed(str(good)), NOW, SyncPolicy())
    assert other.events == 20 and other.skipped == ()
    with uow.read() as session:
        rows = session.scalar(
            select(func.count())
            .select_from(EventSnapshot)
            .where(EventSnapshot.account_id == bad_id)
        )
        account = session.get(Account, bad_id)
        assert account is not None
        assert rows == 2  # the series as one item, and the plain event
        assert account.state == "ok"
        assert "too frequent to expand" in account.last_error
        assert "min@hostile" in account.last_error
        assert account.sync_state["skipped"]
        neighbour = session.get(Account, good_id)
        assert neighbour is not None and neighbour.state == "ok" and neighbour.last_error == ""
    # Unchanged next time: the status still says so.
    again = IcsFeed(str(bad))
    token = again.changes(None, WINDOW).token
    with uow.begin() as session:
        acc = session.get(Account, bad_id)
        assert acc is not None
        acc.sync_token = token
    assert sync_calendar(uow, bad_id, again, NOW, SyncPolicy()).unchanged
    with uow.read() as session:
        acc = session.get(Account, bad_id)
        assert acc is not None and "too frequent to expand" in acc.last_error


# ---------------------------------------------------------------------------- mail


def test_a_hundred_thousand_headers_are_refused_with_a_reason(tmp_path: Path) -> None:
    raw = hostile.many_headers(100_000)
    with budget(seconds=5), pytest.raises(InvalidData, match="more than 1000 header lines"):
        parse_message(raw, source_id="x", folder="", mtime=NOW)
    maildir = tmp_path / "mail"
    (maildir / "cur").mkdir(parents=True)
    (maildir / "new").mkdir()
    (maildir / "cur" / "1.eml").write_bytes(raw)
    (maildir / "cur" / "2.eml").write_bytes(hostile.plain_mail())
    delta = MaildirSource(maildir).changes(None)
    assert len(delta.messages) == 1
    assert delta.skipped == ("cur/1.eml: more than 1000 header lines",)


def test_ten_thousand_nested_multiparts_are_refused_with_a_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw = hostile.nested_mime(10_000)
    with budget(seconds=5, megabytes=100), pytest.raises(InvalidData, match="nested MIME parts"):
        parse_inbound(raw, source_id="x", mtime=NOW)
    assert body_text(raw) == ""
    maildir = tmp_path / "inbox"
    (maildir / "cur").mkdir(parents=True)
    (maildir / "new").mkdir()
    (maildir / "new" / "1.eml").write_bytes(raw)
    (maildir / "new" / "2.eml").write_bytes(hostile.plain_mail("please book the room"))
    found, _ = MaildirSource(maildir).fetch_new_bodies(None)
    assert [m.text for m in found] == ["please book the room"]
    assert any(
        "new/1.eml" in r.getMessage() and "nested MIME" in r.getMessage() for r in caplog.records
    )


def test_mail_within_the_limits_is_read_as_before() -> None:
    nested = hostile.nested_mime(5)
    assert parse_inbound(nested, source_id="x", mtime=NOW).text == "hello"
    assert (
        parse_message(hostile.many_headers(200), source_id="x", folder="", mtime=NOW).subject
        == "hello"
    )


def test_a_mail_refused_at_a_limit_shows_on_the_account(uow: UnitOfWork, tmp_path: Path) -> None:
    from assistant.bootstrap import Service
    from assistant.services.mail import import_mail

    svc = Service(settings=Settings(data_dir=tmp_path), engine=uow.engine, uow=uow,
                  clock=lambda: NOW)  # fmt: skip
    add_pair(deps_for(uow, NOW), name="alex", manager_email="alex@example.com", assistant_email="sam@example.com",
             timezone="Europe/Berlin")  # fmt: skip
    maildir = tmp_path / "mail"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "cur" / "1.eml").write_bytes(hostile.many_headers(100_000))
    (maildir / "cur" / "2.eml").write_bytes(hostile.plain_mail())
    account = add_account(deps_for(uow, NOW), pair="alex", name="export", provider="maildir",
                          settings={"path": str(maildir)})  # fmt: skip
    with budget(seconds=10):
        result = import_mail(svc, account.id, open_mailbox("maildir", {"path": str(maildir)}))
    assert result.new == 1
    with uow.read() as session:
        stored = session.get(Account, account.id)
        assert stored is not None and stored.state == "ok"
        assert "cur/1.eml: more than 1000 header lines" in stored.last_error


def test_a_rule_that_never_matches_is_stopped_and_kept_as_one_item(tmp_path: Path) -> None:
    spinning = hostile.vevent("setpos@hostile", NOW, "RRULE:FREQ=HOURLY;BYSETPOS=2")
    impossible = hostile.vevent("feb30@hostile", NOW, "RRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30")
    with budget(seconds=15):
        delta = feed(tmp_path, hostile.calendar(spinning, impossible))
    events = by_uid(delta)
    for uid in ("setpos@hostile", "feb30@hostile"):
        assert len(events[uid]) == 1
        assert TOO_FREQUENT in events[uid][0].categories  # type: ignore[attr-defined]
        assert any(uid in n for n in notes(delta))


def test_a_calendar_read_for_too_long_fails_its_sync_with_the_reason() -> None:
    ticks = iter(range(0, 10_000, 8))  # each look at the clock: 8 s later
    with pytest.raises(InvalidData, match=r"reading stopped after 20 s \(2 of 10 series read\)"):
        parse_feed(hostile.many_events(10), WINDOW, "slow.ics", clock=lambda: float(next(ticks)))
