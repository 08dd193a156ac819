"""When the tick restarts the polling loop (``assistant.services.polling.loop_alive``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from assistant.services.polling import LoopMark, loop_alive

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def test_a_loop_is_alive_while_its_rounds_keep_coming() -> None:
    assert loop_alive(LoopMark("a", NOW - timedelta(seconds=2)), NOW, interval=2)
    assert loop_alive(LoopMark("a", NOW - timedelta(seconds=8)), NOW, interval=2)  # a busy queue
    assert loop_alive(LoopMark("a", NOW - timedelta(seconds=60)), NOW, interval=30)


def test_a_loop_lost_with_a_killed_worker_is_restarted_at_the_next_tick() -> None:
    """Its rounds stopped coming: at poll interval 2 s, 20 s without a round is a dead loop
    (it took 64 s before, so a worker killed mid-round and restarted stayed deaf for up
    to two minutes: the tick at its start found the loop "alive")."""
    assert not loop_alive(LoopMark("a", NOW - timedelta(seconds=20)), NOW, interval=2)
    assert not loop_alive(LoopMark("a", NOW - timedelta(seconds=70)), NOW, interval=30)
    assert not loop_alive(None, NOW, interval=2)
