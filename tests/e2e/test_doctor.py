"""``assistant doctor`` as a user runs it: a real process, a real SMTP server (aiosmtpd),
an ICS account on a file; one line per check, ✓ or ✗ with the fix, exit 1 on any ✗."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from assistant.entrypoints.embedded import free_port
from tests.e2e.test_cli import Cli
from tests.support.smtp import SmtpServer


def _feed(path: Path) -> None:
    start = datetime.now(UTC) + timedelta(days=1)
    path.write_text(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\nUID:a@t\r\n"
        f"DTSTAMP:{start:%Y%m%dT%H%M%SZ}\r\nDTSTART:{start:%Y%m%dT%H%M%SZ}\r\n"
        f"DTEND:{start + timedelta(hours=1):%Y%m%dT%H%M%SZ}\r\nSUMMARY:Board\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def _home(tmp_path: Path, smtp_port: int) -> Cli:
    cli = Cli(tmp_path)
    cli("init", str(tmp_path))
    cfg = tmp_path / "assistant.toml"
    cfg.write_text(
        cfg.read_text() + f'\n[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\n'
        'from_address = "assistant@example.com"\n'
    )
    cli("pair", "add", "alex", "--manager", "alex@example.com", "--assistant", "sam@example.com")
    return cli


def test_all_well_is_all_ticks_and_exit_0(tmp_path: Path) -> None:
    feed = tmp_path / "cal.ics"
    _feed(feed)
    with SmtpServer() as smtp:
        cli = _home(tmp_path, smtp.port)
        cli("account", "add", "cal", "--provider", "ics", "--path", str(feed))
        done = cli("doctor")
        lines = done.stdout.splitlines()
        names = [line.split(":", 1)[0] for line in lines]
        assert names == ["✓ settings", "✓ database", "✓ key", "✓ smtp", "✓ account 1 cal (ics)",
                         "✓ queue"], done.stdout  # fmt: skip
        checks = cli.json("doctor")
        assert isinstance(checks, list) and all(c["ok"] for c in checks)
        assert smtp.messages == [], "doctor sends nothing"


def test_a_broken_smtp_server_and_account_are_crosses_with_the_fix(tmp_path: Path) -> None:
    feed = tmp_path / "cal.ics"
    _feed(feed)
    closed = free_port()  # nothing listens there
    cli = _home(tmp_path, closed)
    cli("account", "add", "cal", "--provider", "ics", "--path", str(feed))
    feed.unlink()  # the account's file is gone
    done = cli("doctor", ok=False)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert f"✗ smtp: cannot reach SMTP server 127.0.0.1:{closed}" in out
    assert "fix: check smtp.host, smtp.port" in out
    assert "✗ account 1 cal (ics):" in out and "fix:" in out.split("✗ account 1 cal (ics):")[1]
    assert "✓ database" in out and "✓ key" in out
    checks = json.loads(cli("doctor", "--json", ok=False).stdout)
    assert {c["name"]: c["ok"] for c in checks}["smtp"] is False


def test_an_old_database_asks_for_the_upgrade(tmp_path: Path) -> None:
    with SmtpServer() as smtp:
        cli = _home(tmp_path, smtp.port)
        from sqlalchemy import create_engine, text

        engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'assistant.db'}")
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'old'"))
        engine.dispose()
        done = cli("doctor", ok=False)
    assert done.returncode == 1
    assert "✗ database:" in done.stdout and "fix: run `assistant db upgrade`" in done.stdout


def test_init_takes_the_smtp_server_as_flags_and_secrets_by_reference(tmp_path: Path) -> None:
    from config.settings import load

    cli = Cli(tmp_path)
    cli("init", str(tmp_path), "--smtp-host", "mail.example.com", "--smtp-port", "465",
        "--smtp-tls", "ssl", "--smtp-from", "assistant@example.com",
        "--smtp-username", "svc", "--smtp-password-env", "SMTP_PASSWORD")  # fmt: skip
    text = (tmp_path / "assistant.toml").read_text()
    assert 'password = { env = "SMTP_PASSWORD" }' in text
    settings = load(tmp_path / "assistant.toml")
    smtp = settings.smtp
    assert (smtp.host, smtp.port, smtp.ssl, smtp.starttls, smtp.from_address, smtp.username) == (
        "mail.example.com", 465, True, False, "assistant@example.com", "svc")  # fmt: skip
    assert smtp.password is not None and smtp.password.env == "SMTP_PASSWORD"


def test_init_refuses_a_password_without_a_user_name(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    done = cli("init", str(tmp_path / "x"), "--smtp-host", "h", "--smtp-password-env", "P", ok=False)
    assert done.returncode == 2
    assert "a password needs --smtp-username" in done.stdout + done.stderr
    assert not (tmp_path / "x" / "assistant.toml").exists()
