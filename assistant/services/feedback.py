"""Checkpoint prompts, answers and the delegation score.

At each line (the checkpoint event's start) the manager gets the method's questions with a
signed, expiring one-click link to the feedback page (no login); for a Red Line the
delegate is asked for a self-report too. Answers (from the page, an email reply or the
CLI) are stored against the task. The Dead Line answer from the manager accepts the task;
the score is the share of accepted tasks done on time with 80% or more.

A recorded Dead Line answer is final for its link (and for email replies): the link then
shows it, read only. A correction comes from the manager signed in to the web app or the
operator's CLI (``correction=True``); it is a new answer, and the earlier ones stay as the
task's history (the latest counts).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from assistant.domain import delegation_lifecycle as lifecycle
from assistant.domain import timefmt
from assistant.domain.delegation import (
    CheckpointKind,
    TaskBrief,
    checkpoint_text,
    is_good_delegation,
)
from assistant.domain.delegation_lifecycle import (
    SCORED,
    CalendarEffect,
    TaskEvent,
    TaskState,
)
from assistant.domain.feedback import FeedbackAnswer
from assistant.domain.signing import sign, verify
from assistant.services import outbox
from assistant.services.pairs import NotFoundError, find_pair
from assistant.store.tables import Checkpoint, DelegatedTask, Pair, TaskFeedback

if TYPE_CHECKING:
    from assistant.services.deps import Deps
    from config.settings import Settings

PURPOSE = "feedback"
LINK_VALID_AFTER_DEADLINE = timedelta(days=14)
GOOD_SHARE = 0.8


# ------------------------------------------------------------------------------ links


def secret_keys(settings: Settings) -> list[str]:
    """The app's keys, the signing one first: ``web.secret_key`` when set, else the one
    generated once into the data folder (mode 0600), then the retired ones, which still
    verify links until they expire (``assistant.adapters.keys``)."""
    from config.keyfile import all_keys

    return all_keys(settings)


def base_url(settings: Settings) -> str:
    if settings.web.public_url:
        return settings.web.public_url.rstrip("/")
    return f"http://{settings.web.host}:{settings.web.port}"


def feedback_link(
    settings: Settings, task_id: int, deadline: datetime, kind: str, respondent: str
) -> str:
    """A stable link for (task, line, respondent): the same inputs give the same URL, so an
    event written again keeps its description."""
    token = sign(
        secret_keys(settings),
        PURPOSE,
        {"task": task_id, "kind": kind, "who": respondent.lower()},
        deadline + LINK_VALID_AFTER_DEADLINE,
    )
    return f"{base_url(settings)}/feedback/{token}"


@dataclass(frozen=True, slots=True)
class LinkTarget:
    task_id: int
    kind: str
    respondent: str


def open_link(settings: Settings, token: str, now: datetime) -> LinkTarget:
    """Raises ``assistant.domain.signing.TokenError`` (tampered, expired, wrong purpose,
    malformed)."""
    data = verify(secret_keys(settings), PURPOSE, token, now)
    return LinkTarget(int(data["task"]), str(data["kind"]), str(data["who"]))


# ---------------------------------------------------------------------------- prompts


def brief_of(task: DelegatedTask, pair: Pair) -> TaskBrief:
    return TaskBrief(
        title=task.title, result=task.result, measure=task.measure, resources=task.resources,
        why=task.why, delegate=task.delegate, term_start=task.term_start,
        deadline=task.deadline, zone=pair.timezone,
    )  # fmt: skip


def send_prompt(deps: Deps, checkpoint_id: int, start_iso: str | None = None) -> list[int]:
    """Queue the line's prompt (manager; delegate too at a Red Line). Idempotent per line time.

    ``start_iso``: the start the prompt was scheduled for; when the checkpoint has moved
    since, this run does nothing (the move scheduled its own).
    """
    now = deps.now()
    ids: list[int] = []
    with deps.uow.begin() as session:
        cp = session.get(Checkpoint, checkpoint_id)
        if cp is None or cp.state not in ("written", "pinned") or cp.start_at is None:
            return ids
        if start_iso is not None and cp.start_at != datetime.fromisoformat(start_iso):
            return ids
        task = session.get(DelegatedTask, cp.task_id)
        assert task is not None
        if task.state in ("cancelled", "accepted", "praised"):
            return ids
        pair = session.get(Pair, task.pair_id)
        assert pair is not None
        kind = CheckpointKind(cp.kind)
        who = [pair.manager_email]
        if kind is CheckpointKind.RED_LINE and task.delegate.lower() != pair.manager_email.lower():
            who.append(task.delegate)
        for person in who:
            link = feedback_link(deps.settings, task.id, task.deadline, cp.kind, person)
            summary, body = checkpoint_text(kind, brief_of(task, pair), link, pair.locale)
            if person != pair.manager_email:
                body = _self_report_intro(pair.locale, task) + body
            entry = outbox.enqueue(
                session,
                key=f"prompt:{cp.id}:{cp.start_at:%Y%m%dT%H%M}:{person}:smtp",
                channel="smtp",
                recipient=person,
                subject=summary,
                body_text=body,
                payload={"kind": "checkpoint_prompt", "task_id": task.id, "line": cp.kind},
                pair_id=pair.id,
                now=now,
            )
            if entry is not None:
                ids.append(entry.id)
    return ids


def _self_report_intro(locale: str, task: DelegatedTask) -> str:
    if timefmt.lang(locale) == "ru":
        return f"Самоотчёт по задаче «{task.title}»: ответьте, пожалуйста, по ссылке ниже.\n\n"
    return f"A self-report on “{task.title}”, please: answer through the link below.\n\n"


def due_prompts(deps: Deps, lookback: timedelta = timedelta(minutes=15)) -> list[int]:
    """Checkpoints whose line passed within ``lookback`` (a safety net for moved lines and
    a lost schedule); ``send_prompt`` makes running this often harmless."""
    now = deps.now()
    with deps.uow.read() as session:
        return list(
            session.scalars(
                select(Checkpoint.id).where(
                    Checkpoint.state.in_(("written", "pinned")),
                    Checkpoint.start_at <= now,
                    Checkpoint.start_at > now - lookback,
                )
            )
        )


# ---------------------------------------------------------------------------- answers


def record_answer(
    deps: Deps,
    *,
    task_id: int,
    kind: str,
    source: str,
    respondent: str,
    answer: FeedbackAnswer,
    dedupe_key: str | None = None,
    correction: bool = False,
) -> int | None:
    """Store an answer; the manager's Dead Line answer accepts the task.

    None: a duplicate, or a Dead Line answer from ``respondent`` is already recorded (it is
    final; ``correction=True``, for the manager's signed-in session and the CLI, adds the
    new answer and keeps the earlier one as history)."""
    now = deps.now()
    with deps.uow.begin() as session:
        task = session.get(DelegatedTask, task_id)
        if task is None:
            raise NotFoundError(f"no task {task_id}")
        if (
            dedupe_key is not None
            and session.scalars(
                select(TaskFeedback.id).where(TaskFeedback.dedupe_key == dedupe_key)
            ).first()
        ):
            return None
        if (
            not correction
            and kind == CheckpointKind.DEAD_LINE.value
            and recorded_answer(session, task_id, kind, respondent) is not None
        ):
            return None
        row = TaskFeedback(
            task_id=task_id, kind=kind, source=source, respondent=respondent.lower(),
            percent_done=answer.percent_done, on_time=answer.on_time, on_track=answer.on_track,
            needs_help=answer.needs_help, quality=answer.quality or "", comment=answer.comment,
            dedupe_key=dedupe_key, answered_at=now,
        )  # fmt: skip
        # an answer that would accept a cancelled task is refused (RefusedTransition); an
        # answer never changes the term (no re-planning)
        done = lifecycle.apply(task, _answer_event(task, kind, respondent, answer), now)
        assert done.calendar is not CalendarEffect.REPLAN
        session.add(row)
        session.flush()
        return row.id


def _answer_event(
    task: DelegatedTask, kind: str, respondent: str, answer: FeedbackAnswer
) -> TaskEvent:
    """What an answer is to the task's lifecycle: the manager's Dead Line answer with a
    percentage accepts it."""
    if kind == CheckpointKind.RED_LINE.value:
        return TaskEvent.RED_LINE_ANSWER
    if respondent.lower() == task.delegator.lower() and answer.percent_done is not None:
        return TaskEvent.ACCEPT
    return TaskEvent.DEAD_LINE_ANSWER


def recorded_answer(
    session: Session, task_id: int, kind: str, respondent: str
) -> TaskFeedback | None:
    """The latest answer ``respondent`` gave at this line of the task, if any."""
    return session.scalars(
        select(TaskFeedback)
        .where(
            TaskFeedback.task_id == task_id,
            TaskFeedback.kind == kind,
            TaskFeedback.respondent == respondent.lower(),
        )
        .order_by(TaskFeedback.answered_at.desc(), TaskFeedback.id.desc())
    ).first()


def correct_dead_line(deps: Deps, task_id: int, answer: FeedbackAnswer, source: str) -> int:
    """The manager's (or the operator's) Dead Line answer, replacing the one recorded; the
    earlier answers stay as history. Raises NotFoundError, ValueError (a cancelled task)."""
    with deps.uow.read() as session:
        task = session.get(DelegatedTask, task_id)
        if task is None:
            raise NotFoundError(f"no task {task_id}")
        if task.state == "cancelled":
            raise ValueError(f"task {task_id} is cancelled")
        delegator = task.delegator
    row = record_answer(deps, task_id=task_id, kind=CheckpointKind.DEAD_LINE.value, source=source,
                        respondent=delegator, answer=answer, correction=True)  # fmt: skip
    assert row is not None
    return row


def web_dedupe_key(token: str, posted: str) -> str:
    """A form posted twice (double tap, resend) is one answer."""
    return "web:" + hashlib.sha256(f"{token}\n{posted}".encode()).hexdigest()[:40]


# ------------------------------------------------------------------------------ score


def outcome(session: Session, task: DelegatedTask) -> tuple[int | None, bool | None]:
    """(percent done, on time) from the manager's latest Dead Line answer."""
    row = session.scalars(
        select(TaskFeedback)
        .where(
            TaskFeedback.task_id == task.id,
            TaskFeedback.kind == CheckpointKind.DEAD_LINE.value,
            TaskFeedback.respondent == task.delegator.lower(),
        )
        .order_by(TaskFeedback.answered_at.desc(), TaskFeedback.id.desc())
    ).first()
    if row is None:
        return None, None
    return row.percent_done, row.on_time


def _answer_order(row: TaskFeedback) -> tuple[datetime, int]:
    return row.answered_at, row.id


@dataclass(frozen=True, slots=True)
class DelegateScore:
    """One delegate's part of the score: accepted tasks, the good ones, their share."""

    delegate: str
    accepted: int
    good: int
    share: float
    mean_percent: float


@dataclass(frozen=True, slots=True)
class DelegationScore:
    """The delegation score of a pair's manager, overall and per delegate."""

    pair: str
    manager: str
    accepted: int
    good: int
    share: float | None
    good_delegation: bool | None
    open: int
    delegates: tuple[DelegateScore, ...]

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FeedbackEntry:
    """One answer given at a line of a task (``superseded``: a later Dead Line answer of
    the same respondent counts instead)."""

    kind: str
    source: str
    respondent: str
    percent_done: int | None
    on_time: bool | None
    on_track: bool | None
    needs_help: bool
    quality: str
    comment: str
    answered_at: str
    superseded: bool

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def score(deps: Deps, pair_ref: str | int | None) -> DelegationScore:
    """The delegation score of the pair's manager, overall and per delegate.

    A task counts once it is accepted with a percentage; "good" is on time with 80% or
    more. An accepted task whose on-time answer is missing counts as not on time.
    """
    with deps.uow.read() as session:
        pair = find_pair(session, pair_ref)
        tasks = list(
            session.scalars(select(DelegatedTask).where(DelegatedTask.pair_id == pair.id))
        )
        per: dict[str, list[int]] = {}  # delegate: [accepted, good, percent sum]
        judged = good = 0
        open_tasks = 0
        for t in tasks:
            if t.state not in SCORED:
                open_tasks += t.state != TaskState.CANCELLED
                continue
            percent, on_time = outcome(session, t)
            if percent is None:
                continue
            ok = is_good_delegation(float(percent), bool(on_time))
            judged += 1
            good += ok
            d = per.setdefault(t.delegate, [0, 0, 0])
            d[0] += 1
            d[1] += ok
            d[2] += percent
        delegates = tuple(
            DelegateScore(delegate=name, accepted=n, good=g, share=g / n, mean_percent=total / n)
            for name, (n, g, total) in sorted(per.items())
        )
        share = good / judged if judged else None
        return DelegationScore(
            pair=pair.name,
            manager=pair.manager_email,
            accepted=judged,
            good=good,
            share=share,
            good_delegation=None if share is None else share >= GOOD_SHARE,
            open=open_tasks,
            delegates=delegates,
        )


def feedback_of(deps: Deps, task_id: int) -> list[FeedbackEntry]:
    with deps.uow.read() as session:
        task = session.get(DelegatedTask, task_id)
        if task is None:
            raise NotFoundError(f"no task {task_id}")
        pair = session.get(Pair, task.pair_id)
        assert pair is not None
        tz = ZoneInfo(pair.timezone)
        rows = list(
            session.scalars(
                select(TaskFeedback)
                .where(TaskFeedback.task_id == task_id)
                .order_by(TaskFeedback.id)
            )
        )
        # a later answer supersedes (as in ``outcome``)
        latest = {(r.kind, r.respondent): r.id for r in sorted(rows, key=_answer_order)}
        return [
            FeedbackEntry(
                kind=r.kind, source=r.source, respondent=r.respondent,
                percent_done=r.percent_done, on_time=r.on_time, on_track=r.on_track,
                needs_help=r.needs_help, quality=r.quality, comment=r.comment,
                answered_at=r.answered_at.astimezone(tz).isoformat(timespec="minutes"),
                superseded=r.kind == CheckpointKind.DEAD_LINE.value
                and latest[(r.kind, r.respondent)] != r.id,
            )
            for r in rows
        ]  # fmt: skip
