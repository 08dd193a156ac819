"""``assistant sync`` as a user runs it, when the mail cannot go out and when it can.

A real process, an ICS account on a file, the SMTP server either closed (nothing listens
on the port) or a real one (aiosmtpd). The first sync is a baseline, not "no change"; an
undelivered notification is one plain line with the reason and the retry time in the
pair's zone, and the exit status says nothing could be delivered (with --json too).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from assistant.domain.timefmt import day
from assistant.entrypoints.embedded import free_port
from tests.e2e.test_cli import Cli
from tests.support.feeds import vevent as _event
from tests.support.feeds import write_feed as _feed
from tests.support.smtp import SmtpServer

BERLIN = ZoneInfo("Europe/Berlin")
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")


def _home(tmp_path: Path, smtp_port: int) -> Cli:
    cli = Cli(tmp_path)
    cli("init", str(tmp_path))
    cfg = tmp_path / "assistant.toml"
    cfg.write_text(
        cfg.read_text() + f'\n[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\n'
        'from_address = "assistant@example.com"\n[outbox]\nbackoff_seconds = 600\n'
    )
    cli("pair", "add", "alex", "--manager", "alex@example.com", "--assistant", "sam@example.com",
        "--timezone", "Europe/Berlin")  # fmt: skip
    return cli


def _local(at: datetime) -> str:
    local = at.astimezone(BERLIN)
    return f"{day(local.date(), 'en')} {local:%H:%M}"


def test_undelivered_mail_is_said_plainly_and_fails_the_run(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    cli = _home(tmp_path, port)
    feed = tmp_path / "cal.ics"
    soon = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    _feed(feed, _event("a", soon, "Board"), _event("b", soon + timedelta(hours=3), "Lunch"))
    cli("account", "add", "work", "--pair", "alex", "--provider", "ics", "--path", str(feed))

    first = cli("sync", "--pair", "alex")
    assert "baseline: 2 events in 1 calendar" in first.stdout
    assert "no change" not in first.stdout

    _feed(feed, _event("a", soon + timedelta(hours=1), "Board"), _event("b", soon, "Lunch"))
    before = datetime.now(UTC)
    done = cli("sync", "--pair", "alex", ok=False)
    after = datetime.now(UTC)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "WARNING" not in done.stderr
    [said] = [line for line in done.stderr.splitlines() if line.strip()]
    prefix = f"1 notification not sent: cannot reach SMTP server 127.0.0.1:{port}"
    assert said.startswith(prefix), said
    retry = re.search(r"\(will retry at (.+)\)$", said)
    assert retry is not None, said
    # the first retry is backoff_seconds later, shown in the pair's zone (Berlin)
    assert retry.group(1) in {_local(t + timedelta(seconds=600)) for t in (before, after)}
    assert not ISO.search(done.stdout + done.stderr)

    _feed(feed, _event("a", soon + timedelta(hours=2), "Board"), _event("b", soon, "Lunch"))
    as_json = cli("sync", "--pair", "alex", "--json", ok=False)
    assert as_json.returncode == 1, (as_json.stdout, as_json.stderr)
    lines = json.loads(as_json.stdout)
    [send] = [line for line in lines if line["kind"] == "send"]
    [not_sent] = send["not_sent"]
    assert not_sent["error"].startswith(f"cannot reach SMTP server 127.0.0.1:{port}")
    assert not_sent["retry_at"] is not None


def test_delivered_mail_is_a_clean_run(tmp_path: Path) -> None:
    with SmtpServer() as smtp:
        cli = _home(tmp_path, smtp.port)
        feed = tmp_path / "cal.ics"
        soon = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
        _feed(feed, _event("a", soon, "Board"))
        cli("account", "add", "work", "--pair", "alex", "--provider", "ics", "--path", str(feed))
        cli("sync", "--pair", "alex")
        _feed(feed, _event("a", soon + timedelta(hours=1), "Board"))
        done = cli("sync", "--pair", "alex")
        assert "1 sent" in done.stdout
        assert done.stderr.strip() == ""
        smtp.wait_for(1)
        assert [m.message["To"] for m in smtp.messages] == ["sam@example.com"]
