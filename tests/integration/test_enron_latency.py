"""Reply latency on the real Enron mailboxes of three executives (../shared/evaldata/enron).

The archive has no In-Reply-To/References, files each message in several folders with a
new Message-ID each time, and has date outliers: threading, de-duplication and the summary
must hold up. Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import csv
import email
import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from email import policy
from functools import cache
from pathlib import Path

import pytest

from assistant.domain.latency import (
    Direction,
    LatencyIndex,
    normalize_subject,
    reply_latencies,
    summarize,
)
from assistant.domain.model import MessageData
from connectors.archive.mailbox import MaildirSource
from connectors.base import MailDelta

ENRON = Path(__file__).resolve().parents[2].parent / "shared" / "evaldata" / "enron"
pytestmark = [
    pytest.mark.evaldata,
    pytest.mark.skipif(
        not (ENRON / "maildir").is_dir(), reason=f"evaldata not present at {ENRON / 'maildir'}"
    ),
]
NOW = datetime(2003, 1, 1, tzinfo=UTC)  # after the archive; later outliers (2044) are ignored


CUSTODIANS = ["lay-k", "skilling-j", "lavorato-j"]


@cache
def mailbox(custodian: str) -> MailDelta:
    """The custodian's mailbox, read once per test process (bodies too: tens of seconds)."""
    return MaildirSource(ENRON / "maildir" / custodian).changes(None)


def pair_addresses(custodian: str) -> tuple[set[str], set[str]]:
    managers: set[str] = set()
    assistants: set[str] = set()
    with (ENRON / "pairs.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if row["exec_custodian"] == custodian:
                managers |= set(row["exec_addrs"].split())
                assistants |= set(row["asst_addrs"].split())
    return managers, assistants


@pytest.mark.parametrize("custodian", CUSTODIANS)
def test_enron_reply_latency(custodian: str) -> None:
    managers, assistants = pair_addresses(custodian)
    assert managers and assistants

    delta = mailbox(custodian)
    assert delta.full and len(delta.messages) > 1000
    assert len(delta.skipped) <= len(delta.messages) // 100

    records = reply_latencies(delta.messages, managers, assistants, NOW, include_cc=True)
    summary = summarize(records, sla_minutes=30)
    print(f"\n{custodian}: {len(delta.messages)} files, skipped {len(delta.skipped)}")
    print(json.dumps(summary.to_dict(), indent=1))

    ids = [r.message_id for r in records]
    assert len(ids) == len(set(ids))
    main = summary.by_direction[Direction.ASSISTANT_TO_MANAGER.value]
    assert main.count > 0
    for figures in (summary, *summary.by_direction.values()):
        assert figures.answered + figures.open == figures.count
        assert 0 <= figures.within_sla <= figures.answered
        if figures.answered:
            assert figures.median_minutes is not None and figures.p90_minutes is not None
            assert 0 < figures.median_minutes <= figures.p90_minutes <= (figures.max_minutes or 0)
        else:
            assert figures.median_minutes is None
            # nothing answered: the share is the overdue ones' (0%), or unknown without any
            expected = 0.0 if figures.overdue else None
            assert figures.within_sla_share == expected
    assert sum(f.count for f in summary.by_direction.values()) == summary.count
    for r in records:
        assert r.sent_at <= NOW
        if r.replied_at is not None:
            assert r.replied_at > r.sent_at and r.wall_minutes and r.wall_minutes > 0
        else:
            assert r.waiting_minutes and r.waiting_minutes > 0


# ---------------------------------------------------------------- issue 14, points 1-5
# Each test finds its cases in the real mail with rules of its own (subjects, the words of
# the files' text), then asks the product about them.

WORD = re.compile(r"\w+")
QUOTE_START = re.compile(
    r"^\s*(-+\s*original message|from:|to:|subject:|.*wrote:\s*$)", re.I | re.M
)


def text_of(custodian: str, m: MessageData) -> str:
    raw = (ENRON / "maildir" / custodian / m.source_id).read_bytes()
    part = email.message_from_bytes(raw, policy=policy.default).get_body(("plain",))
    return str(part.get_content()) if part is not None else ""  # type: ignore[attr-defined]


def exec_addresses(custodian: str) -> set[str]:
    return pair_addresses(custodian)[0]


def test_enron_replies_from_another_alias_pair() -> None:
    """lavorato-j: people write to one of John Lavorato's addresses and he answers from
    another (pairs.csv lists them). Each such subject reply pairs, in the same minutes as
    one sent to the address he answered from."""
    execs = exec_addresses("lavorato-j")
    messages = mailbox("lavorato-j").messages
    by_subject: dict[str, list[MessageData]] = defaultdict(list)
    for m in messages:
        if key := normalize_subject(m.subject):
            by_subject[key].append(m)
    probes = other_alias = 0
    for group in by_subject.values():
        for reply in group:
            if reply.from_addr not in execs or not reply.subject.lower().startswith("re"):
                continue
            for ask in group:
                addressed = [a for a in ask.to if a in execs]
                gap = reply.sent_at - ask.sent_at
                if ask.from_addr in execs or ask.from_addr not in reply.to or not addressed:
                    continue
                if not timedelta(0) < gap <= timedelta(days=14):
                    continue
                probes += 1
                other_alias += reply.from_addr not in addressed
                records = reply_latencies([ask, reply], execs, {ask.from_addr}, NOW)
                answered = {r.message_id: r for r in records}[ask.message_id]
                assert answered.reply_message_id == reply.message_id, (
                    ask.source_id,
                    reply.source_id,
                )
                assert answered.wall_minutes == gap.total_seconds() / 60
    print(
        f"\nlavorato-j: {probes} subject replies by the executive, {other_alias} from another alias"
    )
    assert other_alias > 0 and probes > other_alias


def quoted_replies(custodian: str) -> list[tuple[MessageData, MessageData]]:
    """(message, reply) where the reply's quoted part holds the message's first 12 words
    (8 of them different), the subjects differ (or are blank) and each wrote to the other."""
    messages = mailbox(custodian).messages
    sent_to: dict[tuple[str, str], list[MessageData]] = defaultdict(list)
    for m in messages:
        for a in m.to + m.cc:
            sent_to[(m.from_addr, a)].append(m)
    texts: dict[str, str] = {}

    def text(m: MessageData) -> str:
        if m.message_id not in texts:
            texts[m.message_id] = text_of(custodian, m)
        return texts[m.message_id]

    found = []
    for reply in messages:
        for a in reply.to + reply.cc:
            for ask in sent_to.get((a, reply.from_addr), ()):
                if ask.from_addr == reply.from_addr:
                    continue
                if not timedelta(0) < reply.sent_at - ask.sent_at <= timedelta(days=30):
                    continue
                subject = normalize_subject(ask.subject)
                if subject and subject == normalize_subject(reply.subject):
                    continue
                own = text(ask)
                cut = QUOTE_START.search(own)
                words = WORD.findall((own[: cut.start()] if cut else own).casefold())[:12]
                quoted = QUOTE_START.search(text(reply))
                if len(set(words)) < 8 or quoted is None:  # not "[IMAGE] [IMAGE]..."
                    continue
                tail = " ".join(WORD.findall(text(reply)[quoted.start() :].casefold()))
                if " ".join(words) in tail:
                    found.append((ask, reply))
    return found


@pytest.mark.parametrize("custodian", CUSTODIANS)
def test_enron_quoted_replies_pair_and_the_answer_is_not_open(custodian: str) -> None:
    """Replies with a blank ("RE:") or changed subject that quote the message they answer:
    no subject rule finds them; the quote does, and the answer waits for nothing."""
    pairs = quoted_replies(custodian)
    blank = sum(1 for _ask, reply in pairs if not normalize_subject(reply.subject))
    print(f"\n{custodian}: {len(pairs)} quoted replies with another subject, {blank} blank")
    assert pairs
    for ask, reply in pairs:
        people = ({reply.from_addr}, {ask.from_addr})
        records = reply_latencies([ask, reply], *people, NOW, include_cc=True)
        by_id = {r.message_id: r for r in records}
        assert by_id[ask.message_id].reply_message_id == reply.message_id, (
            ask.source_id, reply.source_id,
        )  # fmt: skip
        assert reply.message_id not in by_id


def copies_with_other_recipients(custodian: str) -> list[list[MessageData]]:
    """Files with the same sender, subject and words of text, and the same Date (or one
    exactly 12 h off: the archive lost AM/PM on some copies), but other To/Cc."""
    groups: dict[tuple[str, int, str, str], list[MessageData]] = defaultdict(list)
    for m in mailbox(custodian).messages:
        words = " ".join(WORD.findall(text_of(custodian, m).casefold()))
        groups[(m.from_addr, int(m.sent_at.timestamp()) % 43200, m.subject, words)].append(m)
    return [
        g for g in groups.values()
        if len({frozenset(m.to + m.cc) for m in g}) > 1
        and max(m.sent_at for m in g) - min(m.sent_at for m in g) <= timedelta(hours=12)
    ]  # fmt: skip


def test_enron_copies_with_other_recipients_count_once() -> None:
    """lavorato-j files his sent mail in several folders; some copies have one more
    recipient. Each such message is measured once, whoever it is taken to be between."""
    groups = copies_with_other_recipients("lavorato-j")
    shared = 0  # messages whose copies name the same recipient among different others
    for group in groups:
        sender = group[0].from_addr
        named = Counter(a for m in group for a in set(m.to + m.cc) - {sender})
        to = min(named, key=lambda a: (-named[a], a))  # the recipient most copies name
        shared += len({frozenset(m.to + m.cc) for m in group if to in m.to + m.cc}) > 1
        records = reply_latencies(group, {sender}, {to}, NOW, include_cc=True)
        assert len(records) == 1, [m.source_id for m in group]
        index = LatencyIndex({sender}, {to}, include_cc=True)
        index.add(group, NOW)
        assert len(index) == 1 and index.records(NOW) == records
    print(f"\nlavorato-j: {len(groups)} messages filed with different recipients ({shared} shared)")
    assert shared > 0


def test_enron_latency_command_reads_and_shows_both_directions(tmp_path: Path) -> None:
    """``assistant latency`` on a real mailbox: how many messages it read, both
    directions, the CSV it wrote."""
    folder = ENRON / "maildir" / "skilling-j"
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    managers, assistants = pair_addresses("skilling-j")
    args = [sys.executable, "-m", "assistant.entrypoints.cli.app", "latency", "--maildir",
            str(folder), "--csv", str(tmp_path / "r.csv")]  # fmt: skip
    for a in sorted(managers):
        args += ["--manager", a]
    for a in sorted(assistants):
        args += ["--assistant", a]
    env = {"COLUMNS": "200", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"}
    env |= {k: v for k, v in __import__("os").environ.items() if k.startswith("PYTHON")}
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    print(done.stdout)
    assert f"read {files} message(s) from {folder}" in done.stdout
    assert "assistant → manager" in done.stdout and "manager → assistant" in done.stdout
    assert f"as CSV to {tmp_path / 'r.csv'}" in done.stdout
    rows = (tmp_path / "r.csv").read_text().splitlines()
    assert len(rows) > 1
