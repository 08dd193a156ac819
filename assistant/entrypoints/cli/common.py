"""What every ``assistant`` sub-command shares: the consoles, the option types, the
settings of this run, the service, and the JSON/table output."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from assistant.bootstrap import Service
    from config.settings import Settings


class _LazyConsole:
    """A rich ``Console`` made on first use: importing the CLI (``assistant --help``)
    does not pay for rich."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.made(), name)

    def made(self) -> Console:
        """The console itself (for rich APIs that take one)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console


def real(console: Console) -> Console:
    """``out`` or ``err`` as the rich ``Console`` it stands for."""
    return console.made() if isinstance(console, _LazyConsole) else console


out: Console = _LazyConsole()  # type: ignore[assignment]
err: Console = _LazyConsole(stderr=True)  # type: ignore[assignment]

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML settings file (default: $ASSISTANT_CONFIG, else ./assistant.toml).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
PairOpt = Annotated[
    str | None, typer.Option("--pair", "-p", help="Pair id or name.", show_default=False)
]


class UserError(Exception):
    """Something the user can fix; printed as one line."""


class NoSettings(Exception):
    """No settings file and no ``ASSISTANT_*`` variable: printed as one line, exit 2."""


NO_SETTINGS = (
    "no settings: run `assistant init` or set ASSISTANT_CONFIG "
    "(or pass --config FILE)"
)
LOCAL_CONFIG = "assistant.toml"
_NOT_SETTINGS = {"ASSISTANT_CONFIG", "ASSISTANT_DEBUG"}


def settings_source(config: Path | None) -> Path | None:
    """The settings file of this run: ``--config``, ``$ASSISTANT_CONFIG``, else the
    ``assistant.toml`` that ``assistant init`` wrote in this folder. NoSettings when there
    is none and no ``ASSISTANT_*`` variable sets anything either: a command never runs on
    made-up defaults (it would create a database and a key wherever it was started)."""
    from config.settings import CONFIG_ENV  # not at import: `assistant --help` stays quick

    if config is not None:
        return config
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    local = Path(LOCAL_CONFIG)
    if local.is_file():
        return local
    if any(k.startswith("ASSISTANT_") and k not in _NOT_SETTINGS for k in os.environ):
        return None  # settings from the environment alone (containers)
    raise NoSettings(NO_SETTINGS)


@dataclass
class State:
    config: Path | None = None
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from config.settings import load

            self._settings = load(settings_source(self.config))
        return self._settings

    @property
    def settings_or_defaults(self) -> Settings:
        """The settings, or the defaults when there are none: for commands that read
        what they are given and store nothing (``assistant ics expand``)."""
        try:
            return self.settings
        except NoSettings:
            from config.settings import load

            return load(None)


state = State()


@contextmanager
def service() -> Iterator[Service]:
    from assistant.bootstrap import build, configure_logging

    settings = state.settings
    # A command says what went wrong in its own output; the log adds lines only when a
    # level other than the default is asked for.
    configure_logging("ERROR" if settings.log_level == "INFO" else settings.log_level)
    svc = build(settings)
    try:
        yield svc
    finally:
        svc.engine.dispose()


def pair_zones(svc: Service) -> dict[int, str]:
    """Each pair's time zone, by id: moments in a table are shown in their pair's."""
    from assistant.services.pairs import list_pairs

    return {p.id: p.timezone for p in list_pairs(svc)}


def pair_zone(svc: Service, pair: str | int | None) -> str:
    """The zone of the pair given by id or name (the only pair when none is given)."""
    from assistant.services.pairs import list_pairs

    pairs = list_pairs(svc)
    for p in pairs:
        if pair is not None and str(pair) in (str(p.id), p.name):
            return p.timezone
    return pairs[0].timezone if pair is None and len(pairs) == 1 else "UTC"


def emit(data: Any) -> None:
    """``data`` as JSON: coloured on a terminal, plain text for a pipe or a file (rich's
    highlighter took 1.2 s of CPU for the 3,000 occurrences of ``ics expand --json``)."""
    text = json.dumps(data, default=str, ensure_ascii=False, indent=2)
    if out.is_terminal and len(text) < 200_000:
        out.print_json(text)
    else:
        out.file.write(text + "\n")
        out.file.flush()


_ISO_MOMENT = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?([+-]\d\d:\d\d|Z)?")
_ADDRESS = re.compile(r"[^\s@,;]+@[^\s@,;]+\.[^\s@,;]+")


def cell(value: Any, zone: str = "UTC") -> str:
    """A value as a person reads it in a table: moments in ``zone`` with the weekday
    (``Tue 8 Dec 14:00``; one stamped with a zone of its own keeps it), yes/no, lists
    joined, nothing for None; never a Python repr."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):  # UTC (or naive, as stored) is shown in ``zone``
        return when(value, zone, own=value.tzinfo not in (None, UTC))
    if isinstance(value, date):
        from assistant.domain.timefmt import day

        return day(value, "en")
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(cell(v, zone) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {cell(v, zone)}" for k, v in value.items())
    text = str(value)
    if _ISO_MOMENT.fullmatch(text):
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return cell(moment, zone)
    return text


def table(
    title: str,
    columns: list[str],
    rows: list[list[Any]],
    zone: str = "UTC",
    zones: list[str] | None = None,
) -> None:
    """A table that fits the terminal: cells wrap (never cut, never "…"), and columns of
    e-mail addresses keep each address on one line when the terminal is wide enough for
    them beside the shortest the other columns can be. Moments are shown in ``zone`` (or
    each row's, ``zones``)."""
    from rich.table import Table

    shown = [[cell(v, zones[i] if zones else zone) for v in r] for i, r in enumerate(rows)]
    t = Table(title=title, title_justify="left")
    addresses = [max((len(a) for r in shown for a in _ADDRESS.findall(r[i])), default=0)
                 for i in range(len(columns))]  # fmt: skip
    # what the other columns need at least: their words, folded when longer than 8
    words = [min(8, max((len(w) for text in [c, *(r[i] for r in shown)] for w in text.split()),
                        default=1)) for i, c in enumerate(columns)]  # fmt: skip
    least = sum(max(a, w) for a, w in zip(addresses, words, strict=True))
    whole = least + 3 * len(columns) + 1 <= out.width  # borders and padding
    for c, longest in zip(columns, addresses, strict=True):
        if whole and longest:
            t.add_column(c, no_wrap=True, min_width=longest)
        else:
            t.add_column(c, overflow="fold")
    for r in shown:
        t.add_row(*r)
    out.print(t)


def count(n: int, noun: str) -> str:
    """``1 event``, ``3 events``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def when(
    at: datetime | None, zone: str = "UTC", locale: str = "en", *, own: bool = False
) -> str:
    """A moment as a person reads it, in ``zone``: ``Tue 8 Dec 14:00`` (empty for None;
    a naive value is UTC, as the store keeps it; ``own``: in the offset it carries)."""
    from zoneinfo import ZoneInfo

    from assistant.domain.timefmt import day

    if at is None:
        return ""
    if own and at.tzinfo is not None:
        local = at  # stamped in the pair's zone already
    else:
        local = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(ZoneInfo(zone or "UTC"))
    return f"{day(local.date(), locale)} {local:%H:%M}"


def showing_progress(as_json: bool = False) -> bool:
    """Progress is drawn on a terminal only, and never into JSON."""
    return not as_json and out.is_terminal


class Meter:
    """What long work tells the terminal: one more done (``advance``), or how far it is
    (``at``: done, of how many when known)."""

    def __init__(self, bar: Any = None, task: Any = None, label: str = "") -> None:
        self._bar, self._task, self._label = bar, task, label

    def advance(self, note: str = "") -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1,
                             description=f"{self._label} {note}".strip())  # fmt: skip

    def at(self, done: int, total: int | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)


@contextmanager
def progress(label: str, total: int | None, *, shown: bool) -> Iterator[Meter]:
    """A progress bar (``total`` known) or a spinner with a count on the terminal while
    long work runs, gone when it ends. Nothing is drawn when ``shown`` is false (not a
    terminal, or --json): the output stays what a script reads."""
    if not shown:
        yield Meter()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=real(out),
                  transient=True) as bar:  # fmt: skip
        yield Meter(bar, bar.add_task(label, total=total), label)


def parse_when(value: str, zone: str = "UTC") -> datetime:
    """An ISO date or date-time; naive values are in ``zone``."""
    from zoneinfo import ZoneInfo

    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UserError(
            f"not a date/time: {value!r} (use ISO form, e.g. 2026-12-01T15:00)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(zone))
    return parsed.astimezone(UTC)


@contextmanager
def open_engine(settings: Settings | None = None) -> Iterator[Any]:
    """An engine without the start-up check (the ``keys`` commands repair what it refuses)."""
    from assistant.store.db import make_engine
    from config import keyfile

    settings = settings or state.settings
    keyfile.tighten(settings)
    engine = make_engine(settings.database_url)
    try:
        yield engine
    finally:
        engine.dispose()
