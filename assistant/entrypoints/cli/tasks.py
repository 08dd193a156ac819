"""``assistant task``: delegated tasks and their Red Line / Dead Line."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from assistant.entrypoints.cli.common import (
    JsonOpt,
    PairOpt,
    UserError,
    cell,
    emit,
    err,
    out,
    parse_when,
    service,
    table,
)

if TYPE_CHECKING:
    from assistant.services.delegation_views import TaskView

task_app = typer.Typer(help="Delegated tasks and their Red Line / Dead Line.", no_args_is_help=True)


@task_app.command("add")
def task_add(
    title: Annotated[str, typer.Argument(help="What is delegated.")],
    delegate: Annotated[
        str, typer.Option(help="The delegate's email (default: the assistant).")
    ] = "",
    deadline: Annotated[str, typer.Option(help="Deadline, ISO (manager's zone if naive).")] = "",
    start: Annotated[str, typer.Option(help="Term start (default: now).")] = "",
    result: Annotated[str, typer.Option(help="S: the specific result expected.")] = "",
    measure: Annotated[str, typer.Option(help="M: how the result is measured.")] = "",
    resources: Annotated[str, typer.Option(help="A: resources available.")] = "",
    why: Annotated[str, typer.Option(help="R: why it matters.")] = "",
    pair: PairOpt = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Confirm a term that starts in the past.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delegate a task: its Red Line and Dead Line go into the manager's calendar.

    A deadline in the past is refused; a term that starts in the past needs --yes (its
    checkpoint events could land in the past)."""
    from assistant.domain.delegation import PastDeadline, PastStart
    from assistant.services import delegation, delegation_views

    if not deadline:
        raise UserError("a task needs --deadline")
    with service() as svc:
        zone = delegation.pair_zone(svc, pair)
        try:
            task = delegation.create_task(
                svc,
                pair=pair,
                title=title,
                delegate=delegate,
                term_start=parse_when(start, zone) if start else None,
                deadline=parse_when(deadline, zone),
                result=result,
                measure=measure,
                resources=resources,
                why=why,
                past_start_confirmed=yes,
            )
        except PastDeadline as exc:
            _refuse(str(exc))
        except PastStart as exc:
            _refuse(f"{exc} (add --yes)")
        report = delegation.reconcile_checkpoints(svc, task.id)
        shown = delegation_views.task_view(svc, task.id)
    if as_json:
        emit(shown.to_json() | {"calendar": report.to_dict()})
    else:
        _print_task(shown)
        for line in report.messages:
            out.print(line)


@task_app.command("list")
def task_list(pair: PairOpt = None, as_json: JsonOpt = False) -> None:
    """List delegated tasks."""
    from assistant.services import delegation_views

    with service() as svc:
        rows = delegation_views.list_tasks(svc, pair)
    if as_json:
        emit([r.to_json() for r in rows])
    else:
        table("Tasks", ["id", "title", "delegate", "state", "red line", "dead line"],
              [[r.id, r.title, r.delegate, r.state.replace("_", " "), r.red_line, r.dead_line]
               for r in rows])  # fmt: skip


@task_app.command("show")
def task_show(task_id: Annotated[int, typer.Argument()], as_json: JsonOpt = False) -> None:
    """One task with its checkpoints."""
    from assistant.services import delegation_views

    with service() as svc:
        shown = delegation_views.task_view(svc, task_id)
    if as_json:
        emit(shown.to_json())
    else:
        _print_task(shown)


@task_app.command("update")
def task_update(
    task_id: Annotated[int, typer.Argument()],
    deadline: Annotated[str, typer.Option(help="New deadline.")] = "",
    title: Annotated[str, typer.Option(help="New title.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Change a task's deadline or title; its calendar events follow."""
    from assistant.domain.delegation import PastDeadline
    from assistant.services import delegation, delegation_views

    with service() as svc:
        zone = delegation.task_zone(svc, task_id)
        try:
            delegation.update_task(
                svc,
                task_id,
                deadline=parse_when(deadline, zone) if deadline else None,
                title=title or None,
            )
        except PastDeadline as exc:
            _refuse(str(exc))
        report = delegation.reconcile_checkpoints(svc, task_id)
        shown = delegation_views.task_view(svc, task_id)
    if as_json:
        emit(shown.to_json() | {"calendar": report.to_dict()})
    else:
        _print_task(shown)


@task_app.command("cancel")
def task_cancel(task_id: Annotated[int, typer.Argument()], as_json: JsonOpt = False) -> None:
    """Cancel an open task; its checkpoint events are removed from the calendar. An accepted
    task is not cancelled: its record stays in the calendar and its score stands."""
    from assistant.services import delegation

    with service() as svc:
        delegation.cancel_task(svc, task_id)
        report = delegation.reconcile_checkpoints(svc, task_id)
    if as_json:
        emit({"id": task_id, "state": "cancelled", "calendar": report.to_dict()})
    else:
        out.print(f"task {task_id} cancelled; {report.summary()}")


@task_app.command("accept")
def task_accept(
    task_id: Annotated[int, typer.Argument()],
    percent: Annotated[int, typer.Option(min=0, max=100, help="How much was done, 0–100.")],
    on_time: Annotated[bool, typer.Option("--on-time/--late", help="Done by the deadline?")],
    comment: Annotated[str, typer.Option(help="What to praise, what to improve.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Accept a task at (or before) its Dead Line; lines still ahead leave the calendar."""
    from assistant.domain.feedback import Confidence, FeedbackAnswer
    from assistant.services import delegation, delegation_views, feedback

    with service() as svc:
        view = delegation_views.task_view(svc, task_id)
        answer = FeedbackAnswer(percent, on_time, False, None, None, comment, Confidence.HIGH)
        feedback.record_answer(svc, task_id=task_id, kind="dead_line", source="cli",
                               respondent=view.delegator, answer=answer,
                               correction=True)  # fmt: skip
        delegation.accept_task(svc, task_id)
        report = delegation.reconcile_checkpoints(svc, task_id)
    good = percent >= 80 and on_time
    if as_json:
        emit({"id": task_id, "state": "accepted", "good_delegation": good,
              "calendar": report.to_dict()})  # fmt: skip
    else:
        verdict = "good delegation" if good else "below the bar (80% and on time)"
        out.print(f"task {task_id} accepted: {percent}%, {'on time' if on_time else 'late'} — "
                  f"{verdict}; {report.summary()}. Now thank the delegate.")  # fmt: skip


@task_app.command("feedback")
def task_feedback(
    task_id: Annotated[int, typer.Argument()],
    text: Annotated[str | None, typer.Argument(help="An answer in words: '80%, on track'.")] = None,
    line: Annotated[str, typer.Option(help="red_line or dead_line.")] = "red_line",
    as_json: JsonOpt = False,
) -> None:
    """Record an answer at a line (parsed from words), or list the answers so far."""
    from assistant.domain.delegation import CheckpointKind
    from assistant.domain.feedback import parse_answer
    from assistant.services import delegation_views, feedback

    with service() as svc:
        if text is not None:
            if line not in ("red_line", "dead_line"):
                raise UserError("--line is red_line or dead_line")
            view = delegation_views.task_view(svc, task_id)
            answer = parse_answer(text, kind=CheckpointKind(line))
            if answer.confidence.value == "low":
                doubts = "; ".join(answer.doubts) or "say how much is done and whether on track"
                raise UserError(f"not sure what that means ({doubts})")
            feedback.record_answer(svc, task_id=task_id, kind=line, source="cli",
                                   respondent=view.delegator, answer=answer,
                                   correction=True)  # fmt: skip
        rows = feedback.feedback_of(svc, task_id)
    if as_json:
        emit([r.to_json() for r in rows])
    else:
        cols = ["answered_at", "kind", "respondent", "percent_done", "on_time", "on_track",
                "needs_help", "comment"]  # fmt: skip
        table(f"Feedback on task {task_id}",
              ["answered", "line", "by", "% done", "on time", "on track", "help", "comment"],
              [[getattr(r, c) for c in cols] for r in rows])  # fmt: skip


@task_app.command("step")
def task_step(
    task_id: Annotated[int, typer.Argument()],
    step: Annotated[str, typer.Argument(help="understood (the delegate retold it), "
                                             "in_progress, or praised (after acceptance).")],
) -> None:
    """Record a step of the delegation method."""
    from assistant.services import delegation

    with service() as svc:
        delegation.advance_task(svc, task_id, step)
    out.print(f"task {task_id}: {step}")


@task_app.command("restore")
def task_restore(task_id: Annotated[int, typer.Argument()]) -> None:
    """Put back checkpoint events the manager removed from the calendar."""
    from assistant.services import delegation

    with service() as svc:
        n = delegation.restore_checkpoints(svc, task_id)
        report = delegation.reconcile_checkpoints(svc, task_id)
    out.print(f"{n} checkpoint(s) restored; {report.summary()}")


@task_app.command("score")
def task_score(pair: PairOpt = None, as_json: JsonOpt = False) -> None:
    """The delegation score: accepted tasks done on time with 80% or more."""
    from assistant.services.feedback import score

    with service() as svc:
        s = score(svc, pair)
    if as_json:
        emit(s.to_json())
        return
    share = "—" if s.share is None else f"{s.share:.0%}"
    verdict = {True: " (good delegation)", False: " (below 80%)", None: ""}[s.good_delegation]
    out.print(f"{s.manager}: {s.good} of {s.accepted} accepted tasks good: {share}"
              f"{verdict}; {s.open} open")  # fmt: skip
    table("Per delegate", ["delegate", "accepted", "good", "share", "mean %"],
          [[d.delegate, d.accepted, d.good, f"{d.share:.0%}",
            f"{d.mean_percent:.0f}"] for d in s.delegates])  # fmt: skip


def _refuse(message: str) -> NoReturn:
    """A task the command will not write: one plain line, exit 2."""
    err.print(f"error: {message}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(2)


def _print_task(t: TaskView) -> None:
    """The task's moments are stamped in its pair's zone; shown there, with the weekday."""
    say = partial(out.print, markup=False, highlight=False)
    say(f"Task {t.id}: {t.title} ({t.state})")
    say(f"  delegate: {t.delegate}")
    say(f"  term: {cell(t.term_start)} → {cell(t.deadline)}")
    for c in t.checkpoints:
        placed = f"{cell(c.start)} – {cell(c.end)}" if c.start else "not placed"
        say(f"  {c.label}: {cell(c.line_at)}; in the calendar {placed} ({c.state})")
