"""Bursts and undo end to end (issue 14, point 12): Radicale → Huey consumer (scheduler,
polling loop, re-polls) → store → SMTP, measured from outside by ``bench/bursts.py``.

The defaults' ratios three times faster (poll 9 s, window 6 s, re-poll 1.5 s, edits 0.3 s
apart, the undo 3 s later; Huey's scheduler ticks once a second, and a busy machine makes
Radicale slow to take an edit), each try a pair of its own, side by side; bursts and moves
start so that a polling round lands in the middle of them (the case that split a burst
and sent an undone edit). At the defaults themselves: ``bench/bursts.py``.
"""

from __future__ import annotations

import pytest

from bench.bursts import Plan, run


@pytest.mark.slow
def test_bursts_are_one_message_undos_none_and_a_single_change_is_on_time() -> None:
    result = run(Plan(scale=0.3, tries=10, phase="poll"))
    assert (result.bursts_one_message, result.bursts) == (10, 10), (
        result.burst_messages,
        result.burst_spans_s,
    )
    assert (result.undos_silent, result.undos) == (10, 10), result.undo_messages
    assert result.single_missing == 0
    assert result.single_p99_s is not None
    assert result.single_p99_s <= result.single_bound_s, result.single_latency_s
