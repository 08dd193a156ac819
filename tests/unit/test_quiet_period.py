"""The coalescing window as a quiet period: when a burst of changes goes out (issue 14, 12)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from assistant.domain.quiet_period import Seen, repoll_at, send_at

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=20)
CAP = timedelta(minutes=2)


def at(*seconds: float, high: int | None = None) -> list[Seen]:
    return [Seen(T0 + timedelta(seconds=s), high=i == high) for i, s in enumerate(seconds)]


@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        pytest.param(at(0), 20, id="one-change-waits-the-window"),
        pytest.param(
            at(0, 1, 2, 3, 4), 24, id="five-edits-a-second-apart-one-window-after-the-last"
        ),
        pytest.param(at(0, 10), 30, id="an-undo-10s-later-restarts-the-window"),
        pytest.param(at(0, 8, 16), 36, id="a-16s-burst-is-one-quiet-period"),
        pytest.param(at(*range(0, 200, 10)), 120, id="a-burst-that-never-settles-goes-at-the-cap"),
        pytest.param(at(4, 0, 2), 24, id="order-does-not-matter"),
        pytest.param(at(0, 5, high=1), 5, id="high-priority-at-once"),
        pytest.param(at(0, 5, 9, high=0), 0, id="the-first-high-one-decides"),
    ],
)
def test_send_at(seen: list[Seen], expected: float) -> None:
    assert send_at(seen, WINDOW, CAP) == T0 + timedelta(seconds=expected)


def test_a_cap_below_the_window_counts_as_the_window() -> None:
    assert send_at(at(0, 5), WINDOW, timedelta(seconds=3)) == T0 + WINDOW


def test_a_zero_window_sends_at_once() -> None:
    assert send_at(at(0, 5), timedelta(0), CAP) == T0 + timedelta(seconds=5)


def test_nothing_pending_has_no_send_time() -> None:
    with pytest.raises(ValueError):
        send_at([], WINDOW, CAP)


def test_repolls_fall_on_a_grid_and_the_last_one_when_the_quiet_period_ends() -> None:
    step = timedelta(seconds=5)
    settles = T0 + timedelta(seconds=22)
    assert repoll_at(T0 + timedelta(seconds=1.3), settles, step) == T0 + timedelta(seconds=5)
    assert repoll_at(T0 + timedelta(seconds=5), settles, step) == T0 + timedelta(seconds=10)
    assert repoll_at(T0 + timedelta(seconds=21), settles, step) == settles
    with pytest.raises(ValueError):
        repoll_at(T0, settles, timedelta(0))
