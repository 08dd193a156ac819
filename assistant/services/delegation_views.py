"""Read models of delegated tasks: one task with its checkpoints, a pair's task list.

Both are frozen values (``to_json`` gives the CLI's ``--json`` keys); times are local to
the pair, ISO to the minute.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import select

from assistant.domain.delegation import CheckpointKind
from assistant.services.delegation import LABELS, task_of
from assistant.services.pairs import find_pair
from assistant.store.tables import DelegatedTask

if TYPE_CHECKING:
    from assistant.services.deps import Deps


@dataclass(frozen=True, slots=True)
class Smart:
    """The SMART parameters of a task (specific result, measure, resources, why)."""

    result: str
    measure: str
    resources: str
    why: str


@dataclass(frozen=True, slots=True)
class CheckpointView:
    """A Red Line or Dead Line of a task; times local to the pair, ISO to the minute."""

    kind: str
    label: str
    line_at: str | None
    start: str | None
    end: str | None
    state: str
    event_uid: str
    note: str


@dataclass(frozen=True, slots=True)
class TaskView:
    """One task with its checkpoints (``assistant task show``)."""

    id: int
    pair_id: int
    title: str
    state: str
    delegator: str
    delegate: str
    term_start: str | None
    deadline: str | None
    smart: Smart
    checkpoints: tuple[CheckpointView, ...]

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class TaskLine:
    """A task in the list of a pair's tasks (``assistant task list``)."""

    id: int
    title: str
    delegate: str
    state: str
    deadline: str
    red_line: str
    dead_line: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def task_view(deps: Deps, task_id: int) -> TaskView:
    """One task (``assistant task show``, the web's task page and API)."""
    with deps.uow.read() as session:
        task, pair = task_of(session, task_id)
        return _view(task, pair.timezone)


def pair_tasks(deps: Deps, pair: str | int | None) -> list[TaskView]:
    """A pair's tasks, by deadline: the web's tasks page and API, and ``task list``."""
    with deps.uow.read() as session:
        p = find_pair(session, pair)
        rows = session.scalars(
            select(DelegatedTask)
            .where(DelegatedTask.pair_id == p.id)
            .order_by(DelegatedTask.deadline, DelegatedTask.id)
        )
        return [_view(t, p.timezone) for t in rows]


def list_tasks(deps: Deps, pair: str | int | None) -> list[TaskLine]:
    """``assistant task list``: each task of ``pair_tasks`` on one line."""

    def when(view: TaskView, kind: str) -> str:
        found = next((c for c in view.checkpoints if c.kind == kind), None)
        at = found and (found.start or found.line_at)
        return at.replace("T", " ")[:16] if at else "—"

    return [
        TaskLine(
            id=v.id,
            title=v.title,
            delegate=v.delegate,
            state=v.state,
            deadline=v.deadline or "",
            red_line=when(v, "red_line"),
            dead_line=when(v, "dead_line"),
        )
        for v in pair_tasks(deps, pair)
    ]


def _view(task: DelegatedTask, zone: str) -> TaskView:
    tz = ZoneInfo(zone)

    def local(t: datetime | None) -> str | None:
        return None if t is None else t.astimezone(tz).isoformat(timespec="minutes")

    return TaskView(
        id=task.id,
        pair_id=task.pair_id,
        title=task.title,
        state=task.state,
        delegator=task.delegator,
        delegate=task.delegate,
        term_start=local(task.term_start),
        deadline=local(task.deadline),
        smart=Smart(
            result=task.result, measure=task.measure, resources=task.resources, why=task.why
        ),
        checkpoints=tuple(
            CheckpointView(
                kind=c.kind,
                label=LABELS[CheckpointKind(c.kind)],
                line_at=local(c.line_at),
                start=local(c.start_at),
                end=local(c.end_at),
                state=c.state,
                event_uid=c.event_uid,
                note=c.note,
            )
            for c in sorted(task.checkpoints, key=lambda c: c.line_at)
        ),
    )
