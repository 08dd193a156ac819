"""Account health: a failing account is tried with growing gaps, parked when its
credentials are refused, and the people are told once when it has failed long enough
and once when it works again.

The rules are ``assistant.domain.account_health``; this module keeps them on the account
row (``failing_since``, ``failures``, ``next_try_at``, ``parked_reason``, ``alerted_at``;
the failure's kind in ``sync_state["failure"]``) and queues the messages in the outbox
under keys made of the account, the start of the failure, the stage and the recipient:
a retried job, a second worker or the tick never sends one twice.

- ``record_failed_try`` / ``record_working``: the pipeline calls one after each try of a
  sync (``pipeline.sync_account``), never a connection check.
- ``pollable``: the filter polling applies (not parked, its next try due).
- ``unpark``: the credentials changed (a new password, a reconnect, a stored token): the
  account is tried at the next poll. ``failing_since``/``alerted_at`` stay, so the
  recovery message still goes out when it works.
- ``send_due_alerts``: from the minute's tick, for an account that is no longer tried
  (parked) or waits a long gap.
- ``troubles``: the unhealthy accounts, for the web banner, the digest and doctor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, or_, select

from assistant.domain import timefmt
from assistant.domain.account_health import (
    AccountTrouble,
    Failure,
    Health,
    HealthRules,
    after_failure,
    render_health_message,
)
from assistant.services import outbox
from assistant.services.assistant_messages import notify_channels
from assistant.store.tables import Account, Pair
from connectors.base import (
    AuthExpired,
    InvalidData,
    NotFound,
    RateLimited,
    Transient,
)
from connectors.netguard import redact_text

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from assistant.services.deps import Deps
    from config.settings import Settings

log = logging.getLogger(__name__)

Stage = Literal["alert", "recovered"]
KEY_PREFIX = "account-health"


def rules_of(settings: Settings) -> HealthRules:
    s = settings.sync
    return HealthRules.of(s.poll_interval_seconds, s.backoff_max_minutes, s.refused_tries,
                          s.unhealthy_after_minutes)  # fmt: skip


def failure_of(exc: BaseException) -> Failure:
    """Our error tree as a health failure (a 401 or ``invalid_grant`` is CREDENTIALS)."""
    if isinstance(exc, AuthExpired):
        return Failure.CREDENTIALS
    if isinstance(exc, RateLimited):
        return Failure.RATE_LIMITED
    if isinstance(exc, Transient):
        return Failure.UNREACHABLE
    if isinstance(exc, NotFound):
        return Failure.NOT_FOUND
    if isinstance(exc, InvalidData):
        return Failure.INVALID
    return Failure.OTHER


def health_of(account: Account) -> Health:
    return Health(
        failing_since=account.failing_since,
        failures=account.failures or 0,
        refused=_count(account.sync_state.get("refused")),
        next_try_at=account.next_try_at,
        parked=account.parked_reason or "",
        alerted_at=account.alerted_at,
    )


def _keep(account: Account, health: Health) -> None:
    account.failing_since = health.failing_since
    account.failures = health.failures
    state = {k: v for k, v in account.sync_state.items() if k != "refused"}
    account.sync_state = state | ({"refused": health.refused} if health.refused else {})
    account.next_try_at = health.next_try_at
    account.parked_reason = health.parked
    account.alerted_at = health.alerted_at


def _count(value: object) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def failure_kind(account: Account) -> Failure:
    """The kind of the account's last failure (OTHER when not recorded)."""
    try:
        return Failure(str(account.sync_state.get("failure", "")))
    except ValueError:
        return Failure.OTHER


def _locked(session: Session, account_id: int) -> Account | None:
    stmt = select(Account).where(Account.id == account_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.scalars(stmt).one_or_none()


# ------------------------------------------------------------------------ each try


@dataclass(frozen=True, slots=True)
class FailedTry:
    """What one failed try left on the account."""

    account_id: int
    failure: Failure
    failures: int  # in a row, this one included
    failing_since: datetime
    next_try_at: datetime | None  # None when parked
    parked: bool
    newly_parked: bool  # this try parked it
    outbox_ids: tuple[int, ...] = ()  # the alert, when this try made it due


def record_failed_try(
    deps: Deps, account_id: int, exc: BaseException, retry_after: float | None = None
) -> FailedTry | None:
    """One try to sync the account failed with ``exc``: back off, or park it (refused
    credentials, ``refused_tries`` times); the alert is queued when due. None when the
    account is gone."""
    now, rules = deps.now(), rules_of(deps.settings)
    failure = failure_of(exc)
    with deps.uow.begin() as session:
        account = _locked(session, account_id)
        if account is None:
            return None
        before = health_of(account)
        health = after_failure(before, failure, now, rules, retry_after)
        _keep(account, health)
        account.sync_state = {**account.sync_state, "failure": failure.value}
        ids: tuple[int, ...] = ()
        if health.alert_due(now, rules):
            ids = _tell(session, account, health, failure, "alert", now, rules)
            account.alerted_at = now
    assert health.failing_since is not None
    newly = bool(health.parked) and not before.parked
    if newly:
        log.warning(
            "account %s: credentials refused %d times; not tried again until they change",
            account_id, health.refused,
        )  # fmt: skip
    return FailedTry(account_id, failure, health.failures, health.failing_since,
                     health.next_try_at, bool(health.parked), newly, ids)  # fmt: skip


def record_working(deps: Deps, account_id: int) -> tuple[int, ...]:
    """A try went through: the account is healthy again; those told it failed are told
    it works (the outbox ids queued)."""
    now = deps.now()
    with deps.uow.begin() as session:
        account = _locked(session, account_id)
        if account is None or (account.failing_since is None and not account.parked_reason):
            return ()
        before = health_of(account)
        ids: tuple[int, ...] = ()
        if before.alerted_at is not None:
            ids = _tell(session, account, before, failure_kind(account), "recovered", now,
                        rules_of(deps.settings))  # fmt: skip
        _keep(account, Health())
        state = dict(account.sync_state)
        state.pop("failure", None)
        account.sync_state = state
    log.info("account %s: works again after %d failed tries", account_id, before.failures)
    return ids


def pollable(now: datetime) -> ColumnElement[bool]:
    """Accounts polling may try ``now``: not disabled, not parked, past their back-off."""
    return and_(
        Account.disabled.is_(False),
        Account.parked_reason == "",
        or_(Account.next_try_at.is_(None), Account.next_try_at <= now),
    )


def parked(deps: Deps, account_id: int) -> str:
    """Why the account is parked ("" when it is not)."""
    with deps.uow.read() as session:
        account = session.get(Account, account_id)
        return account.parked_reason if account is not None else ""


def unpark(account: Account) -> None:
    """The account's credentials changed: try it at the next poll, from the first gap.

    Called in the caller's transaction by whatever writes credentials. It still counts as
    failing until a sync goes through (then the recovery message, if one is due)."""
    account.parked_reason = ""
    account.next_try_at = None
    account.failures = 0
    account.sync_state = {k: v for k, v in account.sync_state.items() if k != "refused"}


# ------------------------------------------------------------------------ alerts


@dataclass(frozen=True, slots=True)
class AlertsSent:
    """What ``send_due_alerts`` queued: the accounts and the outbox entries."""

    accounts: tuple[int, ...] = ()
    outbox_ids: tuple[int, ...] = ()


def send_due_alerts(deps: Deps) -> AlertsSent:
    """Queue the alert of every account failing for ``unhealthy_after`` with nobody told
    (the minute's tick: a parked account is not tried, so no failure would tell)."""
    now, rules = deps.now(), rules_of(deps.settings)
    accounts: list[int] = []
    ids: list[int] = []
    with deps.uow.begin() as session:
        stmt = select(Account.id).where(
            Account.failing_since.is_not(None),
            Account.failing_since <= now - rules.unhealthy_after,
            Account.alerted_at.is_(None),
        )
        for account_id in list(session.scalars(stmt.order_by(Account.id))):
            account = _locked(session, account_id)
            if account is None:
                continue
            health = health_of(account)
            if not health.alert_due(now, rules):
                continue
            ids += _tell(session, account, health, failure_kind(account), "alert", now, rules)
            account.alerted_at = now
            accounts.append(account_id)
    return AlertsSent(tuple(accounts), tuple(ids))


def _when(t: datetime | None, zone: str, lg: str) -> str:
    if t is None:
        return ""
    local = t.astimezone(ZoneInfo(zone or "UTC"))
    return f"{timefmt.day(local.date(), lg)} {local:%H:%M}"


def trouble_of(account: Account, health: Health, failure: Failure, zone: str, lg: str
               ) -> AccountTrouble:  # fmt: skip
    return AccountTrouble(
        account=account.name,
        provider=account.provider,
        kind=account.kind,
        failure=failure,
        error=redact_text(account.last_error or ""),
        since=_when(health.failing_since, zone, lg),
        tries=health.failures,
        parked=bool(health.parked),
        next_try=_when(health.next_try_at, zone, lg),
    )


def _tell(
    session: Session,
    account: Account,
    health: Health,
    failure: Failure,
    stage: Stage,
    now: datetime,
    rules: HealthRules,
) -> tuple[int, ...]:
    """Queue the ``stage`` message to the assistant (on the pair's channels) and, for
    refused credentials, to the manager (e-mail): only they can give new ones."""
    pair = session.get(Pair, account.pair_id)
    if pair is None or health.failing_since is None:
        return ()
    lg = timefmt.lang(pair.locale)
    episode = health.failing_since.isoformat()
    targets: list[tuple[Literal["assistant", "manager"], str, str, list[str]]] = [
        ("assistant", pair.assistant_email, pair.assistant_timezone or pair.timezone,
         notify_channels(pair)),
    ]  # fmt: skip
    if failure is Failure.CREDENTIALS:
        targets.append(("manager", pair.manager_email, pair.timezone, ["smtp"]))
    ids: list[int] = []
    for audience, recipient, zone, channels in targets:
        trouble = trouble_of(account, health, failure, zone, lg)
        message = render_health_message(trouble, stage=stage, audience=audience, lang=lg)
        for channel in channels:
            entry = outbox.enqueue(
                session,
                key=f"{KEY_PREFIX}:{account.id}:{episode}:{stage}:{audience}:{channel}",
                channel=channel,
                recipient=recipient,
                subject=message.subject,
                body_text=message.text,
                body_html=message.html,
                payload={"kind": "account_health", "stage": stage, "account_id": account.id,
                         "failure": failure.value, "audience": audience},
                pair_id=pair.id,
                now=now,
            )  # fmt: skip
            if entry is not None:
                ids.append(entry.id)
    return tuple(ids)


# ----------------------------------------------------------------------- read models


@dataclass(frozen=True, slots=True)
class AccountHealth:
    """One account's health as the web, the digest and doctor show it."""

    account_id: int
    pair_id: int
    name: str
    provider: str
    kind: str
    failing: bool
    unhealthy: bool  # parked, or failing for ``unhealthy_after``
    failure: Failure | None
    error: str
    failing_since: datetime | None
    failures: int
    next_try_at: datetime | None
    parked: bool
    alerted_at: datetime | None


def health_view(account: Account, now: datetime, rules: HealthRules) -> AccountHealth:
    health = health_of(account)
    return AccountHealth(
        account_id=account.id,
        pair_id=account.pair_id,
        name=account.name,
        provider=account.provider,
        kind=account.kind,
        failing=health.failing,
        unhealthy=health.unhealthy(now, rules),
        failure=failure_kind(account) if health.failing or health.parked else None,
        error=redact_text(account.last_error or "") if health.failing else "",
        failing_since=health.failing_since,
        failures=health.failures,
        next_try_at=health.next_try_at,
        parked=bool(health.parked),
        alerted_at=health.alerted_at,
    )


def unhealthy_in(
    session: Session, pair_id: int | None, now: datetime, rules: HealthRules
) -> list[AccountHealth]:
    """The unhealthy accounts (of one pair, or all), in the caller's session."""
    stmt = select(Account).where(
        Account.disabled.is_(False),  # turned off by a person: not a trouble
        or_(
            Account.parked_reason != "",
            Account.failing_since <= now - rules.unhealthy_after,
        ),
    )
    if pair_id is not None:
        stmt = stmt.where(Account.pair_id == pair_id)
    return [health_view(a, now, rules) for a in session.scalars(stmt.order_by(Account.id))]


def pair_troubles(
    session: Session, pair: Pair, now: datetime, settings: Settings
) -> list[AccountTrouble]:
    """The pair's unhealthy accounts as the digest lists them (in the pair's zone and
    language), in the caller's session."""
    rules, lg = rules_of(settings), timefmt.lang(pair.locale)
    stmt = select(Account).where(
        Account.pair_id == pair.id,
        Account.disabled.is_(False),
        or_(Account.parked_reason != "", Account.failing_since <= now - rules.unhealthy_after),
    )
    return [
        trouble_of(a, health_of(a), failure_kind(a), pair.timezone, lg)
        for a in session.scalars(stmt.order_by(Account.id))
    ]


def troubles(deps: Deps, pair_id: int | None = None) -> list[AccountHealth]:
    """The unhealthy accounts of the pair (all pairs when None), now."""
    with deps.uow.read() as session:
        return unhealthy_in(session, pair_id, deps.now(), rules_of(deps.settings))


def account_health(deps: Deps, pair_id: int | None = None) -> list[AccountHealth]:
    """Every account's health (of the pair, or all), now."""
    now, rules = deps.now(), rules_of(deps.settings)
    with deps.uow.read() as session:
        stmt = select(Account).order_by(Account.id)
        if pair_id is not None:
            stmt = stmt.where(Account.pair_id == pair_id)
        return [health_view(a, now, rules) for a in session.scalars(stmt)]
