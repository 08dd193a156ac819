"""A big Maildir is read by a process per core (issue 16.4): the same messages, in the same
order, the same files left out with the same reasons as reading them one by one; and
``assistant latency --maildir`` starts without the database layer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.archive.mailbox import POOL_FILES, MaildirSource, parse_message
from connectors.base import InvalidData

ROOT = Path(__file__).resolve().parents[2]
MTIME = datetime(2021, 6, 1, 12, 0, tzinfo=UTC)


def _message(i: int) -> bytes:
    ask = i % 2 == 0
    sender, to = ("aide@corp.com", "boss@corp.com") if ask else ("boss@corp.com", "aide@corp.com")
    subject = f"Item {i // 2}" if ask else f"Re: Item {i // 2}"
    quote = "" if ask else f"\n-----Original Message-----\nFrom: aide\n\nPlease look at item {i // 2} today, it is urgent and long enough.\n"
    return (
        f"Message-ID: <m{i}@corp.com>\nDate: Tue, 9 May 2000 07:{i % 60:02d}:00 -0700\n"
        f'From: {sender}\nTo: {to}, "Other, Person" <other{i}@corp.com>\n'
        f"Subject: {subject}\n\nDone, see the notes for item {i // 2} below.\n{quote}"
    ).encode()


def _maildir(root: Path, n: int) -> None:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    for i in range(n):
        if i % 97 == 5:
            raw = b""  # empty file
        elif i % 97 == 50:
            raw = b"just some text\nwithout any mail header\n"
        elif i % 97 == 70:
            raw = b"".join(b"X-H%d: v\n" % k for k in range(1_200)) + b"\nbody\n"  # over limit
        else:
            raw = _message(i)
        path = root / "cur" / f"{1_600_000_000 + i}.{i:05d}.host:2,S"
        path.write_bytes(raw)
        os.utime(path, ns=(1_600_000_000_000_000_000 + i, 1_600_000_000_000_000_000 + i))


def _one_by_one(root: Path) -> tuple[list[object], list[str]]:
    """What reading the files in order, one at a time, gives: parse_message on each."""
    messages: list[object] = []
    skipped: list[str] = []
    for path in sorted((root / "cur").iterdir()):
        rel = os.path.relpath(path, root)
        mtime = datetime.fromtimestamp(path.stat().st_mtime_ns / 1e9, tz=UTC)
        try:
            m = parse_message(path.read_bytes(), source_id=rel, folder="INBOX", mtime=mtime,
                              with_text=True)  # fmt: skip
        except InvalidData as exc:
            skipped.append(f"{rel}: {exc}")
            continue
        messages.append((m, dict(m.extra)))
    return messages, skipped


def test_a_big_maildir_read_in_processes_gives_what_reading_one_by_one_gives(
    tmp_path: Path,
) -> None:
    n = POOL_FILES + 300
    _maildir(tmp_path, n)
    heard: list[tuple[int, int | None]] = []
    delta = MaildirSource(tmp_path).changes(None, on_read=lambda done, of: heard.append((done, of)))
    messages, skipped = _one_by_one(tmp_path)
    assert [(m, dict(m.extra)) for m in delta.messages] == messages
    assert list(delta.skipped) == skipped
    assert len(skipped) == sum(1 for i in range(n) if i % 97 in (5, 50, 70))
    assert any("empty file" in s for s in skipped)
    assert any("no mail headers" in s for s in skipped)
    assert any("header lines" in s for s in skipped)
    assert heard[-1] == (n, n)
    assert [d for d, _ in heard] == sorted(d for d, _ in heard)


def test_a_small_maildir_is_read_the_same(tmp_path: Path) -> None:
    _maildir(tmp_path, 120)
    delta = MaildirSource(tmp_path).changes(None)
    messages, skipped = _one_by_one(tmp_path)
    assert [(m, dict(m.extra)) for m in delta.messages] == messages
    assert list(delta.skipped) == skipped


@pytest.mark.parametrize("archive", ["--maildir", "--mbox"])
def test_latency_of_an_archive_starts_without_the_database_layer(
    tmp_path: Path, archive: str
) -> None:
    if archive == "--maildir":
        _maildir(tmp_path / "Maildir", 4)
        where = tmp_path / "Maildir"
    else:
        where = tmp_path / "mail.mbox"
        where.write_bytes(b"".join(b"From x Tue May  9 07:00:00 2000\n" + _message(i) + b"\n"
                                   for i in range(4)))  # fmt: skip
    code = (
        "import sys\n"
        "from assistant.entrypoints.cli.app import main\n"
        f"status = main(['latency', '{archive}', {str(where)!r}, '--manager', 'boss@corp.com',"
        " '--assistant', 'aide@corp.com', '--json'])\n"
        "print('LOADED', sorted(m for m in ('sqlalchemy', 'assistant.store.tables')"
        " if m in sys.modules))\n"
        "raise SystemExit(status)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report, loaded = done.stdout.rsplit("LOADED", 1)
    assert json.loads(report)["read"] == 4
    assert loaded.strip() == "[]"
