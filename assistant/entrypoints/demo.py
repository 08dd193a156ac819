"""``assistant demo``: the whole product on embedded servers, in about half a minute.

Starts Radicale (CalDAV) and an SMTP sink on 127.0.0.1 in a temporary folder, seeds a
manager's week from ``examples/``, and plays a scenario through the real path: Huey
jobs, the CalDAV connector with change tokens, change detection, the outbox, SMTP.
Nothing outside this process is needed or left running.

The story runs on its own clock: it starts at 08:00 on the Monday of the week the demo
is run in (the manager's zone), whatever the hour or the day, and advances with real
time from there. So the week shown is always this week, and the latency section, the
nudges and the feedback tell the same story on a Monday morning as on a Sunday night.
``--serve`` then prints a one-time login link and a generated password for the manager
and for the assistant; each link opens the web app on the demo's week.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from assistant.entrypoints.demo_data import (
    ASSISTANT,
    MANAGER,
    STORY_START,
    ZONE,
    StoryClock,
    examples_dir,
    shifted_week,
    week_monday,
    write_sample_maildir,
)


@dataclass(frozen=True)
class Login:
    """A demo user's ready login: a one-time link onto the demo's week, and a password."""

    role: str
    name: str
    email: str
    password: str
    link: str


class Demo:
    def __init__(self, console: Console, root: Path, now: datetime) -> None:
        self.c = console
        self.root = root
        self.stack = ExitStack()
        self.monday = week_monday(now.astimezone(ZoneInfo(ZONE)).date())
        self.clock = StoryClock(datetime.combine(self.monday, STORY_START, ZoneInfo(ZONE)))
        self.users: list[tuple[str, str, str, str, int]] = []  # role, name, email, pw, id

    # ------------------------------------------------------------------ plumbing

    def start(self) -> None:
        from assistant.bootstrap import build
        from assistant.entrypoints.embedded import EmbeddedRadicale
        from assistant.entrypoints.runner import start_consumer
        from assistant.entrypoints.smtp_sink import SmtpSink
        from assistant.store.migrate import upgrade
        from config.settings import load
        from jobs import runtime
        from jobs.queue import build_huey
        from jobs.tasks import register

        t0 = time.monotonic()
        from assistant.entrypoints.embedded import free_port

        self.radicale = self.stack.enter_context(EmbeddedRadicale(self.root / "radicale"))
        self.sink = self.stack.enter_context(SmtpSink())
        self.web_port = free_port()
        self.settings = load(
            None,
            data_dir=str(self.root / "data"),
            database={"url": ""},
            queue={"backend": "sqlite", "workers": 2, "scheduler": False},
            smtp={
                "host": self.sink.host,
                "port": self.sink.port,
                "from_address": "assistant-service@example.com",
            },
            sync={"http_timeout_seconds": 10},
            notify={"coalesce_seconds": 2},
            web={"host": "127.0.0.1", "port": self.web_port, "login_link_minutes": 60},
        )
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(self.settings.database_url)
        self.svc = build(self.settings, clock=self.clock)
        runtime.install(self.svc)
        self.stack.callback(runtime.install, None)
        self.stack.callback(self.svc.engine.dispose)
        huey = build_huey(self.settings)
        self.jobs = register(huey, periodic=False)
        consumer = start_consumer(huey, self.settings)
        self.stack.callback(consumer.stop, True)
        self.c.print(
            f"[dim]Radicale (CalDAV) at {self.radicale.url} · SMTP sink at "
            f"{self.sink.host}:{self.sink.port} · Huey consumer with 2 workers · "
            f"data in {self.root} · ready in {time.monotonic() - t0:.1f}s[/dim]"
        )
        start = self.clock.start.astimezone(ZoneInfo(ZONE))
        self.c.print(
            f"The demo's clock starts at {day_of(start)} {start:%Y %H:%M} ({ZONE}): this week's "
            "Monday morning, whatever the hour you run it, so the story is always the same."
        )

    def close(self) -> None:
        self.stack.close()

    def run_job(self, result: Any, what: str) -> Any:
        value = result.get(blocking=True, timeout=60)
        if value is None:
            raise RuntimeError(f"{what}: the job gave no result")
        return value

    # ------------------------------------------------------------------- scenario

    def step(self, n: int, title: str) -> None:
        self.c.print()
        self.c.rule(f"[bold]{n}. {title}")

    def play(self) -> None:
        from assistant.services.pairs import add_account, add_pair

        monday = self.monday
        self.step(1, "A manager's calendar on a CalDAV server")
        self.calendar_url = self.radicale.new_calendar("calendar", user="alex")
        self.http = self.stack.enter_context(httpx.Client(timeout=10))
        sample = (examples_dir() / "manager-week.ics").read_text()
        self.events = dict(shifted_week(sample, monday))
        for uid, body in self.events.items():
            self.put(uid, body)
        pair = add_pair(
            self.svc,
            name="alex",
            manager_name=MANAGER[0],
            manager_email=MANAGER[1],
            assistant_name=ASSISTANT[0],
            assistant_email=ASSISTANT[1],
            timezone=ZONE,
        )
        account = add_account(
            self.svc,
            pair=pair.id,
            name="work calendar",
            provider="caldav",
            settings={"url": self.calendar_url},
        )
        self.account_id = account.id
        self.add_users(pair.id)
        first = self.run_job(self.jobs.sync_account(account.id), "first sync")
        self.c.print(
            f"{len(self.events)} events for the week of {day_of(monday)} {monday:%Y} written "
            "to CalDAV; "
            f"first sync (full, sync-token stored): {first.get('changes', 0)} notifications — "
            "the first look is a baseline, not news."
        )
        self.show_agenda(monday)

        self.step(2, "The manager's week changes")
        from assistant.services.priorities import add_rule, list_rules

        add_rule(self.svc, pair=pair.id, kind="keyword", pattern="board", level="high",
                 note="the board comes first")  # fmt: skip
        add_rule(self.svc, pair=pair.id, kind="protected", pattern="mon-fri 08:00-09:00",
                 level="high", note="school run")  # fmt: skip
        rules = "; ".join(r.text for r in list_rules(self.svc, pair.id))
        self.c.print(f"The manager's priorities, shared with the assistant: {rules}.")
        board = self.events["demo-board@example.com"]
        thursday = (monday + timedelta(days=3)).strftime("%Y%m%d")
        tuesday = (monday + timedelta(days=1)).strftime("%Y%m%d")
        moved = board.replace(f"{tuesday}T100000", f"{thursday}T133000")
        moved = moved.replace(f"{tuesday}T120000", f"{thursday}T150000")
        moved = moved.replace("Boardroom\\, 12th floor", "Video call (Teams)")
        self.put("demo-board@example.com", moved)
        self.delete("demo-investor-lunch@example.com")
        self.c.print(
            "Board meeting moved to Thursday 13:30 as a video call (onto the product review); "
            "investor lunch cancelled."
        )
        t0 = time.monotonic()
        res = self.run_job(self.jobs.sync_account(account.id), "sync")
        mails = self.sink.wait_for(1, timeout=30)
        took = time.monotonic() - t0
        self.c.print(
            f"Incremental sync: {res.get('changes')} changes → 1 message delivered by SMTP "
            f"in {took:.1f}s."
        )
        self.show_mail(mails[-1].message)
        again = self.run_job(self.jobs.sync_account(account.id), "sync")
        self.run_job(self.jobs.drain_outbox(), "drain")
        self.c.print(
            f"Synced and drained again: {again.get('changes')} changes, "
            f"{len(self.sink.received)} message(s) in total — nothing is sent twice."
        )

        self.step(3, "A task delegated with a term: Red Line and Dead Line")
        self.delegate(pair.id, monday)

        self.step(4, "How fast does the manager answer the assistant?")
        self.latency(pair.id, monday)

        self.step(5, "The Dead Line: the manager answers the feedback link on a phone")
        self.feedback(self.task_id)

    def add_users(self, pair_id: int) -> None:
        """The manager and the assistant as web users, each with a password made now."""
        from assistant.services.users import add_membership, add_user

        for role, (name, email) in (("manager", MANAGER), ("assistant", ASSISTANT)):
            password = secrets.token_urlsafe(12)
            user_id = add_user(self.svc, email=email, role=role, name=name, password=password)
            add_membership(self.svc, user=user_id, pair=pair_id, role=role)
            self.users.append((role, name, email, password, user_id))
        self.pair_id = pair_id

    def logins(self, base_url: str) -> list[Login]:
        """A fresh one-time link for each demo user, opening the web app on the demo's week."""
        from assistant.entrypoints.web.auth import issue_login_link

        week = quote(f"/pairs/{self.pair_id}/week?date={self.monday.isoformat()}", safe="")
        out = []
        for role, name, email, password, user_id in self.users:
            token = issue_login_link(self.svc, user_id)
            link = f"{base_url.rstrip('/')}/login/link/{token}?next={week}"
            out.append(Login(role, name, email, password, link))
        return out

    def put(self, uid: str, body: str) -> None:
        url = f"{self.calendar_url}{uid.replace('@', '_')}.ics"
        self.http.put(
            url, content=body, headers={"Content-Type": "text/calendar"}
        ).raise_for_status()

    def delete(self, uid: str) -> None:
        self.http.delete(f"{self.calendar_url}{uid.replace('@', '_')}.ics").raise_for_status()

    def show_agenda(self, monday: date) -> None:
        from sqlalchemy import select

        from assistant.domain import privacy
        from assistant.store.snapshots import from_row
        from assistant.store.tables import EventSnapshot

        tz = ZoneInfo(ZONE)
        start = datetime.combine(monday, dtime(), tz)
        table = Table(title=f"Week of {day_of(monday)} ({ZONE})", title_justify="left")
        for col in ("when", "what", "where"):
            table.add_column(col)
        with self.svc.uow.read() as session:
            rows = session.scalars(
                select(EventSnapshot)
                .where(
                    EventSnapshot.start_utc >= start,
                    EventSnapshot.start_utc < start + timedelta(days=5),
                )
                .order_by(EventSnapshot.start_utc)
            ).all()
            for r in rows:
                when = (
                    f"{r.start_date:%a %d} all day"
                    if r.all_day and r.start_date
                    else f"{r.start_utc.astimezone(tz):%a %d %H:%M}–"
                    f"{r.end_utc.astimezone(tz):%H:%M}"
                )
                e = from_row(r)  # as the assistant sees it: a private event is busy time
                what = privacy.title(e.summary, e.private, sees_private=False)
                where = privacy.place(e, sees_private=False)
                table.add_row(when, ("⚑ " if e.own_marker else "") + what, where)
        self.c.print(table)

    def show_mail(self, msg: EmailMessage) -> None:
        body = msg.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        self.c.print(
            Panel(
                text.rstrip(),
                title=f"To: {msg['To']} · Subject: {msg['Subject']}",
                title_align="left",
                subtitle=f"Message-ID {msg['Message-ID']}",
            )
        )

    def delegate(self, pair_id: int, monday: date) -> None:
        from assistant.services import delegation
        from assistant.services.delegation_views import task_view
        from connectors.caldav.calendar import CalDavCalendar

        tz = ZoneInfo(ZONE)
        start = datetime.combine(monday, dtime(9), tz).astimezone(UTC)
        deadline = datetime.combine(monday + timedelta(days=3), dtime(17), tz).astimezone(UTC)
        task = delegation.create_task(
            self.svc,
            pair=pair_id,
            title="Prepare the Q3 board pack",
            delegate="",
            term_start=start,
            deadline=deadline,
            result="Deck and appendix approved by the CFO",
            measure="CFO sign-off; numbers match the ledger",
            resources="Finance team, last year's deck",
            why="The board decides the budget on it",
        )
        self.task_id = task.id
        res = self.run_job(self.jobs.write_checkpoints(task.id), "checkpoints")
        view = task_view(self.svc, task.id)
        self.c.print(
            f"Task {task.id}: “{view.title}”, term {local(view.term_start)} → "
            f"{local(view.deadline)}"
        )
        for c in view.checkpoints:
            self.c.print(
                f"  {c.label}: line at {local(c.line_at)}, blocked {local(c.start)}–"
                f"{local(c.end, day=False)}"
            )
        self.c.print(f"  ({len(res['written'])} events written to the manager's calendar)")
        cal = CalDavCalendar(self.calendar_url)
        ev = cal.get_event(view.checkpoints[0].event_uid)
        if ev is not None:
            self.c.print(Panel(ev.description.strip(), title=ev.summary, title_align="left"))
        new_deadline = deadline - timedelta(days=1)
        delegation.update_task(self.svc, task.id, deadline=new_deadline)
        self.run_job(self.jobs.write_checkpoints(task.id), "checkpoints")
        again = self.run_job(self.jobs.write_checkpoints(task.id), "checkpoints")
        view = task_view(self.svc, task.id)
        ours = [e for e in self.calendar_events() if e.own_marker]
        self.c.print(
            "Deadline brought forward by a day → events moved: "
            + "; ".join(f"{c.label} {local(c.start)}" for c in view.checkpoints)
            + f". Checkpoint events in the calendar: {len(ours)} (run again: "
            f"{len(again['written'])} written)."
        )
        res = self.run_job(self.jobs.sync_account(self.account_id), "sync")
        self.c.print(
            f"Sync after our own writes: {res.get('changes')} changes reported "
            "(our events are not news)."
        )
        self.show_agenda(monday)

    def calendar_events(self) -> list[Any]:
        from connectors.base import Window
        from connectors.caldav.calendar import CalDavCalendar

        now = self.svc.now()
        delta = CalDavCalendar(self.calendar_url).changes(
            None, Window(now - timedelta(days=7), now + timedelta(days=30), ZONE)
        )
        return [e for r in delta.resources for e in r.events]

    def latency(self, pair_id: int, monday: date) -> None:
        from assistant.services.mail import import_mail, latency_of_pair
        from assistant.services.pairs import add_account
        from connectors.archive.mailbox import MaildirSource

        maildir = self.root / "mail"
        count = write_sample_maildir(maildir, monday - timedelta(days=7))
        account = add_account(
            self.svc,
            pair=pair_id,
            name="mail export",
            provider="maildir",
            settings={"path": str(maildir)},
        )
        imported = import_mail(self.svc, account.id, MaildirSource(maildir))
        result = latency_of_pair(self.svc, pair_id, None)
        self.c.print(f"{count} messages written to a Maildir; {imported.new} imported.")
        table = Table(title="Messages and replies", title_justify="left")
        for col in ("direction", "subject", "sent", "answered after (wall/working min)"):
            table.add_column(col)
        tz = ZoneInfo(ZONE)
        for m in result.messages:
            sent = m.sent_at.astimezone(tz)
            answer = (
                "open"
                if m.replied_at is None
                else f"{m.wall_minutes or 0:.0f} / {m.working_minutes or 0:.0f}"
            )
            arrow = "A → M" if m.direction == "assistant_to_manager" else "M → A"
            table.add_row(arrow, m.subject[:48], f"{day_of(sent)} {sent:%H:%M}", answer)
        self.c.print(table)
        s = result.summary
        self.c.print(
            f"Assistant → manager: {s.count} messages, {s.answered} answered, "
            f"{s.open} open; "
            f"median {fmt(s.median_minutes)} working min "
            f"({fmt(s.wall_median_minutes)} wall), p90 {fmt(s.p90_minutes)} working min "
            f"({fmt(s.wall_p90_minutes)} wall); "
            f"within the 30-working-minute SLA: {pct(s.within_sla_share)}."
        )
        self.nudges(pair_id)

    def nudges(self, pair_id: int) -> None:
        from assistant.services import pipeline

        before = len(self.sink.received)
        [report] = pipeline.nudge_pair(self.svc, pair_id).nudged  # queued, then delivered
        if report.held:
            when = report.next_due.astimezone(ZoneInfo(ZONE)) if report.next_due else None
            self.c.print(
                f"{report.held} open message(s) past the SLA; it is outside the manager's "
                f"working hours, so the reminders wait until {when:%a %H:%M}."
                if when
                else f"{report.held} reminder(s) held outside working hours."
            )
            return
        mails = self.sink.wait_for(before + len(report.queued), timeout=20)[before:]
        self.c.print(f"Nudges for the open messages past the SLA: {len(report.queued)} sent.")
        for m in mails:
            self.c.print(f"  To {m.message['To']}: {m.message['Subject']}")
        [again] = pipeline.nudge_pair(self.svc, pair_id).nudged
        self.c.print(f"Run again: {len(again.queued)} more (each stage goes once per message).")

    def feedback(self, task_id: int) -> None:
        import threading

        import uvicorn

        from assistant.entrypoints.web.app import create_app
        from assistant.services.delegation_views import task_view
        from assistant.services.feedback import score

        view = task_view(self.svc, task_id)
        dead = next(c for c in view.checkpoints if c.kind == "dead_line")
        from connectors.caldav.calendar import CalDavCalendar

        event = CalDavCalendar(self.calendar_url).get_event(dead.event_uid)
        link = next(w for w in (event.description if event else "").split() if "/feedback/" in w)
        config = uvicorn.Config(
            create_app(self.svc), host="127.0.0.1", port=self.web_port, log_level="warning"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            phone = {"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X)"}
            with httpx.Client(timeout=10, headers=phone) as browser:
                for _ in range(100):
                    try:
                        page = browser.get(link)
                        break
                    except httpx.TransportError:
                        time.sleep(0.05)
                self.c.print(
                    f"The Dead Line event links to a signed page: {link[:60]}… "
                    f"(HTTP {page.status_code}, {len(page.text)} bytes, made for a phone)"
                )
                form = {"csrf": browser.cookies.get("fb_csrf") or "", "percent_done": "90",
                        "on_time": "yes", "quality": "Numbers match the ledger",
                        "comment": "Great work on the appendix"}  # fmt: skip
                sent = browser.post(link, data=form)
                self.c.print(f"Answered: 90% done, on time → HTTP {sent.status_code}.")
                forged = browser.get(link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB"))
                self.c.print(f"A tampered link is refused: HTTP {forged.status_code}.")
        finally:
            server.should_exit = True
            thread.join(10)
        view = task_view(self.svc, task_id)
        s = score(self.svc, None)
        self.c.print(
            f"Task {task_id} is now {view.state}. Delegation score of {s.manager}: "
            f"{s.good} of {s.accepted} accepted tasks done on time with 80%+ "
            f"({pct(s.share)}) — good delegation is 80% or more."
        )


def day_of(d: date) -> str:
    """``Mon 7 Dec``."""
    return f"{d:%a} {d.day} {d:%b}"


def local(iso: str | None, day: bool = True) -> str:
    """An instant the views give as ISO 8601, as a person reads it: ``Tue 8 Dec 13:00``."""
    if not iso:
        return "—"
    t = datetime.fromisoformat(iso).astimezone(ZoneInfo(ZONE))
    return f"{t:%a} {t.day} {t:%b %H:%M}" if day else f"{t:%H:%M}"


def fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f}"


def pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.0%}"


def run_demo(
    console: Console,
    serve: bool = False,
    keep: Path | None = None,
    now: datetime | None = None,
) -> int:
    """Play the demo in the week of ``now`` (default: the wall clock's now)."""
    with ExitStack() as outer:
        if keep is None:
            root = Path(outer.enter_context(tempfile.TemporaryDirectory(prefix="assistant-demo-")))
        else:
            root = keep.resolve()
            root.mkdir(parents=True, exist_ok=True)
        demo = Demo(console, root, now or datetime.now(UTC))
        outer.callback(demo.close)
        console.rule("[bold]exec-assistant demo")
        demo.start()
        demo.play()
        console.print()
        console.rule("[bold]Done")
        if serve:
            serve_web(console, demo)
        else:
            console.print(
                "To look around in the browser: `assistant demo --serve` keeps the web app up "
                "and prints a login for the manager and the assistant."
            )
        console.print("All embedded servers stopped; nothing left running.")
    return 0


def serve_web(console: Console, demo: Demo) -> None:
    import uvicorn

    from assistant.entrypoints.web.app import create_app

    host, port = demo.settings.web.host, demo.settings.web.port
    base = f"http://{host}:{port}"
    console.print(
        f"Web app on {base}/ — open a link below to see the week of {day_of(demo.monday)} "
        "signed in (each link works once, for an hour), or log in at "
        f"{base}/login with the address and password. Ctrl-C stops."
    )
    table = Table(show_header=True, title_justify="left")
    for col in ("who", "email", "password"):
        table.add_column(col)
    logins = demo.logins(base)
    for login in logins:
        table.add_row(f"{login.name} ({login.role})", login.email, login.password)
    console.print(table)
    for login in logins:  # whole, unwrapped: a terminal can open a link only in one piece
        console.print(
            f"{login.role}: {login.link}", soft_wrap=True, highlight=False, markup=False
        )
    uvicorn.run(create_app(demo.svc), host=host, port=port, log_level="warning")
