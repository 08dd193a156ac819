"""Reply latency on the real Enron mailboxes of three executives (../shared/evaldata/enron).

The archive has no In-Reply-To/References, files each message in several folders with a
new Message-ID each time, and has date outliers: threading, de-duplication and the summary
must hold up. Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from assistant.domain.latency import Direction, reply_latencies, summarize
from connectors.archive.mailbox import MaildirSource

ENRON = Path(__file__).resolve().parents[2].parent / "shared" / "evaldata" / "enron"
pytestmark = [
    pytest.mark.evaldata,
    pytest.mark.skipif(
        not (ENRON / "maildir").is_dir(), reason=f"evaldata not present at {ENRON / 'maildir'}"
    ),
]
NOW = datetime(2003, 1, 1, tzinfo=UTC)  # after the archive; later outliers (2044) are ignored


def pair_addresses(custodian: str) -> tuple[set[str], set[str]]:
    managers: set[str] = set()
    assistants: set[str] = set()
    with (ENRON / "pairs.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if row["exec_custodian"] == custodian:
                managers |= set(row["exec_addrs"].split())
                assistants |= set(row["asst_addrs"].split())
    return managers, assistants


@pytest.mark.parametrize("custodian", ["lay-k", "skilling-j", "lavorato-j"])
def test_enron_reply_latency(custodian: str) -> None:
    managers, assistants = pair_addresses(custodian)
    assert managers and assistants

    delta = MaildirSource(ENRON / "maildir" / custodian).changes(None)
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
