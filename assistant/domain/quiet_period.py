"""When a burst of changes has settled: the coalescing window as a quiet period.

A pair's pending changes go out as one message once no new change has been seen for the
window (``notify.coalesce_seconds``): every change restarts it, so a burst of edits, or an
edit and its undo, are seen whole before anything is sent. A burst that keeps changing
goes out at the latest ``cap`` (``notify.coalesce_max_seconds``) after its first change,
and a high-priority change goes at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Seen:
    """One pending change: when it was seen, and whether it is high priority."""

    at: datetime
    high: bool = False


def send_at(changes: Sequence[Seen], window: timedelta, cap: timedelta) -> datetime:
    """When the pending ``changes`` go out (at the earliest; quiet hours may hold them).

    The first high-priority change sends at once (when it was seen); otherwise the newest
    change plus the window, but never later than the first change plus the cap (a cap
    below the window counts as the window).
    """
    if not changes:
        raise ValueError("no pending changes")
    high = [c.at for c in changes if c.high]
    if high:
        return min(high)
    first = min(c.at for c in changes)
    last = max(c.at for c in changes)
    return min(last + window, first + max(cap, window))


def repoll_at(now: datetime, settles_at: datetime, step: timedelta) -> datetime:
    """When to poll a calendar again while its pair's changes settle (until ``settles_at``).

    The next instant on a grid of ``step`` (counted from the epoch) after ``now``, and the
    last one at ``settles_at`` itself: a sync and a re-poll chain already running plan
    the same instants, so they can be claimed once.
    """
    if step <= timedelta(0):
        raise ValueError("step must be positive")
    epoch = datetime(1970, 1, 1, tzinfo=now.tzinfo)
    steps = (now - epoch) // step + 1
    return min(epoch + steps * step, settles_at)
