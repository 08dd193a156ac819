"""One assistant, several managers: one daily digest covering all of them.

Sam assists Alex (digest at 08:00) and Kim (digest at 08:30): at 08:00 one message goes
to Sam, delivered by a real SMTP server, with a part for each manager; Kim's run at 08:30
finds it sent. An assistant of one manager gets the digest as before. Real store (SQLite
and PostgreSQL), calendars synced from ICS files; time is injected.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from assistant.bootstrap import default_channels
from assistant.services import outbox
from assistant.services.digest import digest, pairs_due, preview
from assistant.services.pairs import add_account, add_pair
from assistant.services.sync import sync_calendar
from assistant.store.tables import Pair
from config.settings import Settings, SmtpSettings
from connectors.ics.feed import IcsFeed
from tests.integration.test_digest import (  # noqa: F401 (the world fixture)
    NOW,
    POLICY,
    World,
    at_time,
    vevent,
    world,
)
from tests.support.deps import deps_for
from tests.support.smtp import SmtpServer

BUDGET = vevent("budget", "20261124T140000", "20261124T150000", "Budget call", "Room 7")


def second_manager(w: World, tmp_path: Path, *, assistant: str, name: str = "kim") -> int:
    """Another pair (Kim, digest at 08:30) whose assistant is ``assistant``, one event today."""
    deps = deps_for(w.uow, NOW - timedelta(days=3))
    pair = add_pair(
        deps, name=name, manager_name=f"{name.title()} Park", manager_email=f"{name}@example.com",
        assistant_email=assistant, timezone="Europe/Berlin",
    )  # fmt: skip
    path = tmp_path / f"{name}.ics"
    path.write_text("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//t//EN\n" + BUDGET + "END:VCALENDAR\n")
    account = add_account(
        deps, pair=name, name="work", provider="ics", settings={"location": str(path)}
    )
    sync_calendar(w.uow, account.id, IcsFeed(str(path)), NOW - timedelta(hours=5), POLICY)
    with w.uow.begin() as s:
        s.execute(update(Pair).where(Pair.id == pair.id).values(digest_time="08:30"))
    return pair.id


def test_an_assistant_of_two_managers_gets_one_digest_naming_both(
    world: World,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    smtp_server: SmtpServer,
) -> None:
    kim = second_manager(world, tmp_path, assistant="Sam@Example.com")
    world.digest(NOW)  # Alex's digest time: the one message, for both
    later = NOW + timedelta(minutes=31)
    assert digest(at_time(world.uow, later), kim).already_sent  # Kim's time: sent already
    assert pairs_due(at_time(world.uow, later)) == []
    assert world.states()["Gym"] == "sent"  # Alex's held change was reported

    settings = Settings(
        data_dir=tmp_path, smtp=SmtpSettings(host=smtp_server.host, port=smtp_server.port)
    )
    for _ in range(2):  # drained twice: never sent twice
        outbox.drain(world.uow, default_channels(settings), lambda: later, settings.outbox)
    smtp_server.wait_for(1)  # the drain waits for each reply: what was sent is in
    digests = [m for m in smtp_server.messages if "digest" in m.message["Subject"]]
    assert len(digests) == 1, [m.message["Subject"] for m in digests]
    msg = digests[0].message
    assert [a.addr_spec for a in msg["To"].addresses] == ["sam@example.com"]
    assert msg["Subject"].startswith("Daily digest, Tue 24 Nov: Alex — 4 meetings today")
    assert "; Kim Park — 1 meeting today" in msg["Subject"]
    text = msg.get_body(preferencelist=("plain",)).get_content()
    alex, kim_part = text.split("######## Kim Park's schedule (times in Berlin time) ########")
    assert "for the schedules of Alex, Kim Park" in alex
    assert "######## Alex's schedule (times in Berlin time) ########" in alex
    assert "Board meeting" in alex and "Budget call" not in alex
    assert "Gym" in alex  # the held change, in Alex's part
    assert "Budget call" in kim_part and "Board meeting" not in kim_part
    assert "Oncologist" not in text  # Alex's private event stays busy time
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert "Alex's schedule <small>" in html and "Kim Park's schedule <small>" in html
    assert html.count("<h3>Conflicts today and tomorrow</h3>") == 2
    assert "&lt;" not in html  # each part's HTML is markup, not escaped text

    # the next day's digest is one message again
    world.digest(NOW + timedelta(days=1))
    assert len(world.digests()) == 2


def test_an_assistant_of_one_manager_gets_the_digest_as_before(
    world: World,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    alone = preview(at_time(world.uow, NOW), world.pair_id)
    second_manager(world, tmp_path, assistant="kai@example.com")  # someone else's assistant
    again = preview(at_time(world.uow, NOW), world.pair_id)
    assert again.message == alone.message
    assert again.data == alone.data
    assert alone.message is not None
    assert alone.message.text.startswith("Daily digest for Alex's schedule, Tue 24 Nov.")
    assert "########" not in alone.message.text
    assert alone.message.subject == (
        "Daily digest for Alex, Tue 24 Nov: 4 meetings today, 2 changes, 1 conflict, "
        "1 waiting past SLA"
    )
