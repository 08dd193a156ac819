"""Threading and reply latency over a large synthetic mailbox: speed, memory, incremental cost.

    .venv/bin/python bench/latency.py [--messages N] [--new K] [--seed S]

The mailbox (seeded, so every run sees the same one) is the pair's mail over two years as
an import would deliver it, by arrival: an assistant, a manager (two addresses), thousands
of other correspondents; threads of 1 to ~15 messages; most with Message-ID, In-Reply-To and
References, some with a provider thread id, some with no headers at all (Enron-style archives:
threaded by subject with ``Re:``, ``AW:``, ``НА:``, ``Ответ:``, ``Пересл:``, counted and
bracketed forms); out-of-office auto-replies; copies of one message in a second folder (same
Message-ID, or a new one as in Enron); a few late arrivals and dates in the future.

Each figure is measured in a fresh child process (``--child``) that builds the mailbox, then
runs one operation: the peak RSS it reports (``ru_maxrss``) is that process's whole peak,
mailbox included, and the mailbox's own RSS is shown beside it. Timings exclude building
the mailbox; each is given as wall time and as the child's CPU time (the steadier one when
other processes share the cores). The incremental figures: a ``LatencyIndex`` built from
the first N messages by arrival takes the next ``--new`` in ten batches; the same on a base
of N/10 shows the cost does not grow with the base; the records it then holds are compared
with ``reply_latencies`` run again on everything. Targets (issue 4): at least 100,000
messages/s, under 1 GiB, and an incremental update that costs in proportion to the new
messages only. ``bench/latency_service.py`` measures the same mailbox on the production
path: stored in SQLite, new mail imported, nudges and the latency view through the services.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assistant.domain.latency import (
    LatencyIndex,
    LatencyRecord,
    reply_latencies,
    summarize,
    thread_messages,
)
from assistant.domain.model import MessageData
from assistant.domain.worktime import WorkingHours

ASSISTANT = "anna.assistant@corp.example"
MANAGER = "max.boss@corp.example"
MANAGER_ALIAS = "m.boss@corp.example"
MANAGERS = {MANAGER, MANAGER_ALIAS}
ASSISTANTS = {ASSISTANT}
ZONE = "Europe/Berlin"
START = datetime(2023, 1, 2, tzinfo=UTC)
DAYS = 730
NOW = START + timedelta(days=DAYS + 1)
OFFICE = {d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
GiB = 1 << 30

_WORDS = [
    "budget",
    "forecast",
    "board",
    "meeting",
    "travel",
    "visa",
    "offsite",
    "contract",
    "renewal",
    "hiring",
    "plan",
    "review",
    "quarterly",
    "results",
    "investor",
    "call",
    "press",
    "release",
    "audit",
    "compliance",
    "training",
    "roadmap",
    "launch",
    "pricing",
    "proposal",
    "invoice",
    "payment",
    "vendor",
    "legal",
    "draft",
    "agenda",
    "minutes",
    "dinner",
    "flight",
    "hotel",
    "conference",
    "keynote",
    "slides",
    "report",
    "sales",
    "pipeline",
    "partner",
    "strategy",
    "security",
    "incident",
    "office",
    "move",
    "lease",
    "insurance",
    "bonus",
    "headcount",
    "target",
    "approval",
    "signature",
    "expense",
    "claim",
    "bericht",
    "termin",
    "angebot",
    "rechnung",
    "vertrag",
    "бюджет",
    "встреча",
    "договор",
    "отчёт",
    "счёт",
    "командировка",
]
_COMMON = (
    "Meeting", "Quick question", "Update", "Call", "Documents", "Weekly report", "Travel",
    "Tomorrow", "FYI", "Встреча", "Termin", "Invoice",
)  # fmt: skip
# Reply prefixes as clients write them: one style per thread, sometimes nested.
_REPLY = ("Re: ", "RE: ", "AW: ", "НА: ", "Ответ: ", "Re: Re: ", "RE[2]: ", "[EXT] Re: ", "SV: ")
_FORWARD = ("Fwd: ", "FW: ", "WG: ", "Пересл: ")
_NO_EXTRA: dict[str, str] = {}  # one shared empty dict instead of one per message


# ------------------------------------------------------------------------ the mailbox


def mailbox(n: int, seed: int = 1) -> list[MessageData]:
    """``n`` messages (copies and auto-replies included), in order of arrival."""
    rng = random.Random(seed)
    domains = ("corp.example", "client.example", "mail.example", "partner.de", "firma.ru")
    others = [f"{rng.choice(_WORDS)}.{k}@{rng.choice(domains)}" for k in range(6000)]
    recipients: dict[tuple[str, ...], tuple[str, ...]] = {}  # shared tuples

    def tup(*addrs: str) -> tuple[str, ...]:
        return recipients.setdefault(addrs, addrs)

    out: list[tuple[float, MessageData]] = []  # (arrival, message)
    seq = 0
    start = START.timestamp()
    while len(out) < n:
        kind = rng.random()
        # Who talks: assistant <-> manager most; then each of them with others; then the
        # manager's and the assistant's mail with third parties on copy.
        if kind < 0.40:
            a, b, cc = ASSISTANT, MANAGER if rng.random() < 0.9 else MANAGER_ALIAS, ()
        elif kind < 0.60:
            a, b, cc = MANAGER, rng.choice(others), (ASSISTANT,) if rng.random() < 0.3 else ()
        elif kind < 0.80:
            a, b, cc = ASSISTANT, rng.choice(others), (MANAGER,) if rng.random() < 0.2 else ()
        else:
            a, b, cc = rng.choice(others), MANAGER if rng.random() < 0.5 else ASSISTANT, ()
            cc = (rng.choice(others),) if rng.random() < 0.3 else cc
        if rng.random() < 0.5:
            a, b = b, a
        style = rng.random()  # 0.15 bare (subject only), 0.10 provider thread id, else headers
        bare, thread_id = style < 0.15, f"T{seq:x}" if 0.15 <= style < 0.25 else ""
        if rng.random() < 0.25:
            subject = rng.choice(_COMMON)
        else:
            subject = " ".join(rng.sample(_WORDS, rng.randint(1, 3))).capitalize()
            subject += f" {rng.randint(1, 999)}" if rng.random() < 0.5 else ""
        reply_subject = rng.choice(_REPLY) + subject
        length = min(1 + int(rng.expovariate(0.45)), 15)
        day = rng.randrange(DAYS)
        while (day % 7 >= 5 and rng.random() < 0.8) or (day % 365) in (0, 358, 359):
            day = rng.randrange(DAYS)  # START is a Monday: fewer threads at weekends
        t = start + day * 86400 + int(rng.gauss(12.5, 3) * 3600)
        refs: tuple[str, ...] = ()
        sender, to = a, b
        for k in range(length):
            seq += 1
            mid = f"<{seq:x}.{seed}@{'corp.example' if '@corp' in sender else 'mx.example'}>"
            if k == 0:
                subj = subject
            elif rng.random() < 0.05:
                subj = rng.choice(_FORWARD) + subject
            else:
                subj = reply_subject
            auto = False
            m = MessageData(
                message_id=mid,
                sent_at=datetime.fromtimestamp(t, UTC),
                from_addr=sender,
                to=tup(to),
                cc=tup(*cc),
                subject=subj,
                in_reply_to="" if bare or not refs else refs[-1],
                references=() if bare else refs,
                thread_id=thread_id,
                folder="Sent Items" if sender in (MANAGER, ASSISTANT) else "Inbox",
                auto_reply=auto,
                extra=_NO_EXTRA,
            )
            late = rng.random()
            arrival = t + (rng.uniform(3600, 5 * 86400) if late < 0.03 else rng.uniform(1, 90))
            if rng.random() < 0.0002:  # a bad clock: dated years ahead
                m = _moved(m, t + 20 * 365 * 86400)
            out.append((arrival, m))
            if rng.random() < 0.05:  # a copy in a second folder, filed later
                copy = _copy(m, rng.random() < 0.5 or not bare, seq, seed)
                out.append((arrival + rng.uniform(60, 30 * 86400), copy))
            if rng.random() < 0.02:  # out of office
                seq += 1
                ooo = MessageData(
                    message_id=f"<{seq:x}.{seed}@auto.example>",
                    sent_at=datetime.fromtimestamp(t + 2, UTC),
                    from_addr=to,
                    to=tup(sender),
                    subject="Automatic reply: " + subj,
                    in_reply_to=mid,
                    references=(*refs, mid)[-5:],
                    auto_reply=True,
                    extra=_NO_EXTRA,
                )
                out.append((t + 30, ooo))
            refs = (*refs, mid)[-8:] if not bare else ()
            delay_minutes = min(rng.lognormvariate(3.2, 1.6), 20 * 24 * 60)
            t += int(delay_minutes * 60) + 1
            if rng.random() < 0.8:
                sender, to = to, sender
    out.sort(key=lambda p: p[0])
    return [m for _, m in out[:n]]


def _moved(m: MessageData, stamp: float) -> MessageData:
    return MessageData(
        m.message_id, datetime.fromtimestamp(stamp, UTC), m.from_addr, m.to, m.cc, m.subject,
        m.in_reply_to, m.references, m.thread_id, m.folder, m.auto_reply, extra=_NO_EXTRA,
    )  # fmt: skip


def _copy(m: MessageData, same_id: bool, seq: int, seed: int) -> MessageData:
    return MessageData(
        m.message_id if same_id else f"<copy.{seq:x}.{seed}@archive.example>",
        m.sent_at, m.from_addr, m.to, m.cc, m.subject, m.in_reply_to, m.references,
        m.thread_id, "Archive", m.auto_reply, extra=_NO_EXTRA,
    )  # fmt: skip


def working_hours(first_year: int = 2022, last_year: int = 2026) -> WorkingHours:
    """Mon–Fri 09:00–18:00 in Berlin with German public holidays (as a pair is set up)."""
    import holidays

    days: set[date] = set(
        holidays.country_holidays("DE", subdiv="BE", years=range(first_year, last_year + 1))
    )
    return WorkingHours.from_config(OFFICE, ZONE, days)


# ------------------------------------------------------------------ one measurement


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall seconds, CPU seconds of this process, and the result. The CPU figure is the
    steadier one when other processes share the cores."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - t0, time.process_time() - c0, result


def child(what: str, n: int, new: int, seed: int) -> dict[str, Any]:
    """Run one measurement on a fresh mailbox in this process; figures as a dict."""
    messages = mailbox(n + new, seed)
    base, fresh = messages[:n], messages[n:]
    del messages
    hours = working_hours()
    gc.collect()
    out: dict[str, Any] = {"what": what, "messages": n, "mailbox_rss": _rss()}
    if what == "thread":
        seconds, cpu, keys = _timed(lambda: thread_messages(base))
        out |= {"seconds": seconds, "cpu": cpu, "threads": len(set(keys.values()))}
    elif what in ("wall", "working"):
        working = hours.working_minutes if what == "working" else None
        seconds, cpu, records = _timed(
            lambda: reply_latencies(base, MANAGERS, ASSISTANTS, NOW, working_minutes=working)
        )
        out |= {"seconds": seconds, "cpu": cpu} | _counts(records, what)
    elif what == "incremental":
        index = LatencyIndex(MANAGERS, ASSISTANTS, working_minutes=hours.working_minutes)
        seconds, cpu, _ = _timed(lambda: index.add(base, NOW))
        out |= {"seconds": seconds, "cpu": cpu, "rss_after_build": _rss()}
        # The new mail in ten batches, as syncs bring it.
        batch = max(1, len(fresh) // 10)
        add_wall = add_cpu = 0.0
        changed = 0
        for i in range(0, len(fresh), batch):
            dt, dc, got = _timed(lambda i=i: index.add(fresh[i : i + batch], NOW))
            add_wall, add_cpu, changed = add_wall + dt, add_cpu + dc, changed + len(got)
        out |= {"new": len(fresh), "add_seconds": add_wall, "add_cpu": add_cpu}
        out["changed_records"] = changed
        dt, dc, records = _timed(lambda: index.records(NOW))
        out |= {"records_seconds": dt, "records_cpu": dc} | _counts(records, "working")
        # The same state from scratch, for comparison: it must give the same records.
        dt, dc, again = _timed(
            lambda: reply_latencies(
                [*base, *fresh], MANAGERS, ASSISTANTS, NOW, working_minutes=hours.working_minutes
            )
        )
        out |= {"rerun_seconds": dt, "rerun_cpu": dc, "same_as_rerun": again == records}
    else:
        raise SystemExit(f"unknown measurement {what!r}")
    out["peak_rss"] = _peak()
    return out


def _counts(records: list[LatencyRecord], basis: Any) -> dict[str, Any]:
    s = summarize(records, 30, basis)
    main = s.by_direction["assistant_to_manager"]
    return {
        "records": s.count,
        "answered": s.answered,
        "median_minutes": main.median_minutes,
        "p90_minutes": main.p90_minutes,
    }


def measure(what: str, n: int, new: int, seed: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", what, "--messages", str(n), "--new", str(new)]
    cmd += ["--seed", str(seed)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=1_000, help="new messages for the update")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.messages, args.new, args.seed)))
        return
    n, new = args.messages, args.new
    small = max(n // 10, 1)
    started = time.perf_counter()
    runs: dict[str, dict[str, Any]] = {}
    for name, what, size in (
        ("thread", "thread", n),
        ("wall", "wall", n),
        ("working", "working", n),
        ("incremental", "incremental", n),
        ("incremental_small", "incremental", small),
    ):
        print(f"measuring {name} on {size:,} messages ...", file=sys.stderr, flush=True)
        runs[name] = measure(what, size, new, args.seed)

    def rate(count: int, seconds: float) -> int:
        return round(count / seconds) if seconds > 0 else 0

    big, little = runs["incremental"], runs["incremental_small"]
    print(f"\nThreading and reply latency over {n:,} synthetic messages (seed {args.seed})")
    print(f"{'measurement':<34}{'wall s':>9}{'msg/s':>11}{'CPU s':>9}{'msg/s CPU':>11}{'RSS':>11}")
    rows = [
        ("threading only", runs["thread"]),
        ("threading + latency, wall time", runs["wall"]),
        ("threading + latency, working time", runs["working"]),
        (f"index: build from {n:,}", big),
    ]
    for label, r in rows:
        rss = r.get("rss_after_build", r["peak_rss"])  # the index: what it holds once built
        print(
            f"{label:<34}{r['seconds']:>9.2f}{rate(n, r['seconds']):>11,}{r['cpu']:>9.2f}"
            f"{rate(n, r['cpu']):>11,}{rss / 2**20:>8,.0f} MiB"
        )
    for label, r, base in (
        (f"index: +{new:,} on {n:,}", big, n),
        (f"index: +{new:,} on {small:,}", little, small),
    ):
        print(
            f"{label:<34}{r['add_seconds']:>9.3f}{rate(r['new'], r['add_seconds']):>11,}"
            f"{r['add_cpu']:>9.3f}{rate(r['new'], r['add_cpu']):>11,}"
            f"{'':>11}  ({r['add_cpu'] / r['new'] * 1e6:.0f} µs CPU a message; base {base:,})"
        )
    print(
        f"{'rerun of all ' + format(n + new, ',') + ' instead':<34}{big['rerun_seconds']:>9.2f}"
        f"{rate(n + new, big['rerun_seconds']):>11,}{big['rerun_cpu']:>9.2f}"
    )
    print(
        "RSS: the process's peak, mailbox included; for the index, its RSS once built. "
        "CPU: this process's CPU time (steadier than wall time when the cores are shared)."
    )
    print(
        f"mailbox alone: {runs['wall']['mailbox_rss'] / 2**20:,.0f} MiB RSS; "
        f"records: {runs['working']['records']:,} ({runs['working']['answered']:,} answered); "
        f"threads: {runs['thread']['threads']:,}; "
        f"index after {new:,} new == rerun: {big['same_as_rerun']}, {little['same_as_rerun']}"
    )
    wall_rate = rate(n, runs["wall"]["seconds"])
    working_rate = rate(n, runs["working"]["seconds"])
    peak = max(runs[k]["peak_rss"] for k in ("thread", "wall", "working"))
    figures = {
        "messages": n,
        "seed": args.seed,
        "thread_msgs_per_s": rate(n, runs["thread"]["seconds"]),
        "wall_msgs_per_s": wall_rate,
        "working_msgs_per_s": working_rate,
        "wall_msgs_per_cpu_s": rate(n, runs["wall"]["cpu"]),
        "working_msgs_per_cpu_s": rate(n, runs["working"]["cpu"]),
        "peak_rss_bytes": peak,
        "mailbox_rss_bytes": runs["wall"]["mailbox_rss"],
        "index_build_s": round(big["seconds"], 2),
        "index_build_cpu_s": round(big["cpu"], 2),
        "index_rss_bytes": big["rss_after_build"],
        "incremental_new": new,
        "incremental_s": round(big["add_seconds"], 4),
        "incremental_us_per_msg": round(big["add_seconds"] / big["new"] * 1e6, 1),
        "incremental_cpu_us_per_msg": round(big["add_cpu"] / big["new"] * 1e6, 1),
        "incremental_small_base_us_per_msg": round(little["add_seconds"] / little["new"] * 1e6, 1),
        "incremental_small_base_cpu_us_per_msg": round(little["add_cpu"] / little["new"] * 1e6, 1),
        "rerun_s": round(big["rerun_seconds"], 2),
        "rerun_cpu_s": round(big["rerun_cpu"], 2),
        "index_equals_rerun": big["same_as_rerun"] and little["same_as_rerun"],
        "targets_met": {
            "100k_msgs_per_s": min(wall_rate, working_rate) >= 100_000,
            "under_1_GiB": peak < GiB,
        },
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
