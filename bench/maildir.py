"""Is ``assistant latency --maildir`` as fast as a plain script? (issue 16, point 4)

Side by side in one run, on one Maildir: the ``assistant latency --maildir DIR --manager
M --assistant A --json`` process (what a user runs: it reads every message, pairs the
replies and measures them) against a plain stdlib script that only reads the headers of
every message (``email.parser.BytesHeaderParser``), with a process pool over the files
(parallel where it helps: ``--workers``, default the number of cores). Each is timed as a
process (startup included), best of ``--reps`` after one warm-up run (the file cache).

A third process tells how much of the difference is reading the text: the same CLI run
with ``connectors.archive.mailbox.READ_TEXT`` off (headers only: no ``body_key``,
``text_key`` or ``quote_keys``, so copies and quoted replies are not found; its figures
may differ). Its time is ``cli_keys_off_s``; ``text_share_of_gap`` is the part of
``cli_s - plain_s`` that ``cli_s - cli_keys_off_s`` explains.

The Maildir: a real executive's archive from ``../shared/evaldata/enron/maildir`` when it
is there (``--archive lay-k``), else ``--messages`` generated messages.

    .venv/bin/python bench/maildir.py
    .venv/bin/python bench/maildir.py --archive none --messages 20000

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EVALDATA = ROOT.parent / "shared" / "evaldata" / "enron"
PAIRS = {  # archive → (manager addresses, assistant addresses), from evaldata's pairs.csv
    "lay-k": (["ken.lay@enron.com", "kenneth.lay@enron.com", "klay@enron.com"],
              ["rosalee.fleming@enron.com"]),
    "lavorato-j": (["john.lavorato@enron.com"], ["kimberly.hillis@enron.com"]),
}  # fmt: skip

PLAIN = r"""
import os, sys
from concurrent.futures import ProcessPoolExecutor
from email.parser import BytesHeaderParser
from email import policy

def headers(path):
    with open(path, "rb") as f:
        msg = BytesHeaderParser(policy=policy.compat32).parse(f)
    return (msg.get("Message-ID"), msg.get("Date"), msg.get("From"), msg.get("To"),
            msg.get("Cc"), msg.get("Subject"), msg.get("In-Reply-To"))

def files(root):
    for top, dirs, names in os.walk(root):
        for n in names:
            if not n.startswith("."):
                yield os.path.join(top, n)

if __name__ == "__main__":
    paths = list(files(sys.argv[1]))
    workers = int(sys.argv[2])
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            found = list(pool.map(headers, paths, chunksize=256))
    else:
        found = [headers(p) for p in paths]
    print(len(found))
"""


def generate(folder: Path, n: int) -> tuple[list[str], list[str]]:
    """``n`` messages between a manager and an assistant (half replies), in a Maildir."""
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    first = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
    boss, aide = "alex@example.com", "sam@example.com"
    for i in range(n):
        at = first + timedelta(minutes=37 * i)
        ask = i % 2 == 0
        sender, to = (aide, boss) if ask else (boss, aide)
        subject = f"Item {i // 2}" if ask else f"Re: Item {i // 2}"
        reply = "" if ask else f"In-Reply-To: <m{i - 1}@example.com>\n"
        body = "Please see the attached.\n" * 20
        text = (
            f"Message-ID: <m{i}@example.com>\nDate: {at:%a, %d %b %Y %H:%M:%S +0000}\n"
            f"From: {sender}\nTo: {to}\nSubject: {subject}\n{reply}"
            f"Content-Type: text/plain; charset=utf-8\n\n{body}"
        )
        (folder / "cur" / f"{1700000000 + i}.{i}.bench:2,S").write_text(text)
    return [boss], [aide]


def best(reps: int, run: Callable[[], str]) -> tuple[float, float, str]:
    run()  # warm-up: the page cache, the imports
    walls, cpus, out = [], [], ""
    for _ in range(reps):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        out = run()
        walls.append(time.perf_counter() - began)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return min(walls), min(cpus), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", default="lay-k", help="an evaldata archive, or none")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="maildir-bench-") as tmp:
        source = EVALDATA / "maildir" / args.archive
        if args.archive != "none" and source.is_dir() and args.archive in PAIRS:
            folder, (managers, assistants) = source, PAIRS[args.archive]
            label = f"evaldata {args.archive}"
        else:
            folder = Path(tmp) / "Maildir"
            managers, assistants = generate(folder, args.messages)
            label = f"generated {args.messages}"
        files = sum(len(names) for _, _, names in os.walk(folder))
        # The CLI of this tree (not whatever ``assistant`` the interpreter has installed).
        entry = "from assistant.entrypoints.cli.app import main; raise SystemExit(main())"
        cli = [sys.executable, "-c", entry, "latency", "--maildir", str(folder), "--json",
               *[x for m in managers for x in ("--manager", m)],
               *[x for a in assistants for x in ("--assistant", a)]]  # fmt: skip
        keys_off = [sys.executable, "-c", "import connectors.archive.mailbox as m; "
                    "m.READ_TEXT = False; " + entry, *cli[3:]]  # fmt: skip
        plain = [sys.executable, "-c", PLAIN, str(folder), str(args.workers)]

        # As installed: bytecode cached (the warm-up run writes it), this tree's code.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPATH"] = str(ROOT)

        def run(cmd: list[str]) -> str:
            done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, check=True)
            return done.stdout.decode()

        plain_s, plain_cpu, plain_out = best(args.reps, lambda: run(plain))
        cli_s, cli_cpu, cli_out = best(args.reps, lambda: run(cli))
        off_s, off_cpu, off_out = best(args.reps, lambda: run(keys_off))
    report = json.loads(cli_out)
    figures: dict[str, Any] = {
        "bench": "maildir",
        "maildir": label,
        "files": files,
        "workers": args.workers,
        "plain_headers_read": int(plain_out.strip()),
        "cli_read": report.get("read"),
        "plain_s": round(plain_s, 3),
        "cli_s": round(cli_s, 3),
        "plain_cpu_s": round(plain_cpu, 3),
        "cli_cpu_s": round(cli_cpu, 3),
        "ratio_wall": round(cli_s / plain_s, 2),
        "cli_keys_off_s": round(off_s, 3),
        "cli_keys_off_cpu_s": round(off_cpu, 3),
        "cli_keys_off_read": json.loads(off_out).get("read"),
        "text_share_of_gap": (
            round((cli_s - off_s) / (cli_s - plain_s), 2) if cli_s > plain_s else None
        ),
        "target": "cli wall <= plain wall",
    }
    figures["target_met"] = cli_s <= plain_s
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
