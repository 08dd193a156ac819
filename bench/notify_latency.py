"""How long from a change on the manager's calendar to the assistant's message? (issue 5)

Starts, in a temporary folder, an embedded Radicale (CalDAV), an SMTP sink and the
service with a Huey consumer that runs the scheduler, as ``assistant run`` does: the
periodic ``tick`` keeps a ``sync_due`` polling loop alive that runs a round every
``sync.poll_interval_seconds``; ``sync_account`` syncs by change token,
``dispatch_changes`` writes the outbox row (``notify.coalesce_seconds`` is 0 by
default), ``drain_outbox`` sends it by SMTP.

Each pair has its own calendar and assistant. For every pair a thread makes changes on
the server by plain HTTP (create, move, relocate, cancel, in turn), one at a time: it
waits a random 0..3 x interval seconds (so changes fall at every phase of the polling
cycle, whatever its real period), makes the change, and waits until the sink has the
assistant's message before the next one, so every change is its own burst and its own
message. The latency of a change is from the server's answer to the PUT/DELETE to the
SMTP sink accepting the DATA of the message (one monotonic clock, one process). Pairs
run in parallel only to keep the run short: with 5 pairs, 200 changes take about three
minutes. ``stages`` splits the time with the rows the service wrote: until the sync
that saw the change began, sync to outbox row, outbox row to SMTP.

The target (issue 16, point 5): polling p99 <= interval + 1 s with the window at 0, else
interval + window + 2 s (``--coalesce``; the quiet period, re-polled every ``--repoll`` s
and capped at ``--cap`` s).

``--push ews``: the same measure through EWS streaming notifications instead of polling
(``assistant.adapters.push.PushSupervisor``, as ``assistant run`` starts it; polling slowed to a
minute), one EWS test server of tests/support per pair; only when connectors/ews/push.py
has ``EwsStreamingWatcher``, else it says "not available yet". Target p99 <= window + 2 s.

``--budgets``: the three budgets of issue 16 (the defaults, scaled by ``--scale``; the
window at 0; push), each a run as above, side by side with pass/fail, then the idle
cost of N pairs at two N (``bench/promptness.py``).

Examples::

    .venv/bin/python bench/notify_latency.py                       # SQLite + Huey SQLite
    .venv/bin/python bench/notify_latency.py --changes 40 --pairs 4
    .venv/bin/python bench/notify_latency.py \\
        --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        --redis redis://127.0.0.1:6379/0
    .venv/bin/python bench/notify_latency.py --push ews
    .venv/bin/python bench/notify_latency.py --budgets --changes 100   # poll 6 s, window 4 s
    .venv/bin/python bench/notify_latency.py --budgets --scale 1 --only a   # the defaults

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import calendar_ics, summary
from bench.running import World, add_pairs, baseline, start_service, timed_sink

log = logging.getLogger("bench.notify_latency")


# ------------------------------------------------------------------------ the changes


@dataclass
class Sample:
    pair: int
    op: str
    made_wall: float
    latency: float | None
    until_sync: float | None = None  # from the rows the service wrote, when they match


def day_at(days: int, hour: int) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days, hours=hour)


OPS = ("create", "move", "relocate", "cancel")


def caldav_changer(url: str, p: int) -> Callable[[int], str]:
    """A function making change ``k`` of pair ``p`` on its CalDAV calendar; returns its kind."""
    import httpx

    http = httpx.Client(timeout=10)

    def change(k: int) -> str:
        op = OPS[k % 4]
        n = k // 4
        uid = f"bench-{p}-{n}"
        day = 2 + n % 10
        href = f"{url}{uid}.ics"
        if op == "cancel":
            http.delete(href).raise_for_status()
            return op
        hour = 11 if op in ("move", "relocate") else 9
        where = "Room B" if op == "relocate" else "Room A"
        body = calendar_ics(uid, day_at(day, hour), day_at(day, hour + 1), f"Meeting {uid}", where)
        http.put(href, content=body, headers={"Content-Type": "text/calendar"}).raise_for_status()
        return op

    change.close = http.close  # type: ignore[attr-defined]
    return change


def drive(
    world: World,
    pairs: list[tuple[int, int, str]],
    changers: list[Callable[[int], str]],
    total: int,
    jitter: float,
    timeout: float,
) -> list[Sample]:
    """Make ``total`` changes spread over the pairs, one at a time per pair; time each."""
    samples: list[Sample] = []
    lock = threading.Lock()
    per_pair = [
        total // len(pairs) + (1 if i < total % len(pairs) else 0) for i in range(len(pairs))
    ]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        rng = random.Random(1000 + i)
        _, _, assistant = pairs[i]
        try:
            for k in range(per_pair[i]):
                time.sleep(rng.uniform(0, jitter))
                seen = len(world.sink.arrivals(assistant))
                op = changers[i](k)
                made, made_wall = time.monotonic(), time.time()
                arrived = world.sink.wait_arrival(assistant, seen + 1, timeout)
                latency = None if arrived is None else arrived - made
                with lock:
                    samples.append(Sample(i, op, made_wall, latency))
                if latency is None:
                    log.warning(
                        "pair %s change %s (%s): no message within %.0fs", i, k, op, timeout
                    )
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(pairs))]
    for t in threads:
        t.start()
    started = time.monotonic()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(5)
        with lock:
            done = len(samples)
        print(
            f"  {done}/{total} changes timed ({time.monotonic() - started:.0f}s)", file=sys.stderr
        )
    if errors:
        raise errors[0]
    return samples


def stages(
    world: World, pairs: list[tuple[int, int, str]], samples: list[Sample]
) -> dict[str, Any]:
    """Where the time went, from the rows the service wrote (wall clock of this machine):
    change made → sync that saw it began (``detected_at``) → outbox row written by the
    dispatch (``created_at``) → SMTP accepted (``sent_at``)."""
    from sqlalchemy import select

    from assistant.store.tables import OutboxEntry, ScheduleChange

    wait, work, send = [], [], []
    with world.svc.uow.read() as s:
        for i, (pair_id, _, _) in enumerate(pairs):
            mine = sorted((x for x in samples if x.pair == i), key=lambda x: x.made_wall)
            detected = list(s.scalars(
                select(ScheduleChange.detected_at)
                .where(ScheduleChange.pair_id == pair_id).order_by(ScheduleChange.id)
            ))  # fmt: skip
            entries = list(s.execute(
                select(OutboxEntry.created_at, OutboxEntry.sent_at)
                .where(OutboxEntry.pair_id == pair_id).order_by(OutboxEntry.id)
            ))  # fmt: skip
            if len(detected) != len(mine) or len(entries) != len(mine):
                continue  # not one change and one message per sample: no breakdown
            for x, d, (c, sent) in zip(mine, detected, entries, strict=True):
                wait.append(d.timestamp() - x.made_wall)
                x.until_sync = wait[-1]
                work.append((c - d).total_seconds())
                if sent is not None:
                    send.append((sent - c).total_seconds())
    return {
        "until_sync_s": summary(wait),
        "sync_to_outbox_s": summary(work),
        "outbox_to_smtp_s": summary(send),
    }


# ------------------------------------------------------------------------------ modes


def run_poll(args: argparse.Namespace, stack: ExitStack, root: Path) -> dict[str, Any]:
    from assistant.entrypoints.embedded import EmbeddedRadicale

    radicale = stack.enter_context(EmbeddedRadicale(root / "radicale"))
    sink = stack.enter_context(timed_sink())
    world = start(stack, root, sink, args, args.interval)
    urls = [radicale.new_calendar(f"cal{p}", user=f"manager{p}") for p in range(args.pairs)]
    seed(urls)
    pairs = add_pairs(world, args.pairs, "caldav", lambda p: {"url": urls[p]})
    baseline(world, [a for _, a, _ in pairs])
    changers = [caldav_changer(u, p) for p, u in enumerate(urls)]
    for c in changers:
        stack.callback(c.close)  # type: ignore[attr-defined]
    return measure(world, pairs, changers, args,
                   target=budget(False, args.interval, args.coalesce),
                   jitter=args.jitter or 3 * args.interval,
                   extra={"mode": "poll", "interval_s": args.interval})  # fmt: skip


def budget(push: bool, poll: float, window: float) -> float:
    """The p99 a change may take to reach SMTP (issue 16, point 5): with push, the window
    and 2 s; polling with no window, the poll interval and 1 s; else both and 2 s."""
    if push:
        return window + 2.0
    return poll + 1.0 if window == 0 else poll + window + 2.0


def start(stack: ExitStack, root: Path, sink: Any, args: argparse.Namespace, poll: float
          ) -> World:  # fmt: skip
    return start_service(stack, root, sink, poll=poll, window=args.coalesce,
                         workers=args.workers, repoll=args.repoll, cap=args.cap,
                         postgres=args.postgres, redis=args.redis)  # fmt: skip


def seed(urls: list[str], events: int = 5) -> None:
    import httpx

    with httpx.Client(timeout=10) as http:
        for url in urls:
            for e in range(events):
                uid = f"seed-{e}"
                body = calendar_ics(uid, day_at(1 + e, 14), day_at(1 + e, 15), f"Standing {e}")
                http.put(f"{url}{uid}.ics", content=body,
                         headers={"Content-Type": "text/calendar"}).raise_for_status()  # fmt: skip


def measure(
    world: World,
    pairs: list[tuple[int, int, str]],
    changers: list[Callable[[int], str]],
    args: argparse.Namespace,
    *,
    target: float,
    jitter: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    began = time.monotonic()
    samples = drive(world, pairs, changers, args.changes, jitter, args.timeout)
    wall = time.monotonic() - began
    time.sleep(max(3.0, args.coalesce + 2 * args.interval))  # anything sent twice shows now
    latencies = [x.latency for x in samples if x.latency is not None]
    messages = sum(len(world.sink.arrivals(a)) for _, _, a in pairs)
    figures = summary(latencies)
    by_op = {op: summary([x.latency for x in samples if x.op == op and x.latency is not None])
             for op in sorted({x.op for x in samples})}  # fmt: skip
    return {
        "bench": "notify_latency",
        **extra,
        "coalesce_s": args.coalesce,
        "backend": world.backend,
        "pairs": len(pairs),
        "workers": args.workers,
        "changes": len(samples),
        "latency_s": figures,
        "target_p99_s": target,
        "target_met": figures["p99"] is not None
        and figures["p99"] <= target
        and len(latencies) == len(samples),
        "lost": len(samples) - len(latencies),
        "messages": messages,
        "extra_messages": messages - len(latencies),
        "by_kind_p99_s": {op: s["p99"] for op, s in by_op.items()},
        "stages": stages(world, pairs, samples),
        "slowest": [
            {
                "latency_s": round(x.latency, 3),
                "kind": x.op,
                "pair": x.pair,
                "until_sync_s": None if x.until_sync is None else round(x.until_sync, 3),
                "at": datetime.fromtimestamp(x.made_wall, UTC).strftime("%H:%M:%S.%f")[:-3],
            }
            for x in sorted(samples, key=lambda x: -(x.latency or 1e9))[:5]
            if x.latency is not None
        ],
        "run_s": round(wall, 1),
    }


def ews_push_status() -> str:
    """ "" when EWS streaming can be benchmarked here, else why not."""
    if importlib.util.find_spec("connectors.ews.push") is None:
        return "not available yet: connectors/ews/push.py does not exist"
    try:
        from assistant.adapters.push import PushSupervisor  # noqa: F401
        from connectors.ews.push import EwsStreamingWatcher  # noqa: F401
        from tests.support.ews_server import EwsServer, streaming  # noqa: F401
    except ImportError as exc:
        return f"not available yet: {exc}"
    return ""


def run_push_ews(args: argparse.Namespace, stack: ExitStack, root: Path) -> dict[str, Any]:
    """Push: ``assistant.adapters.push.PushSupervisor`` (as ``assistant run`` starts it) keeps an
    EWS streaming subscription per account and queues ``sync_account`` on every
    notification. Polling is slowed to once a minute so that it cannot be what finds
    the change."""
    from tests.support.ews_server import EwsServer, Mailbox

    servers = [stack.enter_context(EwsServer(mailbox=Mailbox(f"manager{p}@example.com")))
               for p in range(args.pairs)]  # fmt: skip
    os.environ["BENCH_EWS_PASSWORD"] = servers[0].password
    for server in servers:
        for e in range(5):
            server.mailbox.add(f"seed-{e}", f"Standing {e}", day_at(1 + e, 14), day_at(1 + e, 15))
    sink = stack.enter_context(timed_sink())
    world = start(stack, root, sink, args, 60.0)

    def conf(p: int) -> dict[str, Any]:
        s = servers[p]
        return {"mailbox": s.mailbox.address, "service_endpoint": s.url, "username": s.username,
                "password": {"env": "BENCH_EWS_PASSWORD"}, "zone": "UTC"}  # fmt: skip

    pairs = add_pairs(world, args.pairs, "ews", conf)
    baseline(world, [a for _, a, _ in pairs])
    # The service's own push path (assistant run): a waiter thread per EWS account that
    # queues the account's sync on every notification.
    from assistant.adapters.push import PushSupervisor

    push = PushSupervisor(world.svc, lambda account_id: world.jobs.sync_account(account_id))
    watched = push.start()
    stack.callback(push.stop)
    if len(watched) != len(pairs):
        raise RuntimeError(f"push: {len(watched)} of {len(pairs)} accounts watched")
    time.sleep(2.0)  # subscribed, streams open, catch-up syncs done

    def ews_changer(p: int) -> Callable[[int], str]:
        mailbox = servers[p].mailbox

        def change(k: int) -> str:
            op, n = OPS[k % 4], k // 4
            uid, day = f"bench-{p}-{n}", 2 + n % 10
            if op == "create":
                mailbox.add(uid, f"Meeting {uid}", day_at(day, 9), day_at(day, 10),
                            location="Room A")  # fmt: skip
            elif op == "move":
                with mailbox.edit(uid) as item:
                    item.start, item.end = day_at(day, 11), day_at(day, 12)
            elif op == "relocate":
                with mailbox.edit(uid) as item:
                    item.location = "Room B"
            else:
                mailbox.remove(mailbox.by_uid(uid).item_id)
            return op

        return change

    changers = [ews_changer(p) for p in range(args.pairs)]
    return measure(world, pairs, changers, args, target=budget(True, 60.0, args.coalesce),
                   jitter=args.jitter or 1.0,
                   extra={"mode": "push-ews", "interval_s": 60.0})  # fmt: skip


# ------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Time from a calendar change on the server to the assistant's message "
        "accepted by SMTP (p50/p95/p99/max), through the real service path.",
        epilog="The last line printed is one JSON object with the figures.",
    )
    ap.add_argument("--changes", type=int, default=200, help="changes to make (default 200)")
    ap.add_argument("--pairs", type=int, default=5,
                    help="pairs (own calendar, own assistant) changed in parallel, one change "
                    "at a time each (default 5)")  # fmt: skip
    ap.add_argument("--interval", type=float, default=2.0,
                    help="sync.poll_interval_seconds (default 2)")  # fmt: skip
    ap.add_argument("--coalesce", type=float, default=0.0,
                    help="notify.coalesce_seconds (default 0: a message as soon as a change "
                    "is seen; the latency target leaves no room for a window)")  # fmt: skip
    ap.add_argument("--workers", type=int, default=2, help="Huey worker threads (default 2)")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="give up on one change's message after this many seconds")  # fmt: skip
    ap.add_argument("--postgres", metavar="URL",
                    help="PostgreSQL admin URL (e.g. postgresql+psycopg://postgres@127.0.0.1"
                    ":5432/test); a fresh database is made beside it and dropped "
                    "afterwards")  # fmt: skip
    ap.add_argument("--redis", metavar="URL",
                    help="Redis URL for Huey (e.g. redis://127.0.0.1:6379/0); a unique queue "
                    "name is used and its keys deleted afterwards")  # fmt: skip
    ap.add_argument("--push", choices=["ews"],
                    help="measure push instead of polling: 'ews' = EWS streaming "
                    "notifications against the EWS test server (when connectors/ews/push.py "
                    "is there)")  # fmt: skip
    ap.add_argument(
        "--jitter",
        type=float,
        default=0.0,
        help="before each change a pair waits a random 0..JITTER s, so that changes "
        "fall at every phase of the polling cycle (default: 3 x interval; push: 1)",
    )
    ap.add_argument("--seed", type=int, default=1, help="random seed of the change timing")
    ap.add_argument("--repoll", type=float, default=None,
                    help="sync.repoll_seconds (default: the setting's, 5)")  # fmt: skip
    ap.add_argument("--cap", type=float, default=None,
                    help="notify.coalesce_max_seconds (default: the setting's, 120)")  # fmt: skip
    b = ap.add_argument_group("--budgets (bench/promptness.py): the three budgets and idle cost")
    b.add_argument("--budgets", action="store_true",
                   help="run (a) the defaults, (b) the window at 0, (c) push, each against its "
                   "p99 budget, then the idle cost; --changes and --pairs per case")  # fmt: skip
    b.add_argument("--scale", type=float, default=0.2,
                   help="the defaults' times (poll 30, window 20, re-poll 5, cap 120 s) times "
                   "this (default 0.2: poll 6 s, window 4 s; 1: the defaults)")  # fmt: skip
    b.add_argument("--only", default="a,b,c,idle",
                   help="which of a,b,c,idle to run (default all)")  # fmt: skip
    b.add_argument("--idle-pairs", default="20,100", help="N of the idle cost (20,100)")
    b.add_argument("--idle-interval", type=float, default=2.0,
                   help="poll interval of the idle cost (2 s)")  # fmt: skip
    b.add_argument("--idle-seconds", type=float, default=30.0,
                   help="how long the idle cost is measured (30 s)")  # fmt: skip
    args = ap.parse_args(argv)
    args.only = [x.strip() for x in args.only.split(",") if x.strip()]
    args.idle_pairs = [int(x) for x in args.idle_pairs.split(",") if x.strip()]
    if args.budgets and args.push:
        ap.error("--budgets runs push as its case (c); leave out --push")
    if args.pairs < 1 or args.changes < 1:
        ap.error("--pairs and --changes must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    random.seed(args.seed)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("huey").setLevel(logging.ERROR)
    if args.push == "ews":
        why = ews_push_status()
        if why:
            print(f"--push ews: {why}", file=sys.stderr)
            print(json.dumps({"bench": "notify_latency", "mode": "push-ews", "available": False,
                              "reason": why}))  # fmt: skip
            return 2
    if args.budgets:
        from bench.promptness import run_budgets, table

        out = run_budgets(args)
        print(table(out))
        print(json.dumps(out))
        return 0 if out["all_met"] else 1
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-latency-")))
        runner = run_push_ews if args.push == "ews" else run_poll
        print(f"starting ({'push ews' if args.push else f'polling every {args.interval:g}s'}, "
              f"{args.pairs} pairs, {args.changes} changes)...", file=sys.stderr)  # fmt: skip
        try:
            result = runner(args, stack, root)
        except KeyboardInterrupt:
            print("interrupted; stopping everything", file=sys.stderr)
            return 130
    lat = result["latency_s"]
    print(
        f"{result['mode']}: {result['changes']} changes, {lat['count']} timed, "
        f"p50 {lat['p50']}s p95 {lat['p95']}s p99 {lat['p99']}s max {lat['max']}s "
        f"(target p99 <= {result['target_p99_s']:g}s: "
        f"{'met' if result['target_met'] else 'NOT met'}); lost {result['lost']}, "
        f"extra messages {result['extra_messages']}"
    )
    print(json.dumps(result))
    return 0 if result["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
