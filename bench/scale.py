"""One no-change polling round of N pairs, each with a CalDAV calendar and an IMAP mailbox:
how long, how much CPU, how many queries per account? (issues 5 and 16.6)

    .venv/bin/python bench/scale.py --pairs 1000 10000 [--radicales 2] [--profile 400]

The scale-out configuration of the README, on this machine: PostgreSQL for the
database, Redis for Huey, and two worker processes started as an operator would::

    huey_consumer bench.scale_worker.huey -w 4 -k thread     # twice

(``bench.scale_worker`` is ``jobs.worker`` plus counters, kept in the process and written
to Redis every 0.2 s: SQL statements per account sync, HTTP requests per calendar sync,
IMAP commands per mailbox sync; ``--plain`` runs ``jobs.worker`` itself, uncounted.)
Settings reach the workers through ``ASSISTANT_*`` environment variables, with
``ASSISTANT_QUEUE__SCHEDULER=false`` on both: this script plays the scheduler and
queues the round itself.

For each pair count given (each on fresh servers):

1. Radicale (``--radicales`` embedded instances) gets one calendar collection per manager
   with ``--events`` events, written into its storage folder (``bench/scale_probes.py``);
   one Dovecot gets a login per manager with ``--messages`` messages in the INBOX. Real
   IMAP, because the service polls IMAP accounts (Maildir and mbox exports are imported
   by hand, never polled); Dovecot is tuned as a server for many logins is (processes
   reused, not one per connection);
2. a fresh PostgreSQL database (dropped at the end) gets the pairs and their two accounts
   (through ``add_pair``/``add_account``), and a unique Huey queue name on Redis (its keys
   deleted at the end);
3. the first round (``sync_due`` → one ``sync_account`` per account: full syncs, the
   baseline) runs and is waited for;
4. the measured round: the same ``sync_due`` job once more, nothing changed on the
   servers. Wall time runs from queueing ``sync_due`` to the moment every account's
   ``last_sync_at`` shows this round (read from PostgreSQL every 0.2 s); CPU time is
   user + system from /proc, before and after, of the two consumers, of Radicale, of
   Dovecot's processes and of the PostgreSQL backends of the database;
5. EXPLAIN (ANALYZE) of every statement the consumers ran in that round, with the
   parameters they used (rolled back), and the sequential and index scans per table
   from ``pg_stat_user_tables``; ``--profile N`` then syncs N accounts in this process,
   without and with cProfile (the service's CPU per sync without Huey, and where it goes).

The target (issue 16.6): <= 60 s for 10,000 pairs on this 2-core machine, the cost per
pair flat from 1,000 to 10,000. The load average before and after the round is printed:
other work on the machine inflates every figure.

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
    cpu_seconds,
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


def add_pairs(svc: Any, urls: list[str], dovecot: Any, threads: int = 6) -> None:
    """One pair per calendar URL, with that calendar and (``dovecot``) its IMAP mailbox,
    added through the service (``add_pair``, ``add_account``) from ``threads`` threads."""
    from assistant.services.pairs import add_account, add_pair
    from bench.scale_probes import mail_settings

    def one(i: int) -> None:
        pair = add_pair(
            svc, name=f"pair{i}", manager_email=f"manager{i}@example.com",
            assistant_email=f"assistant{i}@example.com", timezone="Europe/Berlin",
        )  # fmt: skip
        add_account(svc, pair=pair.id, name="calendar", provider="caldav",
                    settings={"url": urls[i]})  # fmt: skip
        if dovecot is not None:
            add_account(svc, pair=pair.id, name="inbox", provider="imap",
                        settings=mail_settings(dovecot, i))  # fmt: skip

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(len(urls))))


# ---------------------------------------------------------------------------- workers


@contextmanager
def consumers(
    count: int, workers: int, env: dict[str, str], folder: Path, plain: bool,
    code: Path = ROOT,
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
                cwd=code, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
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


def consumer_env(db_url: str, redis_url: str, queue: str, data_dir: Path, log_level: str,
                 code: Path = ROOT) -> dict[str, str]:  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update({
        "PYTHONPATH": str(code),
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

    with svc.uow.read() as s:  # one scan of the table (it counts in the round's figures)
        done, bad = s.execute(select(
            func.count().filter(Account.last_sync_at >= since),
            func.count().filter(Account.state == "error"),
        )).one()  # fmt: skip
    return int(done or 0), int(bad or 0)


def run_round(svc: Any, jobs: Any, total: int, timeout: float, procs: list[Any]) -> dict[str, Any]:
    """Queue ``sync_due`` once and wait until every account shows a sync of this round."""
    started_at = svc.now()
    began = time.monotonic()
    jobs.sync_due(0)
    done = bad = polls = 0
    while time.monotonic() - began < timeout:
        done, bad = synced_since(svc, started_at)
        polls += 1
        if done + bad >= total:
            break
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a consumer process exited; see its log")
        time.sleep(0.2)
    wall = time.monotonic() - began
    return {"wall_s": round(wall, 2), "synced": done, "errors": bad,
            "complete": done == total, "watch_polls": polls}  # fmt: skip


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
        description="Wall and CPU time of one no-change polling round of N pairs, each with "
        "a CalDAV calendar and an IMAP mailbox (PostgreSQL + Redis, two huey_consumer "
        "processes).",
        epilog="The last line printed is one JSON object with the figures.",
    )
    ap.add_argument("--pairs", type=int, nargs="+", default=[1000],
                    help="pair counts, each measured on fresh servers (1000); "
                    "e.g. --pairs 1000 10000 compares the cost per pair")  # fmt: skip
    ap.add_argument("--events", type=int, default=5, help="events per calendar (5)")
    ap.add_argument("--messages", type=int, default=2, help="messages per INBOX (2)")
    ap.add_argument("--no-mail", action="store_true", help="calendars only, no mailboxes")
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
                    help="run jobs.worker itself (no counting, no EXPLAIN)")  # fmt: skip
    ap.add_argument("--code", type=Path, default=ROOT,
                    help="the consumers run the service from this folder (an export of another "
                    "commit, with this bench/scale_worker.py copied in), for A/B runs")  # fmt: skip
    ap.add_argument("--no-explain", action="store_true", help="skip EXPLAIN of the statements")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="after the rounds, sync N accounts (half calendars, half mailboxes) "
                    "in this process under cProfile and print the top functions")  # fmt: skip
    ap.add_argument("--profile-out", type=Path, default=Path("scale-profile.pstats"),
                    help="--profile's pstats file (scale-profile.pstats)")  # fmt: skip
    ap.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING"],
                    help="the consumers' log level (WARNING: no line per job)")  # fmt: skip
    ap.add_argument("--timeout", type=float, default=900, help="give up on a round after (s)")
    args = ap.parse_args(argv)
    if min(*args.pairs, args.radicales, args.consumers, args.workers, args.rounds) < 1:
        ap.error("counts must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    admin = args.postgres or find_postgres()
    sizes = [measure(args, admin, n) for n in args.pairs]
    result: dict[str, Any] = {"bench": "scale", "events": args.events,
                              "messages": 0 if args.no_mail else args.messages,
                              "consumers": args.consumers, "workers": args.workers,
                              "radicales": args.radicales, "cpus": os.cpu_count(),
                              "sizes": sizes}  # fmt: skip
    for size in sizes:
        print(line_for(size))
    if len(sizes) > 1:
        a, b = sizes[0]["per_pair"], sizes[-1]["per_pair"]
        print(
            f"cost per pair from {sizes[0]['pairs']} to {sizes[-1]['pairs']} pairs: wall "
            f"{a['wall_ms']} -> {b['wall_ms']} ms, consumer CPU {a['consumer_cpu_ms']} -> "
            f"{b['consumer_cpu_ms']} ms, servers' CPU {a['server_cpu_ms']} -> "
            f"{b['server_cpu_ms']} ms"
        )
    result["target_s"] = TARGET_S
    result["target_met"] = all(s["target_met"] for s in sizes)
    print(json.dumps(result))
    return 0 if result["target_met"] else 1


TARGET_S = 60.0


def line_for(size: dict[str, Any]) -> str:
    m = size["rounds"][-1]
    q = m.get("counts") or {}
    pp = size["per_pair"]
    return (
        f"{size['pairs']} pairs, {size['accounts']} accounts: no-change round wall "
        f"{m['wall_s']}s (target <= {TARGET_S:.0f}s: "
        f"{'met' if size['target_met'] else 'NOT met'}), "
        f"consumers' CPU {m['cpu_s_consumers']}s ({pp['consumer_cpu_ms_per_account']} ms per "
        f"account), Radicale {m['cpu_s_radicale']}s, Dovecot {m['cpu_s_dovecot']}s, PostgreSQL "
        f"{m['cpu_s_postgres']}s; per pair: wall {pp['wall_ms']} ms, consumer CPU "
        f"{pp['consumer_cpu_ms']} ms, servers {pp['server_cpu_ms']} ms; queries per account "
        f"{q.get('queries_per_account', '-')} (calendar sync "
        f"{q.get('queries_per_calendar_sync', '-')}, "
        f"mail sync {q.get('queries_per_mail_sync', '-')}, outside syncs "
        f"{q.get('queries_outside_syncs', '-')}); HTTP per calendar "
        f"{q.get('http_requests_per_calendar_sync', '-')}, IMAP commands per mailbox "
        f"{q.get('imap_commands_per_mail_sync', '-')}; seq scans in the round: "
        f"{size.get('seq_scans', '-')}; changes reported {size['changes_reported']}"
    )


def measure(args: argparse.Namespace, admin: str, pairs: int) -> dict[str, Any]:
    from sqlalchemy import func, make_url, select

    from assistant.bootstrap import build
    from assistant.entrypoints.embedded import EmbeddedRadicale
    from assistant.store.migrate import upgrade
    from assistant.store.tables import ScheduleChange
    from bench import scale_probes as probes
    from config.settings import load
    from jobs.queue import build_huey
    from jobs.tasks import register

    mail = not args.no_mail
    size: dict[str, Any] = {"pairs": pairs}
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-scale-")))
        radicales = [EmbeddedRadicale(root / f"radicale{n}") for n in range(args.radicales)]
        t = time.monotonic()
        for n, rad in enumerate(radicales):
            probes.seed_calendars(rad.storage_folder, range(n, pairs, args.radicales), args.events)
        radicales = [stack.enter_context(r) for r in radicales]
        urls = [f"{radicales[i % len(radicales)].url}manager{i}/calendar/" for i in range(pairs)]
        dovecot = stack.enter_context(probes.mail_server(pairs, args.messages)) if mail else None
        size["seed_s"] = round(time.monotonic() - t, 1)
        say(f"[{pairs}] seeded {pairs} calendars x {args.events} events"
            f"{f' and {pairs} mailboxes' if mail else ''} in {size['seed_s']}s")  # fmt: skip

        db_url = stack.enter_context(temp_postgres(admin))
        database = make_url(db_url).database or ""
        queue = stack.enter_context(temp_redis_queue(args.redis))
        os.environ[probes.IMAP_PASSWORD_ENV] = probes.IMAP_PASSWORD
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
        add_pairs(svc, urls, dovecot)
        accounts = pairs * (2 if mail else 1)
        size["accounts"] = accounts
        say(f"[{pairs}] {pairs} pairs, {accounts} accounts added in {time.monotonic() - t:.1f}s")
        huey = build_huey(settings)
        jobs = register(huey, periodic=False)  # this process only queues jobs
        env = consumer_env(db_url, args.redis, queue, root / "data", args.log_level, args.code)
        env[probes.IMAP_PASSWORD_ENV] = probes.IMAP_PASSWORD
        procs = stack.enter_context(
            consumers(args.consumers, args.workers, env, root, args.plain, args.code)
        )
        key = f"{queue}:bench:stats"

        first = run_round(svc, jobs, accounts, args.timeout, procs)
        size["first_full_sync"] = first
        say(f"[{pairs}] first (full) sync of every account: {first}")
        if not first["complete"]:
            raise SystemExit(_tails(root, "the first sync did not complete"))

        rounds = []
        delta: dict[str, Any] = {}
        for _ in range(args.rounds):
            time.sleep(INTERVAL * 0.5 + 0.2)  # every account is due again
            stats0 = {} if args.plain else probes.settled_stats(args.redis, key, len(procs))
            cpu0 = [cpu_seconds(p.pid) for p in procs]
            rad0 = [cpu_seconds(r._process.pid) for r in radicales]
            dov0 = probes.group_cpu(dovecot._process.pid) if dovecot else 0.0
            pg0 = probes.postgres_cpu(admin, database)
            scans0 = probes.table_scans(db_url)
            load0 = os.getloadavg()[0]
            r = run_round(svc, jobs, accounts, args.timeout, procs)
            r["load_avg_1min"] = [round(load0, 1), round(os.getloadavg()[0], 1)]
            cpu1 = [cpu_seconds(p.pid) for p in procs]
            rad1 = [cpu_seconds(r_._process.pid) for r_ in radicales]
            dov1 = probes.group_cpu(dovecot._process.pid) if dovecot else 0.0
            pg1 = probes.postgres_cpu(admin, database)
            r["cpu_s_consumers"] = round(sum(cpu1) - sum(cpu0), 2)
            r["cpu_s_per_consumer"] = [round(b - a, 2) for a, b in zip(cpu0, cpu1, strict=True)]
            r["cpu_s_radicale"] = round(sum(rad1) - sum(rad0), 2)
            r["cpu_s_dovecot"] = round(dov1 - dov0, 2)
            r["cpu_s_postgres"] = round(probes.cpu_spent(pg0, pg1), 2)
            time.sleep(1.0)  # backends report their table statistics within a second
            scans = probes.scans_delta(scans0, probes.table_scans(db_url))
            if "accounts" in scans:  # this script's own watching: one scan per poll
                scans["accounts"]["seq_scan_by_this_script"] = r["watch_polls"]
            r["table_scans"] = scans
            if not args.plain:
                delta = probes.stats_delta(stats0, probes.settled_stats(args.redis, key,
                                                                        len(procs)))  # fmt: skip
                r["counts"] = probes.per_account(delta, accounts)
            rounds.append(r)
            say(f"[{pairs}] no-change round: {r}")
        size["rounds"] = rounds
        m = rounds[-1]
        servers = m["cpu_s_radicale"] + m["cpu_s_dovecot"] + m["cpu_s_postgres"]
        size["per_pair"] = {
            "wall_ms": round(m["wall_s"] / pairs * 1000, 2),
            "consumer_cpu_ms": round(m["cpu_s_consumers"] / pairs * 1000, 2),
            "consumer_cpu_ms_per_account": round(m["cpu_s_consumers"] / accounts * 1000, 2),
            "server_cpu_ms": round(servers / pairs * 1000, 2),
        }
        size["target_met"] = all(r_["complete"] for r_ in rounds) and max(
            r_["wall_s"] for r_ in rounds) <= TARGET_S  # fmt: skip
        if delta and not args.no_explain:
            plans = probes.explain(db_url, delta, accounts)
            size["explain"] = plans
            size["seq_scans"] = sorted({t_ for p in plans for t_ in p.get("seq_scans", [])})
            say(f"[{pairs}] scans per table in the round (pg_stat_user_tables): "
                f"{m.get('table_scans')}")  # fmt: skip
            for p in plans:
                say(f"[{pairs}] EXPLAIN {p['per_account']}/account {p['sql'][:110]!r}: "
                    f"{p.get('nodes', p.get('plan'))} {p.get('time', '')}")  # fmt: skip
        if args.profile:
            size["profile"] = profile(svc, args.profile, args.profile_out)
        with svc.uow.read() as s:
            size["changes_reported"] = s.scalar(select(func.count()).select_from(ScheduleChange))
    return size


def profile(svc: Any, count: int, dump: Path) -> dict[str, Any]:
    """``pipeline.after_poll`` of ``count`` accounts in this process under cProfile."""
    import cProfile
    import io
    import pstats

    from sqlalchemy import select

    from assistant.services import pipeline
    from assistant.store.tables import Account

    with svc.uow.read() as s:
        cal = s.scalars(select(Account.id).where(Account.kind == "calendar")
                        .order_by(Account.id).limit(count // 2 or 1)).all()  # fmt: skip
        mail = s.scalars(select(Account.id).where(Account.kind == "mail")
                         .order_by(Account.id).limit(count // 2)).all()  # fmt: skip
    ids = [a for pair in zip(cal, mail, strict=False) for a in pair] or list(cal)
    for aid in ids[:4]:  # warm: imports, pools
        pipeline.after_poll(svc, aid)
    c = time.process_time()
    for aid in ids:  # without the profiler: the service's own CPU per sync, no Huey
        pipeline.after_poll(svc, aid)
    plain = (time.process_time() - c) / len(ids) * 1000
    prof = cProfile.Profile(time.process_time)  # CPU, not waits
    t, c = time.monotonic(), time.process_time()
    prof.enable()
    for aid in ids:
        pipeline.after_poll(svc, aid)
    prof.disable()
    wall, cpu = time.monotonic() - t, time.process_time() - c
    prof.dump_stats(str(dump))  # pstats file: python -m pstats <file>, "callers <name>"
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)
    say(out.getvalue())
    figures = {"accounts": len(ids), "cpu_ms_per_account_unprofiled": round(plain, 2),
               "cpu_ms_per_account": round(cpu / len(ids) * 1000, 2),
               "wall_ms_per_account": round(wall / len(ids) * 1000, 2)}  # fmt: skip
    say(f"profile (in-process, cProfile on: slower than without): {figures}")
    return figures


def _tails(root: Path, head: str) -> str:
    lines = [head]
    for log in sorted(root.glob("consumer*.log")):
        lines.append(f"--- {log.name}")
        lines.extend(log.read_text(errors="replace").splitlines()[-15:])
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
