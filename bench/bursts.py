"""Bursts and undo, measured from outside (issue 14, point 12).

Starts, in a temporary folder, an embedded Radicale (CalDAV), an SMTP sink that notes
when each message arrives, and the service with a Huey consumer that runs the scheduler,
as ``assistant run`` does (``bench/running.py`` builds them). Each try has a pair
and a calendar of its own; the tries run side by side, each by plain HTTP to Radicale:

- ``burst``: five edits of one event, ``gap`` (1 s) apart → one message expected;
- ``undo``: an event moved, and moved back ``undo_after`` (10 s) later → no message;
- ``single``: one change → its message within poll interval + window + 2 s (p99).

``--phase random`` starts each try at a random moment of the polling cycle (what a
manager does); ``--phase poll`` starts bursts and moves so that a polling round lands in
the middle of them (the case that split bursts and sent undone edits). A burst's or an
undo's messages are counted until two poll intervals and windows after its last edit.

``--scale`` multiplies every time (poll 30 s, window 20 s, re-poll 5 s, cap 120 s,
gap 1 s, undo 10 s): ``--scale 0.3`` runs the same ratios three times faster (the e2e
test, ``tests/e2e/test_bursts.py``, does so). Radicale answers a PUT slowly on a busy
machine, so the edits "as made" (when Radicale answered) are printed too: the longest
burst and the widest pause between two edits of a try.

Examples::

    .venv/bin/python bench/bursts.py                      # the defaults, 10 tries of each
    .venv/bin/python bench/bursts.py --phase poll --tries 5 --scale 0.5

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import random
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import calendar_ics, percentile
from bench.running import add_pairs, baseline, start_service, timed_sink

log = logging.getLogger("bench.bursts")


@dataclass(frozen=True)
class Plan:
    """The times of a run, in seconds (the defaults times ``scale``)."""

    scale: float = 1.0
    tries: int = 10
    phase: str = "random"  # or "poll"
    workers: int = 2
    seed: int = 14

    def s(self, seconds: float) -> float:
        return seconds * self.scale

    @property
    def poll(self) -> float:
        return self.s(30)

    @property
    def window(self) -> float:
        return self.s(20)


@dataclass
class Result:
    plan: dict[str, Any]
    bursts_one_message: int = 0
    bursts: int = 0
    burst_messages: list[int] = field(default_factory=list)
    undos_silent: int = 0
    undos: int = 0
    undo_messages: list[int] = field(default_factory=list)
    single_latency_s: list[float] = field(default_factory=list)
    single_missing: int = 0
    single_p99_s: float | None = None
    single_bound_s: float = 0.0
    burst_spans_s: list[float] = field(default_factory=list)  # first to last edit, as made
    undo_gaps_s: list[float] = field(default_factory=list)  # the move to its undo, as made
    widest_gap_s: float = 0.0  # the longest pause between two edits of a try, as made

    def table(self) -> str:
        p99 = "—" if self.single_p99_s is None else f"{self.single_p99_s:.1f} s"
        worst = max(self.single_latency_s, default=0.0)
        bursts, undos = (
            f"{self.bursts_one_message} of {self.bursts}",
            f"{self.undos_silent} of {self.undos}",
        )
        return "\n".join([
            f"{'case':<34}{'result':>12}",
            f"{'five edits 1 s apart → 1 message':<34}{bursts:>12}",
            f"{'edit undone 10 s later → none':<34}{undos:>12}",
            f"{'single change p99 (bound)':<34}{p99:>8} ({self.single_bound_s:.0f} s)",
            f"{'single change worst, missing':<34}{worst:>8.1f} s, {self.single_missing}",
            f"{'longest burst, undo as made':<34}{max(self.burst_spans_s, default=0):>8.1f} s, "
            f"{max(self.undo_gaps_s, default=0):.1f} s",
        ])  # fmt: skip


def start(stack: ExitStack, root: Path, sink: Any, plan: Plan) -> Any:
    """The service with a consumer that runs the scheduler, at the plan's times."""
    return start_service(stack, root, sink, poll=plan.poll, window=plan.window,
                         workers=plan.workers, repoll=plan.s(5), cap=plan.s(120))  # fmt: skip


def next_round(world: Any, plan: Plan) -> float:
    """The wall-clock time (time.time()) of the polling loop's next round."""
    from assistant.services.polling import LoopMark
    from jobs.tasks import POLL_LOOP_KEY

    deadline = time.time() + 70
    while time.time() < deadline:
        mark = LoopMark.from_stored(world.jobs.huey.get(POLL_LOOP_KEY, peek=True))
        if mark is not None:
            planned = mark.planned.replace(tzinfo=UTC).timestamp()
            now = time.time()
            while planned <= now:
                planned += plan.poll
            return planned
        time.sleep(0.2)
    raise RuntimeError("no polling loop started")


def event(uid: str, hour: int, summary: str) -> str:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=2)
    return calendar_ics(uid, day + timedelta(hours=hour), day + timedelta(hours=hour + 1), summary,
                        "Room A")  # fmt: skip


def run(plan: Plan) -> Result:
    """Start everything, make the tries side by side, count the messages."""
    import httpx

    from assistant.entrypoints.embedded import EmbeddedRadicale

    result = Result(plan=asdict(plan))
    result.single_bound_s = plan.poll + plan.window + 2
    rng = random.Random(plan.seed)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        root = Path(tmp)
        radicale = stack.enter_context(EmbeddedRadicale(root / "radicale"))
        sink = timed_sink()
        sink.start()
        stack.callback(sink.stop)
        world = start(stack, root, sink, plan)
        kinds = ["burst"] * plan.tries + ["undo"] * plan.tries + ["single"] * plan.tries
        urls = [radicale.new_calendar("calendar", user=f"m{i}") for i in range(len(kinds))]
        gate = threading.BoundedSemaphore(4)  # Radicale resets connections beyond its limit

        def put(i: int, hour: int, summary: str = "Board meeting") -> None:
            with gate, httpx.Client(timeout=10) as http:
                http.put(f"{urls[i]}board.ics", content=event("board", hour, summary),
                         headers={"Content-Type": "text/calendar"}).raise_for_status()  # fmt: skip

        for i in range(len(kinds)):  # before the polling loop can see the calendar
            put(i, 10)
        pairs = add_pairs(world, len(kinds), "caldav", lambda p: {"url": urls[p]})
        baseline(world, [a for _, a, _ in pairs])
        round_at = next_round(world, plan)
        if round_at - time.time() < plan.s(3):  # time to start a burst before it
            round_at += plan.poll
        gap, undo_after = plan.s(1), plan.s(10)
        starts: list[float] = []
        for kind in kinds:
            if plan.phase == "poll" and kind == "burst":
                starts.append(round_at - 1.5 * gap)  # the round between the 2nd and 3rd edit
            elif plan.phase == "poll" and kind == "undo":
                starts.append(round_at - plan.s(2))  # the round sees the move, not the undo
            else:
                starts.append(round_at + rng.uniform(0, plan.poll))
        lock = threading.Lock()
        errors: list[BaseException] = []

        def wait_until(t: float) -> None:
            time.sleep(max(0.0, t - time.time()))

        def one(i: int) -> None:
            kind, (_, _, assistant) = kinds[i], pairs[i]
            try:
                wait_until(starts[i])
                if kind == "single":
                    put(i, 16, "Board meeting moved")
                    made = time.monotonic()  # the server's answer to the PUT
                    arrived = sink.wait_arrival(assistant, 1, plan.poll + plan.window + plan.s(30))
                    with lock:
                        if arrived is None:
                            result.single_missing += 1
                        else:
                            result.single_latency_s.append(arrived - made)
                    return
                made: list[float] = []  # when Radicale answered each edit
                if kind == "burst":
                    for k in range(5):
                        wait_until(starts[i] + k * gap)
                        put(i, 11 + k, f"Board meeting v{k + 1}")
                        made.append(time.time())
                else:
                    put(i, 16)
                    made.append(time.time())
                    wait_until(starts[i] + undo_after)
                    put(i, 10)
                    made.append(time.time())
                last = made[-1]
                # A second message would come by then: the last edit is seen by the next
                # round at the latest, and goes out a window later.
                wait_until(last + plan.poll + plan.window + plan.s(5) + 2)
                count = len(sink.arrivals(assistant))
                with lock:
                    span = made[-1] - made[0]
                    (result.burst_spans_s if kind == "burst" else result.undo_gaps_s).append(span)
                    widest = max(b - a for a, b in itertools.pairwise(made))
                    result.widest_gap_s = max(result.widest_gap_s, widest)
                    if kind == "burst":
                        result.bursts += 1
                        result.bursts_one_message += count == 1
                        result.burst_messages.append(count)
                    else:
                        result.undos += 1
                        result.undos_silent += count == 0
                        result.undo_messages.append(count)
            except BaseException as exc:  # reported by the caller
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(kinds))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
    result.single_p99_s = percentile(result.single_latency_s, 99)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--scale", type=float, default=1.0, help="times the defaults' times")
    parser.add_argument("--phase", choices=("random", "poll"), default="random")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    plan = Plan(args.scale, args.tries, args.phase, args.workers, args.seed)
    started = time.monotonic()
    result = run(plan)
    print(result.table())
    print(f"({time.monotonic() - started:.0f} s)")
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
