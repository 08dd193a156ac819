"""What ``assistant`` prints for a person (no --json) reads like it was written for one:
on an 80-column terminal every list and show command fits (no line longer than 80, an
e-mail address whole on one line), moments are in the pair's zone with the weekday
("Tue 8 Dec 14:00"), never a UTC ISO stamp, and no Python repr shows through
(``['alex:assistant']``, ``{...}``, ``True``, ``None``).

A real process on a database seeded through the CLI itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.test_cli import Cli
from tests.support.feeds import vevent as _event
from tests.support.feeds import write_feed as _feed

MANAGER = "alexandra.morgan@northwind-holdings.example"
ASSISTANT = "samantha.leeds@northwind-holdings.example"
DELEGATE = "kim.park@northwind-holdings.example"
ZONE = "America/New_York"  # UTC-5: a UTC stamp would read five hours off

ISO_MOMENT = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d")
REPRS = [
    re.compile(r"\['|'\]|\{'|'\}|\(\)|\[\]|\{\}"),  # a list, dict or tuple printed whole
    re.compile(r"\b(True|False|None)\b"),
    re.compile(r"datetime\.|<[\w.]+ object at 0x"),
]
WEEKDAY_MOMENT = re.compile(r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d{1,2} [A-Z][a-z]{2} \d\d:\d\d\b")


# One process runs many commands through the console script's function (``main``), each
# as from a shell: the second and later commands are not slowed by starting Python again.
RUN_MANY = """
import json, sys
from assistant.entrypoints.cli.app import main
for argv in json.loads(sys.argv[1]):
    print("\\x00begin", flush=True)
    code = main(argv)
    print(f"\\x00end {code}", flush=True)
"""


def run_many(cli: Cli, commands: list[list[str]]) -> list[tuple[int, str]]:
    """Each command's exit status and what it printed on stdout."""
    done = subprocess.run([sys.executable, "-c", RUN_MANY, json.dumps(commands)], env=cli.env,
                          cwd=cli.home, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    found = re.findall(r"\x00begin\n(.*?)\x00end (\d+)\n", done.stdout, re.S)
    assert len(found) == len(commands), done.stdout
    return [(int(code), text) for text, code in found]


@pytest.fixture(scope="module")
def shown(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A database seeded through the CLI; what every list and show command prints."""
    home = tmp_path_factory.mktemp("readable")
    cli = Cli(home)
    cli.env["COLUMNS"] = "80"
    cli.env["TEST_WEB_PASSWORD"] = "correct horse battery staple"
    cli("init", str(home))
    cfg = home / "assistant.toml"  # mail goes nowhere: the outbox keeps a failed entry
    cfg.write_text(cfg.read_text() + '\n[smtp]\nhost = "127.0.0.1"\nport = 9\n')
    feed = home / "cal.ics"
    soon = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    _feed(feed, _event("a", soon, "Board meeting"), _event("b", soon + timedelta(hours=3), "Lunch"))
    deadline = (datetime.now(UTC) + timedelta(days=6)).strftime("%Y-%m-%dT17:00")
    seeding = run_many(cli, [
        ["pair", "add", "alex", "--manager", MANAGER, "--assistant", ASSISTANT,
         "--manager-name", "Alexandra Morgan", "--timezone", ZONE,
         "--manager-alias", "am@northwind-holdings.example"],
        ["account", "add", "work", "--pair", "alex", "--provider", "ics", "--path", str(feed)],
        ["sync", "--pair", "alex", "--no-send"],
        ["task", "add", "Q3 board pack", "--pair", "alex", "--deadline", deadline,
         "--delegate", DELEGATE, "--result", "Deck approved"],
        ["task", "feedback", "1", "Done 50%, on track"],
        ["user", "add", ASSISTANT, "--role", "assistant", "--pair", "alex",
         "--password-env", "TEST_WEB_PASSWORD"],
        ["priorities", "add", "domain", "bigcorp.com", "--pair", "alex", "--note", "board"],
    ])  # fmt: skip
    assert [code for code, _ in seeding] == [0] * len(seeding), seeding
    _feed(feed, _event("a", soon + timedelta(hours=1), "Board meeting"))
    run_many(cli, [["sync", "--pair", "alex"]])  # the notification cannot go out
    printed = run_many(cli, COMMANDS)
    assert [code for code, _ in printed] == [0] * len(COMMANDS), printed
    shown = {" ".join(args): text for args, (_, text) in zip(COMMANDS, printed, strict=True)}
    cli.env["COLUMNS"] = "200"  # a stamp folded across lines at 80 is whole here
    wide = run_many(cli, COMMANDS)
    shown |= {f"{' '.join(args)} (wide)": text for args, (_, text) in zip(COMMANDS, wide,
                                                                          strict=True)}
    return shown


COMMANDS = [
    ["pair", "list"],
    ["pair", "aliases", "--pair", "alex"],
    ["account", "list"],
    ["changes", "--pair", "alex"],
    ["outbox"],
    ["task", "list", "--pair", "alex"],
    ["task", "show", "1"],
    ["task", "feedback", "1"],
    ["tasks", "score", "--pair", "alex"],
    ["user", "list"],
    ["priorities", "--pair", "alex"],
    ["keys", "show"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a) for a in COMMANDS])
def test_every_list_and_show_reads_well_at_80_columns(
    shown: dict[str, str], args: list[str]
) -> None:
    text = shown[" ".join(args)]
    assert text.strip(), "says something"
    for line in text.splitlines():
        assert len(line) <= 80, f"{len(line)} columns: {line!r}"
    for line in (text + shown[f"{' '.join(args)} (wide)"]).splitlines():
        assert not ISO_MOMENT.search(line), f"an ISO stamp: {line!r}"
        for pattern in REPRS:
            assert not pattern.search(line), f"a Python repr ({pattern.pattern}): {line!r}"
        assert "…" not in line, f"cut: {line!r}"


@pytest.mark.parametrize(
    ("args", "addresses"),
    [
        (["pair", "list"], [MANAGER, ASSISTANT]),
        (["user", "list"], [ASSISTANT]),
        (["task", "list", "--pair", "alex"], [DELEGATE]),
        (["outbox"], [ASSISTANT]),
    ],
    ids=["pair list", "user list", "task list", "outbox"],
)
def test_addresses_stay_whole(
    shown: dict[str, str], args: list[str], addresses: list[str]
) -> None:
    text = shown[" ".join(args)]
    for address in addresses:
        assert address in text, f"{address} cut across lines:\n{text}"


def test_moments_are_in_the_pairs_zone_with_the_weekday(shown: dict[str, str]) -> None:
    """The task's deadline was given as 17:00 in the pair's zone: shown so, with its
    weekday; the last sync (minutes ago) in that zone too, not in UTC."""
    [term] = [line for line in shown["task show 1"].splitlines() if "term:" in line]
    assert re.search(r"→ " + WEEKDAY_MOMENT.pattern.replace(r"\d\d:\d\d", "17:00"), term), term
    assert WEEKDAY_MOMENT.search(shown["changes --pair alex"]), shown["changes --pair alex"]
    synced = WEEKDAY_MOMENT.search(shown["account list"])
    assert synced is not None, shown["account list"]
    now = datetime.now(UTC).astimezone(ZoneInfo(ZONE))
    hours = {f"{(now - timedelta(minutes=m)).hour:02d}" for m in (0, 10)}
    assert synced.group(0)[-5:-3] in hours, (synced.group(0), hours)
