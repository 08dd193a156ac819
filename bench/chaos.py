"""Nothing lost under faults: the full chaos run (issue 14, point 14).

1,000 changes over 20 pairs (one CalDAV calendar each, in a real Radicale), spread over
five minutes, while the worker process (``huey_consumer jobs.worker.huey``, the one that
runs the scheduler) is killed with SIGKILL every 3–12 s and started again, a fault proxy
answers 20% of the provider requests with 401, 429, 500, 502, 503 or a hang past the
client's timeout, and the SMTP server refuses 20% of the sessions. Then the faults stop
and the worker runs until every change arrived (at most ``--settle`` seconds).

It prints the counts as one JSON object: changes made and delivered, lost (must be 0),
changes in two messages with different Message-IDs (must be 0), messages received twice
with the same Message-ID (the documented SMTP window), kills, faults injected.

    .venv/bin/python bench/chaos.py
    .venv/bin/python bench/chaos.py --pairs 5 --changes 100 --seconds 40

The short form runs in CI as ``tests/e2e/test_chaos.py``. See ``tests/support/chaos.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.chaos import ChaosPlan, run_chaos  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=300.0, help="spread the changes over")
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--smtp-refuse-rate", type=float, default=0.2)
    parser.add_argument("--settle", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    plan = ChaosPlan(
        pairs=args.pairs, changes=args.changes, seconds=args.seconds,
        fault_rate=args.fault_rate, smtp_refuse_rate=args.smtp_refuse_rate,
        settle_seconds=args.settle, seed=args.seed,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="chaos-") as folder:
        result = run_chaos(plan, Path(folder), lambda line: print(line, file=sys.stderr))
    figures = {"bench": "chaos", **result.figures(),
               "ok": not result.lost and not result.in_two_messages}  # fmt: skip
    if result.lost:
        figures["lost_titles"] = result.lost[:20]
    if result.in_two_messages:
        figures["in_two_messages_titles"] = result.in_two_messages[:20]
    print(json.dumps(figures))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
