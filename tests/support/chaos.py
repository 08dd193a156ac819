"""The chaos run: changes on many calendars while the worker is killed and providers fail.

A real Radicale holds one calendar per pair, reached by the service through a
``FaultProxy`` that answers a share of the requests with 401, 429, 5xx or a hang longer
than the client's timeout; a real SMTP server refuses a share of the sessions (421 at
MAIL FROM). The worker is a real ``huey_consumer jobs.worker.huey`` process (the one that
runs the scheduler, as in production) that is killed with SIGKILL at random moments and
started again. Meanwhile every pair's calendar gets new events by plain HTTP, straight
into Radicale, each at its own free hour (so no conflict line names another one).

At the end the faults stop, the worker runs undisturbed until every change arrived (or a
time limit), and the run counts, from what the SMTP server received: changes made,
changes that reached the assistant, changes in two messages with different Message-IDs
(must be none) and messages received twice with the same Message-ID (the documented SMTP
window: a kill between the server's 250 and the outbox's record of it).

Used by ``tests/e2e/test_chaos.py`` (a short form) and ``bench/chaos.py`` (1,000 changes
over 20 pairs).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
TITLE = re.compile(r"Chaos-p(\d+)-(\d+)")
PROVIDER_FAULTS: tuple[int | float, ...] = (401, 429, 500, 502, 503, 4.0)  # 4.0: a hang


@dataclass(frozen=True)
class ChaosPlan:
    pairs: int = 20
    changes: int = 1000
    seconds: float = 300.0  # over which the changes are spread
    fault_rate: float = 0.2  # of provider requests
    smtp_refuse_rate: float = 0.2  # of SMTP sessions
    kill_every: tuple[float, float] = (3.0, 12.0)  # seconds between kills, at random
    settle_seconds: float = 180.0  # at most, after the last change, for stragglers
    seed: int = 7


@dataclass
class ChaosResult:
    made: int = 0
    delivered: int = 0
    lost: list[str] = field(default_factory=list)
    in_two_messages: list[str] = field(default_factory=list)  # different Message-IDs
    same_message_twice: int = 0  # one Message-ID received more than once
    messages: int = 0
    kills: int = 0
    provider_faults: int = 0
    provider_requests: int = 0
    smtp_refused: int = 0
    seconds: float = 0.0
    settle_seconds: float = 0.0

    def figures(self) -> dict[str, Any]:
        return {
            "changes_made": self.made,
            "changes_delivered": self.delivered,
            "lost": len(self.lost),
            "in_two_messages": len(self.in_two_messages),
            "same_message_id_twice": self.same_message_twice,
            "messages": self.messages,
            "worker_kills": self.kills,
            "provider_requests": self.provider_requests,
            "provider_faults": self.provider_faults,
            "smtp_sessions_refused": self.smtp_refused,
            "run_s": round(self.seconds, 1),
            "settle_s": round(self.settle_seconds, 1),
        }


def _config(root: Path, smtp: Any) -> Path:
    config = root / "assistant.toml"
    config.write_text(
        f'data_dir = "{root / "data"}"\nlog_level = "WARNING"\n'
        f'[database]\nurl = "sqlite:///{root / "assistant.db"}"\n'
        '[queue]\nbackend = "sqlite"\nworkers = 2\nscheduler = true\nname = "chaos"\n'
        f'[smtp]\nhost = "{smtp.host}"\nport = {smtp.port}\ntimeout_seconds = 5\n'
        'from_address = "assistant@example.com"\n'
        "[sync]\npoll_interval_seconds = 2\nhttp_timeout_seconds = 2\n"
        "[notify]\ncoalesce_seconds = 1\n"
        "[outbox]\nclaim_timeout_seconds = 3\nbackoff_seconds = 0.5\nbackoff_max_seconds = 2\n"
    )
    return config


class Worker:
    """The worker process (``huey_consumer``), killed and started again on demand."""

    def __init__(self, config: Path, log: Path) -> None:
        self.env = {**os.environ, "ASSISTANT_CONFIG": str(config)}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "huey.bin.huey_consumer", "jobs.worker.huey",
                 "-w", "2", "-k", "thread", "-s", "1", "-q"],
                cwd=ROOT, env=self.env, stdout=out, stderr=out,
            )  # fmt: skip

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _day(days: int, hour: int) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days, hours=hour)


def _event(uid: str, start: datetime, title: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    fmt = "%Y%m%dT%H%M%SZ"
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//chaos//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:{stamp}\r\nDTSTART:{start.strftime(fmt)}\r\n"
        f"DTEND:{(start + timedelta(hours=1)).strftime(fmt)}\r\nSUMMARY:{title}\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def _slot(k: int) -> datetime:
    """Change ``k`` of a pair: its own hour, two hours from any other (no conflicts),
    within the next 13 days (the horizon changes are reported in)."""
    return _day(1 + (k // 5) % 13, 7 + 2 * (k % 5))


def run_chaos(plan: ChaosPlan, root: Path, progress: Any = None) -> ChaosResult:
    """Run ``plan`` in the folder ``root``; see the module docstring."""
    from assistant.bootstrap import build
    from assistant.entrypoints.embedded import EmbeddedRadicale
    from assistant.services import pipeline
    from assistant.services.pairs import add_account, add_pair
    from assistant.store.migrate import upgrade
    from config.settings import load
    from tests.support.fault_proxy import FaultProxy
    from tests.support.smtp import SmtpServer

    say = progress or (lambda *_: None)
    rng = random.Random(plan.seed)
    result = ChaosResult()
    with ExitStack() as stack:
        radicale = stack.enter_context(EmbeddedRadicale(root / "radicale"))
        proxy = stack.enter_context(FaultProxy(radicale.url, timeout=30))
        smtp = stack.enter_context(SmtpServer())
        config = _config(root, smtp)
        settings = load(config)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(settings.database_url)
        svc = build(settings)
        stack.callback(svc.engine.dispose)
        urls = [radicale.new_calendar(f"cal{p}", user=f"manager{p}") for p in range(plan.pairs)]
        http = stack.enter_context(httpx.Client(timeout=30))
        accounts = []
        for p, url in enumerate(urls):
            http.put(f"{url}standing.ics", content=_event("standing", _day(1, 6), f"Standing {p}"),
                     headers={"Content-Type": "text/calendar"}).raise_for_status()  # fmt: skip
            pair = add_pair(svc, name=f"chaos{p}", manager_email=f"manager{p}@example.com",
                            assistant_email=f"assistant{p}@example.com", timezone="UTC")  # fmt: skip
            accounts.append(add_account(svc, pair=pair.id, name="calendar", provider="caldav",
                                        settings={"url": proxy.proxied(url)}).id)  # fmt: skip
        for aid in accounts:  # the baseline, before any fault: nothing to tell yet
            synced = pipeline.sync_account(svc, aid)
            if synced.error or synced.calendar is None:
                raise RuntimeError(f"the baseline sync of account {aid} failed: {synced.error}")
        say(f"{plan.pairs} calendars at their baseline")

        worker = Worker(config, root / "worker.log")
        stack.callback(worker.stop)
        worker.start()
        proxy.chaos(plan.fault_rate, PROVIDER_FAULTS, seed=plan.seed)
        proxy.fail_next(503, retry_after=1)  # the first request fails, whatever the dice say
        smtp.refuse(plan.smtp_refuse_rate, seed=plan.seed)
        smtp.fail_next(1)  # and the first message's DATA, whatever the dice say
        done = threading.Event()

        def killer() -> None:
            krng = random.Random(plan.seed + 1)
            while not done.wait(krng.uniform(*plan.kill_every)):
                worker.kill()
                if done.wait(krng.uniform(0.0, 1.0)):
                    break
                worker.start()

        killing = threading.Thread(target=killer, daemon=True)
        began = time.monotonic()
        killing.start()
        made: list[str] = []
        order = [p for p in range(plan.pairs) for _ in range(plan.changes // plan.pairs)]
        order += [rng.randrange(plan.pairs) for _ in range(plan.changes - len(order))]
        rng.shuffle(order)
        counts = Counter[int]()
        gap = plan.seconds / max(len(order), 1)
        for i, p in enumerate(order):
            k = counts[p]
            counts[p] += 1
            title = f"Chaos-p{p}-{k}"
            http.put(f"{urls[p]}{title}.ics", content=_event(title, _slot(k), title),
                     headers={"Content-Type": "text/calendar"}).raise_for_status()  # fmt: skip
            made.append(title)
            pause = began + (i + 1) * gap - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            if i % 100 == 99:
                say(f"{i + 1} changes made, {worker.kills} kills, {len(smtp.messages)} messages")
        done.set()
        killing.join(15)
        if worker.proc is None or worker.proc.poll() is not None:
            worker.start()
        proxy.chaos(0, ())
        smtp.refuse(0)
        result.seconds = time.monotonic() - began
        result.provider_requests = len(proxy.seen)
        result.provider_faults = proxy.injected + sum(1 for r in proxy.seen[:1] if r.status == 503)
        result.smtp_refused = smtp.refused
        settle = time.monotonic()
        wanted = set(made)
        while time.monotonic() - settle < plan.settle_seconds:
            if wanted <= set(_titles(smtp)):
                break
            time.sleep(1.0)
        time.sleep(3.0)  # anything sent twice arrives now
        result.settle_seconds = time.monotonic() - settle
        worker.stop()
        result.kills = worker.kills
        _count(result, made, smtp)
    return result


def _titles(smtp: Any) -> dict[str, set[str]]:
    """Each change title seen by the SMTP server → the Message-IDs that carried it."""
    seen: dict[str, set[str]] = {}
    for m in smtp.messages:
        body = m.message.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        for match in TITLE.finditer(str(m.message["Subject"] or "") + "\n" + text):
            seen.setdefault(match.group(0), set()).add(str(m.message["Message-ID"]))
    return seen


def _count(result: ChaosResult, made: list[str], smtp: Any) -> None:
    seen = _titles(smtp)
    result.made = len(made)
    result.delivered = sum(1 for t in made if t in seen)
    result.lost = [t for t in made if t not in seen]
    result.in_two_messages = sorted(t for t, ids in seen.items() if len(ids) > 1)
    ids = Counter(str(m.message["Message-ID"]) for m in smtp.messages)
    result.same_message_twice = sum(n - 1 for n in ids.values() if n > 1)
    result.messages = len(smtp.messages)
