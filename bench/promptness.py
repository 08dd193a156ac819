"""Promptness against its budgets, side by side (issue 16, point 5): ``--budgets``.

Three latency budgets, each a run of ``bench/notify_latency.py`` (Radicale or the EWS test
server, the SMTP sink, the service with a Huey consumer running the scheduler, as
``assistant run`` starts it; a fresh service and folder per case), p99 from a change
on the server to its message accepted by SMTP:

(a) the defaults: poll 30 s, window 20 s (re-poll 5 s, cap 120 s), p99 <= poll + window
    + 2 s. Long; ``--scale`` runs every one of these times multiplied (``--scale 0.2``, the
    default here: poll 6 s, window 4 s, re-poll 1 s, cap 24 s), the same code at the same
    ratios; ``--scale 1`` runs the defaults themselves. The allowances (2 s, 1 s) are not
    scaled: they are what the queue and the delivery may add;
(b) the window at 0, polling as in (a): p99 <= poll + 1 s;
(c) push (EWS streaming notifications, polling slowed to a minute), the window as in (a):
    p99 <= window + 2 s.

Each change is its own burst (a pair's next change waits for the message of the last);
before it a pair waits a random 0..``--jitter`` s (default: the poll interval, which puts
the change at a uniform phase of the polling cycle; push: 1 s).

Before them, the idle cost: N pairs (one CalDAV calendar each, nothing changing) polling every
``--idle-interval`` s (2), for N in ``--idle-pairs`` (20 and 100): the CPU time of this
process (the service: consumer, workers, scheduler; and the idle SMTP sink) over
``--idle-seconds``, as % of one core and per pair, its thread count (and the threads by
name), and the syncs run (per second; each round syncs every account). Radicale's CPU
(another process, the calendar server) is shown apart. "Flat per pair" holds when the
larger N costs at most 1.3 x the CPU per pair of the smaller (per sync, when the workers
could not sync every account every round: "saturated") and at most one thread more per
worker at the peak (a sync in flight holds its connection pool's watcher thread).

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.common import cpu_seconds

DEFAULTS = {"poll": 30.0, "window": 20.0, "repoll": 5.0, "cap": 120.0}
FLAT_CPU = 1.3  # per-pair CPU at the larger N may be this many times that at the smaller


def scaled(scale: float) -> dict[str, float]:
    return {k: round(v * scale, 3) for k, v in DEFAULTS.items()}


def case_args(args: argparse.Namespace, *, window: float, push: bool) -> argparse.Namespace:
    """The arguments of one ``notify_latency`` run of the budgets."""
    t = scaled(args.scale)
    from bench.notify_latency import budget

    bound = budget(push, t["poll"], window)
    return argparse.Namespace(**{
        **vars(args),
        "interval": t["poll"], "coalesce": window, "repoll": t["repoll"], "cap": t["cap"],
        "push": "ews" if push else None,
        "jitter": args.jitter or (1.0 if push else t["poll"]),
        "timeout": 3 * bound + 10,
    })  # fmt: skip


def run_case(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from bench.notify_latency import ews_push_status, run_poll, run_push_ews

    if args.push == "ews" and (why := ews_push_status()):
        return {"case": name, "available": False, "reason": why}
    print(f"budget {name}: {args.changes} changes, {args.pairs} pairs...", file=sys.stderr)
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-budget-")))
        runner = run_push_ews if args.push == "ews" else run_poll
        result = runner(args, stack, root)
    return {"case": name, "available": True, **result}


# --------------------------------------------------------------------------- idle cost


def threads_now() -> tuple[int, dict[str, int]]:
    """This process's threads (from /proc, native ones included) and Python's by name."""
    with open("/proc/self/status") as f:
        count = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    names = Counter(re.sub(r"[-_ ]?\d+", "", t.name) or "?" for t in threading.enumerate())
    return count, dict(sorted(names.items()))


def idle_cost(pairs: int, interval: float, seconds: float, args: argparse.Namespace
              ) -> dict[str, Any]:  # fmt: skip
    """N idle pairs polling every ``interval`` s: CPU and threads over ``seconds``."""
    from huey import signals

    from assistant.entrypoints.embedded import EmbeddedRadicale
    from bench.notify_latency import seed
    from bench.running import add_pairs, baseline, start_service, timed_sink

    print(f"idle cost: {pairs} pairs polling every {interval:g}s...", file=sys.stderr)
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-idle-")))
        radicale = stack.enter_context(EmbeddedRadicale(root / "radicale"))
        sink = stack.enter_context(timed_sink())
        before_service = threads_now()[0]
        world = start_service(stack, root, sink, poll=interval, window=DEFAULTS["window"],
                              workers=args.workers, postgres=args.postgres,
                              redis=args.redis)  # fmt: skip
        urls = [radicale.new_calendar(f"cal{p}", user=f"manager{p}") for p in range(pairs)]
        seed(urls)
        added = add_pairs(world, pairs, "caldav", lambda p: {"url": urls[p]})
        baseline(world, [a for _, a, _ in added])
        done: Counter[str] = Counter()
        lock = threading.Lock()

        @world.jobs.huey.signal(signals.SIGNAL_COMPLETE)
        def _count(signal: str, task: Any, *_: Any) -> None:
            with lock:
                done[task.name] += 1

        time.sleep(3 * interval)  # the first rounds after the baseline
        with lock:
            done.clear()
        cpu0, rad0, t0 = cpu_seconds(os.getpid()), cpu_seconds(radicale._process.pid), \
            time.monotonic()  # fmt: skip
        peak = 0
        while time.monotonic() - t0 < seconds:
            time.sleep(0.5)
            peak = max(peak, threads_now()[0])
        wall = time.monotonic() - t0
        cpu, rad = cpu_seconds(os.getpid()) - cpu0, cpu_seconds(radicale._process.pid) - rad0
        count, names = threads_now()
        with lock:
            runs = dict(done)
    core = 100 * cpu / wall
    syncs = runs.get("sync_account", 0)
    return {
        "pairs": pairs,
        "interval_s": interval,
        "seconds": round(wall, 1),
        "cpu_pct_core": round(core, 2),
        "cpu_pct_core_per_pair": round(core / pairs, 3),
        "radicale_cpu_pct_core": round(100 * rad / wall, 2),
        "threads": count,
        "threads_peak": max(peak, count),
        "threads_before_service": before_service,
        "threads_by_name": names,
        "syncs_per_s": round(syncs / wall, 2),
        "expected_syncs_per_s": round(pairs / interval, 2),
        # the workers could not sync every account every round: CPU per pair is not
        # comparable then, CPU per sync is
        "saturated": syncs / wall < 0.9 * pairs / interval,
        "cpu_ms_per_sync": round(1000 * cpu / syncs, 2) if syncs else None,
        "jobs": runs,
    }


# ------------------------------------------------------------------------------- all


def run_budgets(args: argparse.Namespace) -> dict[str, Any]:
    t = scaled(args.scale)
    label = "defaults" if args.scale == 1 else f"defaults x{args.scale:g}"
    cases = {
        "a": (f"(a) {label}: poll {t['poll']:g}s, window {t['window']:g}s", t["window"], False),
        "b": (f"(b) window 0: poll {t['poll']:g}s", 0.0, False),
        "c": (f"(c) push (EWS): window {t['window']:g}s", t["window"], True),
    }
    out: dict[str, Any] = {"bench": "notify_latency", "mode": "budgets", "scale": args.scale,
                           "times_s": t, "cases": [], "idle": []}  # fmt: skip
    if "idle" in args.only:  # first: the cases' servers leave threads behind in this process
        out["idle"] = [idle_cost(n, args.idle_interval, args.idle_seconds, args)
                       for n in args.idle_pairs]  # fmt: skip
    for key in args.only:
        if key in cases:
            name, window, push = cases[key]
            out["cases"].append(run_case(name, case_args(args, window=window, push=push)))
    out["idle_flat"] = flat(out["idle"], args.workers)
    met = all(c.get("target_met") for c in out["cases"])
    out["all_met"] = met and out["idle_flat"] is not False
    return out


def flat(idle: list[dict[str, Any]], workers: int) -> bool | None:
    """Per-pair CPU at the most pairs within ``FLAT_CPU`` x the fewest's (per sync when
    either could not keep up), and no more threads at the peak than the fewest's and one
    per worker (a sync in flight holds a connection pool, whose watcher is a thread)."""
    if len(idle) < 2:
        return None
    few, most = min(idle, key=lambda r: r["pairs"]), max(idle, key=lambda r: r["pairs"])
    key = "cpu_ms_per_sync" if few["saturated"] or most["saturated"] else "cpu_pct_core_per_pair"
    if not few[key] or not most[key]:
        return False
    more_threads = most["threads_peak"] - few["threads_peak"]
    return bool(most[key] <= FLAT_CPU * few[key] and more_threads <= workers)


def table(out: dict[str, Any]) -> str:
    lines = [f"{'budget':<44}{'changes':>8}{'p50':>8}{'p99':>8}{'max':>8}{'bound':>8}  result"]
    for c in out["cases"]:
        if not c.get("available"):
            lines.append(f"{c['case']:<44}  not run: {c['reason']}")
            continue
        lat = c["latency_s"]
        ok = "pass" if c["target_met"] else "FAIL"
        lost = f" (lost {c['lost']})" if c["lost"] else ""
        lines.append(
            f"{c['case']:<44}{c['changes']:>8}{lat['p50'] or 0:>7.2f}s{lat['p99'] or 0:>7.2f}s"
            f"{lat['max'] or 0:>7.2f}s{c['target_p99_s']:>7.2f}s  {ok}{lost}"
        )
    if out["idle"]:
        lines.append("")
        lines.append(f"{'idle cost (poll ' + str(out['idle'][0]['interval_s']) + ' s)':<24}"
                     f"{'pairs':>6}{'CPU % core':>12}{'per pair':>10}{'ms/sync':>9}"
                     f"{'threads':>9}{'syncs/s done/due':>18}{'Radicale %':>12}")  # fmt: skip
        for r in out["idle"]:
            lines.append(
                f"{'':<24}{r['pairs']:>6}{r['cpu_pct_core']:>12.2f}"
                f"{r['cpu_pct_core_per_pair']:>10.3f}{r['cpu_ms_per_sync'] or 0:>9.2f}"
                f"{r['threads_peak']:>9}"
                f"{r['syncs_per_s']:>11.1f}/{r['expected_syncs_per_s']:<6g}"
                f"{r['radicale_cpu_pct_core']:>11.1f}{' saturated' if r['saturated'] else ''}"
            )
        verdict = {None: "one N only", True: "pass", False: "FAIL"}[out["idle_flat"]]
        lines.append(f"{'flat per pair (CPU <= 1.3x, threads + <= workers)':<60}{verdict}")
        lines.append("(threads: peak over the run, whole process; CPU per sync when saturated)")
    return "\n".join(lines)
