"""A private event leaves the service as busy time only, through every output.

One calendar, really synced from an ICS file: a private event whose title, place,
description, organiser, meeting link and attendees (names and addresses) are unique
markers, and a public event that moves to end ten minutes before it at another place (a
travel-time conflict with the private one). Then every output is produced the way the
service produces it and searched for the markers: the change mail (text and HTML) through
the real outbox to an SMTP server, the webhook to an HTTP receiver, chat through apprise's
json:// to an HTTP receiver, the digest (text, HTML, JSON payload, and what ``assistant
digest --json`` prints), the web pages and JSON API of the assistant (every GET route of
the app), the checkpoint ICS feed and ``assistant changes --json``. The public event's
details must appear in the same outputs, so a test that renders nothing cannot pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import update
from starlette.routing import Route
from starlette.testclient import TestClient

from assistant.adapters.channels.chat import AppriseChannel
from assistant.adapters.channels.smtp import SmtpChannel
from assistant.adapters.channels.webhook import WebhookChannel
from assistant.bootstrap import Service
from assistant.entrypoints.cli.app import main as cli_main
from assistant.entrypoints.web.app import create_app
from assistant.services import outbox
from assistant.services.checkpoint_feed import feed_url
from assistant.services.delegation import create_task
from assistant.services.digest import digest, digest_command
from assistant.services.notifications import dispatch
from assistant.services.pairs import add_account, add_pair
from assistant.services.priorities import add_rule
from assistant.services.sync import SyncPolicy, sync_calendar
from assistant.services.users import add_membership, add_user
from assistant.store.db import UnitOfWork
from assistant.store.tables import Pair
from config.settings import DatabaseSettings, NotifySettings, OutboxSettings, Settings
from connectors.ics.feed import IcsFeed
from tests.support.deps import deps_for
from tests.support.http_receiver import HttpReceiver
from tests.support.smtp import SmtpServer
from tests.support.web import PASSWORD_HASH, login

pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # Tuesday 10:00 in Berlin
POLICY = SyncPolicy(horizon=timedelta(days=14))
NOTIFY = NotifySettings(coalesce_seconds=20, travel_buffer_minutes=30)

# Every detail of the private event, each findable on its own.
MARKERS = {
    "title": "Prvt-title-q7",
    "new title": "Prvt-retitled-q7",
    "place": "Prvt-place-q7 Clinic",
    "new place": "Prvt-newplace-q7 Hospital",
    "description": "Prvt-description-q7",
    "organiser": "prvt-organiser-q7@clinic.example",
    "attendee name": "Prvt-attendee-name-q7",
    "attendee": "prvt-attendee-q7@clinic.example",
    "new attendee": "prvt-second-q7@clinic.example",
    "link": "https://meet.example/prvt-link-q7",
}
RULE_WORD = "hospital"  # in the private event's new place only
PUBLIC_TITLE = "Public strategy review"
PUBLIC_PLACE = "Public Hall Alpha"


def vevent(uid: str, start: str, end: str, body: str) -> str:
    return (
        f"BEGIN:VEVENT\nUID:{uid}\nDTSTAMP:20261101T000000Z\n"
        f"DTSTART;TZID=Europe/Berlin:{start}\nDTEND;TZID=Europe/Berlin:{end}\n{body}END:VEVENT\n"
    )


def private(title: str, place: str, attendees: list[str]) -> str:
    lines = [
        f"SUMMARY:{title}", f"LOCATION:{place}", f"DESCRIPTION:{MARKERS['description']}",
        f"ORGANIZER;CN=Clinic:mailto:{MARKERS['organiser']}", f"URL:{MARKERS['link']}",
        "CLASS:PRIVATE",
        *(f"ATTENDEE;CN={MARKERS['attendee name']};PARTSTAT=ACCEPTED:mailto:{a}" for a in attendees),
        "ATTENDEE;PARTSTAT=ACCEPTED:mailto:alex@example.com",
    ]  # fmt: skip
    return vevent("doctor", "20261124T160000", "20261124T170000", "\n".join(lines) + "\n")


def public(start: str, end: str) -> str:
    body = (
        f"SUMMARY:{PUBLIC_TITLE}\nLOCATION:{PUBLIC_PLACE}\n"
        "ATTENDEE;CN=Pat Public;PARTSTAT=ACCEPTED:mailto:pat@public.example\n"
    )
    return vevent("strategy", start, end, body)


@dataclass
class World:
    svc: Service
    path: Path
    account_id: int
    pair_id: int
    smtp: SmtpServer
    hook: HttpReceiver
    chat: HttpReceiver

    def write(self, *events: str) -> None:
        self.path.write_text(
            "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//t//EN\n" + "".join(events) + "END:VCALENDAR\n"
        )

    def sync(self, at: datetime) -> None:
        sync_calendar(self.svc.uow, self.account_id, IcsFeed(str(self.path)), at, POLICY)

    def drain(self, at: datetime) -> None:
        channels: dict[str, outbox.Channel] = {
            "smtp": SmtpChannel(self.smtp.host, self.smtp.port, "assistant@service.test"),
            "webhook": WebhookChannel(
                f"http://127.0.0.1:{self.hook.port}/hook", "whsec_0123456789"
            ),
            "chat": AppriseChannel([f"json://127.0.0.1:{self.chat.port}/chat"]),
        }
        report = outbox.drain(self.svc.uow, channels, lambda: at, OutboxSettings())
        assert report.claimed and report.claimed == report.sent, report


@pytest.fixture
def receivers() -> Iterator[tuple[HttpReceiver, HttpReceiver]]:
    with HttpReceiver() as hook, HttpReceiver() as chat:
        yield hook, chat


@pytest.fixture
def world(
    uow: UnitOfWork,
    tmp_path: Path,
    smtp_server: SmtpServer,
    receivers: tuple[HttpReceiver, HttpReceiver],
) -> World:
    start = NOW - timedelta(days=2)
    settings = Settings(
        data_dir=tmp_path,
        database=DatabaseSettings(url=uow.engine.url.render_as_string(hide_password=False)),
    )
    svc = Service(settings=settings, engine=uow.engine, uow=uow, clock=lambda: NOW)
    pair = add_pair(deps_for(uow, start), name="alex", manager_name="Alex", manager_email="alex@example.com",
                    assistant_email="sam@example.com", timezone="Europe/Berlin")  # fmt: skip
    path = tmp_path / "cal.ics"
    account = add_account(deps_for(uow, start), pair="alex", name="work", provider="ics",
                          settings={"location": str(path)})  # fmt: skip
    with uow.begin() as s:
        s.execute(
            update(Pair).where(Pair.id == pair.id).values(
                notify_channels=["smtp", "webhook", "chat"], digest_time="08:00",
                last_digest_at=NOW - timedelta(days=1),
            )
        )  # fmt: skip
    add_user(deps_for(uow, start), email="sam@example.com", role="assistant", password_hash=PASSWORD_HASH)
    # A rule the assistant can read (priorities page) that only the private event matches:
    # "why it is urgent" must not tell them the private event mentions it.
    add_rule(deps_for(uow, start), pair="alex", kind="keyword", pattern=RULE_WORD, level="high")
    add_membership(deps_for(uow, start), user="sam@example.com", pair=pair.id, role="assistant")
    w = World(svc, path, account.id, pair.id, smtp_server, *receivers)
    # Before: the public event in the morning, the private one at 16:00.
    w.write(public("20261124T110000", "20261124T120000"),
            private(MARKERS["title"], MARKERS["place"], [MARKERS["attendee"]]))  # fmt: skip
    w.sync(NOW - timedelta(hours=2))
    # Then: the public event moves to end ten minutes before the private one, elsewhere
    # (a travel-time conflict); the private one is renamed, moved to another place and
    # gets another attendee.
    w.write(
        public("20261124T150000", "20261124T155000"),
        private(MARKERS["new title"], MARKERS["new place"],
                [MARKERS["attendee"], MARKERS["new attendee"]]),
    )  # fmt: skip
    w.sync(NOW - timedelta(minutes=30))
    create_task(svc, pair="alex", title="Quarterly plan", delegate="kim@example.com",
                term_start=NOW, deadline=NOW + timedelta(days=4))  # fmt: skip
    return w


def leaks(output: str) -> list[str]:
    low = output.lower()
    return [name for name, marker in MARKERS.items() if marker.lower() in low]


def mail_text(message: Any) -> str:
    """Every header and every decoded part of a received mail."""
    parts = [f"{k}: {v}" for k, v in message.items()]
    for part in message.walk():
        if not part.is_multipart():
            parts.append(str(part.get_content()))
    return "\n".join(parts)


def get_routes(app: Any) -> list[str]:
    """Every GET route of the app that needs nothing but a pair (and a task) id."""
    out = []
    for route in app.routes:
        assert isinstance(route, Route), route
        if "GET" in (route.methods or {"GET"}) and "{" in route.path:
            params = set(re.findall(r"\{(\w+)", route.path))
            if params <= {"pair_id", "task_id"}:
                out.append(route.path)
    return out


def test_a_private_event_is_busy_time_in_every_output(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    outputs: dict[str, str] = {}
    # The change message on every channel, and the digest on every channel.
    dispatch(world.svc.uow, world.pair_id, NOW, NOTIFY, force=True)
    world.drain(NOW)
    digest(world.svc, world.pair_id)
    world.drain(NOW + timedelta(minutes=1))
    mails = world.smtp.wait_for(2)
    assert len(mails) == 2
    for n, mail in enumerate(mails):
        outputs[f"mail {n} ({mail.message['Subject']})"] = mail_text(mail.message)
    hooks = world.hook.requests
    chats = world.chat.requests
    assert len(hooks) == 2 and len(chats) == 2
    for n, r in enumerate(hooks):
        outputs[f"webhook {n}"] = r.body.decode()
    for n, r in enumerate(chats):
        outputs[f"chat {n}"] = r.body.decode()
    # What `assistant digest --json` prints.
    outputs["digest --json"] = json.dumps(digest_command(world.svc, "alex").to_dict(), default=str)
    # What `assistant changes --json` prints, through the CLI's entry point.
    config = tmp_path / "assistant.toml"
    config.write_text(
        f"data_dir = {json.dumps(str(tmp_path))}\n[database]\n"
        f"url = {json.dumps(world.svc.settings.database_url)}\n"
    )
    capsys.readouterr()
    assert cli_main(["--config", str(config), "changes", "--pair", "alex", "--json"]) == 0
    outputs["changes --json"] = capsys.readouterr().out
    # The web pages and the JSON API as the assistant sees them.
    client = TestClient(create_app(world.svc), follow_redirects=False)
    login(client, "sam@example.com")
    task_id = client.get(f"/api/pairs/{world.pair_id}/tasks").json()["tasks"][0]["id"]
    for path in get_routes(client.app):
        url = path.replace("{pair_id:int}", str(world.pair_id))
        url = url.replace("{task_id:int}", str(task_id))
        for query in ("", "?view=week", "?days=7"):
            r = client.get(url + query)
            assert r.status_code in (200, 303), (url, r.status_code)  # 303: /pairs/{id}
            outputs[f"GET {url}{query}"] = r.text
    # The checkpoint feed a calendar app subscribes to.
    feed = client.get(urlsplit(feed_url(world.svc, "alex")).path)
    assert feed.status_code == 200 and "Quarterly plan" in feed.text
    outputs["checkpoint feed"] = feed.text

    found = {name: leaks(text) for name, text in outputs.items()}
    assert {name: what for name, what in found.items() if what} == {}
    told = [n for n, t in outputs.items() if RULE_WORD in t.lower() and "/priorities" not in n]
    assert told == [], "a matched rule tells what the private event says"
    assert "Urgent" in next(n for n in outputs if n.startswith("mail 0")), "the rule matched"
    # The outputs do show events: the public one's details, the private one as busy.
    shows_public = [n for n, t in outputs.items() if PUBLIC_PLACE in t and PUBLIC_TITLE in t]
    for kind in ("mail 0", "mail 1", "webhook 0", "webhook 1", "chat 0", "chat 1",
                 "digest --json", f"GET /pairs/{world.pair_id}/agenda",
                 f"GET /api/pairs/{world.pair_id}/agenda?days=7"):  # fmt: skip
        assert any(n.startswith(kind) for n in shows_public), kind
    assert PUBLIC_TITLE in outputs["changes --json"]
    travel = [n for n, t in outputs.items() if "to get from" in t]
    assert {n.split(" (")[0] for n in travel} >= {"mail 0", "webhook 0", "chat 0"}
    assert any("Busy (private)" in t for n, t in outputs.items() if n.startswith("mail 0"))


def test_the_privacy_function_keeps_only_the_time_of_a_private_event() -> None:
    from dataclasses import fields, replace

    from assistant.domain import privacy
    from assistant.domain.model import Attendee, EventData

    full = EventData(
        uid="u", start=NOW, end=NOW + timedelta(hours=1), summary=MARKERS["title"],
        location=MARKERS["place"], description=MARKERS["description"],
        organizer=MARKERS["organiser"], online_meeting_url=MARKERS["link"],
        attendees=(Attendee(MARKERS["attendee"], MARKERS["attendee name"]),),
        categories=("Prvt-category-q7",), href="/cal/prvt-href-q7.ics", private=True,
        modified_by=MARKERS["new attendee"],
    )  # fmt: skip
    shown = privacy.visible(full, sees_private=False, locale="ru")
    assert leaks(repr(shown)) == [] and "prvt" not in repr(shown).lower()
    assert (shown.start, shown.end, shown.busy, shown.summary) == (
        full.start, full.end, True, "Занят (личное)",
    )  # fmt: skip
    hidden = {f.name for f in fields(EventData)} - set(privacy.SHOWN_FIELDS)
    assert all(getattr(shown, name) != getattr(full, name) for name in hidden)
    assert privacy.visible(full, sees_private=True) is full
    assert privacy.visible(replace(full, private=False), sees_private=False).location
    data = {"summary": MARKERS["title"], "location": MARKERS["place"], "private": True,
            "start": NOW.isoformat(), "kinds": ["relocated"], "new_field": MARKERS["link"]}  # fmt: skip
    assert privacy.visible_json(data, False) == {"private": True, "start": NOW.isoformat(),
                                                 "kinds": ["relocated"]}  # fmt: skip
    assert privacy.visible_json(data, False, label="Busy (private)")["summary"] == "Busy (private)"  # type: ignore[index]
    assert privacy.visible_json(data, True) == data
