"""One polling round of 1,000 calendars that did not change: how long, how much CPU? (issue 5)

The scale-out configuration of the README, on this machine: PostgreSQL for the
database, Redis for Huey, and two worker processes started as an operator would::

    huey_consumer bench.scale_worker.huey -w 4 -k thread     # twice

(``bench.scale_worker`` is ``jobs.worker`` plus a counter of each sync's HTTP requests,
see there; ``--plain`` runs ``jobs.worker`` itself and reports no request counts.)
Settings reach the workers through ``ASSISTANT_*`` environment variables, with
``ASSISTANT_QUEUE__SCHEDULER=false`` on both: this script plays the scheduler and
queues the round itself.

Steps:

1. Radicale (one embedded instance by default) gets 1,000 calendar collections, one per
   manager, with a handful of events each (MKCALENDAR and PUT over HTTP, in parallel);
2. a fresh PostgreSQL database (dropped at the end) gets 1,000 pairs with one CalDAV
   account each, and a unique Huey queue name on Redis (its keys deleted at the end);
3. the first round (``sync_due`` → 1,000 ``sync_account``: full syncs, the baseline)
   runs and is waited for;
4. the measured round: the same ``sync_due`` job once more, nothing changed on the
   server. Wall time runs from queueing ``sync_due`` to the moment every account's
   ``last_sync_at`` shows this round (read from PostgreSQL every 50 ms); CPU time is
   user + system of the two consumer processes (and, for the record, of Radicale)
   from /proc, before and after.

The target (issue 5): <= 30 s on this 2-core machine. A no-change round should cost one
HTTP request (a sync-collection REPORT) per account.

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    ROOT,
    calendar_ics,
    cpu_seconds,
    summary,
    temp_postgres,
    temp_redis_queue,
)

PG_CANDIDATES = (
    "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "postgresql+psycopg://root@127.0.0.1:5432/test",
)
INTERVAL = 2.0  # sync.poll_interval_seconds: an account synced >= 1 s ago is due again


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def find_postgres() -> str:
    from sqlalchemy import create_engine, text

    for url in PG_CANDIDATES:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return url
        except Exception:
            continue
        finally:
            engine.dispose()
    raise SystemExit("PostgreSQL not reachable at 127.0.0.1:5432 (give --postgres URL)")


# ----------------------------------------------------------------------------- seeding


def seed(radicales: list[Any], pairs: int, events: int, threads: int) -> list[str]:
    """One calendar per manager with ``events`` events; the calendars' URLs."""
    import httpx

    from bench.notify_latency import day_at

    def one(i: int) -> str:
        radicale = radicales[i % len(radicales)]
        with httpx.Client(timeout=30) as http:
            url = f"{radicale.url}manager{i}/calendar/"
            r = http.request("MKCALENDAR", url, auth=(f"manager{i}", ""))
            if r.status_code != 201:
                raise RuntimeError(f"MKCALENDAR {url}: HTTP {r.status_code}")
            for e in range(events):
                uid = f"m{i}-e{e}"
                body = calendar_ics(
                    uid, day_at(1 + e, 9 + e), day_at(1 + e, 10 + e), f"Meeting {e}"
                )
                http.put(f"{url}{uid}.ics", content=body,
                         headers={"Content-Type": "text/calendar"}).raise_for_status()  # fmt: skip
        return url

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(pairs)))


def add_pairs(svc: Any, urls: list[str]) -> None:
    from assistant.services.pairs import add_account, add_pair

    for i, url in enumerate(urls):
        pair = add_pair(
            svc, name=f"pair{i}", manager_email=f"manager{i}@example.com",
            assistant_email=f"assistant{i}@example.com", timezone="Europe/Berlin",
        )  # fmt: skip
        add_account(svc, pair=pair.id, name="calendar", provider="caldav",
                    settings={"url": url})  # fmt: skip


# ---------------------------------------------------------------------------- workers


@contextmanager
def consumers(
    count: int, workers: int, env: dict[str, str], folder: Path, plain: bool
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` huey_consumer processes; stopped (SIGINT, then SIGKILL) on exit."""
    module = "jobs.worker.huey" if plain else "bench.scale_worker.huey"
    exe = str(Path(sys.executable).with_name("huey_consumer"))
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for n in range(count):
            log = (folder / f"consumer{n}.log").open("wb")
            logs.append(log)
            procs.append(subprocess.Popen(
                [exe, module, "-w", str(workers), "-k", "thread"],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            ))  # fmt: skip
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)  # huey: graceful stop
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        for log in logs:
            log.close()


def consumer_env(db_url: str, redis_url: str, queue: str, data_dir: Path, log_level: str
                 ) -> dict[str, str]:  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update({
        "PYTHONPATH": str(ROOT),
        "ASSISTANT_DATA_DIR": str(data_dir),
        "ASSISTANT_LOG_LEVEL": log_level,
        "ASSISTANT_DATABASE__URL": db_url,
        "ASSISTANT_QUEUE__BACKEND": "redis",
        "ASSISTANT_QUEUE__URL": redis_url,
        "ASSISTANT_QUEUE__NAME": queue,
        "ASSISTANT_QUEUE__SCHEDULER": "false",
        "ASSISTANT_SYNC__POLL_INTERVAL_SECONDS": str(INTERVAL),
        "ASSISTANT_SYNC__HTTP_TIMEOUT_SECONDS": "30",
    })  # fmt: skip
    return env


# ------------------------------------------------------------------------------ rounds


def synced_since(svc: Any, since: datetime) -> tuple[int, int]:
    """(accounts synced at or after ``since``, accounts in error)."""
    from sqlalchemy import func, select

    from assistant.store.tables import Account

    with svc.uow.read() as s:
        done = s.scalar(select(func.count()).where(Account.last_sync_at >= since))
        bad = s.scalar(select(func.count()).where(Account.state == "error"))
    return int(done or 0), int(bad or 0)


def run_round(svc: Any, jobs: Any, total: int, timeout: float, procs: list[Any]) -> dict[str, Any]:
    """Queue ``sync_due`` once and wait until every account shows a sync of this round."""
    started_at = svc.now()
    began = time.monotonic()
    jobs.sync_due(0)
    done = bad = 0
    while time.monotonic() - began < timeout:
        done, bad = synced_since(svc, started_at)
        if done + bad >= total:
            break
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a consumer process exited; see its log")
        time.sleep(0.05)
    wall = time.monotonic() - began
    return {"wall_s": round(wall, 2), "synced": done, "errors": bad,
            "complete": done == total}  # fmt: skip


def requests_by_account(redis_url: str, key: str) -> list[int]:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return [int(v) for v in client.hgetall(key).values()]
    finally:
        client.close()


def reset_requests(redis_url: str, key: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(key)
    finally:
        client.close()


# -------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Wall and CPU time of one no-change polling round of N CalDAV calendars "
        "(PostgreSQL + Redis, two huey_consumer processes).",
        epilog="The last line printed is one JSON object with the figures.",
    )
    ap.add_argument("--pairs", type=int, default=1000, help="pairs, one calendar each (1000)")
    ap.add_argument("--events", type=int, default=5, help="events per calendar (5)")
    ap.add_argument("--radicales", type=int, default=1,
                    help="Radicale instances the calendars are spread over (1)")  # fmt: skip
    ap.add_argument("--consumers", type=int, default=2, help="huey_consumer processes (2)")
    ap.add_argument("--workers", type=int, default=4, help="worker threads per consumer (4)")
    ap.add_argument("--rounds", type=int, default=1, help="measured no-change rounds (1)")
    ap.add_argument("--postgres", metavar="URL",
                    help="PostgreSQL admin URL; a fresh database is made beside it and dropped "
                    "(default: postgres@ or root@127.0.0.1:5432/test)")  # fmt: skip
    ap.add_argument("--redis", metavar="URL", default="redis://127.0.0.1:6379/0",
                    help="Redis URL for Huey (default redis://127.0.0.1:6379/0)")  # fmt: skip
    ap.add_argument("--plain", action="store_true",
                    help="run jobs.worker itself (no request counting)")  # fmt: skip
    ap.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING"],
                    help="the consumers' log level (WARNING: no line per job)")  # fmt: skip
    ap.add_argument("--seed-threads", type=int, default=8, help="parallel seeding clients (8)")
    ap.add_argument("--timeout", type=float, default=600, help="give up on a round after (s)")
    args = ap.parse_args(argv)
    if min(args.pairs, args.radicales, args.consumers, args.workers, args.rounds) < 1:
        ap.error("counts must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from assistant.bootstrap import build
    from assistant.entrypoints.embedded import EmbeddedRadicale
    from assistant.store.migrate import upgrade
    from assistant.store.tables import ScheduleChange
    from config.settings import load
    from jobs.queue import build_huey
    from jobs.tasks import register

    admin = args.postgres or find_postgres()
    result: dict[str, Any] = {"bench": "scale", "pairs": args.pairs, "events": args.events,
                              "consumers": args.consumers, "workers": args.workers,
                              "radicales": args.radicales, "cpus": os.cpu_count()}  # fmt: skip
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-scale-")))
        radicales = [stack.enter_context(EmbeddedRadicale(root / f"radicale{n}"))
                     for n in range(args.radicales)]  # fmt: skip
        t = time.monotonic()
        urls = seed(radicales, args.pairs, args.events, args.seed_threads)
        result["seed_s"] = round(time.monotonic() - t, 1)
        say(f"seeded {len(urls)} calendars x {args.events} events in {result['seed_s']}s")

        db_url = stack.enter_context(temp_postgres(admin))
        queue = stack.enter_context(temp_redis_queue(args.redis))
        settings = load(
            None, data_dir=str(root / "data"), log_level="WARNING",
            database={"url": db_url}, queue={"backend": "redis", "url": args.redis,
                                             "name": queue, "scheduler": False},
            sync={"poll_interval_seconds": INTERVAL},
        )  # fmt: skip
        upgrade(db_url)
        svc = build(settings)
        stack.callback(svc.engine.dispose)
        t = time.monotonic()
        add_pairs(svc, urls)
        say(f"{args.pairs} pairs and accounts added in {time.monotonic() - t:.1f}s")
        huey = build_huey(settings)
        jobs = register(huey, periodic=False)  # this process only queues jobs
        env = consumer_env(db_url, args.redis, queue, root / "data", args.log_level)
        procs = stack.enter_context(consumers(args.consumers, args.workers, env, root, args.plain))
        key = f"{queue}:bench:requests"

        first = run_round(svc, jobs, args.pairs, args.timeout, procs)
        first["requests"] = (
            summary(requests_by_account(args.redis, key)) if not args.plain else None
        )
        result["first_full_sync"] = first
        say(f"first (full) sync of every calendar: {first}")
        if not first["complete"]:
            raise SystemExit(_tails(root, "the first sync did not complete"))

        rounds = []
        for _ in range(args.rounds):
            time.sleep(INTERVAL * 0.5 + 0.2)  # every account is due again
            reset_requests(args.redis, key)
            cpu0 = [cpu_seconds(p.pid) for p in procs]
            rad0 = [cpu_seconds(r._process.pid) for r in radicales]
            r = run_round(svc, jobs, args.pairs, args.timeout, procs)
            cpu1 = [cpu_seconds(p.pid) for p in procs]
            rad1 = [cpu_seconds(r_._process.pid) for r_ in radicales]
            r["cpu_s_consumers"] = round(sum(cpu1) - sum(cpu0), 2)
            r["cpu_s_per_consumer"] = [round(b - a, 2) for a, b in zip(cpu0, cpu1, strict=True)]
            r["cpu_s_radicale"] = round(sum(rad1) - sum(rad0), 2)
            if not args.plain:
                counts = requests_by_account(args.redis, key)
                r["accounts_counted"] = len(counts)
                r["requests_per_account"] = summary([float(c) for c in counts])
                r["requests_total"] = sum(counts)
            rounds.append(r)
            say(f"no-change round: {r}")
        with svc.uow.read() as s:
            from sqlalchemy import func, select

            result["changes_reported"] = s.scalar(select(func.count()).select_from(ScheduleChange))
    result["rounds"] = rounds
    worst = max(r["wall_s"] for r in rounds)
    result["target_s"] = 30.0
    result["target_met"] = all(r["complete"] for r in rounds) and worst <= 30.0
    m = rounds[-1]
    per = m.get("requests_per_account") or {}
    print(
        f"no-change round of {args.pairs} calendars: wall {m['wall_s']}s (target <= 30s: "
        f"{'met' if result['target_met'] else 'NOT met'}), consumers' CPU {m['cpu_s_consumers']}s, "
        f"Radicale CPU {m['cpu_s_radicale']}s; requests per account: "
        f"{per.get('mean', 'not counted')} (max {per.get('max', '-')}); "
        f"changes reported: {result['changes_reported']}"
    )
    print(json.dumps(result))
    return 0 if result["target_met"] else 1


def _tails(root: Path, head: str) -> str:
    lines = [head]
    for log in sorted(root.glob("consumer*.log")):
        lines.append(f"--- {log.name}")
        lines.extend(log.read_text(errors="replace").splitlines()[-15:])
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
