"""The background jobs. Each is a few lines that call one use case with ids.

``register(huey)`` binds them to a Huey instance (built from settings by
``jobs.queue.build_huey``) and returns handles to enqueue them. Every job is safe to run
twice: the use cases are idempotent (outbox keys, stable event UIDs, change tokens).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, cast

from huey import Huey, crontab
from huey.api import TaskWrapper
from sqlalchemy import select

from assistant.bootstrap import Service
from assistant.services import outbox, polling
from assistant.services.accounts import token_keeper
from assistant.services.runner import policy_of
from assistant.services.sync import sync_calendar
from assistant.store.tables import Account
from connectors.base import AuthExpired, ConnectorError, ParseLimits, RateLimited
from connectors.netguard import NetPolicy
from connectors.registry import open_calendar
from jobs import runtime

if TYPE_CHECKING:
    from assistant.services.push import PushSignal, SignalKind

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


def sync_account(account_id: int) -> JobResult:
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
    try:
        source = open_calendar(
            provider,
            conf,
            timeout=svc.settings.sync.http_timeout_seconds,
            keep_token=token_keeper(svc, account_id),
            policy=NetPolicy.from_settings(svc.settings.network),
            limits=ParseLimits.of(svc.settings.limits),
        )
    except ConnectorError as exc:  # e.g. a stored secret that cannot be read any more
        from assistant.services.sync import record_failure

        record_failure(svc.uow, account_id, exc, svc.now())
        log.error("account %s: %s", account_id, exc)
        return {"account_id": account_id, "error": str(exc)}
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
    svc: Service, account_id: int, pair_id: int, provider: str, conf: dict[str, Any]
) -> JobResult:
    from assistant.services.mail import import_mail
    from assistant.services.sync import record_failure
    from connectors.registry import open_mailbox

    try:
        policy = NetPolicy.from_settings(svc.settings.network)
        keep, limits = token_keeper(svc, account_id), ParseLimits.of(svc.settings.limits)
        mailbox = open_mailbox(provider, conf, keep_token=keep, limits=limits, policy=policy)
        result = import_mail(svc, account_id, mailbox)
    except RateLimited as exc:
        delay = exc.retry_after or svc.settings.sync.poll_interval_seconds
        jobs().sync_account.schedule((account_id,), delay=delay)
        return {"account_id": account_id, "rate_limited": delay}
    except ConnectorError as exc:
        record_failure(svc.uow, account_id, exc, svc.now())
        log.warning("account %s: %s", account_id, exc)
        return {"account_id": account_id, "error": str(exc)}
    if result.new:
        jobs().nudge_pair(pair_id)
    return {"account_id": account_id, **result.to_dict()}


def nudge_pair(pair_id: int) -> JobResult:
    """Remind the manager of open assistant messages near or past the SLA; run again then."""
    from assistant.services.nudges import nudge

    svc = runtime.service()
    report = nudge(svc, pair_id)
    if report.outbox_ids:
        jobs().drain_outbox()
    if report.next_due is not None:
        delay = max(1.0, (report.next_due - svc.now()).total_seconds())
        jobs().nudge_pair.schedule((pair_id,), delay=delay)
    return report.to_dict()


# Huey's storage holds the polling loop's last round (a LoopMark, as stored).
POLL_LOOP_KEY = "sync_due:loop"


def sync_due(rounds_left: int = 0, planned_at: datetime | None = None, loop: str = "") -> int:
    """Queue a sync of every account whose poll interval has passed; plan the next round.

    ``loop`` is the id of the polling loop this round belongs to (see
    ``assistant.services.polling``, which decides); without one, ``rounds_left`` more
    rounds follow this one.
    """
    svc = runtime.service()
    recorded = _loop_mark() if loop else None
    interval = svc.settings.sync.poll_interval_seconds
    plan = polling.poll_round(svc.uow, svc.now(), interval, planned_at=planned_at,
                      rounds_left=rounds_left, loop=loop, recorded=recorded)  # fmt: skip
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


def dispatch_changes(pair_id: int) -> JobResult:
    """Turn a pair's pending changes into a message when due; run again when they will be."""
    from assistant.services.notifications import dispatch
    from assistant.services.push import calendar_pushes

    svc = runtime.service()
    now = svc.now()
    report = dispatch(
        svc.uow,
        pair_id,
        now,
        svc.settings.notify,
        next_poll_at=next_poll_at(now),
        pushes=lambda provider: calendar_pushes(svc.settings, provider),
    )
    if report.outbox_ids:
        jobs().drain_outbox()
    if report.next_due is not None:
        delay = max(0.5, (report.next_due - svc.now()).total_seconds())
        jobs().dispatch_changes.schedule((pair_id,), delay=delay)
    return report.to_dict()


def next_poll_at(now: datetime) -> datetime | None:
    """When the next polling round starts at the earliest, or None when unknown."""
    interval = runtime.service().settings.sync.poll_interval_seconds
    return polling.next_poll_at(now, interval, _loop_mark())


def drain_outbox() -> JobResult:
    svc = runtime.service()
    report = outbox.drain(svc.uow, svc.channels, svc.now, svc.settings.outbox)
    if report.next_attempt_at is not None:
        delay = max(1.0, (report.next_attempt_at - svc.now()).total_seconds())
        jobs().drain_outbox.schedule(delay=delay)
    return report.to_dict()


def write_checkpoints(task_id: int) -> JobResult:
    from assistant.services.delegation import reconcile_checkpoints

    svc = runtime.service()
    report = reconcile_checkpoints(svc, task_id)
    for checkpoint_id, start_iso in report.ahead:  # the prompt goes out at the line itself
        jobs().checkpoint_prompt.schedule(
            (checkpoint_id, start_iso), eta=datetime.fromisoformat(start_iso)
        )
    return report.to_dict()


def checkpoint_prompt(checkpoint_id: int, start_iso: str | None = None) -> JobResult:
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
    from assistant.services.feedback import due_prompts
    from assistant.services.notifications import pairs_with_pending

    if interval < 60:
        keep_polling(runtime.service().now(), interval)  # rounds at the interval, below
    else:
        jobs().sync_due()
    for checkpoint_id in due_prompts(runtime.service()):  # lines moved or schedules lost
        jobs().checkpoint_prompt(checkpoint_id)
    from assistant.services.delegation import tasks_to_write

    for task_id in tasks_to_write(runtime.service()):  # a write lost to a crash or an outage
        jobs().write_checkpoints(task_id)
    # A safety net: a dispatch scheduled for later is lost if the queue is wiped.
    for pair_id in pairs_with_pending(runtime.service().uow):
        jobs().dispatch_changes(pair_id)
    with runtime.service().uow.read() as session:
        mail_pairs = sorted(
            set(session.scalars(select(Account.pair_id).where(Account.kind == "mail")))
        )
    for pair_id in mail_pairs:  # nudges are due on time passing, not only on new mail
        jobs().nudge_pair(pair_id)
    keep_digests()
    jobs().drain_outbox()
    keep_push()
    if runtime.service().settings.inbox.provider:  # the service's own mailbox
        jobs().process_inbox()


# ------------------------------------------------------------ webhook push (Graph, Google)


def ensure_push(account_id: int) -> JobResult:
    """Create or renew the account's Graph subscription or Google channel, as due."""
    from assistant.services.push import ensure_push as ensure

    svc = runtime.service()
    try:
        return ensure(svc, account_id, svc.now()).to_dict()
    except ConnectorError as exc:  # recorded on the account; tick tries again later
        return {"account_id": account_id, "error": str(exc)}


def drop_push(account_id: int) -> JobResult:
    """Delete the account's Graph subscription or stop its Google channel."""
    from assistant.services.push import drop_push as drop

    svc = runtime.service()
    try:
        return drop(svc, account_id).to_dict()
    except ConnectorError as exc:
        return {"account_id": account_id, "error": str(exc)}


def push_signal(provider: str, account_id: int, kind: str, subscription_id: str) -> str:
    """A lifecycle event from Graph (renew, re-create) turned into work."""
    from assistant.services.push import PushSignal, handle_signal

    # Huey hands back the plain strings ``queue_push_signal`` took from a PushSignal; an
    # unknown kind is logged and turned into a sync by ``handle_signal``.
    signal = PushSignal(
        cast(PushProvider, provider), account_id, cast("SignalKind", kind), subscription_id
    )
    return handle_signal(runtime.service(), signal, jobs().sync_account)


def queue_push_signal(signal: PushSignal) -> None:
    """The web app's ``on_push``: a change (or missed notifications) queues the account's
    sync at once; a lifecycle event queues ``push_signal``."""
    if signal.kind in ("change", "missed"):
        jobs().sync_account(signal.account_id)
    else:
        jobs().push_signal(signal.provider, signal.account_id, signal.kind,
                           signal.subscription_id)  # fmt: skip


def keep_push() -> None:
    """From tick: subscriptions to create or renew when ``web.public_url`` is https, to
    drop when it is unset. (A loopback http URL, for local protocol servers, is neither.)"""
    from assistant.services.push import accounts_due, push_base

    svc = runtime.service()
    base = push_base(svc.settings)
    if base is not None and not base.startswith("https://"):
        return
    ensure, drop = accounts_due(svc, svc.now())
    for account_id in ensure:
        jobs().ensure_push(account_id)
    for account_id in drop:
        jobs().drop_push(account_id)


# ------------------------------------------------------------------- the service's inbox


def process_inbox() -> JobResult:
    """New tasks from managers and answers to prompts, from the service's own mailbox."""
    from assistant.services.inbound import process_inbox as process

    svc = runtime.service()
    try:
        report = process(svc, svc.now())
    except ConnectorError as exc:  # the token stays; the next tick reads the same mail
        log.warning("inbox: %s", exc)
        return {"error": str(exc)}
    for task_id in report.tasks:
        jobs().write_checkpoints(task_id)
    if report.outbox_ids:
        jobs().drain_outbox()
    return report.to_dict()


# ----------------------------------------------------------------------- daily digest


def send_digest(pair_id: int, planned_iso: str | None = None) -> JobResult:
    """The pair's daily digest, then the next one scheduled at its local time (an ETA).

    The job schedules itself, so a digest goes at its minute, not at the next tick; the
    tick only starts the chain again when a digest is overdue (``keep_digests``). Every
    next run is claimed in Huey's storage (``put_if_empty`` on pair and instant) before
    it is scheduled, so the tick's run and the chain's own never become two chains.
    """
    from assistant.services.digest import digest
    from assistant.store.tables import Pair

    svc = runtime.service()
    if planned_iso:
        jobs().huey.delete(_digest_claim(pair_id, planned_iso))
    with svc.uow.read() as session:
        pair = session.get(Pair, pair_id)
        enabled = pair is not None and bool(pair.digest_time)
    if not enabled:  # removed, or the digest turned off: the chain ends here
        return {"pair_id": pair_id, "skipped": "no digest"}
    report = digest(svc, pair_id)
    if report.outbox_ids:
        jobs().drain_outbox()
    if report.next_at is not None:
        planned = report.next_at.isoformat()
        if jobs().huey.put_if_empty(_digest_claim(pair_id, planned), True):
            jobs().send_digest.schedule((pair_id, planned), eta=report.next_at)
    return report.to_dict()


def _digest_claim(pair_id: int, planned_iso: str) -> str:
    return f"send_digest:{pair_id}:{planned_iso}"


def keep_digests() -> list[int]:
    """From tick: queue the digest of every pair whose digest is overdue (the chain of
    self-scheduled jobs was lost with the queue, or the digest was just turned on)."""
    from assistant.services.digest import pairs_due

    svc = runtime.service()
    due = pairs_due(svc)
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
        checkpoint_prompt=t(retries=3, retry_delay=10, name="checkpoint_prompt")(
            checkpoint_prompt
        ),
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
