"""The background jobs. Each is a few lines that call one use case with ids.

``register(huey)`` binds them to a Huey instance (built from settings by
``jobs.queue.build_huey``) and returns handles to enqueue them. Every job is safe to run
twice: the use cases are idempotent (outbox keys, stable event UIDs, change tokens).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast

from huey import Huey, crontab
from huey.api import TaskWrapper

from assistant.services import account_health, digest, pipeline, polling, push
from assistant.services.delegation import reconcile_checkpoints
from assistant.services.feedback import send_prompt
from assistant.services.push import PushSignal, SignalKind
from connectors.base import ConnectorError
from jobs import runtime

PushProvider = Literal["graph", "google"]

log = logging.getLogger(__name__)

# What a job leaves in Huey's result store: its use case's report, as plain values.
JobResult = dict[str, object]


@dataclass(frozen=True)
class Jobs:
    huey: Huey
    sync_account: TaskWrapper
    sync_due: TaskWrapper
    dispatch_changes: TaskWrapper
    nudge_pair: TaskWrapper
    checkpoint_prompt: TaskWrapper
    drain_outbox: TaskWrapper
    write_checkpoints: TaskWrapper
    tick: TaskWrapper | None
    ensure_push: TaskWrapper
    drop_push: TaskWrapper
    push_signal: TaskWrapper
    process_inbox: TaskWrapper
    send_digest: TaskWrapper


_jobs: Jobs | None = None


def jobs() -> Jobs:
    if _jobs is None:
        raise RuntimeError("jobs are not registered: call jobs.tasks.register(huey)")
    return _jobs


# ------------------------------------------------------------------------ job bodies


def sync_account(account_id: int, repoll_iso: str | None = None) -> JobResult:
    """Sync one account, then dispatch, nudge and deliver what it brought, as due.

    ``repoll_iso``: a re-poll planned while the pair's changes settle (its claim is freed).
    """
    svc = runtime.service()
    if repoll_iso:
        jobs().huey.delete(_repoll_claim(account_id, repoll_iso))
    run = pipeline.after_poll(svc, account_id, next_poll_at=next_poll_at(svc.now()),
                              repoll=bool(repoll_iso))  # fmt: skip
    follow(run)
    return run.to_json()


def nudge_pair(pair_id: int) -> JobResult:
    """Remind the manager of open assistant messages near or past the SLA; run again then."""
    run = pipeline.nudge_pair(runtime.service(), pair_id)
    follow(run)
    [report] = run.nudged
    return report.to_dict()


def dispatch_changes(pair_id: int) -> JobResult:
    """Turn a pair's pending changes into a message when due; run again when they will be."""
    svc = runtime.service()
    run = pipeline.dispatch_pair(svc, pair_id, next_poll_at=next_poll_at(svc.now()))
    follow(run)
    [report] = run.dispatched
    return report.to_json()


def drain_outbox() -> JobResult:
    run = pipeline.deliver(runtime.service())
    follow(run)
    assert run.drained is not None
    return run.drained.to_dict()


def follow(run: pipeline.Run) -> None:
    """Schedule what a run of the pipeline says is due later."""
    now = runtime.service().now()
    for s in run.synced:
        if s.retry_in is not None:  # rate limited
            jobs().sync_account.schedule((s.account_id,), delay=s.retry_in)
        if s.repoll_at is not None:  # its changes settle: once per account and instant
            at = s.repoll_at.isoformat()
            if jobs().huey.put_if_empty(_repoll_claim(s.account_id, at), True):
                jobs().sync_account.schedule((s.account_id, at), eta=s.repoll_at)
    for n in run.nudged:
        if n.next_due is not None:
            jobs().nudge_pair.schedule((n.pair_id,), delay=_until(n.next_due, now, 1.0))
    for d in run.dispatched:
        if d.next_due is not None:
            jobs().dispatch_changes.schedule((d.pair_id,), delay=_until(d.next_due, now, 0.5))
    if run.drained is not None and run.drained.next_attempt_at is not None:
        jobs().drain_outbox.schedule(delay=_until(run.drained.next_attempt_at, now, 1.0))


def _repoll_claim(account_id: int, planned_iso: str) -> str:
    return f"sync_account:repoll:{account_id}:{planned_iso}"


def _drain_soon(queued: Sequence[int]) -> None:
    """A drain job, when something was queued."""
    if queued:
        jobs().drain_outbox()


def _until(at: datetime, now: datetime, least: float) -> float:
    return max(least, (at - now).total_seconds())


# Huey's storage holds the polling loop's last round (a LoopMark, as stored).
POLL_LOOP_KEY = "sync_due:loop"


def sync_due(rounds_left: int = 0, planned_at: datetime | None = None, loop: str = "") -> int:
    """Queue a sync of every account whose poll interval has passed; plan the next round.

    ``loop`` is the id of the polling loop this round belongs to (see
    ``assistant.services.polling``, which decides); without one, ``rounds_left`` more
    rounds follow this one.
    """
    recorded = _loop_mark() if loop else None
    plan = polling.poll_round(runtime.service(), planned_at=planned_at, rounds_left=rounds_left,
                              loop=loop, recorded=recorded)  # fmt: skip
    for aid in plan.due:
        jobs().sync_account(aid)
    if plan.mark is not None:
        jobs().huey.put(POLL_LOOP_KEY, plan.mark.stored())
    if plan.next_at is not None:
        jobs().sync_due.schedule((plan.rounds_left, plan.next_at, loop), eta=plan.next_at)
    return len(plan.due)


def keep_polling(now: datetime, interval: float) -> bool:
    """Start the polling loop unless it is alive; True when one was started."""
    if polling.loop_alive(_loop_mark(), now, interval):
        return False
    mark = polling.LoopMark.start(now)
    jobs().huey.put(POLL_LOOP_KEY, mark.stored())
    jobs().sync_due(0, None, mark.loop)
    return True


def _loop_mark() -> polling.LoopMark | None:
    return polling.LoopMark.from_stored(jobs().huey.get(POLL_LOOP_KEY, peek=True))


def next_poll_at(now: datetime) -> datetime | None:
    """When the next polling round starts at the earliest, or None when unknown."""
    interval = runtime.service().settings.sync.poll_interval_seconds
    return polling.next_poll_at(now, interval, _loop_mark())


def write_checkpoints(task_id: int) -> JobResult:
    report = reconcile_checkpoints(runtime.service(), task_id)
    for checkpoint_id, start_iso in report.ahead:  # the prompt goes out at the line itself
        jobs().checkpoint_prompt.schedule(
            (checkpoint_id, start_iso), eta=datetime.fromisoformat(start_iso)
        )
    return report.to_dict()


def checkpoint_prompt(checkpoint_id: int, start_iso: str | None = None) -> JobResult:
    """At a line: the method's questions and a feedback link, to the manager (and delegate)."""
    ids = send_prompt(runtime.service(), checkpoint_id, start_iso)
    _drain_soon(ids)
    return {"checkpoint_id": checkpoint_id, "outbox_ids": ids}


def tick() -> None:
    """Once a minute (in the one consumer that runs the scheduler): what is due."""
    svc = runtime.service()
    work = polling.due_at_tick(svc)
    if work.poll_loop:
        keep_polling(svc.now(), svc.settings.sync.poll_interval_seconds)
    else:
        jobs().sync_due()
    # An account failing long enough is reported even when it is no longer tried (parked);
    # the tick's drain delivers it.
    account_health.send_due_alerts(svc)
    queue_tick_work(work)


def queue_tick_work(work: polling.TickWork) -> None:
    """The jobs for what the tick found due, in its order; the outbox is drained too."""
    j = jobs()
    j.checkpoint_prompt.map(work.prompts)  # lines moved, or schedules lost
    j.write_checkpoints.map(work.writes)  # a write lost to a crash or an outage
    j.dispatch_changes.map(work.dispatches)  # one scheduled for later is lost with the queue
    j.nudge_pair.map(work.nudges)  # reminders fall due with time passing, not only new mail
    j.send_digest.map(work.digests)
    j.drain_outbox()
    j.ensure_push.map(work.push_ensure)
    j.drop_push.map(work.push_drop)
    if work.inbox:  # the service's own mailbox
        j.process_inbox()


# ------------------------------------------------------------ webhook push (Graph, Google)


def ensure_push(account_id: int) -> JobResult:
    """Create or renew the account's Graph subscription or Google channel, as due."""
    svc = runtime.service()
    try:
        return push.ensure_push(svc, account_id, svc.now()).to_dict()
    except ConnectorError as exc:  # recorded on the account; tick tries again later
        return {"account_id": account_id, "error": str(exc)}


def drop_push(account_id: int) -> JobResult:
    """Delete the account's Graph subscription or stop its Google channel."""
    try:
        return push.drop_push(runtime.service(), account_id).to_dict()
    except ConnectorError as exc:
        return {"account_id": account_id, "error": str(exc)}


def push_signal(provider: str, account_id: int, kind: str, subscription_id: str) -> str:
    """A lifecycle event from Graph (renew, re-create) turned into work."""
    # Huey hands back the plain strings ``queue_push_signal`` took from a PushSignal; an
    # unknown kind is logged and turned into a sync by ``handle_signal``.
    signal = PushSignal(
        cast(PushProvider, provider), account_id, cast("SignalKind", kind), subscription_id
    )
    return push.handle_signal(runtime.service(), signal, jobs().sync_account)


def queue_push_signal(signal: PushSignal) -> None:
    """The web app's ``on_push``: a change (or missed notifications) queues the account's
    sync at once; a lifecycle event queues ``push_signal``."""
    if signal.kind in ("change", "missed"):
        jobs().sync_account(signal.account_id)
    else:
        jobs().push_signal(signal.provider, signal.account_id, signal.kind,
                           signal.subscription_id)  # fmt: skip


# ------------------------------------------------------------------- the service's inbox


def process_inbox() -> JobResult:
    """New tasks from managers and answers to prompts, from the service's own mailbox."""
    from assistant.services.inbound import process_inbox as process  # slow to import

    svc = runtime.service()
    try:
        report = process(svc, svc.now())
    except ConnectorError as exc:  # the token stays; the next tick reads the same mail
        log.warning("inbox: %s", exc)
        return {"error": str(exc)}
    jobs().write_checkpoints.map(report.tasks)
    _drain_soon(report.outbox_ids)
    return report.to_dict()


# ----------------------------------------------------------------------- daily digest


def send_digest(pair_id: int, planned_iso: str | None = None) -> JobResult:
    """The pair's daily digest, then the next one scheduled at its local time (an ETA).

    The job schedules itself, so a digest goes at its minute, not at the next tick; the
    tick only starts the chain again when a digest is overdue (``keep_digests``). Every
    next run is claimed in Huey's storage (``put_if_empty`` on pair and instant) before
    it is scheduled, so the tick's run and the chain's own never become two chains.
    """
    if planned_iso:
        jobs().huey.delete(_digest_claim(pair_id, planned_iso))
    report = pipeline.send_digest(runtime.service(), pair_id)
    if report is None:  # removed, or the digest turned off: the chain ends here
        return {"pair_id": pair_id, "skipped": "no digest"}
    _drain_soon(report.outbox_ids)
    _next_digest(pair_id, report.next_at)
    return report.to_dict()


def _next_digest(pair_id: int, at: datetime | None) -> None:
    """Claim the chain's next run at ``at`` and schedule it, unless already claimed."""
    if at is not None and jobs().huey.put_if_empty(_digest_claim(pair_id, at.isoformat()), True):
        jobs().send_digest.schedule((pair_id, at.isoformat()), eta=at)


def _digest_claim(pair_id: int, planned_iso: str) -> str:
    return f"send_digest:{pair_id}:{planned_iso}"


def keep_digests() -> list[int]:
    """From tick: queue the digest of every pair whose digest is overdue (the chain of
    self-scheduled jobs was lost with the queue, or the digest was just turned on)."""
    svc = runtime.service()
    due = digest.pairs_due(svc)
    for pair_id in due:
        jobs().send_digest(pair_id)
    return due


# ----------------------------------------------------------------------- registration


def register(huey: Huey, periodic: bool = True) -> Jobs:
    global _jobs
    t = huey.task
    _jobs = Jobs(
        huey=huey,
        sync_account=t(retries=3, retry_delay=10, name="sync_account")(sync_account),
        sync_due=t(name="sync_due")(sync_due),
        dispatch_changes=t(retries=3, retry_delay=5, name="dispatch_changes")(dispatch_changes),
        nudge_pair=t(retries=3, retry_delay=10, name="nudge_pair")(nudge_pair),
        checkpoint_prompt=t(retries=3, retry_delay=10, name="checkpoint_prompt")(checkpoint_prompt),
        drain_outbox=t(retries=2, retry_delay=5, name="drain_outbox")(drain_outbox),
        write_checkpoints=t(retries=5, retry_delay=15, name="write_checkpoints")(write_checkpoints),
        tick=huey.periodic_task(crontab(minute="*"), name="tick")(tick) if periodic else None,
        ensure_push=t(name="ensure_push")(ensure_push),
        drop_push=t(name="drop_push")(drop_push),
        push_signal=t(retries=2, retry_delay=30, name="push_signal")(push_signal),
        process_inbox=t(name="process_inbox")(process_inbox),
        send_digest=t(retries=3, retry_delay=30, name="send_digest")(send_digest),
    )
    return _jobs
