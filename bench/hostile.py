"""Hostile inputs through the production path: time and peak RSS of each, against a target.

    PYTHONPATH=. python bench/hostile.py            # every case, a table, exit 1 on a miss
    PYTHONPATH=. python bench/hostile.py --case minutely-count

Each case runs in a subprocess of its own (a fresh interpreter: its peak RSS is that
case's alone). Calendar cases write the hostile feed to a file, add an ``ics`` account
for it on a migrated SQLite database and run one sync (``open_calendar`` with the
``[limits]`` settings → ``IcsFeed.changes`` → ``sync_calendar``, snapshots stored). Mail
cases put the message in a Maildir and read it as the archive import
(``MaildirSource.changes``) and the service's inbox (``fetch_new_bodies``) do. The time
is wall time of that work (building the input excluded), with its CPU time beside it (on
a busy machine the wall time grows, the CPU time much less); the RSS is the process's
peak. Target: each case within 10 s (wall) and 300 MB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_SECONDS = 10.0
TARGET_MB = 300.0


# ------------------------------------------------------------------------ the cases


def _calendar(data: bytes, work: Path) -> dict[str, Any]:
    from datetime import timedelta

    from assistant.bootstrap import Service
    from assistant.services.pairs import add_account, add_pair
    from assistant.services.sync import SyncPolicy, sync_calendar
    from assistant.store.db import UnitOfWork, make_engine
    from assistant.store.migrate import upgrade
    from config.settings import Settings
    from connectors.base import ConnectorError, ParseLimits
    from connectors.registry import open_calendar
    from tests.security.hostile_inputs import NOW

    feed = work / "hostile.ics"
    feed.write_bytes(data)
    del data
    url = f"sqlite:///{work / 'assistant.db'}"
    upgrade(url)
    uow = UnitOfWork(make_engine(url))
    deps = Service(settings=Settings(), engine=uow.engine, uow=uow, clock=lambda: NOW)
    add_pair(deps, name="p", manager_email="m@example.com", assistant_email="a@example.com",
             timezone="Europe/Berlin")  # fmt: skip
    conf = {"location": str(feed), "added_by_operator": True}  # a local file: the operator's
    account = add_account(deps, pair="p", name="feed", provider="ics", settings=conf)
    limits = ParseLimits.of(Settings().limits)
    policy = SyncPolicy(window_past=timedelta(days=7), window_future=timedelta(days=120))
    began, cpu = time.perf_counter(), time.process_time()
    try:
        source = open_calendar("ics", conf, limits=limits)
        report = sync_calendar(uow, account.id, source, NOW, policy)
        outcome = f"{report.events} events stored, {len(report.skipped)} reason(s) reported"
    except ConnectorError as exc:
        outcome = f"refused: {str(exc)[:70]}"
    took = time.perf_counter() - began
    return {"seconds": took, "cpu": time.process_time() - cpu, "outcome": outcome}


def _mail(raw: bytes, work: Path) -> dict[str, Any]:
    from connectors.archive.mailbox import MaildirSource

    box = work / "mail"
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True)
    (box / "new" / "1.eml").write_bytes(raw)
    del raw
    began, cpu = time.perf_counter(), time.process_time()
    delta = MaildirSource(box).changes(None)
    bodies, _ = MaildirSource(box).fetch_new_bodies(None)
    seconds = time.perf_counter() - began
    reason = delta.skipped[0].split(": ", 1)[-1] if delta.skipped else "read"
    outcome = f"archive: {reason}; inbox: {len(bodies)} message(s) read"
    return {"seconds": seconds, "cpu": time.process_time() - cpu, "outcome": outcome}


def _deep_json(work: Path) -> dict[str, Any]:
    """A 100,000-deep JSON array (200 kB, under the size limit) posted to the web app's
    Graph webhook and to the JSON API's login: the app as ``assistant run`` serves it."""
    import warnings

    with warnings.catch_warnings():  # starlette warns about httpx; the app is the point
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from assistant.bootstrap import build
    from assistant.entrypoints.web.app import create_app
    from assistant.store.migrate import upgrade
    from config.settings import Settings

    settings = Settings(data_dir=work)
    upgrade(f"sqlite:///{work / 'assistant.db'}")
    svc = build(settings)
    app = create_app(svc, on_push=lambda signal: None)
    deep = b"[" * 100_000 + b"]" * 100_000
    began, cpu = time.perf_counter(), time.process_time()
    with TestClient(app, raise_server_exceptions=False) as client:
        headers = {"Content-Type": "application/json"}
        push = client.post("/push/graph", content=deep, headers=headers).status_code
        login = client.post("/api/login", content=deep, headers=headers).status_code
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "cpu": time.process_time() - cpu,
            "outcome": f"/push/graph {push}, /api/login {login} (400 expected)"}  # fmt: skip


def _cases() -> dict[str, Callable[[Path], dict[str, Any]]]:
    from tests.security import hostile_inputs as h

    return {
        "endless SECONDLY": lambda w: _calendar(h.endless_secondly(), w),
        "MINUTELY COUNT=1e6": lambda w: _calendar(h.minutely_count(1_000_000), w),
        "20 MB property": lambda w: _calendar(h.huge_property(20), w),
        "10k events": lambda w: _calendar(h.many_events(10_000), w),
        "200k events": lambda w: _calendar(h.many_events(200_000), w),
        "10k nested components": lambda w: _calendar(h.nested_components(10_000), w),
        "deep MIME (10k multiparts)": lambda w: _mail(h.nested_mime(10_000), w),
        "100k headers": lambda w: _mail(h.many_headers(100_000), w),
        "deep JSON": _deep_json,
    }


CASES = [
    "endless SECONDLY", "MINUTELY COUNT=1e6", "20 MB property", "10k events", "200k events",
    "10k nested components", "deep MIME (10k multiparts)", "100k headers", "deep JSON",
]  # fmt: skip


# ------------------------------------------------------------------------- running


def run_case(name: str) -> dict[str, Any]:
    """In this process: run one case, with its peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            result = _cases()[name](Path(tmp))
        except NotImplementedError as exc:
            return {"case": name, "skipped": str(exc)}
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"case": name, **result, "peak_mb": peak_kib / 1024}


def in_subprocess(name: str) -> dict[str, Any]:
    budget = TARGET_SECONDS * 30  # a hang shows as a miss, not as a bench that never ends
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--case", name],
            capture_output=True, text=True, timeout=budget, cwd=ROOT,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        nan = float("nan")
        return {"case": name, "seconds": budget, "cpu": nan, "peak_mb": nan, "outcome": "hung"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:70]
        return {"case": name, "seconds": float("nan"), "peak_mb": float("nan"),
                "outcome": f"crashed: {tail}"}  # fmt: skip
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help="run one case in this process, print JSON")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
        return 0
    rows = [in_subprocess(name) for name in CASES]
    missed = 0
    print(f"{'input':<28} {'time':>8} {'cpu':>7} {'peak RSS':>9}  {'target':<14} result")
    for r in rows:
        if "skipped" in r:
            print(f"{r['case']:<28} {'—':>8} {'—':>7} {'—':>9}  {'—':<14} skipped: {r['skipped']}")
            continue
        ok = r["seconds"] <= TARGET_SECONDS and r["peak_mb"] <= TARGET_MB
        ok = ok and not str(r.get("outcome", "")).startswith(("hung", "crashed"))
        missed += not ok
        verdict = "ok" if ok else "MISSED"
        target = f"≤{TARGET_SECONDS:g} s ≤{TARGET_MB:g} MB"
        print(
            f"{r['case']:<28} {r['seconds']:>7.2f}s {r.get('cpu', float('nan')):>6.2f}s "
            f"{r['peak_mb']:>7.0f}MB  {target:<14} "
            f"{verdict}: {r.get('outcome', '')}"
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
