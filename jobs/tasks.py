"""The background jobs. Each is a few lines that call one use case with ids.

``register(huey)`` binds them to a Huey instance (built from settings by
``jobs.queue.build_huey``) and returns handles to enqueue them. Every job is safe to run
twice: the use cases are idempotent (outbox keys, stable event UIDs, change tokens).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from huey import Huey, crontab
from huey.api import TaskWrapper
from sqlalchemy import select

from assistant import outbox
from assistant.services.runner import policy_of
from assistant.services.sync import sync_calendar
from assistant.store.tables import Account
from connectors.base import AuthExpired, ConnectorError, RateLimited
from connectors.registry import open_calendar
from jobs import runtime

log = logging.getLogger(__name__)


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


_jobs: Jobs | None = None


def jobs() -> Jobs:
    if _jobs is None:
        raise RuntimeError("jobs are not registered: call jobs.tasks.register(huey)")
    return _jobs


# ------------------------------------------------------------------------ job bodies


def sync_account(account_id: int) -> dict[str, Any]:
    """Sync one account: a calendar (then dispatch its changes) or a mailbox (then nudge)."""
    svc = runtime.service()
    with svc.uow.read() as session:
        account = session.get(Account, account_id)
        if account is None:
            return {"account_id": account_id, "skipped": "no such account"}
        provider, conf, kind = account.provider, dict(account.settings), account.kind
        pair_id = account.pair_id
    if kind == "mail":
        return _sync_mailbox(svc, account_id, pair_id, provider, conf)
    source = open_calendar(provider, conf, timeout=svc.settings.sync.http_timeout_seconds)
    try:
        report = sync_calendar(svc.uow, account_id, source, svc.now(), policy_of(svc))
    except RateLimited as exc:
        delay = exc.retry_after or svc.settings.sync.poll_interval_seconds
        log.warning("account %s rate limited; again in %.0fs", account_id, delay)
        jobs().sync_account.schedule((account_id,), delay=delay)
        return {"account_id": account_id, "rate_limited": delay}
    except AuthExpired as exc:
        log.error("account %s: %s (reconnect needed)", account_id, exc)
        return {"account_id": account_id, "error": str(exc)}
    except ConnectorError as exc:
        log.warning("account %s: %s", account_id, exc)
        return {"account_id": account_id, "error": str(exc)}
    if report.changes:
        jobs().dispatch_changes(pair_id)
    return {
        "account_id": account_id,
        "full": report.full,
        "unchanged": report.unchanged,
        "changes": len(report.changes),
        "outbox": report.outbox_ids,
    }


def _sync_mailbox(
    svc: Any, account_id: int, pair_id: int, provider: str, conf: dict[str, Any]
) -> dict[str, Any]:
    from assistant.services.mail import import_mail
    from assistant.services.sync import record_failure
    from connectors.registry import open_mailbox

    try:
        result = import_mail(svc, account_id, open_mailbox(provider, conf))
    except RateLimited as exc:
        delay = exc.retry_after or svc.settings.sync.poll_interval_seconds
        jobs().sync_account.schedule((account_id,), delay=delay)
        return {"account_id": account_id, "rate_limited": delay}
    except ConnectorError as exc:
        record_failure(svc.uow, account_id, exc, svc.now())
        log.warning("account %s: %s", account_id, exc)
        return {"account_id": account_id, "error": str(exc)}
    if result["new"]:
        jobs().nudge_pair(pair_id)
    return {"account_id": account_id, **result}


def nudge_pair(pair_id: int) -> dict[str, Any]:
    """Remind the manager of open assistant messages near or past the SLA; run again then."""
    from assistant.services.nudges import nudge

    svc = runtime.service()
    report = nudge(svc.uow, pair_id, svc.now(), svc.settings.latency)
    if report.outbox_ids:
        jobs().drain_outbox()
    if report.next_due is not None:
        delay = max(1.0, (report.next_due - svc.now()).total_seconds())
        jobs().nudge_pair.schedule((pair_id,), delay=delay)
    return report.to_dict()


def sync_due(rounds_left: int = 0, planned_at: datetime | None = None) -> int:
    """Queue a sync of every calendar account whose poll interval has passed.

    Huey's periodic tasks tick once a minute; for shorter intervals this job schedules
    itself again ``rounds_left`` times within the minute. The next round is planned at
    this round's planned time plus the interval (an ETA, not a delay from now): Huey's
    scheduler enqueues a scheduled task up to a second late, and a delay counted from
    the late start made every round a second later than planned (a 2 s interval polled
    every 3 s).
    """
    svc = runtime.service()
    interval = svc.settings.sync.poll_interval_seconds
    now = svc.now()
    if planned_at is None or not timedelta(0) <= now - planned_at < timedelta(seconds=interval):
        planned_at = now  # the first round, or one so late that catching up makes no sense
    with svc.uow.read() as session:
        rows = session.execute(
            select(Account.id, Account.last_sync_at).where(
                Account.kind.in_(("calendar", "mail")),
                Account.provider.not_in(("maildir", "mbox")),  # exports: imported by hand
            )
        )
        # Not synced within the last half interval: a round runs a little late or early
        # (the scheduler's one-second tick, a queue that was busy); a stricter bound made
        # such an account skip a whole round and wait two intervals.
        due = [
            aid for aid, last in rows
            if last is None or (now - last).total_seconds() >= interval * 0.5
        ]  # fmt: skip
    for aid in due:
        jobs().sync_account(aid)
    if rounds_left > 0:
        next_at = planned_at + timedelta(seconds=interval)
        jobs().sync_due.schedule((rounds_left - 1, next_at), eta=next_at)
    return len(due)


def dispatch_changes(pair_id: int) -> dict[str, Any]:
    """Turn a pair's pending changes into a message when due; run again when they will be."""
    from assistant.services.notifications import dispatch

    svc = runtime.service()
    report = dispatch(svc.uow, pair_id, svc.now(), svc.settings.notify)
    if report.outbox_ids:
        jobs().drain_outbox()
    if report.next_due is not None:
        delay = max(0.5, (report.next_due - svc.now()).total_seconds())
        jobs().dispatch_changes.schedule((pair_id,), delay=delay)
    return report.to_dict()


def drain_outbox() -> dict[str, Any]:
    svc = runtime.service()
    report = outbox.drain(svc.uow, svc.channels, svc.now, svc.settings.outbox)
    if report.next_attempt_at is not None:
        delay = max(1.0, (report.next_attempt_at - svc.now()).total_seconds())
        jobs().drain_outbox.schedule(delay=delay)
    return report.to_dict()


def write_checkpoints(task_id: int) -> dict[str, Any]:
    from assistant.services.delegation import reconcile_checkpoints

    svc = runtime.service()
    report = reconcile_checkpoints(svc, task_id)
    for checkpoint_id, start_iso in report.ahead:  # the prompt goes out at the line itself
        jobs().checkpoint_prompt.schedule(
            (checkpoint_id, start_iso), eta=datetime.fromisoformat(start_iso)
        )
    return report.to_dict()


def checkpoint_prompt(checkpoint_id: int, start_iso: str | None = None) -> dict[str, Any]:
    """At a line: the method's questions and a feedback link, to the manager (and delegate)."""
    from assistant.services.feedback import send_prompt

    svc = runtime.service()
    ids = send_prompt(svc, checkpoint_id, start_iso)
    if ids:
        jobs().drain_outbox()
    return {"checkpoint_id": checkpoint_id, "outbox_ids": ids}


def tick() -> None:
    """Once a minute (in the one consumer that runs the scheduler)."""
    interval = runtime.service().settings.sync.poll_interval_seconds
    rounds = max(0, int(60 // interval) - 1) if interval < 60 else 0
    from assistant.services.feedback import due_prompts
    from assistant.services.notifications import pairs_with_pending

    jobs().sync_due(rounds)
    for checkpoint_id in due_prompts(runtime.service()):  # lines moved or schedules lost
        jobs().checkpoint_prompt(checkpoint_id)
    # A safety net: a dispatch scheduled for later is lost if the queue is wiped.
    for pair_id in pairs_with_pending(runtime.service().uow):
        jobs().dispatch_changes(pair_id)
    with runtime.service().uow.read() as session:
        mail_pairs = sorted(
            set(session.scalars(select(Account.pair_id).where(Account.kind == "mail")))
        )
    for pair_id in mail_pairs:  # nudges are due on time passing, not only on new mail
        jobs().nudge_pair(pair_id)
    jobs().drain_outbox()


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
        checkpoint_prompt=t(retries=3, retry_delay=10, name="checkpoint_prompt")(
            checkpoint_prompt
        ),
        drain_outbox=t(retries=2, retry_delay=5, name="drain_outbox")(drain_outbox),
        write_checkpoints=t(retries=5, retry_delay=15, name="write_checkpoints")(write_checkpoints),
        tick=huey.periodic_task(crontab(minute="*"), name="tick")(tick) if periodic else None,
    )
    return _jobs
