"""Nothing lost under faults: the chaos run in its short form (``bench/chaos.py`` runs the
full one: 1,000 changes over 20 pairs).

Changes on several CalDAV calendars while the worker process is killed (SIGKILL) at random
moments, a fault proxy answers a fifth of the provider requests with 401, 429, 5xx or a
hang past the timeout, and the SMTP server refuses a fifth of the sessions: every change
reaches the assistant, and none comes in two different messages; the only repeat allowed
is the same message (same Message-ID) when a kill fell between the SMTP server's 250 and
the outbox's record of it. See ``tests/support/chaos.py``.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.chaos import ChaosPlan, run_chaos


def test_every_change_reaches_the_assistant_once_through_kills_and_faults(
    tmp_path: Path,
) -> None:
    plan = ChaosPlan(pairs=4, changes=60, seconds=25, kill_every=(3.0, 7.0), settle_seconds=120)
    result = run_chaos(plan, tmp_path)
    figures = result.figures()
    print(figures)
    assert result.kills >= 2, figures  # the run did kill the worker
    assert result.provider_faults > 0 and result.smtp_refused > 0, figures  # and inject faults
    assert result.made == 60
    assert result.lost == [], figures
    assert result.in_two_messages == [], figures
    assert result.delivered == result.made
