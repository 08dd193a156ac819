"""Nudges before the reply SLA breaks: stages, once each, quiet hours, urgency, delivery.

Real store (SQLite and PostgreSQL), messages imported from a real Maildir, delivered by
the real outbox to a real SMTP server. Berlin working hours 09–18, SLA 30 working minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from mailbox import Maildir
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from assistant.bootstrap import Service, default_channels
from assistant.services import outbox
from assistant.services.mail import import_mail
from assistant.services.nudges import NudgeReport, nudge
from assistant.services.pairs import add_account, add_pair
from assistant.services.priorities import add_rule
from assistant.store.db import UnitOfWork
from assistant.store.tables import OutboxEntry
from config.settings import LatencySettings, Settings, SmtpSettings
from connectors.archive.mailbox import MaildirSource
from tests.support.deps import deps_for
from tests.support.smtp import SmtpServer

BERLIN = ZoneInfo("Europe/Berlin")
SETTINGS = LatencySettings()


def berlin(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=BERLIN)  # 24 Nov 2026 is a Tuesday


@dataclass
class Mailbox:
    uow: UnitOfWork
    root: Path
    account_id: int
    pair_id: int
    box: Maildir

    def send(self, mid: str, frm: str, to: str, at: datetime, subject: str,
             reply_to: str | None = None, headers: dict[str, str] | None = None) -> None:  # fmt: skip
        msg = EmailMessage()
        msg["From"], msg["To"] = f"{frm}@example.com", f"{to}@example.com"
        msg["Subject"], msg["Date"], msg["Message-ID"] = subject, format_datetime(at), f"<{mid}>"
        if reply_to:
            msg["In-Reply-To"] = msg["References"] = f"<{reply_to}>"
        for k, v in (headers or {}).items():
            msg[k] = v
        msg.set_content("text")
        self.box.add(msg)
        svc = Service(settings=Settings(), engine=self.uow.engine, uow=self.uow, clock=lambda: at)
        import_mail(svc, self.account_id, MaildirSource(self.root))

    def nudge(self, at: datetime) -> NudgeReport:
        settings = Settings(latency=SETTINGS)
        svc = Service(settings=settings, engine=self.uow.engine, uow=self.uow,
                      clock=lambda: at.astimezone(UTC))  # fmt: skip
        return nudge(svc, self.pair_id)

    def entries(self) -> list[tuple[str, str, str]]:
        with self.uow.read() as s:
            rows = s.execute(select(OutboxEntry.recipient, OutboxEntry.subject, OutboxEntry.body_text)
                             .order_by(OutboxEntry.id))  # fmt: skip
            return [(r, subj, body) for r, subj, body in rows]


@pytest.fixture
def mb(uow: UnitOfWork, tmp_path: Path) -> Mailbox:
    now = berlin(23, 8)
    pair = add_pair(deps_for(uow, now), name="alex", manager_name="Alex", manager_email="alex@example.com",
                    assistant_name="Sam", assistant_email="sam@example.com",
                    timezone="Europe/Berlin")  # fmt: skip
    root = tmp_path / "mail"
    box = Maildir(str(root), create=True)
    account = add_account(deps_for(uow, now), pair="alex", name="inbox", provider="maildir",
                          settings={"path": str(root)})  # fmt: skip
    return Mailbox(uow, root, account.id, pair.id, box)


def test_reminder_at_80_percent_then_breach_each_once(mb: Mailbox) -> None:
    mb.send("a1", "sam", "alex", berlin(24, 10), "Budget sign-off")
    first = mb.nudge(berlin(24, 10, 20))
    assert first.queued == []
    assert first.next_due == berlin(24, 10, 24).astimezone(UTC)
    reminder = mb.nudge(berlin(24, 10, 24))
    assert [k.split(":")[3:5] for k in reminder.queued] == [["reminder", "manager"]]
    assert reminder.next_due == berlin(24, 10, 30).astimezone(UTC)
    assert mb.nudge(berlin(24, 10, 26)).queued == [], "the same stage never twice"
    breach = mb.nudge(berlin(24, 10, 31))
    assert sorted(k.split(":")[3:5][1] for k in breach.queued) == ["assistant", "manager"]
    entries = mb.entries()
    assert [(r, s) for r, s, _ in entries] == [
        ("alex@example.com", "Waiting for your answer: Budget sign-off"),
        ("alex@example.com", "Overdue for your answer: Budget sign-off"),
        ("sam@example.com", "Not answered within 30 min: Budget sign-off"),
    ]
    assert "24 working minutes ago" in entries[0][2]
    # The manager answers: nothing more, and nothing scheduled.
    mb.send("a2", "alex", "sam", berlin(24, 10, 40), "Re: Budget sign-off", reply_to="a1")
    done = mb.nudge(berlin(24, 11))
    assert (done.queued, done.next_due) == ([], None)
    assert len(mb.entries()) == 3


def test_the_clock_stops_overnight(mb: Mailbox) -> None:
    mb.send("b1", "sam", "alex", berlin(24, 17, 50), "Flights")
    evening = mb.nudge(berlin(24, 18, 30))
    assert evening.queued == []
    assert evening.next_due == berlin(25, 9, 14).astimezone(UTC)  # 10 min today, 14 tomorrow
    assert [k.split(":")[3] for k in mb.nudge(berlin(25, 9, 14)).queued] == ["reminder"]


def test_a_late_run_outside_working_hours_holds_unless_urgent(mb: Mailbox) -> None:
    mb.send("c1", "sam", "alex", berlin(24, 17, 0), "Hotel")
    late = mb.nudge(berlin(24, 20))  # 60 working minutes passed before 18:00
    assert (late.queued, late.held) == ([], 1)
    assert late.next_due == berlin(25, 9).astimezone(UTC)
    # Past the SLA already: the breach goes (to both), not a stale 80% reminder with it.
    assert [k.split(":")[3] for k in mb.nudge(berlin(25, 9)).queued] == ["breach", "breach"]
    add_rule(deps_for(mb.uow, berlin(24, 8)), pair="alex", kind="keyword", pattern="urgent", level="high")
    mb.send("c2", "sam", "alex", berlin(24, 17, 0), "URGENT: visa papers")
    urgent = mb.nudge(berlin(24, 21))
    assert len(urgent.queued) == 2
    body = mb.entries()[-1][2]
    assert "Marked urgent by a priority rule: high: mentions urgent" in body


def test_auto_replies_and_manager_messages_open_nothing(mb: Mailbox) -> None:
    mb.send("d1", "sam", "alex", berlin(24, 10), "Out of office",
            headers={"Auto-Submitted": "auto-replied"})  # fmt: skip
    mb.send("d2", "alex", "sam", berlin(24, 10), "Please book a table")
    report = mb.nudge(berlin(24, 12))
    assert (report.queued, report.next_due) == ([], None)


def test_russian_pair(mb: Mailbox) -> None:
    from sqlalchemy import update

    from assistant.store.tables import Pair

    with mb.uow.begin() as s:
        s.execute(update(Pair).values(locale="ru"))
    mb.send("e1", "sam", "alex", berlin(24, 10), "Бюджет")
    mb.nudge(berlin(24, 10, 24))
    [(_, subject, body)] = mb.entries()
    assert subject == "Ждёт вашего ответа: Бюджет"
    assert "24 рабочих минут назад" in body


def test_holidays_of_the_pairs_country_stop_the_clock(mb: Mailbox) -> None:
    from sqlalchemy import update

    from assistant.store.tables import DEFAULT_WORKING_HOURS, Pair

    with mb.uow.begin() as s:
        s.execute(
            update(Pair).values(
                working_hours=DEFAULT_WORKING_HOURS | {"holidays": {"country": "DE"}}
            )
        )
    # 24 Dec 2026 is a Thursday; 25 and 26 Dec are public holidays in Germany.
    mb.send("f2", "sam", "alex", datetime(2026, 12, 24, 17, 50, tzinfo=BERLIN), "Gifts")
    report = mb.nudge(datetime(2026, 12, 24, 18, 30, tzinfo=BERLIN))
    # 10 minutes on the 24th; Christmas, then the weekend: the 80% mark is Monday 09:14.
    assert report.next_due == datetime(2026, 12, 28, 9, 14, tzinfo=BERLIN).astimezone(UTC)


def test_nudges_are_delivered_by_smtp_once(
    mb: Mailbox, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path, smtp=SmtpSettings(host=smtp_server.host, port=smtp_server.port)
    )
    mb.send("g1", "sam", "alex", berlin(24, 10), "Contract")
    mb.nudge(berlin(24, 10, 24))
    mb.nudge(berlin(24, 10, 25))
    channels = default_channels(settings)
    for _ in range(2):
        outbox.drain(mb.uow, channels, lambda: berlin(24, 10, 26).astimezone(UTC), settings.outbox)
    [mail] = smtp_server.wait_for(1)
    assert mail.message["To"].addresses[0].addr_spec == "alex@example.com"
    assert mail.message["Subject"] == "Waiting for your answer: Contract"
    assert len(smtp_server.messages) == 1


def test_the_assistants_answer_to_the_managers_request_is_not_nagged(mb: Mailbox) -> None:
    mb.send("h1", "alex", "sam", berlin(24, 9, 30), "Please book Lisbon flights")
    mb.send("h2", "sam", "alex", berlin(24, 10), "Re: Please book Lisbon flights", reply_to="h1")
    report = mb.nudge(berlin(24, 12))
    assert (report.queued, report.next_due) == ([], None)


def test_aliases_are_the_same_person_for_nudges(uow: UnitOfWork, tmp_path: Path) -> None:
    """Mail to the manager's other address is waiting for them, and their answer from a
    third address (no headers, as archives have it) stops the nudges."""
    now = berlin(23, 8)
    pair = add_pair(deps_for(uow, now), name="alias", manager_email="alex@example.com",
                    assistant_email="sam@example.com", timezone="Europe/Berlin",
                    manager_aliases=["Alexander@example.com", "a.smith@example.com"],
                    assistant_aliases=["samantha@example.com"])  # fmt: skip
    root = tmp_path / "mail"
    account = add_account(deps_for(uow, now), pair="alias", name="inbox", provider="maildir",
                          settings={"path": str(root)})  # fmt: skip
    mb = Mailbox(uow, root, account.id, pair.id, Maildir(str(root), create=True))
    mb.send("d1", "samantha", "alexander", berlin(24, 10), "Budget sign-off")
    reminder = mb.nudge(berlin(24, 10, 24))
    assert [k.split(":")[3:5] for k in reminder.queued] == [["reminder", "manager"]]
    assert [r for r, _s, _b in mb.entries()] == ["alex@example.com"]
    mb.send("d2", "a.smith", "sam", berlin(24, 10, 26), "RE: Budget sign-off")
    done = mb.nudge(berlin(24, 11))
    assert (done.queued, done.next_due) == ([], None)
