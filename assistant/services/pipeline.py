"""What follows a sync or a dispatch, in one place: sync → dispatch → deliver.

A calendar sync stores pending changes (``sync.sync_calendar``), a mailbox sync the new
messages (``mail.import_mail``); a dispatch turns a pair's pending changes into messages
in the outbox (``notifications.dispatch``), a nudge reminds of open mail
(``nudges.nudge``); a drain delivers what the outbox holds (``outbox.drain``). The jobs
(``jobs.tasks``), ``assistant sync`` (``runner.sync_now``) and the demo run these steps
through this module only, and each run delivers what it queued before it returns: a
question the sync asked the manager goes out with the run, not at the next tick.

Two ways through:

- ``after_poll`` (the ``sync_account`` job): one account; its pair's changes are
  dispatched as they are due (the coalescing window holds a burst until it is quiet), a
  polled calendar whose pair's changes are settling is to be synced again soon
  (``repoll_at``, ``services.quiet_period``), a mailbox with new mail nudges its pair,
  and the outbox is drained when the run queued anything.
- ``by_hand`` (``assistant sync``): the accounts given; every pair's pending changes are
  put into messages now, without the wait, every pair with a mailbox among them is
  nudged, and the outbox is drained (unless ``send`` is off).

Each returns a ``Run``: what was done, and what is due later (``retry_in`` of a rate
limited account, ``next_due`` of a dispatch or a nudge, ``next_attempt_at`` of the
drain), which the jobs schedule and ``assistant sync`` leaves to the next run.

What the sync saw of the checkpoint events this service wrote is followed inside the
sync's transaction (``follow_checkpoints``): a moved one pins the task's line there, a
deleted one asks the manager, in the same commit as the snapshot, so that no crash
between the two can lose the question.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select

from assistant.services import account_health, delegation, outbox, quiet_period
from assistant.services.accounts import token_keeper
from assistant.services.digest import DigestReport, digest
from assistant.services.mail import import_mail
from assistant.services.notifications import DispatchReport, dispatch, pairs_with_pending
from assistant.services.nudges import NudgeReport, nudge
from assistant.services.push import calendar_pushes
from assistant.services.sync import (
    OwnEventsSeen,
    SyncPolicy,
    SyncReport,
    SyncStart,
    account_row,
    record_failure,
    resource_name,
    sync_calendar,
)
from assistant.store.tables import Checkpoint, Pair
from connectors.base import AuthExpired, CalendarSource, ConnectorError, ParseLimits, RateLimited
from connectors.netguard import NetPolicy
from connectors.registry import open_calendar, open_mailbox

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from assistant.services.deps import Deps

log = logging.getLogger(__name__)

Kind = Literal["calendar", "mail"]


@dataclass(frozen=True, slots=True)
class MailImported:
    """What a mailbox sync stored."""

    new: int
    seen: int
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AccountSynced:
    """What syncing one account did: a calendar's report, a mailbox's import, or why not."""

    account_id: int
    pair_id: int = 0
    name: str = ""
    kind: Kind = "calendar"
    calendar: SyncReport | None = None
    mail: MailImported | None = None
    error: str = ""  # the connector's error, recorded on the account
    retry_in: float | None = None  # rate limited: sync again after this many seconds
    missing: bool = False  # no such account (removed since the job was queued)
    baseline: bool = False  # the account's first sync: what it read is the baseline, no news
    provider: str = ""
    repoll_at: datetime | None = None  # its pair's changes settle: sync it again then
    failed: account_health.FailedTry | None = None  # the back-off, or parked, after an error
    parked: bool = False  # not tried: parked until its credentials change
    disabled: bool = False  # not tried: a person disabled it (``assistant account enable``)
    health_outbox: tuple[int, ...] = ()  # an alert or a recovery message queued

    @property
    def outbox_ids(self) -> tuple[int, ...]:
        own = self.calendar.outbox_ids if self.calendar is not None else ()
        return (*own, *self.health_outbox)

    @property
    def changed(self) -> bool:
        return self.calendar is not None and bool(self.calendar.changes)


@dataclass(frozen=True, slots=True)
class Run:
    """One run of the pipeline, in order: syncs, nudges, dispatches, the drain."""

    synced: tuple[AccountSynced, ...] = ()
    nudged: tuple[NudgeReport, ...] = ()
    dispatched: tuple[DispatchReport, ...] = ()
    drained: outbox.DrainReport | None = None

    @property
    def outbox_ids(self) -> tuple[int, ...]:
        """The outbox entries this run queued: questions, reminders, notifications."""
        return (
            *(i for s in self.synced for i in s.outbox_ids),
            *(i for n in self.nudged for i in n.outbox_ids),
            *(i for d in self.dispatched for i in d.outbox_ids),
        )

    def to_json(self) -> dict[str, object]:
        """The ``sync_account`` job's result (the run of one account), as plain values."""
        [s] = self.synced
        if s.missing:
            return {"account_id": s.account_id, "skipped": "no such account"}
        if s.disabled:
            return {"account_id": s.account_id, "skipped": "disabled"}
        if s.retry_in is not None:
            return {"account_id": s.account_id, "rate_limited": s.retry_in}
        if s.error:
            parked = s.parked or (s.failed is not None and s.failed.parked)
            return {"account_id": s.account_id, "error": s.error} | (
                {"parked": True} if parked else {}
            )
        if s.mail is not None:
            m = s.mail
            return {"account_id": s.account_id, "new": m.new, "seen": m.seen,
                    "skipped": list(m.skipped)}  # fmt: skip
        report = s.calendar
        assert report is not None
        return {
            "account_id": s.account_id,
            "full": report.full,
            "unchanged": report.unchanged,
            "changes": len(report.changes),
            "outbox": list(self.outbox_ids),
        }


# ----------------------------------------------------------------------- the two ways


def after_poll(
    deps: Deps, account_id: int, *, next_poll_at: datetime | None = None, repoll: bool = False
) -> Run:
    """Sync one account, then what follows as it is due (see the module docstring).

    ``next_poll_at`` is when the next polling round starts (None: unknown): a dispatch
    stops waiting for changes that could only come with a later round (unless polled
    calendars are re-polled as their changes settle). ``repoll``: this sync is a re-poll
    planned by ``repoll_at`` of an earlier run.
    """
    synced = sync_account(deps, account_id)
    nudged = _nudge(deps, [synced.pair_id] if synced.mail and synced.mail.new else [])
    # A re-poll dispatches its pair even when it found nothing new: the one at the end of
    # the quiet period sends what it found quiet.
    settling = repoll and synced.calendar is not None
    pairs = [synced.pair_id] if synced.changed or settling else []
    dispatched = _dispatch(deps, pairs, force=False, next_poll_at=next_poll_at)
    if synced.calendar is not None:
        again = quiet_period.repoll_at(deps, synced.provider, next(iter(dispatched), None))
        synced = replace(synced, repoll_at=again)
    run = Run((synced,), nudged, dispatched)
    return _deliver(deps, run) if run.outbox_ids else run


def by_hand(
    deps: Deps,
    account_ids: Sequence[int],
    *,
    send: bool = True,
    on_synced: Callable[[AccountSynced], None] | None = None,
) -> Run:
    """Sync the accounts now, put every pending change into messages, deliver (``send``).
    ``on_synced`` hears of each account as it is done (a terminal shows progress)."""
    # By hand, a parked account is tried too: someone asked (after fixing a secret that
    # the account refers to, say); one failure more keeps it parked.
    synced_list = []
    for aid in account_ids:
        synced_list.append(sync_account(deps, aid, tried_when_parked=True))
        if on_synced is not None:
            on_synced(synced_list[-1])
    synced = tuple(synced_list)
    nudged = _nudge(deps, sorted({s.pair_id for s in synced if s.kind == "mail"}))
    # Run by hand: what was found is put into messages now, without the coalescing wait.
    dispatched = _dispatch(deps, pairs_with_pending(deps.uow), force=True)
    run = Run(synced, nudged, dispatched)
    return _deliver(deps, run) if send else run


def dispatch_pair(deps: Deps, pair_id: int, *, next_poll_at: datetime | None = None) -> Run:
    """The pair's pending changes, as they are due, then delivered (the dispatch job)."""
    run = Run(dispatched=_dispatch(deps, [pair_id], force=False, next_poll_at=next_poll_at))
    return _deliver(deps, run) if run.outbox_ids else run


def nudge_pair(deps: Deps, pair_id: int) -> Run:
    """Reminders of the pair's open messages near or past the SLA, then delivered."""
    run = Run(nudged=_nudge(deps, [pair_id]))
    return _deliver(deps, run) if run.outbox_ids else run


def send_digest(deps: Deps, pair_id: int) -> DigestReport | None:
    """The pair's daily digest for the date it is (queued once per date); None when the
    pair is gone or its digest is turned off."""
    with deps.uow.read() as session:
        pair = session.get(Pair, pair_id)
        if pair is None or not pair.digest_time:
            return None
    return digest(deps, pair_id)


def deliver(deps: Deps) -> Run:
    """Drain the outbox: what is due is delivered (the drain job)."""
    return _deliver(deps, Run())


# ---------------------------------------------------------------------------- the steps


def sync_account(deps: Deps, account_id: int, *, tried_when_parked: bool = False) -> AccountSynced:
    """Sync one account (a calendar or a mailbox) with its connector; a connector error is
    recorded on the account (``account_health``: back-off, parking, the alert) and
    returned, never raised. A parked account is not tried unless ``tried_when_parked``."""
    with deps.uow.read() as session:  # one statement: the account and its pair's zone
        account = account_row(session, account_id)
        if account is None:
            return AccountSynced(account_id, missing=True)
        start = SyncStart.of(account)
        pair_id, name, provider = account.pair_id, account.name, account.provider
        kind: Kind = "mail" if account.kind == "mail" else "calendar"
        conf = dict(account.settings)
        first = account.last_sync_at is None
        parked, last_error = account.parked_reason, account.last_error
        failing = account.failing_since is not None or bool(parked)
        disabled = account.disabled
    done = AccountSynced(account_id, pair_id, name, kind,
                         baseline=first and kind == "calendar", provider=provider)  # fmt: skip
    if disabled:
        return replace(done, disabled=True)
    if parked and not tried_when_parked:
        return replace(done, error=last_error or parked, parked=True)
    synced = _try(deps, done, provider, conf, start)
    if synced.error or not failing:
        return synced
    return replace(synced, health_outbox=account_health.record_working(deps, account_id))


def _try(
    deps: Deps, done: AccountSynced, provider: str, conf: dict[str, Any], start: SyncStart
) -> AccountSynced:
    account_id, kind = done.account_id, done.kind
    net = NetPolicy.from_settings(deps.settings.network)
    limits = ParseLimits.of(deps.settings.limits)
    keep = token_keeper(deps, account_id)
    try:
        if kind == "mail":
            mailbox = open_mailbox(provider, conf, keep_token=keep, limits=limits, policy=net)
            try:
                imported = import_mail(deps, account_id, mailbox, token=start.token)
            finally:  # an IMAP session logs out, an HTTP client's connections close
                _close(mailbox)
            mail = MailImported(imported.new, imported.seen, tuple(imported.skipped))
            if mail.new:
                log.info("account %s: %d new message(s)", account_id, mail.new)
            return replace(done, mail=mail)
        timeout = deps.settings.sync.http_timeout_seconds
        source = open_calendar(provider, conf, timeout, keep_token=keep, limits=limits,
                               policy=net)  # fmt: skip
        try:
            report = calendar_sync(deps, account_id, source, start=start)
        finally:  # its connections (and a CalDAV pool's watcher thread) end with the sync
            _close(source)
        _log_synced(done, report)
        return replace(done, calendar=report)
    except ConnectorError as exc:
        # Opening the connector can fail too (a stored secret that cannot be read): the
        # account shows it like any failed sync. Recording twice changes nothing.
        record_failure(deps.uow, account_id, exc, deps.now())
        retry_in = None
        if isinstance(exc, RateLimited):
            retry_in = exc.retry_after or deps.settings.sync.poll_interval_seconds
        failed = account_health.record_failed_try(deps, account_id, exc, retry_in)
        # One line when an account starts failing (and when it is parked); the tries
        # after it are at DEBUG: the account's page and doctor show them.
        first = failed is None or failed.failures == 1
        level = logging.WARNING if first else logging.DEBUG
        why = " (reconnect needed)" if isinstance(exc, AuthExpired) else ""
        log.log(level, "account %s: %s%s", account_id, exc, why)
        return replace(done, error=str(exc), retry_in=retry_in, failed=failed,
                       health_outbox=failed.outbox_ids if failed else ())  # fmt: skip


def _log_synced(done: AccountSynced, report: SyncReport) -> None:
    """A poll that changed nothing is a DEBUG line; a change or a baseline is INFO."""
    if report.changes:
        log.info("account %s: %d change(s)", done.account_id, len(report.changes))
    elif done.baseline and not report.superseded:
        log.info("account %s: baseline of %d event(s)", done.account_id, report.events)
    else:
        log.debug("account %s: no change", done.account_id)


def calendar_sync(
    deps: Deps,
    account_id: int,
    source: CalendarSource,
    policy: SyncPolicy | None = None,
    *,
    start: SyncStart | None = None,
) -> SyncReport:
    """``sync.sync_calendar`` with the checkpoint events followed in its transaction."""
    return sync_calendar(
        deps.uow, account_id, source, deps.now(), policy or SyncPolicy.of(deps.settings.sync),
        on_own_events=follow_checkpoints, start=start,
    )  # fmt: skip


def follow_checkpoints(
    session: Session, pair: Pair, seen: OwnEventsSeen, now: datetime
) -> list[int]:
    """The manager moved or deleted one of our checkpoint events in their calendar.

    Moved: the task's line follows (the checkpoint is pinned there). Deleted: the task
    records it and the manager is asked, instead of the event being silently recreated.
    Rows being written or removed by us right now (planned, to_remove) are left alone.
    Runs in the sync's transaction; the ids of the questions queued come back.
    """
    uids = set(seen.before) | set(seen.after)
    stmt = select(Checkpoint).where(Checkpoint.state.in_(("written", delegation.PINNED)))
    if seen.full or seen.gone:  # also ours written since the last sync and gone already
        stmt = stmt.where(Checkpoint.account_id == seen.account_id)
    elif uids:
        stmt = stmt.where(Checkpoint.event_uid.in_(sorted(uids)))
    else:
        return []
    asked: list[int] = []
    window = seen.window
    for cp in session.scalars(stmt):
        after = seen.after.get(cp.event_uid)
        if after is None:
            in_window = cp.start_at is not None and window.start <= cp.start_at < window.end
            if (
                cp.event_uid in seen.before
                or (cp.event_href and resource_name(cp.event_href) in seen.gone)
                or (seen.full and in_window)
            ):
                delegation.checkpoint_deleted(session, cp, now)
                entry = delegation.ask_about_deleted(session, pair, cp, now)
                if entry is not None:
                    asked.append(entry.id)
            continue
        if (after.start, after.end) != (cp.start_at, cp.end_at):
            delegation.checkpoint_moved(session, cp, after.start, after.end, now)
    return asked


def _nudge(deps: Deps, pair_ids: Sequence[int]) -> tuple[NudgeReport, ...]:
    return tuple(nudge(deps, p) for p in pair_ids)


def _dispatch(
    deps: Deps, pair_ids: Sequence[int], *, force: bool, next_poll_at: datetime | None = None
) -> tuple[DispatchReport, ...]:
    pushes = partial(calendar_pushes, deps.settings)  # can such a calendar push a change?
    notify = deps.settings.notify
    repolled = quiet_period.repolled(deps)  # polled calendars are polled again as they settle
    return tuple(
        dispatch(deps.uow, p, deps.now(), notify, force=force, next_poll_at=next_poll_at,
                 pushes=pushes, repolled=repolled)
        for p in pair_ids
    )  # fmt: skip


def _deliver(deps: Deps, run: Run) -> Run:
    drained = outbox.drain(deps.uow, deps.channels, deps.now, deps.settings.outbox)
    return Run(run.synced, run.nudged, run.dispatched, drained)


def _close(source: object) -> None:
    """Close a calendar or mail source that holds connections (those with ``close()``)."""
    close = getattr(source, "close", None)
    if callable(close):
        close()
